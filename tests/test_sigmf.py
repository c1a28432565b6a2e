"""SigMF read/write, framing, annotations; the real ISM-band captures end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sigformer.data.io import DataError
from sigformer.data.sigmf_io import (
    SigMFAnnotation,
    frame_signal,
    labelled_frames,
    normalize_frames,
    prediction_annotations,
    read_sigmf,
    write_annotations,
    write_sigmf,
)

RF_SIGMF = Path(__file__).resolve().parents[2] / "shared" / "data" / "rf_sigmf"


def _burst_recording(tmp_path: Path, name: str = "rec") -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    iq = (rng.standard_normal(4096) + 1j * rng.standard_normal(4096)).astype(np.complex64)
    iq[1024:2048] *= 1e-3  # a quiet gap
    path = write_sigmf(tmp_path / name, iq, sample_rate=1e6, center_frequency=433.92e6,
                       annotations=[SigMFAnnotation(0, 1024, "QPSK"),
                                    SigMFAnnotation(2048, 2048, "BPSK", "second burst")])
    return path, iq


def test_round_trip_with_captures_annotations_and_checksum(tmp_path):
    path, iq = _burst_recording(tmp_path)
    rec = read_sigmf(path)
    np.testing.assert_array_equal(rec.samples, iq)
    assert rec.sample_rate == 1e6 and rec.center_frequency == 433.92e6
    assert rec.datatype == "cf32_le" and rec.is_complex
    assert [(a.start, a.count, a.label) for a in rec.annotations] == [
        (0, 1024, "QPSK"), (2048, 2048, "BPSK")]
    assert rec.annotations[1].comment == "second burst"
    assert len(rec.global_info["core:sha512"]) == 128
    assert read_sigmf(tmp_path / "rec").samples.shape == (4096,)  # base name works too
    archive = write_sigmf(tmp_path / "arch", iq, sample_rate=1e6, archive=True)
    assert archive.suffix == ".sigmf"
    np.testing.assert_array_equal(read_sigmf(archive).samples, iq)
    assert not list(tmp_path.glob(".sigmf-*"))  # no temporary folders left behind


def test_corrupt_and_malformed_files_get_clear_errors(tmp_path):
    path, iq = _burst_recording(tmp_path)
    data = tmp_path / "rec.sigmf-data"
    raw = bytearray(data.read_bytes())
    raw[10] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="SHA-512"):
        read_sigmf(path)
    assert read_sigmf(path, verify_checksum=False).samples.shape == (4096,)
    data.write_bytes(bytes(raw[:-3]))
    with pytest.raises(DataError, match="not a whole number of cf32_le samples"):
        read_sigmf(path)
    meta = json.loads(path.read_text())
    del meta["global"]["core:datatype"]
    path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="core:datatype is missing"):
        read_sigmf(path)
    meta["global"]["core:datatype"] = "cf17_le"
    path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="not a SigMF datatype"):
        read_sigmf(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_sigmf(path)
    with pytest.raises(DataError, match="does not exist"):
        read_sigmf(tmp_path / "nothing.sigmf-meta")
    with pytest.raises(DataError, match="NaN or Inf"):
        write_sigmf(tmp_path / "nan", np.array([np.nan], np.complex64))


def test_annotations_become_labelled_frames(tmp_path):
    path, iq = _burst_recording(tmp_path)
    frames, labels, starts = labelled_frames(read_sigmf(path), 128, normalization="none")
    assert frames.shape == (8 + 16, 2, 128)
    assert list(labels[:8]) == ["QPSK"] * 8 and list(labels[8:]) == ["BPSK"] * 16
    np.testing.assert_allclose(frames[8, 0] + 1j * frames[8, 1], iq[2048:2176], rtol=1e-6)
    with pytest.raises(DataError, match=r"'BPSK' .* not one of the known classes"):
        labelled_frames(read_sigmf(path), 128, classes=["QPSK"])
    real = write_sigmf(tmp_path / "real", np.ones(512, np.float32),
                       annotations=[SigMFAnnotation(0, 512, "x")])
    with pytest.raises(DataError, match="real samples"):
        labelled_frames(read_sigmf(real), 128)


def test_framing_skips_quiet_gaps_and_normalises(tmp_path):
    _, iq = _burst_recording(tmp_path)
    frames, starts = frame_signal(iq, 256, min_power_db=20)
    assert 1024 not in starts and 1280 not in starts and 0 in starts and len(starts) == 12
    l1 = np.hypot(frames[:, 0], frames[:, 1]).sum(1)
    np.testing.assert_allclose(l1, 1.0, rtol=1e-5)
    rms = normalize_frames(frames, "rms")
    np.testing.assert_allclose((rms ** 2).sum(1).mean(1), 1.0, rtol=1e-5)
    with pytest.raises(DataError, match="complex IQ"):
        frame_signal(iq.real, 128)


def test_predictions_merge_and_write_back(tmp_path):
    path, _ = _burst_recording(tmp_path)
    anns = prediction_annotations(np.array([0, 128, 256, 2048]), 128,
                                  ["QPSK", "QPSK", "BPSK", "BPSK"], np.array([.9, .8, .7, .6]))
    assert [(a.start, a.count, a.label) for a in anns] == [
        (0, 256, "QPSK"), (256, 128, "BPSK"), (2048, 128, "BPSK")]
    assert anns[0].extra["sigformer:frames"] == 2
    write_annotations(path, anns)
    write_annotations(path, anns[:1])  # replaces earlier sigformer annotations, keeps the rest
    rec = read_sigmf(path)
    assert [a.label for a in rec.annotations] == ["QPSK", "QPSK", "BPSK"]
    assert sum(a.extra.get("core:generator") == "sigformer" for a in rec.annotations) == 1
    assert rec.samples.shape == (4096,)  # data and checksum untouched


@pytest.mark.realdata
@pytest.mark.skipif(not RF_SIGMF.is_dir(), reason="URH captures not found in "
                    "../shared/data/rf_sigmf (real-data test)")
def test_real_captures_read_frame_classify_and_annotate(tmp_path):
    """read -> frame -> classify -> write annotations back, on the real ISM-band captures."""
    import torch

    from sigformer.models import create_model
    from sigformer.rf.amr import classify_sigmf, train_amr
    from sigformer.training import predict_logits

    torch.manual_seed(0)
    classes = ["ASK", "FSK"]
    X, y, origin = [], [], []
    for meta in sorted(RF_SIGMF.glob("*.sigmf-meta")):
        rec = read_sigmf(meta)  # verifies every checksum
        frames, labels, _ = labelled_frames(rec, 128, hop=256, classes=classes,
                                            normalization="rms", min_power_db=20)
        keep = np.random.default_rng(0).permutation(len(frames))[:300]
        X.append(frames[keep])
        y += [classes.index(lab) for lab in labels[keep]]
        origin += [meta.stem] * len(keep)
    X, y = np.concatenate(X), np.asarray(y)
    assert set(np.unique(y)) == {0, 1}
    rng = np.random.default_rng(1)
    test = rng.random(len(X)) < 0.3
    model = create_model("kd_cnn", n_outputs=2)
    train_amr(model, X[~test], y[~test], max_epochs=6, batch_size=64, lr=3e-3)
    accuracy = np.mean(predict_logits(model, X[test]).argmax(1) == y[test])
    assert accuracy > 0.75  # ASK (on/off envelope) vs FSK (constant envelope)
    out = tmp_path / "fsk.sigmf-meta"
    result = classify_sigmf(RF_SIGMF / "fsk.sigmf-meta", model, classes, normalization="rms",
                            min_power_db=20, out_meta=out)
    assert result["n_frames"] > 10
    import shutil

    shutil.copy(RF_SIGMF / "fsk.sigmf-data", tmp_path / "fsk.sigmf-data")
    rec = read_sigmf(out)
    predicted = [a for a in rec.annotations if a.extra.get("core:generator") == "sigformer"]
    assert predicted and {a.label for a in predicted} <= set(classes)
    assert rec.annotations[0].label == "FSK"  # the original annotation is kept
