"""``sigformer stream --out X.sigmf-meta`` writes the annotations ``classify-iq --out`` writes
for the same capture, bundle, hop and decision: runs of frames with one label merged by the
one rule (``merge_frame``), frequency edges from the occupied band of each run's samples.
The stream writes the run still open at each periodic rewrite and extends it later
(``AnnotationWriter.replace_last``); the runner ticks the sink after every chunk and while the
source is silent, so the open run reaches disk within ``every_s`` even when no prediction
follows. Bands are measured in bounded memory (``OccupiedBand``: the run read in pieces, the
open run's spectrum kept), equal to the one-shot ``occupied_band``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from repo_scripts import cli_json

from sigformer.bundle import Bundle
from sigformer.data.io import DataError
from sigformer.data.sigmf_io import (
    AnnotationWriter,
    SigMFAnnotation,
    occupied_band,
    prediction_annotations,
    read_sigmf,
    write_sigmf,
)
from sigformer.rf.amr import classify_sigmf
from sigformer.streaming import SigMFAnnotationSink
from sigformer.streaming.runtime import Prediction

L = 128  # frame length of the conftest bundles
RATE, CENTRE = 1e6, 433.92e6
# a tone at this frequency (cycles/sample) is PSK to conftest's untrained iq_bundle, noise is
# FSK, both by a margin of >= 1e-3 (the stream's batches move probabilities by ~1e-7)
TONE = -0.275


def _tone(n: int) -> np.ndarray:
    return np.exp(2j * np.pi * TONE * np.arange(n))


def _noise(n: int, rng) -> np.ndarray:
    return (rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2)


def _capture(folder: Path) -> Path:
    """Three bursts of equal power (the loudest frame comes first, so the stream's gate,
    loudest so far, is classify-iq's, loudest of all) three silent frames apart: noise, tone,
    noise; tone, one silent frame (bridged), tone; noise."""
    rng = np.random.default_rng(0)
    parts = [_noise(3 * L, rng), _tone(4 * L), _noise(2 * L, rng), np.zeros(3 * L),
             _tone(3 * L), np.zeros(L), _tone(2 * L), np.zeros(3 * L), _noise(3 * L, rng)]
    iq = np.concatenate(parts).astype(np.complex64)
    return Path(write_sigmf(folder / "cap", iq, sample_rate=RATE, center_frequency=CENTRE))


def _ours(meta_path: Path) -> list[dict]:
    meta = json.loads(Path(meta_path).read_text())
    return [a for a in meta["annotations"] if a.get("core:generator") == "sigformer"]


def _assert_same_annotations(streamed: list[dict], classified: list[dict]) -> None:
    exact = ("core:sample_start", "core:sample_count", "core:label", "sigformer:frames",
             "core:freq_lower_edge", "core:freq_upper_edge")
    assert [{k: a[k] for k in exact} for a in streamed] == \
        [{k: a[k] for k in exact} for a in classified]
    np.testing.assert_allclose([a["sigformer:confidence"] for a in streamed],
                               [a["sigformer:confidence"] for a in classified], atol=1e-6)
    assert [set(a) for a in streamed] == [set(a) for a in classified]


@pytest.mark.parametrize("hop", [L, L // 2])
@pytest.mark.parametrize("decision", ["frame", "burst"])
def test_stream_out_writes_the_annotations_of_classify_iq_out(tmp_path, capsys, iq_bundle,
                                                              decision, hop):
    capture = _capture(tmp_path)
    common = ["--hop", str(hop), "--decision", decision]
    if decision == "frame":
        common.append("--all-frames")  # a stream's frame decisions have no power gate
    streamed, classified = tmp_path / "s" / "streamed.sigmf-meta", tmp_path / "c.sigmf-meta"
    report = cli_json(capsys, ["stream", str(iq_bundle), "--source", f"sigmf:{capture}",
                               "--out", str(streamed), *common])
    cli_json(capsys, ["classify-iq", str(capture), "--model", str(iq_bundle), "--out",
                      str(classified), *common])
    s, c = _ours(streamed), _ours(classified)
    _assert_same_annotations(s, c)
    # runs, not frames: every prediction is in exactly one, and labels change between them
    assert sum(a["sigformer:frames"] for a in s) == report["predictions"] > len(s) >= 3
    if decision == "frame":  # (a burst's carrier frames do not vote: its noise decides)
        assert {a["core:label"] for a in s} == {"FSK", "PSK"}
        # the edges are the occupied band of each run's samples, not the whole band
        widths = {a["core:label"]: a["core:freq_upper_edge"] - a["core:freq_lower_edge"]
                  for a in s if a["sigformer:frames"] >= 3}
        assert widths["PSK"] < RATE / 10 < RATE / 2 < widths["FSK"]  # a tone; noise
    read_sigmf(streamed)  # a valid, complete recording


@pytest.mark.parametrize("decision", ["frame", "burst"])
def test_a_family_bundle_streams_the_runs_classify_sigmf_writes(tmp_path, capsys,
                                                                family_bundle, decision):
    # --sps 8 is the bundle's own symbol length: the stream is not resampled, and
    # classify_sigmf without target_sps frames the capture as it comes too
    capture = _capture(tmp_path)
    bundle = Bundle.load(family_bundle)
    streamed = tmp_path / "streamed.sigmf-meta"
    cli_json(capsys, ["stream", str(family_bundle), "--source", f"sigmf:{capture}", "--sps",
                      "8", "--decision", decision, "--hop", str(L // 2), "--out", str(streamed),
                      *(["--all-frames"] if decision == "frame" else [])])
    classified = classify_sigmf(capture, bundle.model, bundle.labels, normalization="rms",
                                decision=decision, hop=L // 2,
                                min_power_db=None if decision == "frame" else 30.0,
                                out_meta=tmp_path / "c" / "labels.sigmf-meta")
    s = _ours(streamed)
    _assert_same_annotations(s, _ours(Path(classified["meta"])))
    assert len(s) == (1 if decision == "frame" else 3)  # one label: runs end at the gaps


def _probs(label: str, confidence: float = 0.9) -> np.ndarray:
    return np.array([confidence, 1 - confidence] if label == "a" else
                    [1 - confidence, confidence])


def _frame(k: int, label: str, confidence: float = 0.9, hop: int = L) -> Prediction:
    return Prediction(k, 0.0, _probs(label, confidence), label, 0.0, start=k * hop, length=L)


def _noise_capture(folder: Path, frames: int) -> Path:
    rng = np.random.default_rng(3)
    return Path(write_sigmf(folder / "cap", _noise(frames * L, rng).astype(np.complex64),
                            sample_rate=RATE, center_frequency=CENTRE))


def test_a_flush_inside_a_run_writes_it_as_it_stands_and_extends_it_later(tmp_path):
    capture = _noise_capture(tmp_path, 8)
    sink = SigMFAnnotationSink(tmp_path / "o.sigmf-meta", sample_rate=RATE,
                               labels=["a", "b"], recording=capture, every_s=0.0)
    sink.write([_frame(0, "a", 0.7), _frame(1, "a", 0.8)])  # every_s=0: rewritten now
    so_far = _ours(sink.path)
    assert [(a["core:sample_start"], a["core:sample_count"], a["sigformer:frames"])
            for a in so_far] == [(0, 2 * L, 2)]  # a crash now keeps the run up to here
    iq = read_sigmf(capture).samples
    low, high = occupied_band(iq[:2 * L])  # with the edges of what it holds so far
    assert so_far[0]["core:freq_lower_edge"] == CENTRE + low * RATE
    sink.write([_frame(2, "a", 0.95)])
    sink.write([_frame(3, "a", 0.6)])
    sink.close()
    (run,) = _ours(sink.path)  # one annotation, extended in place
    assert (run["core:sample_start"], run["core:sample_count"], run["sigformer:frames"]) == \
        (0, 4 * L, 4)
    assert run["sigformer:confidence"] == pytest.approx(0.95)  # the best frame's
    # edges measured over the whole run once it closed
    low, high = occupied_band(iq[:4 * L])
    assert run["core:freq_lower_edge"] == CENTRE + low * RATE
    assert run["core:freq_upper_edge"] == CENTRE + high * RATE
    assert sink.written == 1
    read_sigmf(sink.path)


@pytest.mark.parametrize("every_s", [0.0, float("inf")])
def test_a_run_is_measured_in_bounded_pieces_reading_each_sample_once(tmp_path, every_s):
    # every_s=0: the open run is rewritten at every frame, its spectrum extended by the new
    # samples only; inf: the run is first measured at close, whole, in pieces. Either way no
    # read is larger than READ_SAMPLES (300: not a multiple of the 256-sample block, so the
    # pieces cut blocks) and the edges are the one-shot occupied_band's
    frames = 40
    capture = _noise_capture(tmp_path, frames)
    iq = read_sigmf(capture).samples
    sink = SigMFAnnotationSink(tmp_path / "o.sigmf-meta", sample_rate=RATE,
                               labels=["a", "b"], recording=capture, every_s=every_s)
    sink.READ_SAMPLES = 300
    read = []
    real_read = sink.writer.read_samples
    sink.writer.read_samples = lambda start, count: read.append((start, count)) or \
        real_read(start, count)
    for k in range(frames):
        sink.write([_frame(k, "a")])
        if every_s == 0.0 and k in (0, 1, 2, 9):  # 128 (< one block), 256, 384, 1280
            (run,) = _ours(sink.path)
            low, high = occupied_band(iq[:(k + 1) * L])  # exact for what it holds so far
            assert (run["core:freq_lower_edge"], run["core:freq_upper_edge"]) == \
                pytest.approx((CENTRE + low * RATE, CENTRE + high * RATE), abs=1e-6)
    sink.close()
    (run,) = _ours(sink.path)
    assert run["sigformer:frames"] == frames
    assert max(count for _, count in read) <= 300
    # consecutive pieces, each sample once (the old code re-read the run at every doubling)
    assert [start for start, _ in read] == list(np.cumsum([0] + [c for _, c in read])[:-1])
    assert sum(count for _, count in read) == frames * L
    low, high = occupied_band(iq)
    assert (run["core:freq_lower_edge"], run["core:freq_upper_edge"]) == \
        pytest.approx((CENTRE + low * RATE, CENTRE + high * RATE), abs=1e-6)


def _reference_band(iq: np.ndarray, fraction: float = 0.99) -> tuple[float, float]:
    """The occupied band computed plainly in one piece: the mean Hann periodogram of the
    finite samples' whole 256-sample blocks (one block of all of them when shorter, the
    whole band below 8), edges where the cumulative power crosses the tails."""
    iq = iq[np.isfinite(iq)]
    nfft = min(256, max(8, len(iq)))
    usable = len(iq) // nfft * nfft
    if usable == 0:
        return -0.5, 0.5
    spectra = np.abs(np.fft.fft(iq[:usable].reshape(-1, nfft) * np.hanning(nfft))) ** 2
    psd = np.fft.fftshift(spectra.mean(axis=0))
    cumulative = np.cumsum(psd) / psd.sum()
    freqs = np.fft.fftshift(np.fft.fftfreq(nfft))
    tail = (1 - fraction) / 2
    low = freqs[min(np.searchsorted(cumulative, tail), nfft - 1)] - 0.5 / nfft
    high = freqs[min(np.searchsorted(cumulative, 1 - tail), nfft - 1)] + 0.5 / nfft
    return low, high


@pytest.mark.parametrize("n", [0, 5, 8, 100, 255, 256, 257, 1000, 256 * 9, 5000])
def test_occupied_band_in_pieces_equals_the_one_shot_band(n):
    from sigformer.data.sigmf_io import OccupiedBand

    rng = np.random.default_rng(n)
    # a tone over low-pass noise (a band narrower than the whole), with NaNs that shift
    # the blocks of the finite samples against the pieces
    noise = np.convolve(_noise(n + 16, rng), np.ones(16) / 16, mode="valid")[:n]
    iq = (0.3 * noise + _tone(n)).astype(np.complex64)
    if n > 50:
        iq[rng.choice(n, 7, replace=False)] = np.nan
    whole = occupied_band(iq)
    assert whole == pytest.approx(_reference_band(iq), abs=1e-12)
    for seed in range(3):  # random pieces, including empty ones and ones inside a block
        cuts = np.sort(np.random.default_rng(seed).integers(0, n + 1, size=6))
        band = OccupiedBand()
        for piece in np.split(iq, cuts):
            band.add(piece)
        assert band.band() == pytest.approx(whole, abs=1e-12)
    if n >= 1000:  # a real band (the tone and the low-pass noise), not the whole band
        assert whole[1] - whole[0] < 0.5


def _clocked_sink(tmp_path: Path, now: list[float]) -> SigMFAnnotationSink:
    """A sink over a 4-frame noise capture whose clock reads ``now[0]`` (set by the test)."""
    return SigMFAnnotationSink(tmp_path / "o.sigmf-meta", sample_rate=RATE, labels=["a", "b"],
                               recording=_noise_capture(tmp_path, 4), every_s=1.0,
                               clock=lambda: now[0])


def test_tick_writes_the_open_run_when_no_prediction_follows(tmp_path):
    # a burst ends a stream's predictions for minutes: write() alone would keep its run in
    # memory until the next one; tick() (called by the runner) writes it once every_s passed
    now = [0.0]
    sink = _clocked_sink(tmp_path, now)
    now[0] = 0.5
    sink.write([_frame(0, "a"), _frame(1, "a")])  # 0.5 s after the last rewrite: held
    assert _ours(sink.path) == []
    now[0] = 0.9
    sink.tick()
    assert _ours(sink.path) == []  # not yet every_s
    now[0] = 1.0
    sink.tick()
    assert [(a["core:sample_start"], a["core:sample_count"]) for a in _ours(sink.path)] == \
        [(0, 2 * L)]
    rewrites = []
    real_flush = sink.writer.flush
    sink.writer.flush = lambda: rewrites.append(1) or real_flush()
    now[0] = 5.0
    sink.tick()  # nothing new: the file is not rewritten
    assert rewrites == []
    sink.close()
    assert [(a["core:sample_start"], a["core:sample_count"]) for a in _ours(sink.path)] == \
        [(0, 2 * L)]


class _FakePipeline:
    """An online pipeline stand-in: ``outputs[i]`` are chunk i's predictions; logs calls."""

    def __init__(self, outputs, log, before_process=None):
        from sigformer.streaming.runtime import StreamStats

        self.outputs, self.log, self.before_process = list(outputs), log, before_process
        self.stats = StreamStats()

    def configure(self, sfreq, channels) -> None:
        pass

    def process(self, chunk, ts):
        if self.before_process is not None:
            self.before_process()
        self.log.append("process")
        return self.outputs.pop(0) if self.outputs else []


class _FakeSource:
    """A source (not live: never dropped) reading ``script``: a chunk, or a callable that
    returns one, None (nothing yet) or raises EndOfStream."""

    live, sfreq, channels = False, RATE, ["I", "Q"]

    def __init__(self, script):
        self.script = list(script)

    def read(self, timeout=0.05):
        from sigformer.streaming.sources import EndOfStream

        if not self.script:
            raise EndOfStream
        step = self.script[0]
        if not callable(step):
            self.script.pop(0)
            return step, np.zeros(1)
        return step(timeout)


class ListSinkWithoutTick:
    """A sink that defines no tick(): the runner must not ask it for one."""

    def write(self, outputs):
        pass

    def close(self):
        pass


def test_the_runner_ticks_its_sinks_after_every_chunk(tmp_path):
    import threading

    from sigformer.streaming.engine import StreamRunner

    log: list[str] = []
    sent = threading.Event()

    def end(timeout):  # the reader has queued every chunk: the stream ends
        sent.set()
        from sigformer.streaming.sources import EndOfStream

        raise EndOfStream

    class TickingSink:
        def write(self, outputs):
            log.append("write")

        def tick(self):
            log.append("tick")

        def close(self):
            log.append("close")

    chunk = np.zeros((2, 8), np.float32)
    # chunks 2 and 3 are queued before chunk 1 is processed: no idle wait between them
    pipeline = _FakePipeline([[_frame(0, "a")]], log, before_process=lambda: sent.wait(10))
    StreamRunner(_FakeSource([chunk, chunk, chunk, end]), pipeline,
                 [TickingSink(), ListSinkWithoutTick()]).run()
    after_first = log[log.index("process"):]
    # (an idle tick may follow the last chunk before the reader's end is seen: collapsed)
    collapsed = [e for i, e in enumerate(after_first) if i == 0 or e != after_first[i - 1]]
    assert collapsed == ["process", "write", "tick", "process", "tick", "process", "tick",
                         "close"]


def test_a_silent_stream_still_writes_its_open_run_within_every_s(tmp_path):
    import time

    from sigformer.streaming import ListSink
    from sigformer.streaming.engine import StreamRunner

    now = [0.0]
    sink = _clocked_sink(tmp_path, now)
    listed = ListSink()  # after the SigMF sink: holding predictions means it wrote them
    seen = {}

    def silent(timeout):  # a live source with nothing to send
        from sigformer.streaming.sources import EndOfStream

        if "held" not in seen:
            deadline = time.monotonic() + 10
            while not listed.predictions and time.monotonic() < deadline:
                time.sleep(0.01)
            seen["held"] = _ours(sink.path)  # written at 0.5 s: not yet on disk
            now[0] = 2.0  # every_s has passed; no prediction will come
            seen["deadline"] = time.monotonic() + 10
        time.sleep(timeout)
        if _ours(sink.path):
            seen["while_streaming"] = _ours(sink.path)
            raise EndOfStream
        if time.monotonic() > seen["deadline"]:
            raise EndOfStream
        return None

    now[0] = 0.5
    pipeline = _FakePipeline([[_frame(0, "a"), _frame(1, "a")]], [])
    StreamRunner(_FakeSource([np.zeros((2, 8), np.float32), silent]), pipeline,
                 [sink, listed]).run()
    assert seen["held"] == []
    assert [(a["core:sample_start"], a["core:sample_count"])
            for a in seen.get("while_streaming", [])] == [(0, 2 * L)]


def test_a_new_label_or_a_gap_closes_the_run(tmp_path):
    capture = _noise_capture(tmp_path, 10)
    sink = SigMFAnnotationSink(tmp_path / "o.sigmf-meta", sample_rate=RATE,
                               labels=["a", "b"], recording=capture, every_s=0.0)
    sink.write([_frame(0, "a"), _frame(1, "a")])
    sink.write([_frame(2, "b")])  # another label: the open run "a" ends at 2 L
    sink.write([_frame(3, "b"), _frame(5, "b")])  # frame 4 missing: a gap ends the run
    sink.write([_frame(6, "b"), _frame(7, "a")])
    sink.close()
    runs = [(a["core:sample_start"], a["core:sample_count"], a["core:label"],
             a["sigformer:frames"]) for a in _ours(sink.path)]
    assert runs == [(0, 2 * L, "a", 2), (2 * L, 2 * L, "b", 2), (5 * L, 2 * L, "b", 2),
                    (7 * L, L, "a", 1)]
    # the same runs as classify-iq's rule gives for these frames
    expected = prediction_annotations(np.array([0, 1, 2, 3, 5, 6, 7]) * L, L,
                                      ["a", "a", "b", "b", "b", "b", "a"])
    assert runs == [(a.start, a.count, a.label, a.extra["sigformer:frames"]) for a in expected]


def test_overlapping_frames_merge_and_a_cut_prediction_still_counts(tmp_path):
    capture = _noise_capture(tmp_path, 3)
    sink = SigMFAnnotationSink(tmp_path / "o.sigmf-meta", sample_rate=RATE,
                               labels=["a", "b"], recording=capture, every_s=0.0)
    half = L // 2
    sink.write([_frame(k, "a", hop=half) for k in range(4)])
    with pytest.warns(UserWarning, match="reaches past the last sample"):
        sink.write([_frame(4, "a", hop=half)])  # 2 L .. 3 L: inside; then past the end
        sink.write([_frame(5, "a", hop=half)])
    sink.close()
    (run,) = _ours(sink.path)
    assert (run["core:sample_start"], run["core:sample_count"], run["sigformer:frames"]) == \
        (0, 3 * L, 6)
    assert sink.cut_at_end == 1


def test_a_live_stream_merges_runs_over_the_whole_band(tmp_path):
    sink = SigMFAnnotationSink(tmp_path / "live.sigmf-meta", sample_rate=RATE,
                               labels=["a", "b"], center_freq=915e6, every_s=0.0)
    sink.write([_frame(0, "a"), _frame(1, "a")])
    sink.write([_frame(2, "a"), _frame(3, "b")])
    sink.close()
    meta = json.loads(sink.path.read_text())
    assert meta["global"]["core:metadata_only"] is True
    runs = meta["annotations"]
    assert [(a["core:sample_start"], a["core:sample_count"], a["sigformer:frames"])
            for a in runs] == [(0, 3 * L, 3), (3 * L, L, 1)]
    # no capture to measure the band in: the band the stream spans
    assert {(a["core:freq_lower_edge"], a["core:freq_upper_edge"]) for a in runs} == \
        {(915e6 - RATE / 2, 915e6 + RATE / 2)}


def test_a_stream_cut_by_max_predictions_writes_the_runs_so_far(tmp_path, capsys, iq_bundle):
    capture = _capture(tmp_path)
    out = tmp_path / "cut.sigmf-meta"
    report = cli_json(capsys, ["stream", str(iq_bundle), "--source", f"sigmf:{capture}",
                               "--decision", "frame", "--max-predictions", "5", "--out",
                               str(out)])
    assert report["predictions"] == 5
    runs = _ours(out)
    # 3 noise frames (FSK) then 2 of the tone (PSK): two runs, the last ended by the cut
    assert [(a["core:sample_start"], a["core:sample_count"], a["core:label"])
            for a in runs] == [(0, 3 * L, "FSK"), (3 * L, 2 * L, "PSK")]
    read_sigmf(out)


# --- AnnotationWriter.replace_last -----------------------------------------------------------

def test_replace_last_extends_the_annotation_added_last_and_validates_it(tmp_path):
    capture = _noise_capture(tmp_path, 4)
    writer = AnnotationWriter(capture, tmp_path / "o" / "x.sigmf-meta")
    with pytest.raises(ValueError, match="no annotation has been added"):
        writer.replace_last(SigMFAnnotation(0, L, "a"))
    writer.add([SigMFAnnotation(0, L, "a"), SigMFAnnotation(L, L, "b")])
    writer.flush()
    writer.replace_last(SigMFAnnotation(L, 2 * L, "b"))
    with pytest.raises(ValueError, match="must start at the same sample"):
        writer.replace_last(SigMFAnnotation(2 * L, L, "b"))
    with pytest.raises(DataError, match="core:sample_count"):
        writer.replace_last(SigMFAnnotation(L, -3, "b"))
    path = writer.flush()
    rows = json.loads(path.read_text())["annotations"]
    assert [(a["core:sample_start"], a["core:sample_count"], a["core:label"]) for a in rows] \
        == [(0, L, "a"), (L, 2 * L, "b")]  # the refused ones changed nothing
    assert not list(path.parent.glob(".meta.*"))  # written atomically, nothing left over


def test_runs_take_the_centre_of_their_own_capture_segment(tmp_path, capsys, iq_bundle):
    """A recording retuned mid-way (a second capture segment): classify-iq used the first
    segment's frequency for every run; both commands now use the segment holding the run."""
    capture = _capture(tmp_path)
    meta = json.loads(capture.read_text())
    retuned = CENTRE + 2e6
    meta["captures"].append({"core:sample_start": 9 * L, "core:frequency": retuned})
    capture.write_text(json.dumps(meta))
    common = ["--hop", str(L), "--decision", "frame", "--all-frames"]
    streamed, classified = tmp_path / "s" / "streamed.sigmf-meta", tmp_path / "c.sigmf-meta"
    cli_json(capsys, ["stream", str(iq_bundle), "--source", f"sigmf:{capture}",
                      "--out", str(streamed), *common])
    cli_json(capsys, ["classify-iq", str(capture), "--model", str(iq_bundle), "--out",
                      str(classified), *common])
    s = _ours(streamed)
    _assert_same_annotations(s, _ours(classified))
    for a in s:
        centre = retuned if a["core:sample_start"] >= 9 * L else CENTRE
        half = RATE / 2 + RATE / 256  # the band is widened by half an FFT bin each side
        assert a["core:freq_lower_edge"] >= centre - half
        assert a["core:freq_upper_edge"] <= centre + half
    assert any(a["core:sample_start"] >= 9 * L for a in s)
