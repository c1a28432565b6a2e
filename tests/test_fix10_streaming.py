"""Streaming fixes from a new user's review: file sources are never dropped (backpressure)
while live ones still drop the oldest chunks; one replay default (unpaced) for the API and
the CLI; SigMF captures without a rate in Python; a CSV recorder; lock files removed on
release; an LSL inlet closed without liblsl's "transmission broke off" line."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from sigformer.atomic import OutputLock, OutputLockedError
from sigformer.bundle import Bundle
from sigformer.models import create_model
from sigformer.spec import SignalSpec
from sigformer.streaming import (
    ArraySource,
    CSVRecorder,
    FileReplaySource,
    ListSink,
    OnlinePipeline,
    Prediction,
    Recorder,
    SigMFSource,
    StreamRunner,
    read_recorder,
)
from sigformer.streaming.app import make_source, stream_bundle
from sigformer.streaming.sources import LSLSource, SoundCardSource, ZMQSource, is_live
from sigformer.validation import SignalError

RATE = 160.0
NAMES = ["C3", "Cz", "C4"]


class _SlowRunner:
    """A stand-in model that takes 1 ms per window: far slower than reading a file."""

    classes = ["a", "b"]

    def reset(self) -> None:
        pass

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        time.sleep(0.001)
        return np.tile([0.25, 0.75], (len(windows), 1))


def _slow_pipeline() -> OnlinePipeline:
    return OnlinePipeline([], window=32, hop=16, runner=_SlowRunner())


@pytest.fixture()
def fif_file(tmp_path) -> Path:
    """3 channels, 2,000 samples at 160 Hz (125 chunks of 16: far more than the queue)."""
    import mne

    data = np.random.default_rng(0).standard_normal((len(NAMES), 2000)) * 1e-5
    raw = mne.io.RawArray(data, mne.create_info(NAMES, RATE, "eeg"), verbose="error")
    raw.save(tmp_path / "rec_raw.fif", verbose="error")
    return tmp_path / "rec_raw.fif"


# --- 1. backpressure for sources that can wait, drop-oldest for live ones ------------------

def test_a_file_source_through_a_slow_model_loses_no_sample(fif_file):
    online = _slow_pipeline()
    sink = ListSink()
    source = FileReplaySource(fif_file, chunk_size=16, realtime=False)  # as fast as read
    runner = StreamRunner(source, online, [sink], queue_size=4)
    runner.run()
    stats = online.stats
    assert stats.samples == 2000 and stats.chunks == 125
    assert stats.queue_drops == 0 and stats.gaps == 0 and stats.dropped_samples == 0
    assert len(sink.predictions) == stats.windows == (2000 - 32) // 16 + 1
    # the windows are the file's, in order: no chunk skipped, none repeated
    assert [p.start for p in sink.predictions] == list(range(0, 2000 - 31, 16))


def test_a_live_source_still_drops_the_oldest_chunks_under_overload():
    data = np.random.default_rng(1).standard_normal((len(NAMES), 2000))
    online = _slow_pipeline()
    runner = StreamRunner(ArraySource(data, RATE, NAMES, chunk_size=16, live=True), online,
                          [ListSink()], queue_size=4)
    runner.run()
    assert online.stats.queue_drops > 0  # counted: every chunk is either processed or dropped
    assert online.stats.samples == 2000 - 16 * online.stats.queue_drops


def test_which_sources_are_live(fif_file):
    assert LSLSource.live and ZMQSource.live and SoundCardSource.live
    assert not is_live(FileReplaySource(fif_file))
    assert not is_live(ArraySource(np.zeros((1, 4)), RATE, ["a"]))
    assert is_live(ArraySource(np.zeros((1, 4)), RATE, ["a"], live=True))
    assert is_live(object())  # a source that does not say is never stalled


def test_file_replay_is_unpaced_by_default_in_python_and_on_the_command_line(fif_file):
    from sigformer.cli import build_parser

    args = build_parser().parse_args(["stream", "bundle", "--source", f"file:{fif_file}"])
    from_cli = make_source(args.source, realtime=bool(args.realtime))  # as _cmd_stream does
    assert from_cli.realtime is False and FileReplaySource(fif_file).realtime is False


# --- 2. SigMF captures without a rate, in Python as on the command line --------------------

def _iq_bundle(folder: Path, *, rate_agnostic: bool) -> Path:
    torch.manual_seed(0)
    spec = SignalSpec.iq(2e6, 128)
    extra = {"normalization": "rms", "rate_agnostic": True} if rate_agnostic else \
        {"normalization": "rms"}
    return Bundle(model=create_model("kd_cnn", n_outputs=2).eval(), task="classify",
                  input_spec=spec, model_spec=spec, labels=["ASK", "FSK"], extra=extra
                  ).save(folder)


def _bare_capture(tmp_path: Path) -> Path:
    """A SigMF capture that states no sample rate (as URH saves them)."""
    import json

    from sigformer.data.sigmf_io import write_sigmf

    iq = np.exp(2j * np.pi * 0.01 * np.arange(128 * 6)).astype(np.complex64)
    meta = Path(write_sigmf(tmp_path / "bare", iq))
    assert "core:sample_rate" not in json.loads(meta.read_text())["global"]
    return meta


def test_python_streams_a_capture_without_a_rate_as_the_cli_does(tmp_path, capsys):
    from repo_scripts import cli_json

    from sigformer.streaming import SigMFAnnotationSink

    bundle = _iq_bundle(tmp_path / "agnostic", rate_agnostic=True)
    meta = _bare_capture(tmp_path)
    source = SigMFSource(meta)
    assert source.rate_is_nominal
    sink = SigMFAnnotationSink(tmp_path / "streamed", sample_rate=None, labels=["ASK", "FSK"])
    report = stream_bundle(bundle, source, [sink], log=lambda *a: None)
    cli = cli_json(capsys, ["stream", str(bundle), "--source", f"sigmf:{meta}"])
    assert report["nominal_sample_rate_hz"] == cli["nominal_sample_rate_hz"] == 2e6
    assert source.sfreq == 2e6  # the bundle's nominal rate, as the CLI streams it
    assert report["label_counts"] == cli["label_counts"]
    assert report["predictions"] == cli["predictions"] == 6


def test_a_capture_without_a_rate_is_refused_where_a_rate_is_needed(tmp_path):
    rated = _iq_bundle(tmp_path / "rated", rate_agnostic=False)
    meta = _bare_capture(tmp_path)
    with pytest.raises(SignalError, match=r"has no core:sample_rate; give the capture's rate "
                                          r"with --source-rate HZ"):
        stream_bundle(rated, SigMFSource(meta), [], log=lambda *a: None)
    with pytest.raises(SignalError, match="has no core:sample_rate"):
        SigMFSource(meta, realtime=True)  # pacing needs the real rate
    with pytest.raises(SignalError, match="has no core:sample_rate"):
        make_source(f"sigmf:{meta}")  # no nominal rate stands in (a bundle needs the real one)
    assert SigMFSource(meta, sample_rate=1e6).rate_is_nominal is False


# --- 3. a CSV recorder ----------------------------------------------------------------------

def test_csv_recorder_rows_equal_the_binary_recording_exported(tmp_path):
    rng = np.random.default_rng(2)
    predictions = [Prediction(i, 10.0 + i / 7, p, "a", 0.0)
                   for i, p in enumerate(rng.dirichlet([1, 1, 1], size=5))]
    binary = Recorder(tmp_path / "p.sgrec", ["a", "b", "c"])
    text = CSVRecorder(tmp_path / "p.csv", ["a", "b", "c"])
    for chunk in (predictions[:2], [], predictions[2:]):
        binary.write(chunk)
        text.write(chunk)
    binary.close()
    text.close()
    exported = read_recorder(tmp_path / "p.sgrec").to_csv(tmp_path / "exported.csv")
    assert (tmp_path / "p.csv").read_text() == exported.read_text()
    assert CSVRecorder(tmp_path / "p.csv", ["a"]).path.name == "p-2.csv"  # never truncated


# --- 4. lock files ---------------------------------------------------------------------------

def test_a_released_lock_leaves_no_file(tmp_path):
    lock = OutputLock(tmp_path / "out").acquire()
    assert lock.path == tmp_path / "out.lock" and lock.path.exists()
    lock.release()
    assert not lock.path.exists()
    with OutputLock(tmp_path / "out"):
        pass
    assert not (tmp_path / "out.lock").exists()


def test_a_crashed_holder_leaves_a_stale_file_that_the_next_run_takes_over(tmp_path):
    code = ("import os, sys; from sigformer.atomic import OutputLock; "
            "OutputLock(sys.argv[1]).acquire(); os._exit(0)")  # dies holding it
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], check=True,
                   timeout=120)
    assert (tmp_path / "out.lock").exists()
    with OutputLock(tmp_path / "out"):
        with pytest.raises(OutputLockedError, match="being written by another run"):
            OutputLock(tmp_path / "out").acquire()
    assert not (tmp_path / "out.lock").exists()


def test_a_waiter_gets_the_lock_at_the_path_after_the_holder_removed_it(tmp_path):
    first = OutputLock(tmp_path / "out").acquire()
    waiter = OutputLock(tmp_path / "out", wait=True, timeout=30)
    got = threading.Event()
    thread = threading.Thread(target=lambda: (waiter.acquire(), got.set()))
    thread.start()
    time.sleep(0.5)  # the waiter is polling the holder's file
    assert not got.is_set()
    first.release()
    thread.join(timeout=30)
    assert got.is_set() and waiter.path.exists()
    # one holder at a time: the waiter's lock is on the file at the path, not a removed one
    with pytest.raises(OutputLockedError):
        OutputLock(tmp_path / "out").acquire()
    waiter.release()
    assert not waiter.path.exists()


# --- 5. closing an LSL inlet while the sender keeps running ----------------------------------

def test_closing_an_lsl_source_does_not_make_liblsl_report_a_broken_transmission(capfd):
    from sigformer.streaming.lsl import lsl

    L = lsl()
    name = f"sf-close-{uuid.uuid4().hex[:8]}"
    outlet = L.StreamOutlet(L.StreamInfo(name, "EEG", 2, 100.0, "float32", name))
    stop = threading.Event()

    def send():  # the sender keeps running through the close
        while not stop.is_set():
            outlet.push_chunk(np.zeros((5, 2), np.float32))
            time.sleep(0.05)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        source = LSLSource(name=name, timeout=10)
        received, deadline = 0, time.monotonic() + 10
        while received < 20 and time.monotonic() < deadline:
            item = source.read(0.05)
            received += 0 if item is None else item[0].shape[1]
            time.sleep(0.01)
        assert received >= 20
        source.close()
        source.close()  # twice is harmless
        time.sleep(1.0)  # liblsl's data thread logs asynchronously
    finally:
        stop.set()
        sender.join(timeout=5)
    assert "Stream transmission broke off" not in capfd.readouterr().err
