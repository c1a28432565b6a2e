"""Command-line inputs refused or reported before any work is done: the speech commands'
chunking and --out, the natural order of microphone files, `models --domain`, and the IQ
stream's refusals and rate-less captures (no recording left behind by a refused stream)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from repo_scripts import cli_json

from sigformer.bundle import Bundle
from sigformer.cli import build_parser, main
from sigformer.models import create_model
from sigformer.spec import SignalSpec

SEPARATE = ["separate", "mix.wav", "--model", "bundle", "--out", "out"]
ENHANCE = ["enhance", "mic*.wav", "--model", "bundle", "--out", "out.wav"]


# --- separate / enhance: --chunk-s, --overlap-s, --out -----------------------------------

@pytest.mark.parametrize("command", [SEPARATE, ENHANCE], ids=["separate", "enhance"])
@pytest.mark.parametrize("flag, value, expected", [
    ("--chunk-s", "0", "a number > 0"), ("--chunk-s", "-1", "a number > 0"),
    ("--chunk-s", "nan", "a number > 0"), ("--overlap-s", "-0.1", "a number >= 0"),
])
def test_chunk_and_overlap_are_checked_by_argparse(command, flag, value, expected, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*command, flag, value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: expected seconds, {expected}, got {value!r}" in err


@pytest.mark.parametrize("command", [SEPARATE, ENHANCE], ids=["separate", "enhance"])
def test_an_overlap_over_half_the_chunk_is_refused_before_loading_anything(command, capsys):
    # the model does not exist: the flags are refused first
    with pytest.raises(SystemExit) as exited:
        main([*command, "--chunk-s", "1", "--overlap-s", "2"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --overlap-s: 2 s is more than half of --chunk-s 1 s" in err
    args = build_parser().parse_args([*command, "--chunk-s", "1", "--overlap-s", "0.5"])
    assert (args.chunk_s, args.overlap_s) == (1.0, 0.5)


@pytest.fixture()
def no_processing(monkeypatch):
    """Fail the test if the stream starts: the refusal must come before any processing."""
    from sigformer.streaming.engine import StreamRunner

    def refuse(*args, **kwargs):
        raise AssertionError("the stream was processed before the refusal")

    monkeypatch.setattr(StreamRunner, "run", refuse)


def _mixture(path: Path, seconds: float = 1.0) -> Path:
    from sigformer.speech.audio import write_audio

    rng = np.random.default_rng(0)
    write_audio(path, 0.1 * rng.standard_normal((1, int(8000 * seconds))), 8000)
    return path


def test_separate_out_naming_an_existing_file_is_refused_first(tmp_path, separation_bundle,
                                                               no_processing, capsys):
    mix = _mixture(tmp_path / "mix.wav")
    (tmp_path / "taken").write_text("an earlier result")
    assert main(["separate", str(mix), "--model", str(separation_bundle),
                 "--out", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    assert "is an existing file" in err and "give a folder" in err
    assert (tmp_path / "taken").read_text() == "an earlier result"


def test_a_chunk_shorter_than_the_bundles_overlap_allows_is_refused_first(
        tmp_path, separation_bundle, no_processing, capsys):
    mix = _mixture(tmp_path / "mix.wav")
    assert main(["separate", str(mix), "--model", str(separation_bundle),
                 "--out", str(tmp_path / "out"), "--chunk-s", "0.15"]) == 2
    err = capsys.readouterr().err
    assert "overlap_s=0.1 (--overlap-s) (the bundle's default)" in err
    assert "at most half of chunk_s=0.15 (--chunk-s)" in err
    assert not (tmp_path / "out").exists()


# --- enhance: microphone files in natural order -----------------------------------------

def test_a_glob_of_microphone_files_is_read_in_natural_order(tmp_path):
    from sigformer.cli import _microphone_paths

    for name in ("mic10.wav", "mic2.wav", "mic1.wav", "mic11.wav"):
        (tmp_path / name).write_bytes(b"")
    order = [Path(p).name for p in _microphone_paths([str(tmp_path / "mic*.wav")])]
    assert order == ["mic1.wav", "mic2.wav", "mic10.wav", "mic11.wav"]
    # files named one by one keep the order given
    given = [str(tmp_path / "mic10.wav"), str(tmp_path / "mic2.wav")]
    assert _microphone_paths(given) == given


def test_enhance_reports_the_microphone_order_it_used(tmp_path, capsys):
    from sigformer.speech.audio import write_audio

    torch.manual_seed(0)
    model = create_model("deftan2", "tiny", n_mics=3, sample_rate=8000).eval()
    spec = SignalSpec.audio(8000, 3)
    bundle = Bundle(model=model, task="enhance", input_spec=spec, model_spec=spec,
                    extra={"chunk_s": 0.5, "overlap_s": 0.1}).save(tmp_path / "enh")
    rng = np.random.default_rng(1)
    for name in ("mic10.wav", "mic2.wav", "mic1.wav"):
        write_audio(tmp_path / name, 0.1 * rng.standard_normal((1, 4000)), 8000)
    report = cli_json(capsys, ["enhance", str(tmp_path / "mic*.wav"), "--model", str(bundle),
                               "--out", str(tmp_path / "clean.wav")])
    assert [Path(p).name for p in report["microphones"]] == ["mic1.wav", "mic2.wav",
                                                             "mic10.wav"]
    assert (tmp_path / "clean.wav").exists()


# --- models --domain ----------------------------------------------------------------------

def test_models_with_an_unknown_domain_names_the_known_ones(capsys):
    assert main(["models", "--domain", "foo"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "unknown domain 'foo' for --domain; known domains: eeg, rf, seeg, speech" in \
        captured.err
    assert main(["models", "--domain", "speech"]) == 0
    assert capsys.readouterr().out.split() == ["deftan2", "mossformer"]


# --- IQ streams: refusals before any sink, captures without a rate -------------------------

def _capture(tmp_path: Path, *, sample_rate: float | None) -> Path:
    """A 2-FSK capture at 32 samples per symbol, with or without core:sample_rate."""
    from sigformer.data.sigmf_io import write_sigmf

    rng = np.random.default_rng(3)
    n = 128 * 40
    bits = np.repeat(rng.choice([-1.0, 1.0], n // 32 + 1), 32)[:n]
    iq = np.exp(2j * np.pi * np.cumsum(0.05 * bits)).astype(np.complex64)
    path = Path(write_sigmf(tmp_path / "cap", iq, sample_rate=sample_rate))
    assert ("core:sample_rate" in json.loads(path.read_text())["global"]) == \
        (sample_rate is not None)
    return path


def test_a_refused_stream_leaves_no_recording(tmp_path, family_bundle, capsys):
    mono = _mixture(tmp_path / "mono.wav")
    record = tmp_path / "preds.sgrec"
    assert main(["stream", str(family_bundle), "--source", f"wav:{mono}",
                 "--record", str(record)]) == 2
    assert "I/Q bundle needs 2 channels (I, Q); the stream has 1" in capsys.readouterr().err
    assert not list(tmp_path.glob("preds*"))
    # the next run records under the name asked for, not preds-2.sgrec
    capture = _capture(tmp_path, sample_rate=1e6)
    report = cli_json(capsys, ["stream", str(family_bundle), "--source", f"sigmf:{capture}",
                               "--sps", "32", "--record", str(record)])
    assert report["written"] == [str(record)]


def test_a_capture_without_a_rate_streams_at_a_nominal_rate_for_a_rate_agnostic_bundle(
        tmp_path, family_bundle, capsys):
    (tmp_path / "rated").mkdir()
    rated = _capture(tmp_path / "rated", sample_rate=1e6)
    bare = _capture(tmp_path, sample_rate=None)
    with_rate = cli_json(capsys, ["stream", str(family_bundle), "--source", f"sigmf:{rated}",
                                  "--sps", "32"])
    assert main(["stream", str(family_bundle), "--source", f"sigmf:{bare}", "--sps", "32",
                 "--out", str(tmp_path / "labels.sigmf-meta")]) == 0
    out = capsys.readouterr().out
    assert "note: the capture states no sample rate and this bundle is rate-agnostic" in out
    nominal = json.loads(out[out.index("{"):])
    # the rate plays no part: the same frames and labels as with the capture's real rate
    assert nominal["label_counts"] == with_rate["label_counts"]
    assert nominal["windows"] == with_rate["windows"] and nominal["nominal_sample_rate_hz"] == 1
    assert "real_time_factor" not in nominal  # a nominal rate has no real time
    written = json.loads((tmp_path / "labels.sigmf-meta").read_text())
    assert "core:sample_rate" not in written["global"]  # not claimed as the capture's rate
    assert sum(a["sigformer:frames"] for a in written["annotations"]) == \
        sum(nominal["label_counts"].values())  # every frame in one run


def test_a_capture_without_a_rate_needs_source_rate_when_paced(tmp_path, family_bundle,
                                                              capsys):
    bare = _capture(tmp_path, sample_rate=None)
    assert main(["stream", str(family_bundle), "--source", f"sigmf:{bare}", "--realtime"]) == 2
    err = capsys.readouterr().err
    assert "has no core:sample_rate" in err and "--source-rate HZ" in err


def _interrupt_after_first_write(monkeypatch):
    """Ctrl-C as a user sends it, while the first block is being written."""
    import signal

    from sigformer.streaming.sinks import WAVSink

    original = WAVSink.write

    def write(self, blocks):
        original(self, blocks)
        if not getattr(self, "_interrupted_once", False):
            self._interrupted_once = True
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(WAVSink, "write", write)


def test_an_interrupted_separate_writes_no_cut_short_file(tmp_path, separation_bundle,
                                                          monkeypatch, capsys):
    from sigformer.cli import EXIT_INTERRUPTED

    mix = _mixture(tmp_path / "long.wav", seconds=3.0)
    out = tmp_path / "out"
    out.mkdir()
    earlier = out / "long_s1.wav"
    earlier.write_bytes(b"an earlier complete result")
    _interrupt_after_first_write(monkeypatch)
    code = main(["separate", str(mix), "--model", str(separation_bundle), "--out", str(out)])
    assert code == EXIT_INTERRUPTED
    report = json.loads(capsys.readouterr().out)
    assert report["interrupted"] is True and report["outputs"] == []
    assert earlier.read_bytes() == b"an earlier complete result"  # not replaced by a stub
    assert sorted(p.name for p in out.iterdir()) == ["long_s1.wav"]  # no .part left


def test_a_stream_error_publishes_no_whole_file_output(tmp_path):
    from sigformer.streaming.engine import StreamRunner
    from sigformer.streaming.runtime import StreamError
    from sigformer.streaming.sinks import WAVSink
    from sigformer.streaming.sources import ArraySource

    class FailsOnSecondChunk:
        n = 0

        def configure(self, sfreq, channels):
            pass

        def process(self, chunk, timestamps):
            from sigformer.streaming.processors import AudioBlock

            self.n += 1
            if self.n == 2:
                raise StreamError("NaN in the input (simulated)")
            return [AudioBlock(0, np.asarray(chunk, np.float32), 0.0, ("s1",))]

    audio = np.zeros((1, 16000), np.float32)
    whole = WAVSink(tmp_path / "whole", 8000, whole_input=True)
    live = WAVSink(tmp_path / "live", 8000)
    runner = StreamRunner(ArraySource(audio, 8000, ("mic0",), chunk_size=4000),
                          FailsOnSecondChunk(), [whole, live])
    with pytest.raises(StreamError, match="simulated"):
        runner.run()
    assert not (tmp_path / "whole").exists() or not list((tmp_path / "whole").iterdir())
    assert [p.name for p in (tmp_path / "live").iterdir()] == ["output_s1.wav"]  # kept


def test_stream_bundle_closes_the_source_when_a_setting_is_refused(tmp_path, separation_bundle):
    from sigformer.streaming.app import OnlineSettings, stream_bundle
    from sigformer.streaming.sources import ArraySource
    from sigformer.validation import SignalError

    source = ArraySource(np.zeros((1, 8000), np.float32), 8000, ("mic0",))
    closed = []
    source.close = lambda: closed.append(True)
    with pytest.raises(SignalError, match="channel 3"):
        stream_bundle(str(separation_bundle), source, [], settings=OnlineSettings(channel=3))
    assert closed == [True]


def test_a_flush_that_fails_publishes_no_whole_file_output(tmp_path):
    from sigformer.streaming.engine import StreamRunner
    from sigformer.streaming.processors import AudioBlock
    from sigformer.streaming.runtime import StreamError
    from sigformer.streaming.sinks import WAVSink
    from sigformer.streaming.sources import ArraySource

    class FailsAtFlush:
        def configure(self, sfreq, channels):
            pass

        def process(self, chunk, timestamps):
            return [AudioBlock(0, np.asarray(chunk, np.float32), 0.0, ("s1",))]

        def flush(self):
            raise StreamError("the model failed on the last chunk (simulated)")

    whole = WAVSink(tmp_path / "whole", 8000, whole_input=True)
    runner = StreamRunner(ArraySource(np.zeros((1, 8000), np.float32), 8000, ("mic0",),
                                      chunk_size=4000), FailsAtFlush(), [whole])
    with pytest.raises(StreamError, match="simulated"):
        runner.run()
    assert not list((tmp_path / "whole").glob("*.wav"))
