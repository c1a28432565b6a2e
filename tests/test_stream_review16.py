"""Review 16 of `sigformer stream` and its sinks: outputs written at the end find their
folder, one failing sink does not lose the others, a NaN costs the same windows for any
chunking, `replay` ends with its player, numeric flags are checked, a refused sink leaves
no file behind, `enhance --out OUT.WAV` is a file, and flags a bundle would ignore are
refused."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sigformer.cli import build_parser, main
from sigformer.streaming.runtime import ModelRunner, OnlinePipeline, Prediction, StreamStats

LABELS = ["a", "b"]


def _predictions(n: int = 3) -> list[Prediction]:
    return [Prediction(i, float(i), np.array([0.25, 0.75]), "b", 0.0) for i in range(n)]


# --- 1. sinks that write at the end: their folder exists (and takes files) from the start --

def test_xdf_recorder_writes_into_a_folder_that_did_not_exist(tmp_path):
    from sigformer.streaming.sinks import XDFRecorder

    target = tmp_path / "new" / "deeper" / "preds.xdf"
    sink = XDFRecorder(target, LABELS)
    assert target.parent.is_dir()  # made now, not when the rows are due
    sink.write(_predictions())
    sink.close()
    assert sink.path == target and target.is_file()


def test_live_plot_saves_into_a_folder_that_did_not_exist(tmp_path):
    from sigformer.streaming.sinks import LivePlotSink

    target = tmp_path / "figures" / "probs.png"
    sink = LivePlotSink(LABELS, save=target)
    sink.write(_predictions())
    sink.close()
    assert target.is_file()


@pytest.mark.parametrize("make", ["xdf", "plot"])
def test_an_output_under_a_file_is_refused_when_the_sink_is_made(tmp_path, make):
    from sigformer.streaming.sinks import LivePlotSink, XDFRecorder

    (tmp_path / "taken").write_text("a file, not a folder")
    target = tmp_path / "taken" / "out.xdf"
    with pytest.raises(NotADirectoryError, match=r"taken .*is an existing file; expected a "
                                                 r"folder"):
        XDFRecorder(target, LABELS) if make == "xdf" else LivePlotSink(LABELS, save=target)


def test_an_unwritable_output_folder_is_refused_when_the_sink_is_made(tmp_path, monkeypatch):
    from sigformer.streaming import sinks

    monkeypatch.setattr(sinks.os, "access", lambda path, mode: False)  # tests run as root
    with pytest.raises(sinks.OutputNotWritableError, match=r"folder .* is not writable; "
                                                           r"expected a folder"):
        sinks.XDFRecorder(tmp_path / "preds.xdf", LABELS)


class _ClosingSink:
    def __init__(self, log: list, name: str, error: Exception | None = None):
        self.log, self.name, self.error = log, name, error

    def write(self, predictions) -> None:
        pass

    def close(self) -> None:
        self.log.append(self.name)
        if self.error is not None:
            raise self.error


class _NoWindows:
    """A pipeline that makes no output (the runner's sink handling is under test)."""

    def __init__(self):
        self.stats = StreamStats()

    def configure(self, sfreq, channels) -> None:
        pass

    def process(self, chunk, timestamps=None) -> list:
        return []


def test_every_sink_is_closed_and_the_first_close_error_is_raised():
    from sigformer.streaming.engine import StreamRunner
    from sigformer.streaming.sources import ArraySource

    closed: list[str] = []
    sinks = [_ClosingSink(closed, "first", OSError("disk full")),
             _ClosingSink(closed, "second", ValueError("later")),
             _ClosingSink(closed, "third")]
    runner = StreamRunner(ArraySource(np.zeros((1, 100)), 100.0, ["c"]), _NoWindows(), sinks)
    with pytest.raises(OSError, match="disk full"):
        runner.run()
    assert closed == ["first", "second", "third"]


# --- 2. a NaN costs the windows it reaches, whatever the chunking ---------------------------

class _MeanModel(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.mean((1, 2)), x.std((1, 2))], 1)


def _nan_stream(chunk: int, nan_at: int, stages=()) -> tuple[list, StreamStats]:
    data = np.random.default_rng(0).standard_normal((2, 6000))
    data[1, nan_at] = np.nan
    online = OnlinePipeline(list(stages), 256, 64, ModelRunner(_MeanModel(), LABELS),
                            nan_policy="skip")
    online.configure(100.0, ["C3", "C4"])
    out = []
    for start in range(0, data.shape[1], chunk):
        out += online.process(data[:, start:start + chunk],
                              np.arange(start, min(start + chunk, data.shape[1])) / 100.0)
    return out, online.stats


def test_one_nan_skips_only_the_windows_that_hold_it():
    for chunk in (128, 4096):
        predictions, stats = _nan_stream(chunk, nan_at=3000)
        # windows starting at 64 k hold sample 3000 for 2745 <= 64 k <= 3000: k = 43..46
        assert stats.skipped_windows == 4, chunk
        assert not {p.window_index for p in predictions} & {43, 44, 45, 46}


@settings(max_examples=8, deadline=None)
@given(nan_at=st.integers(0, 5999), chunks=st.sampled_from([(128, 4096), (1, 777),
                                                             (5000, 64)]))
def test_skipped_windows_do_not_depend_on_the_chunk_size(nan_at, chunks):
    from sigformer.stages import Resample

    for stages in ((), (Resample(50.0),)):  # with a resampler: its filter span too
        (a, stats_a), (b, stats_b) = (_nan_stream(c, nan_at, stages) for c in chunks)
        assert stats_a.skipped_windows == stats_b.skipped_windows
        assert [p.window_index for p in a] == [p.window_index for p in b]
        np.testing.assert_allclose([p.probabilities for p in a],
                                   [p.probabilities for p in b], atol=1e-6)


# --- 3. replay ends when its player does --------------------------------------------------

class _FakePlayer:
    """Runs for ``seconds`` (or until stopped); stopping a stopped player raises, as
    mne-lsl's PlayerLSL does."""

    def __init__(self, seconds: float):
        self.until, self.stops = time.monotonic() + seconds, 0

    @property
    def running(self) -> bool:
        return time.monotonic() < self.until

    def stop(self) -> None:
        if not self.running:
            raise RuntimeError("The player is not started.")
        self.stops += 1
        self.until = 0.0


def _main_in_thread(argv: list[str], timeout: float = 5.0) -> tuple[threading.Thread, dict]:
    """``main(argv)`` in a thread, waited for ``timeout`` s (a command that never ends must
    fail the test, not hang it)."""
    result: dict = {}

    def run() -> None:
        try:
            result["rc"] = main(argv)
        except BaseException as err:  # noqa: BLE001 - checked by the test
            result["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=timeout)
    return thread, result


def _replay_in_thread(monkeypatch, player, argv) -> tuple[threading.Thread, dict]:
    import sigformer.streaming.app as app

    monkeypatch.setattr(app, "replay", lambda *a, **k: player)
    return _main_in_thread(["replay", "rec.fif", *argv])


@pytest.mark.parametrize("argv", [[], ["--duration", "30"]], ids=["forever", "duration"])
def test_replay_ends_when_the_player_finishes_by_itself(monkeypatch, argv):
    player = _FakePlayer(0.3)
    thread, result = _replay_in_thread(monkeypatch, player, argv)
    assert not thread.is_alive(), "replay kept waiting after its player had finished"
    assert result == {"rc": 0} and player.stops == 0


def test_replay_stops_a_player_still_running_at_the_duration(monkeypatch):
    player = _FakePlayer(60.0)
    thread, result = _replay_in_thread(monkeypatch, player, ["--duration", "0.3"])
    assert not thread.is_alive() and result == {"rc": 0} and player.stops == 1


def test_replay_of_a_real_recording_ends_after_its_one_repeat(tmp_path):
    import uuid

    import mne

    raw = mne.io.RawArray(np.zeros((2, 100)), mne.create_info(["C3", "C4"], 100.0, "eeg"),
                          verbose="error")
    raw.save(tmp_path / "short_raw.fif", verbose="error")
    thread, result = _main_in_thread(["replay", str(tmp_path / "short_raw.fif"), "--repeat",
                                      "1", "--name", f"sf-review16-{uuid.uuid4().hex[:8]}"],
                                     timeout=20.0)  # a 1 s recording
    assert not thread.is_alive(), "replay kept waiting after playing its one repeat"
    assert result == {"rc": 0}


# --- 4. numeric flags ---------------------------------------------------------------------

@pytest.mark.parametrize("argv, flag, expected", [
    (["stream", "b", "--chunk-size", "-5"], "--chunk-size", "whole number of samples >= 1"),
    (["stream", "b", "--chunk-size", "0"], "--chunk-size", "whole number of samples >= 1"),
    (["stream", "b", "--threads", "0"], "--threads", "whole number of threads >= 1"),
    (["stream", "b", "--max-predictions", "0"], "--max-predictions",
     "whole number of predictions >= 1"),
    (["stream", "b", "--timeout", "-1"], "--timeout", "seconds, a number > 0"),
    (["replay", "rec.fif", "--chunk-size", "0"], "--chunk-size",
     "whole number of samples >= 1"),
    (["classify-iq", "cap.sigmf-meta", "--model", "b", "--out", "x.sigmf-meta",
      "--in-place"], "--in-place", "not allowed with argument --out"),
])
def test_bad_numbers_and_conflicting_outputs_are_refused_in_one_line(argv, flag, expected,
                                                                     capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and expected in err


@pytest.mark.parametrize("size", [0, -5])
def test_array_sources_refuse_a_chunk_size_below_one(size):
    from sigformer.streaming.sources import ArraySource

    with pytest.raises(ValueError, match=r"chunk_size must be a whole number of samples >= 1, "
                                         rf"got {size}"):
        ArraySource(np.zeros((1, 10)), 100.0, ["c"], chunk_size=size)


def test_a_zero_chunk_size_is_not_silently_the_default(tmp_path):
    from sigformer.speech.audio import write_audio
    from sigformer.streaming.app import make_source

    write_audio(tmp_path / "a.wav", np.zeros((1, 100)), 8000)
    with pytest.raises(ValueError, match="chunk_size must be"):
        make_source(f"wav:{tmp_path / 'a.wav'}", chunk_size=0)


def test_zero_threads_is_a_setting_error_not_a_crash(iq_bundle):
    from sigformer.streaming.app import OnlineSettings, build_online
    from sigformer.tasks.config import PipelineConfigError

    with pytest.raises(PipelineConfigError, match=r"threads \(--threads\) must be a whole "
                                                  r"number >= 1, got 0"):
        build_online(iq_bundle, OnlineSettings(threads=0))


# --- 5. a refused sink leaves no file behind ----------------------------------------------

def _capture(folder: Path) -> Path:
    from sigformer.data.sigmf_io import write_sigmf

    rng = np.random.default_rng(3)
    iq = (rng.standard_normal(128 * 6) + 1j * rng.standard_normal(128 * 6))
    return write_sigmf(folder / "cap", iq.astype(np.complex64), sample_rate=1e6)


def test_a_bad_record_suffix_is_refused_before_the_sigmf_file_is_written(tmp_path, capsys,
                                                                        iq_bundle):
    cap = _capture(tmp_path)
    assert main(["stream", str(iq_bundle), "--source", f"sigmf:{cap}", "--out",
                 str(tmp_path / "lab.sigmf-meta"), "--record",
                 str(tmp_path / "preds.txt")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    assert not (tmp_path / "lab.sigmf-meta").exists()
    assert not list(tmp_path.glob("preds*"))


def test_a_sink_that_cannot_be_made_discards_the_ones_made_before(tmp_path, capsys, iq_bundle,
                                                                  monkeypatch):
    from sigformer.streaming import sinks
    from sigformer.tasks.config import PipelineConfigError

    def no_display(self, *args, **kwargs):
        raise PipelineConfigError("no plot today")

    monkeypatch.setattr(sinks.LivePlotSink, "__init__", no_display)
    cap = _capture(tmp_path)
    assert main(["stream", str(iq_bundle), "--source", f"sigmf:{cap}", "--out",
                 str(tmp_path / "lab.sigmf-meta"), "--record", str(tmp_path / "preds.csv"),
                 "--plot"]) == 2
    assert "no plot today" in capsys.readouterr().err
    assert not (tmp_path / "lab.sigmf-meta").exists()
    assert not list(tmp_path.glob("preds*"))


# --- 6. enhance --out: the suffix in any case ---------------------------------------------

def _array_wav(tmp_path: Path) -> Path:
    from sigformer.speech.audio import write_audio

    write_audio(tmp_path / "array.wav",
                0.1 * np.random.default_rng(2).standard_normal((4, 4000)), 8000)
    return tmp_path / "array.wav"


def test_enhance_out_in_capitals_is_a_wav_file(tmp_path, capsys, enhancement_bundle):
    from sigformer.speech.audio import read_audio

    assert main(["enhance", str(_array_wav(tmp_path)), "--model", str(enhancement_bundle),
                 "--out", str(tmp_path / "OUT.WAV")]) == 0
    assert (tmp_path / "OUT.WAV").is_file()
    assert read_audio(tmp_path / "OUT.WAV")[0].shape == (1, 4000)


def test_enhance_out_in_another_audio_format_is_refused(tmp_path, capsys,
                                                        enhancement_bundle):
    assert main(["enhance", str(_array_wav(tmp_path)), "--model", str(enhancement_bundle),
                 "--out", str(tmp_path / "out.flac")]) == 2
    err = capsys.readouterr().err
    assert "enhancement writes a WAV file, not .flac" in err and "ending in .wav" in err
    assert not (tmp_path / "out.flac").exists()


# --- 8. flags a separation bundle would ignore are refused --------------------------------

@pytest.mark.parametrize("flags", [["--record", "preds.csv"], ["--lsl-out", "preds"],
                                   ["--plot"], ["--hop", "100"], ["--hop-s", "0.5"],
                                   ["--sps", "8"], ["--min-power-db", "10"],
                                   ["--decision", "frame"]],
                         ids=lambda flags: flags[0])
def test_classification_flags_are_refused_for_a_separation_bundle(tmp_path, capsys, flags,
                                                                  separation_bundle,
                                                                  monkeypatch):
    from sigformer.speech.audio import write_audio

    monkeypatch.chdir(tmp_path)
    write_audio(tmp_path / "mix.wav", np.zeros((1, 4000)), 8000)
    assert main(["stream", str(separation_bundle), "--source", "wav:mix.wav", "--out",
                 "sep", *flags]) == 2
    err = capsys.readouterr().err
    assert f"{flags[0]} applies to classification bundles" in err
    assert "this bundle is 'separate'" in err and "it writes audio with --out" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix.wav"]  # nothing written


def test_default_sinks_refuse_a_recorder_for_a_separation_bundle(tmp_path, separation_bundle):
    from sigformer.bundle import Bundle
    from sigformer.streaming.app import default_sinks
    from sigformer.streaming.sources import ArraySource
    from sigformer.tasks.config import PipelineConfigError

    source = ArraySource(np.zeros((1, 10)), 8000.0, ["mic0"])
    with pytest.raises(PipelineConfigError, match="--record applies to classification"):
        default_sinks(Bundle.load(separation_bundle), source, out=str(tmp_path / "o"),
                      record=str(tmp_path / "p.csv"))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("flags", [["--sps", "8"], ["--min-power-db", "20"],
                                   ["--decision", "frame"], ["--all-frames"]])
def test_iq_flags_are_refused_for_an_eeg_classifier(tmp_path, capsys, flags,
                                                    tiny_dbconformer_params):
    from sigformer.bundle import Bundle
    from sigformer.models import create_model
    from sigformer.spec import SignalSpec

    torch.manual_seed(0)
    model = create_model("dbconformer", n_chans=2, n_times=200, n_outputs=2,
                         **tiny_dbconformer_params).eval()
    bundle = Bundle(model=model, task="classify", labels=["left", "right"],
                    input_spec=SignalSpec.eeg(100, ["C3", "C4"], window=200)
                    ).save(tmp_path / "eeg")
    # refused before the source is opened: no LSL stream is needed
    assert main(["stream", str(bundle), "--source", "lsl:nothing", *flags]) == 2
    err = capsys.readouterr().err
    assert f"{flags[0]} applies to IQ classification bundles" in err
    assert "this bundle's input is 'channels_time', not IQ" in err
