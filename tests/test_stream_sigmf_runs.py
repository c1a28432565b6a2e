"""``sigformer stream --out X.sigmf-meta`` writes the annotations ``classify-iq --out`` writes
for the same capture, bundle, hop and decision: runs of frames with one label merged by the
one rule (``merge_frame``), frequency edges from the occupied band of each run's samples.
The stream writes the run still open at each periodic rewrite and extends it later
(``AnnotationWriter.replace_last``), so a crash loses at most ``every_s``."""

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
                               [a["sigformer:confidence"] for a in classified], atol=1e-5)
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


def test_rewriting_a_growing_run_reads_its_samples_a_bounded_number_of_times(tmp_path):
    # the open run's band is measured again only once it has doubled: rewriting a long run
    # every second costs a few passes over it, not one per rewrite (quadratic)
    frames = 64
    capture = _noise_capture(tmp_path, frames)
    sink = SigMFAnnotationSink(tmp_path / "o.sigmf-meta", sample_rate=RATE,
                               labels=["a", "b"], recording=capture, every_s=0.0)
    read = []
    real_read = sink.writer.read_samples
    sink.writer.read_samples = lambda start, count: read.append(count) or real_read(start,
                                                                                    count)
    for k in range(frames):
        sink.write([_frame(k, "a")])  # a rewrite per frame
    sink.close()
    (run,) = _ours(sink.path)
    assert run["sigformer:frames"] == frames
    assert sum(read) <= 3 * frames * L  # one rewrite per frame re-measuring: 32 times that
    low, high = occupied_band(read_sigmf(capture).samples)  # exact once closed
    assert (run["core:freq_lower_edge"], run["core:freq_upper_edge"]) == \
        (CENTRE + low * RATE, CENTRE + high * RATE)


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
