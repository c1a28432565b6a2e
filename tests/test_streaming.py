"""Streaming runtime: chunk invariance, windows, smoothing, faults, bounded queues, recorder."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hst

from sigformer.models import create_model
from sigformer.stages import BandPass, Notch, Resample
from sigformer.streaming import (
    ArraySource,
    ListSink,
    ModelRunner,
    OnlinePipeline,
    QualityMonitor,
    Recorder,
    SlidingWindows,
    Smoother,
    StreamError,
    StreamRunner,
    StreamStats,
    offline_windows,
    read_recorder,
)


def _chunks(n, cuts):
    edges = sorted({0, n, *[c % (n + 1) for c in cuts]})
    return list(zip(edges[:-1], edges[1:]))


@settings(max_examples=30, deadline=None)
@given(n=hst.integers(1, 400), size=hst.integers(1, 60), hop=hst.integers(1, 30),
       cuts=hst.lists(hst.integers(0, 10_000), max_size=10))
def test_sliding_windows_chunk_invariant(n, size, hop, cuts):
    x = np.arange(2 * n, dtype=float).reshape(2, n)
    win = SlidingWindows(size, hop)
    got = []
    for a, b in _chunks(n, cuts):
        got += [w for w, _ in win.push(x[:, a:b], np.arange(a, b, dtype=float))]
    expected = [x[:, s:s + size] for s in range(0, n - size + 1, hop)]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


def _tiny_model(n_chans, n_times):
    torch.manual_seed(0)
    return create_model("dbconformer", n_chans=n_chans, n_outputs=2, n_times=n_times,
                        emb_size=8, num_heads=2, depth=1, spa_dim=4, patch_size=20).eval()


def _online(n_chans=3, window=100, hop=30, smoothing=None, nan_policy="raise", stages=None):
    runner = ModelRunner(_tiny_model(n_chans, window), ["left", "right"], scale=1.0)
    stages = stages if stages is not None else [Notch(50), BandPass(8, 30)]
    return OnlinePipeline(stages, window, hop, runner, smoothing=smoothing,
                          nan_policy=nan_policy)


def test_online_alignment_starts_from_the_training_reference(rng):
    from sigformer.stages import EuclideanAlignment, trial_covariances
    from sigformer.streaming.runtime import StreamWarning

    train = rng.standard_normal((20, 3, 100)) * np.array([1.0, 3.0, 0.5])[:, None]
    ref = trial_covariances(train).mean(0)
    window = train[:1] * np.array([4.0, 1.0, 1.0])[:, None]  # strong channel 0: the class cue
    seeded = ModelRunner(_tiny_model(3, 100), ["left", "right"], alignment="online",
                         alignment_reference=ref.tolist())  # as a bundle stores it
    first = seeded.prepare(window)
    np.testing.assert_allclose(first, EuclideanAlignment.from_reference(ref).transform(window))
    power = np.diag(trial_covariances(first)[0])
    assert power[0] > 3 * power[1:].max()  # the first window keeps its channel-0 power
    seeded.reset()
    np.testing.assert_allclose(seeded.prepare(window), first)  # back to the prior
    with pytest.warns(StreamWarning, match="without a training reference"):
        cold = ModelRunner(_tiny_model(3, 100), ["left", "right"], alignment="online")
    # an old bundle, as before: the first window whitened by itself, its cue gone
    np.testing.assert_allclose(trial_covariances(cold.prepare(window))[0], np.eye(3),
                               atol=1e-8)


@settings(max_examples=10, deadline=None)
@given(cuts=hst.lists(hst.integers(0, 5_000), max_size=12), seed=hst.integers(0, 99))
def test_online_predictions_equal_offline(cuts, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 600))
    online = _online()
    online.configure(250, ["C3", "Cz", "C4"])
    preds = []
    for a, b in _chunks(600, cuts):
        preds += online.process(x[:, a:b], np.arange(a, b) / 250)
    windows = offline_windows([Notch(50), BandPass(8, 30)], x, 250, ["C3", "Cz", "C4"], 100, 30)
    offline = online.runner(windows)
    assert len(preds) == len(windows) == (600 - 100) // 30 + 1
    np.testing.assert_allclose(np.stack([p.probabilities for p in preds]), offline, atol=1e-5)
    stamps = [p.timestamp for p in preds]
    assert np.all(np.diff(stamps) > 0)
    np.testing.assert_allclose(stamps, (np.arange(len(preds)) * 30 + 99) / 250)


def test_resampling_pipeline_windows_match_offline():
    x = np.random.default_rng(0).standard_normal((2, 1600))
    stages = [BandPass(1, 40), Resample(100)]
    online = _online(2, window=50, hop=25, stages=stages)
    online.configure(160, ["a", "b"])
    preds = []
    for a in range(0, 1600, 37):
        preds += online.process(x[:, a:a + 37], np.arange(a, min(a + 37, 1600)) / 160)
    offline = offline_windows([BandPass(1, 40), Resample(100)], x, 160, ["a", "b"], 50, 25)
    np.testing.assert_allclose(np.stack([p.probabilities for p in preds]),
                               online.runner(offline), atol=1e-5)


def test_zero_phase_stages_cannot_stream():
    with pytest.raises(ValueError, match="zero-phase"):
        _online(stages=[BandPass(8, 30, phase="zero")])


def test_smoothing():
    ema = Smoother("ema", alpha=0.5)
    ema(np.array([1.0, 0.0]))
    np.testing.assert_allclose(ema(np.array([0.0, 1.0])), [0.5, 0.5])
    vote = Smoother("vote", n=3)
    for p in ([0.9, 0.1], [0.9, 0.1], [0.2, 0.8]):
        out = vote(np.array(p))
    assert out.argmax() == 0  # two of the last three windows voted for class 0
    with pytest.raises(ValueError, match="smoothing must be"):
        Smoother("median")


def test_gap_and_jump_detection():
    stats = StreamStats()
    mon = QualityMonitor(100.0)
    mon.check(np.zeros((1, 10)), np.arange(10) / 100, stats)
    mon.check(np.zeros((1, 10)), (np.arange(10) + 25) / 100, stats)  # 15 samples missing
    assert stats.gaps == 1 and stats.dropped_samples == 15
    mon.check(np.zeros((1, 5)), (np.arange(5) + 20) / 100, stats)  # back in time
    assert stats.timestamp_jumps == 1
    assert [e["event"] for e in mon.events] == ["gap", "timestamp_jump"]
    # chunks stamped at push time jitter by milliseconds: not gaps
    jittery, stats = QualityMonitor(1000.0), StreamStats()
    rng = np.random.default_rng(0)
    for k in range(200):
        stamps = (np.arange(32) + 32 * k) / 1000 + rng.uniform(0, 0.008)
        jittery.check(np.zeros((1, 32)), stamps, stats)
    assert stats.gaps == 0 and stats.timestamp_jumps == 0


def test_nan_policies():
    x = np.random.default_rng(0).standard_normal((3, 400))
    x[1, 150:160] = np.nan
    with pytest.raises(StreamError, match="non-finite samples"):
        online = _online(nan_policy="raise")
        online.configure(250, ["a", "b", "c"])
        for a in range(0, 400, 50):
            online.process(x[:, a:a + 50])
    skip = _online(nan_policy="skip")
    skip.configure(250, ["a", "b", "c"])
    preds = [p for a in range(0, 400, 50) for p in skip.process(x[:, a:a + 50])]
    assert skip.stats.skipped_windows > 0 and skip.stats.nan_chunks == 1
    assert all(np.isfinite(p.probabilities).all() for p in preds)
    interp = _online(nan_policy="interpolate")
    interp.configure(250, ["a", "b", "c"])
    preds = [p for a in range(0, 400, 50) for p in interp.process(x[:, a:a + 50])]
    assert interp.stats.skipped_windows == 0 and len(preds) == (400 - 100) // 30 + 1


class _SlowRunner(ModelRunner):
    def __call__(self, windows):
        time.sleep(0.02)
        return super().__call__(windows)


def test_slow_consumer_bounded_queue_counts_drops():
    runner = _SlowRunner(_tiny_model(2, 100), ["a", "b"])
    online = OnlinePipeline([BandPass(8, 30)], 100, 1, runner)
    data = np.random.default_rng(0).standard_normal((2, 20_000))
    stream = StreamRunner(ArraySource(data, 250, ["a", "b"], chunk_size=20, live=True), online,
                          [ListSink()], queue_size=8)
    stream.run(duration=3.0)
    assert online.stats.queue_drops > 0  # the reader outran the model and dropped, counted
    assert stream.queue.maxsize == 8


def test_runner_reports_and_sinks(tmp_path):
    online = _online(2, window=100, hop=50, stages=[BandPass(8, 30)])
    sink = ListSink()
    recorder = Recorder(tmp_path / "preds.sgrec", ["left", "right"])
    messages = []
    data = np.random.default_rng(1).standard_normal((2, 1000))
    runner = StreamRunner(ArraySource(data, 250, ["a", "b"], chunk_size=64), online,
                          [sink, recorder], status=messages.append, report_every=0.0)
    preds = runner.run()
    assert len(preds) == len(sink.predictions) == (1000 - 100) // 50 + 1
    columns, stamps, values = read_recorder(tmp_path / "preds.sgrec")
    assert columns == ["left", "right"] and len(stamps) == len(preds)
    np.testing.assert_allclose(values, np.stack([p.probabilities for p in preds]), rtol=1e-6)
    assert any("windows" in m for m in messages)


WRITER = """
import sys, time, numpy as np
from sigformer.streaming import Recorder
rec = Recorder(sys.argv[1], ["x", "y"])
i = 0
while True:
    rec.write_rows(np.array([float(i)]), np.array([[i, -i]]))
    i += 1
    if i == 50:
        print("ready", flush=True)
"""


def test_recorder_survives_a_kill(tmp_path):
    path = tmp_path / "live.sgrec"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    columns, stamps, values = read_recorder(path)
    assert len(stamps) >= 50
    np.testing.assert_array_equal(stamps, np.arange(len(stamps)))  # every flushed row intact
    np.testing.assert_array_equal(values[:, 1], -np.arange(len(stamps)))
    # a torn trailing row (partial write) is ignored
    with open(path, "ab") as fh:
        fh.write(b"\x00\x01\x02")
    assert len(read_recorder(path)[1]) == len(stamps)


def test_wav_and_sigmf_sources(tmp_path):
    import soundfile as sf

    from sigformer.streaming import EndOfStream, SigMFSource, WAVSource

    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (1600, 2)).astype(np.float32)
    sf.write(tmp_path / "mix.wav", audio, 16000)
    src = WAVSource(tmp_path / "mix.wav", chunk_size=500)
    assert src.sfreq == 16000 and src.channels.names == ("mic0", "mic1")
    chunks = []
    with pytest.raises(EndOfStream):
        while True:
            chunks.append(src.read()[0])
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), audio.T, atol=1e-4)

    import sigmf
    from sigmf import SigMFFile

    iq = (np.exp(2j * np.pi * 0.05 * np.arange(4096)) * 0.5).astype(np.complex64)
    iq.tofile(tmp_path / "cap.sigmf-data")
    meta = SigMFFile(data_file=str(tmp_path / "cap.sigmf-data"), global_info={
        SigMFFile.DATATYPE_KEY: "cf32_le", SigMFFile.SAMPLE_RATE_KEY: 1e6,
        SigMFFile.VERSION_KEY: sigmf.__specification__})
    meta.add_capture(0, metadata={})
    meta.tofile(str(tmp_path / "cap.sigmf-meta"))
    src = SigMFSource(tmp_path / "cap.sigmf-meta", chunk_size=1024)
    assert src.channels.names == ("I0", "Q0") and src.sfreq == 1e6
    first, _ = src.read()
    np.testing.assert_allclose(first[0] + 1j * first[1], iq[:1024], atol=1e-6)
    with pytest.raises(Exception, match="could not be read as SigMF"):
        SigMFSource(tmp_path / "missing.sigmf-meta")


def test_file_replay_source_paces_in_real_time(eegmmidb_dir):
    from sigformer.streaming import FileReplaySource

    src = FileReplaySource(eegmmidb_dir / "S001R04.edf", chunk_size=16, realtime=True)
    assert src.sfreq == 160 and "FC5" in src.channels.names
    t0 = time.perf_counter()
    n = 0
    while n < 160:
        chunk, stamps = src.read()
        n += chunk.shape[1]
    assert 0.9 < time.perf_counter() - t0 < 1.5  # one second of data took about a second


@pytest.mark.parametrize("stream_rate", [250.0, 1000.0])
def test_skip_drops_every_window_that_holds_the_bad_chunk_also_when_resampling(stream_rate):
    """The skip is counted in model-rate samples: with a resampler in the chain the stream's
    samples are not the windows' samples (1000 Hz into a 250 Hz model let 12 windows over a
    NaN chunk through, classified on zero-filled data)."""
    from sigformer.stages import Resample

    window, hop, chunk = 100, 5, 100
    stages = [Resample(250.0)] if stream_rate != 250.0 else [BandPass(8, 30)]
    online = _online(n_chans=1, window=window, hop=hop, nan_policy="skip", stages=stages)
    online.configure(stream_rate, ["a"])
    x = np.random.default_rng(0).standard_normal((1, int(4 * stream_rate)))
    bad = slice(int(stream_rate), int(stream_rate) + chunk)  # 1.0 s into the stream
    x[:, bad] = np.nan
    preds = [p for a in range(0, x.shape[1], chunk) for p in online.process(x[:, a:a + chunk])]
    ratio = 250.0 / stream_rate
    bad_model = (bad.start * ratio, bad.stop * ratio)  # the bad data in model samples
    for p in preds:
        assert p.start + p.length <= bad_model[0] or p.start >= bad_model[1], p.start
    assert online.stats.skipped_windows >= (window + chunk * ratio) // hop - 1


@pytest.mark.parametrize("chunk", [100, 1])
def test_resampled_window_timestamps_count_the_resampler_delay(chunk):
    """A window's timestamp is the time of its last sample: through a causal resampler that
    is the input minus the filter's group delay (it was the last input's time: ~40 ms late
    at 1000 -> 250 Hz, so LSL outlets stamped predictions late)."""
    from sigformer.stages import Resample

    online = _online(n_chans=1, window=100, hop=25, stages=[Resample(250.0)])
    online.configure(1000.0, ["a"])
    x = np.random.default_rng(0).standard_normal((1, 4000))
    stamps = 100.0 + np.arange(4000) / 1000.0
    preds = [p for a in range(0, 4000, chunk)
             for p in online.process(x[:, a:a + chunk], stamps[a:a + chunk])]
    resample = online.pre.stages[0]
    delay_s = resample.delay_ticks / (1000.0 * resample.up)  # group delay at the input rate
    for p in preds:
        last = p.start + p.length - 1  # the window's last model sample
        assert p.timestamp == pytest.approx(100.0 + last / 250.0 - delay_s, abs=1 / 250), p.start


def test_resampled_window_timestamps_do_not_depend_on_the_chunk_size():
    """250 -> 160 Hz: each chunk's last output was pinned to its last input, but where a
    chunk's outputs end depends on the chunking (up to 3.5 ms jitter, spacing not the hop)."""
    from sigformer.stages import Resample

    x = np.random.default_rng(0).standard_normal((1, 2500))
    stamps = 50.0 + np.arange(2500) / 250.0
    runs = {}
    for chunk in (1, 37, 250):
        online = _online(n_chans=1, window=80, hop=80, stages=[Resample(160.0)])
        online.configure(250.0, ["a"])
        runs[chunk] = [(p.start, p.timestamp) for a in range(0, 2500, chunk)
                       for p in online.process(x[:, a:a + chunk], stamps[a:a + chunk])]
    resample = online.pre.stages[0]
    delay_s = resample.delay_ticks / (250.0 * resample.up)  # ticks of the upsampled grid
    assert len(runs[1]) > 10
    for chunk in (37, 250):
        np.testing.assert_allclose(np.array(runs[chunk]), np.array(runs[1]), rtol=0, atol=1e-9)
    for start, t in runs[37]:
        assert t == pytest.approx(50.0 + (start + 79) / 160.0 - delay_s, abs=1e-9)
    assert np.allclose(np.diff([t for _, t in runs[37]]), 0.5)


def test_resampling_takes_the_simplest_close_ratio_of_the_two_rates():
    """999.41 Hz (the MNE sample ECoG) -> 1000 Hz is 1701/1700; approximating each rate on
    its own gave 512000/511699 and refused the resampling Du-IN's error asks for."""
    from sigformer.stages import Resample

    for source, target, expected in [(999.4121105232217, 1000.0, (1701, 1700)),
                                     (44100, 16000, (160, 441)), (2048, 250, (125, 1024))]:
        stage = Resample(target)
        stage.configure(source, ["a"])
        assert stage._configured_ratio() == expected
