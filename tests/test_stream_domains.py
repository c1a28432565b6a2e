"""One streaming runtime for EEG, audio, IQ and OFDM: one bundle per domain through
``sigformer stream`` (and the file conveniences), chunked == offline for the new stateful
pieces, ZeroMQ IQ on loopback, recorder sessions, and CLI overrides for every task."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sigformer.bundle import Bundle
from sigformer.cli import main
from sigformer.models import create_model
from sigformer.spec import SignalSpec

sf = pytest.importorskip("soundfile")


def _cli_json(capsys, argv) -> dict:
    assert main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):])


def _fif_recording(tmp_path: Path, names: list[str], *, seconds: int, seed: int) -> Path:
    """``tmp_path/rec_raw.fif``: white noise (~10 uV) on ``names`` at 160 Hz."""
    import mne

    data = np.random.default_rng(seed).standard_normal((len(names), 160 * seconds)) * 1e-5
    raw = mne.io.RawArray(data, mne.create_info(names, 160, "eeg"), verbose="error")
    raw.save(tmp_path / "rec_raw.fif", verbose="error")
    return tmp_path / "rec_raw.fif"


@pytest.fixture(scope="module")
def iq_bundle(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    labels = ["ASK", "FSK", "PSK"]
    spec = SignalSpec.iq(1e6, 128)
    return Bundle(model=create_model("kd_cnn", n_outputs=3).eval(), task="classify",
                  input_spec=spec, model_spec=spec, labels=labels,
                  extra={"normalization": "rms"}).save(tmp_path_factory.mktemp("iq") / "b")


# --- audio --------------------------------------------------------------------------------

def test_separation_bundle_streams_a_wav_into_one_file_per_speaker(tmp_path, capsys,
                                                                   separation_bundle):
    mix = np.random.default_rng(0).standard_normal(8000 * 2).astype(np.float32) * 0.1
    sf.write(tmp_path / "mix.wav", mix, 8000)
    report = _cli_json(capsys, ["stream", str(separation_bundle), "--source",
                                f"wav:{tmp_path / 'mix.wav'}", "--out", str(tmp_path / "o")])
    assert report["task"] == "separate" and len(report["written"]) == 2
    for path in report["written"]:
        audio, rate = sf.read(path)
        assert rate == 8000 and len(audio) == len(mix)


def test_separate_file_at_another_rate_comes_back_at_the_input_rate(tmp_path, capsys,
                                                                    separation_bundle):
    mix = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1
    sf.write(tmp_path / "mix16k.wav", mix, 16000)
    report = _cli_json(capsys, ["separate", str(tmp_path / "mix16k.wav"), "--model",
                                str(separation_bundle), "--out", str(tmp_path / "sep")])
    assert report["sample_rate"] == 16000 and report["model_rate"] == 8000
    for path in report["outputs"]:
        audio, rate = sf.read(path)
        assert rate == 16000 and abs(len(audio) - len(mix)) <= 32  # resampler edge


def test_enhance_accepts_one_mono_file_per_microphone(tmp_path, capsys, enhancement_bundle):
    rng = np.random.default_rng(2)
    for i in range(4):
        sf.write(tmp_path / f"mic{i}.wav", rng.standard_normal(6000).astype(np.float32) * .1,
                 8000)
    report = _cli_json(capsys, ["enhance", str(tmp_path / "mic*.wav"), "--model",
                                str(enhancement_bundle), "--out", str(tmp_path / "e.wav")])
    audio, rate = sf.read(report["outputs"][0])
    assert rate == 8000 and audio.ndim == 1 and len(audio) == 6000
    assert main(["enhance", str(tmp_path / "mic0.wav"), "--model", str(enhancement_bundle),
                 "--out", str(tmp_path / "x.wav")]) == 2
    assert "takes 4 microphones" in capsys.readouterr().err


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=8))
def test_audio_stream_chunked_equals_whole(cuts):
    from sigformer.streaming.processors import AudioStream

    torch.manual_seed(0)
    model = create_model("mossformer", "tiny", n_src=2, sample_rate=8000).eval()
    signal = np.random.default_rng(3).standard_normal((1, 6000)) * 0.1

    def run(chunks):
        proc = AudioStream(model, 8000, multichannel=False, chunk_s=0.25, overlap_s=0.05)
        proc.configure(8000, ["m0"])
        blocks = [b for c in chunks for b in proc.process(c)] + proc.flush()
        return np.concatenate([b.data for b in blocks], axis=1)

    edges = np.unique(np.clip(np.cumsum(cuts), 0, 6000))
    pieces = np.split(signal, edges[edges < 6000], axis=1)
    np.testing.assert_allclose(run(pieces), run([signal]), atol=1e-5)


# --- IQ -----------------------------------------------------------------------------------

def test_iq_bundle_streams_a_sigmf_capture_into_annotations(tmp_path, capsys, iq_bundle):
    from sigformer.data.sigmf_io import write_sigmf

    iq = (np.random.default_rng(4).standard_normal(128 * 20)
          + 1j * np.random.default_rng(5).standard_normal(128 * 20)).astype(np.complex64)
    write_sigmf(tmp_path / "cap", iq, sample_rate=1e6, center_frequency=433.92e6)
    report = _cli_json(capsys, ["stream", str(iq_bundle), "--source",
                                f"sigmf:{tmp_path / 'cap.sigmf-meta'}", "--out",
                                str(tmp_path / "labels.sigmf-meta")])
    assert report["predictions"] == 20
    meta = json.loads((tmp_path / "labels.sigmf-meta").read_text())
    anns = meta["annotations"]  # runs of consecutive frames with one label, in order
    assert {a["core:label"] for a in anns} <= {"ASK", "FSK", "PSK"}
    assert sum(a["sigformer:frames"] for a in anns) == 20
    assert [a["core:sample_start"] for a in anns] == \
        [sum(b["core:sample_count"] for b in anns[:i]) for i in range(len(anns))]
    assert sum(a["core:sample_count"] for a in anns) == 128 * 20
    assert any(e["name"] == "sigformer" for e in meta["global"]["core:extensions"])


def test_zmq_iq_source_on_loopback(iq_bundle):
    zmq = pytest.importorskip("zmq")
    from sigformer.streaming import ListSink
    from sigformer.streaming.app import stream_bundle
    from sigformer.streaming.sources import ZMQSource

    context = zmq.Context.instance()
    pub = context.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    source = ZMQSource(f"tcp://127.0.0.1:{port}", 1e6)
    stop = threading.Event()

    def publish():  # GNU Radio's ZMQ PUB sink: raw gr_complex items per message
        rng = np.random.default_rng(6)
        while not stop.is_set():
            iq = (rng.standard_normal(256) + 1j * rng.standard_normal(256)).astype(np.complex64)
            pub.send(iq.tobytes())
            time.sleep(0.002)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        sink = ListSink()
        report = stream_bundle(iq_bundle, source, [sink], max_outputs=10, duration=20,
                               log=lambda *a: None)
    finally:
        stop.set()
        thread.join()
        pub.close(linger=0)
    assert report["predictions"] >= 10 and len(sink.predictions) >= 10
    assert source.bad_messages == 0


# --- OFDM ---------------------------------------------------------------------------------

def test_channel_estimation_bundle_streams_slot_by_slot(tmp_path, capsys):
    from sigformer.data.ofdm import simulate_ofdm
    from sigformer.rf.ofdm import ModelEstimator
    from sigformer.tasks.estimate_channel import grid_spec

    data = simulate_ofdm(12, seed=0)
    torch.manual_seed(0)
    model = create_model("ofdm_linear", pilot_shape=data.config.pilot_shape).eval()
    spec = grid_spec(data.config.to_dict())
    bundle = Bundle(model=model, task="estimate_channel", input_spec=spec, model_spec=spec
                    ).save(tmp_path / "b")
    data.save(tmp_path / "slots.npz")
    report = _cli_json(capsys, ["stream", str(bundle), "--source",
                                f"slots:{tmp_path / 'slots.npz'}", "--out",
                                str(tmp_path / "est.npz")])
    assert report["outputs"] == 12
    with np.load(tmp_path / "est.npz") as est:
        streamed = est["estimates"]
        assert list(est["slots"]) == list(range(12))
    np.testing.assert_allclose(streamed, ModelEstimator(model).predict(data), atol=1e-5)


# --- EEG through the CLI ------------------------------------------------------------------

def test_eeg_bundle_streams_a_recording_file(tmp_path, capsys):

    from tests.test_bundle import CHAINS, NAMES, _eeg_bundle

    bundle = _eeg_bundle(CHAINS["notch_reref"]).save(tmp_path / "b")
    _fif_recording(tmp_path, NAMES, seconds=5, seed=7)
    report = _cli_json(capsys, ["stream", str(bundle), "--source",
                                f"file:{tmp_path / 'rec_raw.fif'}", "--hop-s", "0.5",
                                "--record", str(tmp_path / "p.sgrec")])
    assert report["predictions"] == 9  # (5 s - 1 s window) / 0.5 s hop + 1
    from sigformer.streaming import read_recorder

    rec = read_recorder(tmp_path / "p.sgrec")
    assert rec.columns == ["left", "right"] and len(rec.timestamps) == 9
    assert list(rec.to_dataframe().columns) == ["timestamp", "left", "right"]


def test_recorder_never_truncates_an_earlier_session(tmp_path):
    from sigformer.streaming import Recorder, read_recorder

    first = Recorder(tmp_path / "r.sgrec", ["a"])
    first.write_rows(np.array([1.0]), np.array([[0.5]]))
    first.close()
    second = Recorder(tmp_path / "r.sgrec", ["a"])
    second.close()
    assert second.path.name == "r-2.sgrec"
    assert len(read_recorder(tmp_path / "r.sgrec").timestamps) == 1


def test_tokenizer_bundles_are_not_streamed(tmp_path):
    from sigformer.checkpoint import CheckpointError
    from sigformer.streaming.app import build_online

    tok = create_model("tfm_tokenizer", preset="tiny")
    spec = SignalSpec.eeg(200, ["Cz"])
    bundle = Bundle(model=tok, task="tokenize", input_spec=spec)
    with pytest.raises(CheckpointError, match="not streamed"):
        build_online(bundle)


def test_source_strings_are_checked(tmp_path):
    from sigformer.streaming.app import make_source, parse_source
    from sigformer.tasks.config import PipelineConfigError

    assert parse_source("capture.sigmf-meta") == ("sigmf", "capture.sigmf-meta")
    assert parse_source("zmq:tcp://127.0.0.1:5555") == ("zmq", "tcp://127.0.0.1:5555")
    with pytest.raises(PipelineConfigError, match="KIND:TARGET"):
        parse_source("mystery")
    with pytest.raises(PipelineConfigError, match="does not exist"):
        make_source(f"wav:{tmp_path / 'missing.wav'}")
    with pytest.raises(PipelineConfigError, match="sample rate"):
        make_source("zmq:tcp://127.0.0.1:1")


# --- overrides: every override works for every task, or is refused clearly ------------------

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


@pytest.mark.parametrize("pipeline,works,refused", [
    ("eeg_mi_dbconformer.yaml", {"max_epochs", "accelerator", "devices", "strategy",
                                 "num_nodes"}, set()),
    ("eeg_tokenize_tfm.yaml", {"max_epochs"}, {"accelerator", "devices", "strategy",
                                               "num_nodes"}),
    ("amr_clst.yaml", {"max_epochs"}, {"accelerator", "devices", "strategy", "num_nodes"}),
    ("ofdm_adafortitran.yaml", {"max_epochs"}, {"accelerator", "devices", "strategy",
                                                "num_nodes"}),
    ("speech_separation_mossformer.yaml", {"max_epochs"}, {"accelerator", "devices"}),
    ("speech_enhancement_deftan2.yaml", {"max_epochs"}, {"strategy", "num_nodes"}),
])
def test_every_override_applies_or_is_refused(pipeline, works, refused):
    from sigformer.tasks import load_task_config
    from sigformer.tasks.config import PipelineConfigError

    values = {"max_epochs": 3, "accelerator": "cpu", "devices": 1, "strategy": "auto",
              "num_nodes": 1}
    for key in works:
        cfg = load_task_config(PIPELINES / pipeline, {key: values[key]})
        dumped = json.dumps(cfg.model_dump(mode="json"))
        assert f'"{key}": {json.dumps(values[key])}' in dumped
    for key in refused:
        with pytest.raises(PipelineConfigError, match="does not apply"):
            load_task_config(PIPELINES / pipeline, {key: values[key]})


def test_model_param_typos_get_did_you_mean(tmp_path):
    from sigformer.tasks import load_task_config
    from sigformer.tasks.config import PipelineConfigError

    with pytest.raises(PipelineConfigError, match=r"did you mean \['num_heads'\]"):
        load_task_config({"name": "t", "model": {"name": "dbconformer",
                                                 "params": {"num_head": 4}}})
    with pytest.raises(PipelineConfigError, match="unknown field"):
        load_task_config({"name": "t", "output": {"dir": "runs/{user}"}})
    with pytest.raises(PipelineConfigError, match="path separators"):
        load_task_config({"name": "../../etc"})


@pytest.mark.slow
def test_ctrl_c_ends_a_stream_cleanly_with_the_recording_flushed(tmp_path):
    """SIGINT to `sigformer stream`: the summary is printed, the exit status is 130, and
    every prediction made so far is in the recording."""
    import os
    import signal
    import subprocess
    import sys

    import mne

    from sigformer.streaming import read_recorder
    from tests.test_bundle import NAMES, _eeg_bundle

    bundle = _eeg_bundle([]).save(tmp_path / "b")
    data = np.random.default_rng(8).standard_normal((len(NAMES), 160 * 60)) * 1e-5
    raw = mne.io.RawArray(data, mne.create_info(NAMES, 160, "eeg"), verbose="error")
    raw.save(tmp_path / "long_raw.fif", verbose="error")
    record = tmp_path / "p.sgrec"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sigformer.cli", "stream", str(bundle), "--source",
         f"file:{tmp_path / 'long_raw.fif'}", "--realtime", "--hop-s", "0.25", "--record",
         str(record)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait for a few predictions on disk
            if record.exists() and record.stat().st_size > 400:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    report = json.loads(out[out.index("{"):])
    assert report["interrupted"] is True and report["predictions"] >= 1
    assert len(read_recorder(record).timestamps) == report["predictions"]


def test_live_plot_of_probabilities_is_drawn_and_saved(tmp_path, capsys):
    """`sigformer stream ... --plot out.png`: the probabilities are plotted as they come
    (headless here: nothing is shown) and the final figure is saved."""

    from tests.test_bundle import NAMES, _eeg_bundle

    bundle = _eeg_bundle([]).save(tmp_path / "b")
    _fif_recording(tmp_path, NAMES, seconds=4, seed=9)
    report = _cli_json(capsys, ["stream", str(bundle), "--source",
                                f"file:{tmp_path / 'rec_raw.fif'}", "--hop-s", "0.5",
                                "--plot", str(tmp_path / "live.png")])
    assert report["predictions"] == 7
    assert (tmp_path / "live.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sound_card_source_names_its_extra_when_missing():
    pytest.importorskip("sigformer.streaming.sources")
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        from sigformer.streaming.sources import SoundCardSource

        with pytest.raises(ImportError, match=r"sigformer\[audio-live\]"):
            SoundCardSource(16000, 1)
    else:
        pytest.skip("sounddevice is installed here; the live device path needs hardware")


def test_sigmf_capture_without_a_rate_streams_with_source_rate(tmp_path, capsys, iq_bundle):
    """Captures saved without core:sample_rate (e.g. from URH) need --source-rate; without it
    the error says so."""
    from sigformer.data.sigmf_io import write_sigmf

    iq = np.exp(2j * np.pi * 0.01 * np.arange(128 * 6)).astype(np.complex64)
    meta = write_sigmf(tmp_path / "norate", iq)
    assert main(["stream", str(iq_bundle), "--source", f"sigmf:{meta}"]) == 2
    assert "--source-rate" in capsys.readouterr().err
    report = _cli_json(capsys, ["stream", str(iq_bundle), "--source", f"sigmf:{meta}",
                                "--source-rate", "1e6"])
    assert report["predictions"] == 6


@pytest.mark.parametrize("chunk", [1, 8, 40])
def test_slot_skip_drops_only_the_bad_slot_whatever_the_chunk_size(chunk):
    """Slots are independent: one NaN slot must not take the other slots of its chunk
    with it (39 of 40 estimated at any chunk size, the same estimates)."""
    import torch

    from sigformer.streaming.processors import SlotEstimator, slot_channels

    class PilotMagnitude(torch.nn.Module):
        def forward(self, pilots, stats):
            return pilots.abs() * (1 + stats[:, :1, None])

    pilot_shape = (2, 3)
    n_pilots = 6
    rng = np.random.default_rng(0)
    slots = rng.standard_normal((2 * n_pilots + 3, 40))
    slots[4, 13] = np.nan
    est = SlotEstimator(PilotMagnitude(), pilot_shape, nan_policy="skip")
    est.configure(1000.0, slot_channels(n_pilots))
    out = [e for a in range(0, 40, chunk) for e in est.process(slots[:, a:a + chunk])]
    assert [e.slot for e in out] == [i for i in range(40) if i != 13]
    assert est.stats.skipped_windows == 1
    for e in out:
        pilots = slots[:n_pilots, e.slot] + 1j * slots[n_pilots:2 * n_pilots, e.slot]
        expected = np.abs(pilots).reshape(pilot_shape) * (1 + slots[2 * n_pilots, e.slot])
        np.testing.assert_allclose(e.estimate, expected, rtol=1e-5)


def test_sound_card_blocks_dropped_on_overflow_are_a_visible_gap(monkeypatch):
    """A reader that falls behind loses blocks: their samples must show up as a gap in the
    timestamps (so the quality monitor reports it), and as counts, not vanish."""
    import sys
    import types

    from sigformer.streaming.runtime import QualityMonitor, StreamStats
    from sigformer.streaming.sources import SoundCardSource

    class FakeInputStream:
        def __init__(self, *, samplerate, channels, device, blocksize, dtype, callback):
            self.callback, self.blocksize, self.channels = callback, blocksize, channels

        def start(self):
            for k in range(300):  # delivered before the reader ever runs
                block = np.full((self.blocksize, self.channels), k, np.float32)
                self.callback(block, self.blocksize, None, None)

        def stop(self):
            pass

    monkeypatch.setitem(sys.modules, "sounddevice",
                        types.SimpleNamespace(InputStream=FakeInputStream))
    source = SoundCardSource(16000, 1, chunk_size=64)
    blocks = []
    while (item := source.read(timeout=0.01)) is not None:
        blocks.append(item)
    assert len(blocks) == 256 and source.overflows == 44 and source.dropped_frames == 44 * 64
    stats, monitor = StreamStats(), QualityMonitor(16000.0)
    for data, stamps in blocks:
        monitor.check(data, stamps, stats)
    assert stats.dropped_samples == 0  # the first 256 blocks arrived in order
    # the next block after the drops starts 44 blocks later
    source._stream.callback(np.zeros((64, 1), np.float32), 64, None, None)
    data, stamps = source.read(timeout=0.01)
    monitor.check(data, stamps, stats)
    assert stats.gaps == 1 and stats.dropped_samples == 44 * 64
