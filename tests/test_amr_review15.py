"""Review of the modulation-recognition path (fifteenth session): bundles of recorded frames
keep the data's frame length, evaluations without high-SNR frames, silent captures, noiseless
generator configurations, and the SKD temperature."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sigformer.data.radioml import generate_radioml


def test_an_amr_bundle_records_the_frame_length_of_its_data(tmp_path):
    from sigformer.bundle import Bundle
    from sigformer.pipeline import load_config, run_pipeline

    data = generate_radioml(4, snrs=[10, 20], classes=("BPSK", "QPSK"), frame_length=64, seed=0)
    data.save(tmp_path / "d64.npz")
    cfg = load_config({"name": "t", "task": "classify",
                       "amr": {"source": "npz", "path": str(tmp_path / "d64.npz"),
                               "models": [{"name": "kd_cnn", "max_epochs": 1}],
                               "distill": None},
                       "output": {"dir": str(tmp_path / "run"), "save_model": True}})
    run_pipeline(cfg, tmp_path / "run", log=lambda *a: None)
    folder = next((tmp_path / "run" / "models").iterdir())
    bundle = Bundle.load(folder)
    assert bundle.window == 64  # the frames it was trained on, not amr.frame_length (128)
    proba = bundle.predict_proba(data.X[:2])
    assert proba.shape == (2, 2)


def test_evaluation_without_high_snr_frames_reports_none(tmp_path):
    from sigformer.models import create_model
    from sigformer.rf.amr import _accuracy_text, evaluate_amr

    data = generate_radioml(2, snrs=[-10, 0], classes=("BPSK", "QPSK"), seed=0,
                            normalization="rms")
    result = evaluate_amr(create_model("kd_cnn", None, n_outputs=2), data)
    assert result["high_snr_accuracy"] is None and result["confusion_high_snr"] is None
    assert result["confusion"].sum() == len(data)
    assert _accuracy_text(None).startswith("n/a")


def test_the_amr_pipeline_runs_on_low_snr_data_only(tmp_path):
    from sigformer.pipeline import load_config, run_pipeline

    cfg = load_config({"name": "low", "task": "classify",
                       "amr": {"source": "generator", "n_per_condition": 2, "snrs": [-10, 0],
                               "models": [{"name": "kd_cnn", "max_epochs": 1}],
                               "distill": None},
                       "output": {"dir": str(tmp_path / "run")}})
    run_pipeline(cfg, tmp_path / "run", log=lambda *a: None)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["models"]["kd_cnn"]["high_snr_accuracy"] is None
    assert (tmp_path / "run" / "confusion_kd_cnn.png").is_file()


def test_a_silent_capture_has_no_frame_to_classify(tmp_path):
    from sigformer.data.sigmf_io import write_sigmf
    from sigformer.models import create_model
    from sigformer.rf.amr import classify_sigmf
    from sigformer.validation import DataError

    model = create_model("kd_cnn", None, n_outputs=2)
    meta = write_sigmf(tmp_path / "zeros", np.zeros(1024, np.complex64), sample_rate=1e6)
    for decision in ("frame", "burst"):
        with pytest.raises(DataError, match="no frame to classify"):
            classify_sigmf(meta, model, ["A", "B"], decision=decision)


def test_noiseless_generator_frames_record_an_infinite_snr():
    from sigformer.data.modgen import ModGenConfig

    data = generate_radioml(2, snrs=[-20, 10], classes=("BPSK", "QPSK"),
                            config=ModGenConfig(impairments=("cfo",)), seed=0)
    assert np.isinf(data.snr).all()
    noisy = generate_radioml(2, snrs=[-20, 10], classes=("BPSK", "QPSK"), seed=0)
    assert sorted(set(noisy.snr.tolist())) == [-20, 10]


def test_the_skd_temperature_must_be_positive():
    from sigformer.recipes.amr import StreamRecipe, distillation_loss

    with pytest.raises(ValueError, match="temperature must be positive"):
        StreamRecipe(temperature=0.0)
    logits = torch.randn(4, 3)
    with pytest.raises(ValueError, match="temperature must be positive"):
        distillation_loss(logits, logits, torch.zeros(4, dtype=torch.long), 0.0, 0.5)
    assert math.isfinite(float(distillation_loss(logits, logits,
                                                 torch.zeros(4, dtype=torch.long), 1.0, 0.5)))


def test_a_non_finite_loss_stops_the_stream_training(tmp_path):
    from sigformer.data.modgen import RML2016_CLASSES
    from sigformer.models import create_model
    from sigformer.recipes.amr import GeneratedFrames, StreamRecipe, fit_stream

    model = create_model("kd_cnn", None, n_outputs=len(RML2016_CLASSES))
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    recipe = StreamRecipe(epochs=1, frames_per_epoch=32, batch_size=32)
    with pytest.raises(FloatingPointError, match="training loss is nan at epoch 1, step 1"):
        fit_stream(model, GeneratedFrames(RML2016_CLASSES), recipe,
                   checkpoint_dir=tmp_path / "ck", log=lambda *a: None, log_every=0)
    assert not (tmp_path / "ck" / "config.json").exists()
