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
    occupied_band,
    prediction_annotations,
    read_sigmf,
    validate_metadata,
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
    # a level below the loudest frame: -20 used to mean the same as 20 here only
    with pytest.raises(ValueError, match="min_power_db must be a level in dB below"):
        frame_signal(iq, 256, min_power_db=-20)


def test_predictions_merge_and_write_back(tmp_path):
    path, _ = _burst_recording(tmp_path)
    anns = prediction_annotations(np.array([0, 128, 256, 2048]), 128,
                                  ["QPSK", "QPSK", "BPSK", "BPSK"], np.array([.9, .8, .7, .6]))
    assert [(a.start, a.count, a.label) for a in anns] == [
        (0, 256, "QPSK"), (256, 128, "BPSK"), (2048, 128, "BPSK")]
    assert anns[0].extra["sigformer:frames"] == 2
    write_annotations(path, anns, in_place=True)
    write_annotations(path, anns[:1], in_place=True)  # replaces earlier sigformer ones only
    rec = read_sigmf(path)
    assert [a.label for a in rec.annotations] == ["QPSK", "QPSK", "BPSK"]
    assert sum(a.extra.get("core:generator") == "sigformer" for a in rec.annotations) == 1
    assert rec.samples.shape == (4096,)  # data and checksum untouched


def _meta(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("field, value, message", [
    (("global", "core:num_channels"), 0, r"core:num_channels = 0: expected a value >= 1"),
    (("global", "core:num_channels"), 2.5, r"core:num_channels = 2.5: expected a value of "
                                           r"type 'integer'"),
    (("global", "core:sample_rate"), -1e6, r"core:sample_rate = -1000000.0: expected a value > 0"),
    (("captures",), {"core:sample_start": 0}, r"captures = .*expected a value of type 'array'"),
    (("annotations",), "none", r"annotations = .*expected a value of type 'array'"),
])
def test_metadata_is_validated_against_the_standard(tmp_path, field, value, message):
    path, _ = _burst_recording(tmp_path)
    meta = _meta(path)
    target = meta
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="not valid SigMF metadata: .*" + message):
        read_sigmf(path)
    with pytest.raises(DataError, match="not valid SigMF metadata"):
        validate_metadata(meta, path)


def test_truncated_data_is_reported(tmp_path):
    path, _ = _burst_recording(tmp_path)
    data = tmp_path / "rec.sigmf-data"
    data.write_bytes(data.read_bytes()[: 8 * 3000])  # whole samples, but fewer than annotated
    with pytest.raises(DataError, match="holds 3000 samples but a annotation .* reaches sample "
                                        "4096: the data file is truncated"):
        read_sigmf(path, verify_checksum=False)


def _nan_recording(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(1)
    iq = (rng.standard_normal(2048) + 1j * rng.standard_normal(2048)).astype(np.complex64)
    path = write_sigmf(tmp_path / "nan", iq, sample_rate=1e6)
    raw = np.fromfile(tmp_path / "nan.sigmf-data", np.complex64)
    raw[300] = np.nan
    raw[301] = np.inf
    raw.tofile(tmp_path / "nan.sigmf-data")
    return path, iq


def test_nan_policy_raise_skip_interpolate(tmp_path):
    path, iq = _nan_recording(tmp_path)
    with pytest.raises(DataError, match=r"2 NaN/Inf sample value\(s\), the first at sample 300; "
                                        r"pass nan_policy='skip'"):
        read_sigmf(path, verify_checksum=False)
    kept = read_sigmf(path, verify_checksum=False, nan_policy="skip")
    with pytest.warns(UserWarning, match="skipped 1 of 16 frames"):
        frames, starts = frame_signal(kept.samples, 128, nan_policy="skip", min_power_db=20)
    assert 256 not in starts and len(starts) == 15  # only the frame with NaN is dropped
    assert np.isfinite(frames).all()
    fixed = read_sigmf(path, verify_checksum=False, nan_policy="interpolate")
    assert np.isfinite(fixed.samples).all()
    expected = iq[299] + (iq[302] - iq[299]) / 3
    assert fixed.samples[300] == pytest.approx(expected, rel=1e-5)
    np.testing.assert_array_equal(fixed.samples[:300], iq[:300])
    with pytest.raises(DataError, match="NaN/Inf"):
        frame_signal(kept.samples, 128)
    with pytest.raises(ValueError, match="nan_policy must be one of"):
        read_sigmf(path, nan_policy="ignore")


def _digest(folder: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_out_meta_never_modifies_the_input_and_is_complete(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    path, iq = _burst_recording(src)
    before = _digest(src)
    anns = prediction_annotations(np.array([0, 128]), 128, ["QPSK", "QPSK"], np.array([.9, .8]))
    anns[0].extra["core:freq_lower_edge"] = 433.8e6
    anns[0].extra["core:freq_upper_edge"] = 434.0e6
    beside = write_annotations(path, anns, src / "pred.sigmf-meta")
    elsewhere = write_annotations(path, anns, tmp_path / "out" / "pred.sigmf-meta")
    after = _digest(src)
    assert {k: v for k, v in after.items() if k in before} == before  # input untouched
    meta = _meta(beside)
    assert meta["global"]["core:dataset"] == "rec.sigmf-data"  # points at the original data
    assert {"name": "sigformer", "version": "1.0.0", "optional": True} in meta["global"][
        "core:extensions"]
    validate_metadata(meta)
    rec = read_sigmf(beside)
    np.testing.assert_array_equal(rec.samples, iq)
    predicted = [a for a in rec.annotations if a.extra.get("core:generator") == "sigformer"]
    assert predicted[0].extra["core:freq_lower_edge"] == 433.8e6
    copied = read_sigmf(elsewhere)  # a complete pair: the data was copied beside it
    assert (tmp_path / "out" / "pred.sigmf-data").is_file()
    assert "core:dataset" not in _meta(elsewhere)["global"]
    np.testing.assert_array_equal(copied.samples, iq)
    with pytest.raises(DataError, match="input's own metadata; pass in_place=True"):
        write_annotations(path, anns, path)
    with pytest.raises(ValueError, match="either out_meta .* or in_place=True"):
        write_annotations(path, anns)
    with pytest.raises(DataError, match="copy_data=True"):
        write_annotations(path, anns, tmp_path / "other" / "p.sigmf-meta", copy_data=False)
    assert _digest(src) == after


def test_classify_sigmf_writes_edges_and_leaves_the_input_alone(tmp_path):
    import torch

    from sigformer.models import create_model
    from sigformer.rf.amr import classify_sigmf

    torch.manual_seed(0)
    path, _ = _burst_recording(tmp_path)
    before = _digest(tmp_path)
    model = create_model("kd_cnn", n_outputs=2).eval()
    result = classify_sigmf(path, model, ["QPSK", "BPSK"], min_power_db=20)
    assert result["meta"] is None and _digest(tmp_path) == before  # nothing written
    result = classify_sigmf(path, model, ["QPSK", "BPSK"], min_power_db=20,
                            out_meta=tmp_path / "pred.sigmf-meta")
    assert {k: v for k, v in _digest(tmp_path).items() if k in before} == before
    rec = read_sigmf(result["meta"])
    predicted = [a for a in rec.annotations if a.extra.get("core:generator") == "sigformer"]
    assert predicted and result["frequency_edges"]
    for a in predicted:  # the band of white noise around 433.92 MHz at 1 MS/s
        assert 433.92e6 - 0.51e6 <= a.extra["core:freq_lower_edge"] < 433.92e6 - 0.4e6
        assert 433.92e6 + 0.4e6 < a.extra["core:freq_upper_edge"] <= 433.92e6 + 0.51e6
    classify_sigmf(path, model, ["QPSK", "BPSK"], min_power_db=20, in_place=True)
    assert any(a.extra.get("core:generator") == "sigformer" for a in read_sigmf(path).annotations)


def test_occupied_band_of_a_tone_and_of_noise():
    k = np.arange(8192)
    tone = np.exp(2j * np.pi * 0.1 * k)
    low, high = occupied_band(tone)
    assert low < 0.1 < high and high - low < 0.03
    noise = np.random.default_rng(0).standard_normal(8192) * (1 + 0j)
    low, high = occupied_band(noise)
    assert low < -0.45 and high > 0.45


def test_capture_dataset_and_grouped_evaluation(tmp_path):
    from sigformer.rf.amr import capture_dataset, leave_one_capture_out

    a, _ = _burst_recording(tmp_path, "a")
    b, _ = _burst_recording(tmp_path, "b")
    data = capture_dataset([a, b], 128, classes=["BPSK", "QPSK"], normalization="none",
                           min_power_db=None)
    assert data.info["captures"] == ["a", "b"] and len(data) == 2 * 24
    # frame starts on the hop grid, so decisions per burst can regroup the frames
    assert data.info["hop"] == 128 and len(data.params["start"]) == len(data)
    assert np.all(data.params["start"] % 128 == 0)
    splits = list(leave_one_capture_out(data))
    assert [name for name, _, _ in splits] == ["a", "b"]
    for _, train, test in splits:
        assert set(data.params["capture"][train]).isdisjoint(data.params["capture"][test])
    with pytest.raises(DataError, match="map it with label_map"):
        capture_dataset([a], 128, classes=["FSK"])
    mapped = capture_dataset([a], 128, classes=["PSK"], label_map={"QPSK": "PSK", "BPSK": "PSK"})
    assert set(mapped.y) == {0}


@pytest.mark.realdata
@pytest.mark.skipif(not RF_SIGMF.is_dir(), reason="URH captures not found in "
                    "../shared/data/rf_sigmf (real-data test)")
def test_real_captures_validate_and_symbol_rates_are_estimated():
    from sigformer.rf.amr import estimate_samples_per_symbol

    checked = 0
    for meta in sorted(RF_SIGMF.glob("*.sigmf-meta")):
        validate_metadata(_meta(meta), meta)
        rec = read_sigmf(meta)
        comment = rec.annotations[0].comment or ""
        estimate = estimate_samples_per_symbol(rec.samples)
        assert estimate["sps"] is not None, meta.name
        if "samples_per_symbol=" in comment:  # the curator's note, where the source states it
            stated = float(comment.split("samples_per_symbol=")[1].split(";")[0])
            assert estimate["sps"] == pytest.approx(stated, rel=0.12), meta.name
            checked += 1
    assert checked >= 4


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
    assert (tmp_path / "fsk.sigmf-data").is_file()  # a complete pair beside the new metadata
    rec = read_sigmf(out)
    predicted = [a for a in rec.annotations if a.extra.get("core:generator") == "sigformer"]
    assert predicted and {a.label for a in predicted} <= set(classes)
    assert rec.annotations[0].label == "FSK"  # the original annotation is kept


# --- review findings (fourteenth session) -------------------------------------------------

def test_write_sigmf_takes_the_data_description_from_the_samples(tmp_path):
    """A global_info copied from another recording (here a ci8 capture's) kept its
    datatype: cf32 bytes labelled ci8 read back as garbage."""
    from sigformer.data.sigmf_io import read_sigmf, write_sigmf

    iq = (np.arange(8) + 1j * np.arange(8)).astype(np.complex64)
    other = {"core:datatype": "ci8", "core:sha512": "0" * 128, "core:num_channels": 1,
             "core:author": "someone", "core:description": "kept"}
    meta = write_sigmf(tmp_path / "copy", iq, sample_rate=1e6, global_info=other)
    back = read_sigmf(meta)
    np.testing.assert_array_equal(back.samples, iq)
    assert back.datatype == "cf32_le" and back.global_info["core:author"] == "someone"


def test_write_sigmf_keeps_channels_and_refuses_ambiguous_real_pairs(tmp_path):
    from sigformer.data.sigmf_io import read_sigmf, write_sigmf

    two = (np.arange(12).reshape(6, 2) * (1 + 1j)).astype(np.complex64)
    back = read_sigmf(write_sigmf(tmp_path / "two", two, sample_rate=1e6))
    assert back.global_info["core:num_channels"] == 2
    np.testing.assert_array_equal(back.samples, two)
    with pytest.raises(DataError, match=r"I/Q pairs as complex"):
        write_sigmf(tmp_path / "pairs", np.zeros((6, 2), np.int16), sample_rate=1e6)
    assert not list(tmp_path.glob("pairs*"))


def test_header_bytes_without_a_dataset_are_refused_not_read_as_samples(tmp_path):
    from sigformer.data.sigmf_io import read_sigmf, write_sigmf

    iq = np.array([1 + 2j, 3 + 4j], np.complex64)
    meta = write_sigmf(tmp_path / "h", iq, sample_rate=1e6)
    data = tmp_path / "h.sigmf-data"
    data.write_bytes(np.full(2, 9.0, np.float32).tobytes() + data.read_bytes())
    doc = json.loads(meta.read_text())
    doc["global"].pop("core:sha512", None)
    doc["captures"][0]["core:header_bytes"] = 8
    meta.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="header_bytes but the recording has no core:dataset"):
        read_sigmf(meta)


def test_label_runs_do_not_cross_a_retune():
    """A recording retuned between capture segments: one run spanning both would get its
    frequency edges from the mixed spectrum around the first centre."""
    from sigformer.data.sigmf_io import prediction_annotations, retune_points

    captures = [{"core:sample_start": 0, "core:frequency": 100e6},
                {"core:sample_start": 2048, "core:frequency": 100e6},
                {"core:sample_start": 4096, "core:frequency": 200e6}]
    assert retune_points(captures) == [4096]
    starts = np.arange(0, 8192, 1024)
    runs = prediction_annotations(starts, 1024, ["QPSK"] * len(starts),
                                  breaks=retune_points(captures))
    assert [(r.start, r.count) for r in runs] == [(0, 4096), (4096, 4096)]
    assert len(prediction_annotations(starts, 1024, ["QPSK"] * len(starts))) == 1
