"""New-user review, RF findings: an IQ bundle scales frames as it was trained (no silent
chance accuracy), ``classify_sigmf`` takes a bundle, a read-only capture is never rewritten in
place, and the docs count the shipped bundles right."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sigformer.bundle import Bundle
from sigformer.catalogue import list_pretrained
from sigformer.data.io import DataError
from sigformer.data.radioml import generate_radioml
from sigformer.data.sigmf_io import (
    CAPTURE_NORMALIZATION,
    NORMALIZATIONS,
    normalize_frames,
    read_sigmf,
    write_annotations,
    write_sigmf,
)
from sigformer.rf.amr import classify_sigmf
from sigformer.spec import SignalSpec

REPO = Path(__file__).resolve().parents[1]
FRAME = 32
LABELS = ["A", "B", "C"]


class TinyIQ(nn.Module):
    """A linear classifier with a bias: its outputs depend on the frames' scale, as a trained
    network's do."""

    def __init__(self):
        super().__init__()
        self.n_times = FRAME
        torch.manual_seed(0)
        self.fc = nn.Linear(2 * FRAME, len(LABELS))
        with torch.no_grad():  # frames at unit power reach every class, tiny ones only "A"
            self.fc.weight.mul_(3.0)
            self.fc.bias.copy_(torch.tensor([0.5, 0.0, -0.5]))

    def forward(self, x):
        return self.fc(x.flatten(1))


def _bundle(**extra) -> Bundle:
    spec = SignalSpec.iq(1.0, FRAME)
    return Bundle(model=TinyIQ().eval(), task="classify", input_spec=spec, model_spec=spec,
                  labels=list(LABELS), extra=dict(extra))


def _raw_frames(n: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.uniform(-3, 3, size=(n, 1, 1))  # every frame at its own level
    return (rng.standard_normal((n, 2, FRAME)) * scales).astype(np.float32)


@pytest.mark.parametrize("mode", NORMALIZATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_frames_is_idempotent_bit_for_bit(mode, dtype):
    rng = np.random.default_rng(1)
    for length in (16, 128, 1024):
        frames = (rng.standard_t(2, size=(300, 2, length))
                  * rng.lognormal(0, 4, size=(300, 1, 1))).astype(dtype)
        once = normalize_frames(frames, mode)
        twice = normalize_frames(once, mode)
        assert twice.dtype == once.dtype
        np.testing.assert_array_equal(twice, once)


def test_normalize_frames_still_scales_frames_to_unit_size():
    frames = _raw_frames()
    mag = np.hypot(*normalize_frames(frames, "rms").transpose(1, 0, 2))
    np.testing.assert_allclose(np.sqrt((mag ** 2).mean(1)), 1, rtol=1e-5)
    mag = np.hypot(*normalize_frames(frames, "l1").transpose(1, 0, 2))
    np.testing.assert_allclose(mag.sum(1), 1, rtol=1e-5)
    mag = np.hypot(*normalize_frames(frames, "peak").transpose(1, 0, 2))
    np.testing.assert_allclose(mag.max(1), 1, rtol=1e-5)


def test_iq_bundle_applies_its_recorded_normalization():
    bundle = _bundle(normalization="rms")
    raw = _raw_frames()
    l1, rms = normalize_frames(raw, "l1"), normalize_frames(raw, "rms")
    with torch.inference_mode():  # what the network gives for frames scaled as trained
        direct = torch.softmax(bundle.model(torch.as_tensor(rms)), -1).numpy()
    # frames the caller normalised already: the same outputs, bit for bit
    np.testing.assert_array_equal(bundle.predict_proba(rms), direct)
    # frames scaled any other way: the same predictions
    for frames in (l1, raw, 1e3 * raw):
        np.testing.assert_allclose(bundle.predict_proba(frames), direct, atol=1e-6)
        assert bundle.predict(frames).tolist() == bundle.predict(rms).tolist()
    assert len(set(bundle.predict(rms).tolist())) > 1  # the check is not vacuous


def test_bundles_without_a_frame_normalization_scale_as_captures_are_scaled():
    """predict_proba took the frames of a bundle recording no scaling as given while
    classify-iq and streams scaled them l1: one set of frames, two answers."""
    raw = _raw_frames()
    with torch.inference_mode():
        l1 = torch.softmax(TinyIQ().eval()(torch.as_tensor(normalize_frames(raw, "l1"))),
                           -1).numpy()
        direct = torch.softmax(TinyIQ().eval()(torch.as_tensor(raw)), -1).numpy()
    assert _bundle().frame_normalization == CAPTURE_NORMALIZATION == "l1"
    np.testing.assert_array_equal(_bundle().predict_proba(raw), l1)
    assert _bundle(normalization="none").frame_normalization == "none"  # as given, if recorded
    np.testing.assert_array_equal(_bundle(normalization="none").predict_proba(raw), direct)
    eeg = SignalSpec.eeg(100.0, ["C3", "C4"], window=FRAME, unit="uV")
    assert Bundle(model=TinyIQ(), task="classify", input_spec=eeg, labels=LABELS,
                  extra={"normalization": "rms"}).frame_normalization is None


def test_shipped_bundle_scores_the_same_on_l1_and_rms_frames():
    """The review's case: generate_radioml's default (l1) frames given straight to a shipped
    bundle trained on rms frames scored 0.09 (chance), rms frames 0.66."""
    if "amr-clst-modgen" not in [e["name"] for e in list_pretrained()]:
        pytest.fail("amr-clst-modgen is not in the catalogue")
    bundle = Bundle.load("amr-clst-modgen")
    data = generate_radioml(2, snrs=[18], classes=bundle.labels, frame_length=bundle.window,
                            seed=1)
    assert data.info["normalization"] == "l1"
    rms = normalize_frames(data.X, "rms")
    assert bundle.predict(data.X).tolist() == bundle.predict(rms).tolist()
    np.testing.assert_allclose(bundle.predict_proba(data.X), bundle.predict_proba(rms),
                               atol=1e-5)


def _capture(folder: Path) -> Path:
    rng = np.random.default_rng(2)
    iq = (rng.standard_normal(FRAME * 12) + 1j * rng.standard_normal(FRAME * 12))
    iq *= np.repeat(10.0 ** rng.uniform(-2, 2, 12), FRAME)  # a level per frame
    return write_sigmf(folder / "cap", iq.astype(np.complex64), sample_rate=1e6)


def test_classify_sigmf_takes_a_bundle_with_its_labels_and_normalization(tmp_path):
    path = _capture(tmp_path)
    bundle = _bundle(normalization="rms")
    given = classify_sigmf(path, bundle, min_power_db=None)
    spelled = classify_sigmf(path, bundle.model, bundle.labels, normalization="rms",
                             min_power_db=None)
    assert given["frames"]["label"] == spelled["frames"]["label"]
    np.testing.assert_array_equal(given["frames"]["probabilities"],
                                  spelled["frames"]["probabilities"])
    # the same labels as the bundle's own predict on the capture's frames
    iq = read_sigmf(path).samples
    frames = np.stack([iq.real, iq.imag]).reshape(2, -1, FRAME).transpose(1, 0, 2)
    assert given["frames"]["label"] == bundle.predict(frames).tolist()
    with pytest.warns(UserWarning, match="overrides the 'rms' scaling"):
        classify_sigmf(path, bundle, normalization="l1", min_power_db=None)
    with pytest.raises(ValueError, match="classes .* are needed with a bare model"):
        classify_sigmf(path, bundle.model, min_power_db=None)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_in_place_refuses_a_read_only_metadata_file(tmp_path):
    path = _capture(tmp_path)
    os.chmod(path, 0o444)
    before = path.read_bytes()
    bundle = _bundle(normalization="rms")
    with pytest.raises(DataError, match=r"read-only \(mode 0444\).*--out"):
        classify_sigmf(path, bundle, min_power_db=None, in_place=True)
    with pytest.raises(DataError, match=r"read-only \(mode 0444\).*--out"):
        write_annotations(path, [], in_place=True)
    assert path.read_bytes() == before and _mode(path) == 0o444
    out = tmp_path / "out.sigmf-meta"  # --out still works on the read-only input
    classify_sigmf(path, bundle, min_power_db=None, out_meta=out)
    assert json.loads(out.read_text())["annotations"]


def test_in_place_keeps_the_mode_of_a_writable_metadata_file(tmp_path):
    path = _capture(tmp_path)
    os.chmod(path, 0o640)
    result = classify_sigmf(path, _bundle(normalization="rms"), min_power_db=None,
                            in_place=True)
    assert Path(result["meta"]) == path and _mode(path) == 0o640
    assert any(a.get("core:generator") == "sigformer"
               for a in json.loads(path.read_text())["annotations"])


def test_an_existing_read_only_output_is_refused_before_anything_is_written(tmp_path):
    path = _capture(tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    out = other / "pred.sigmf-meta"
    out.write_text("{}")
    os.chmod(out, 0o444)
    with pytest.raises(DataError, match="read-only"):
        write_annotations(path, [], out)
    assert out.read_text() == "{}" and not (other / "pred.sigmf-data").exists()


def test_rf_amr_doc_counts_the_shipped_amr_bundles():
    words = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
    text = (REPO / "docs" / "rf_amr.md").read_text()
    said = re.search(r"ships (\w+) modulation-recognition bundles", text)
    shipped = [e["name"] for e in list_pretrained() if e["name"].startswith("amr-")]
    assert said is not None and words[said.group(1)] == len(shipped)
    assert all(f"`{name}`" in text for name in shipped)


@pytest.mark.parametrize("recorded", [None, "rms"])
def test_stream_and_classify_iq_scale_frames_alike(recorded):
    """`sigformer stream` took frames of a bundle that records no scaling as given while
    classify-iq scaled them as RadioML does: one capture, two sets of labels."""
    from sigformer.rf.amr import _classifier_parts
    from sigformer.streaming.app import OnlineSettings, _iq_classifier

    bundle = _bundle(**({} if recorded is None else {"normalization": recorded}))
    online = _iq_classifier(bundle, OnlineSettings())
    expected = recorded or CAPTURE_NORMALIZATION
    assert online.runner.normalization == expected
    assert _classifier_parts(bundle, None, None)[2] == expected


class _Loudness(nn.Module):
    """``[loud, quiet]`` logits from a frame's mean power (frames taken as given)."""

    n_times = 128

    def forward(self, x):
        power = x.pow(2).mean(dim=(1, 2))
        return torch.stack([power, torch.full_like(power, 0.01)], dim=1)


def test_resampled_stream_annotations_point_at_the_streams_samples():
    """A family bundle streams a capture at 4x its symbol length (--sps 32 for 8): windows
    were reported at the model's rate, so a burst at input samples 2048-2560 came back
    annotated near sample 512."""
    from sigformer.streaming.app import OnlineSettings, stream_bundle
    from sigformer.streaming.sources import ArraySource

    spec = SignalSpec.iq(1.0, 128)
    bundle = Bundle(model=_Loudness().eval(), task="classify", input_spec=spec,
                    model_spec=spec, labels=["loud", "quiet"],
                    extra={"target_sps": 8.0, "normalization": "none", "rate_agnostic": True})
    iq = np.zeros((2, 8192))
    iq[:, 4096:4608] = np.random.default_rng(0).standard_normal((2, 512))
    report = stream_bundle(bundle, ArraySource(iq, 1e6, ["I0", "Q0"], chunk_size=512), [],
                           settings=OnlineSettings(samples_per_symbol=32.0),
                           log=lambda *a: None, keep_outputs=True)
    loud = [(p.start, p.start + p.length) for p in report["_outputs"] if p.label == "loud"]
    assert loud and all(lo < 4608 and hi > 4096 for lo, hi in loud)  # each overlaps the burst
    assert all(450 <= p.length <= 520 for p in report["_outputs"])  # 128 model samples x 4
