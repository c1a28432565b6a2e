"""OFDM training on a chosen device (``fit_channel_estimator(device=...)``,
``scripts/train_ofdm.py --device``): the CPU path is unchanged, a missing CUDA is a clear
error, and - where a GPU exists (the device check runs this file there) - a CUDA run trains,
writes a bundle that loads on the CPU, and validates to the same loss there."""

from __future__ import annotations

import json

import pytest
import torch
from repo_scripts import load_script

import sigformer.recipes.ofdm as recipe_module
from sigformer.checkpoint import load_checkpoint
from sigformer.data.ofdm import simulate_ofdm
from sigformer.models import create_model

ARGS = ["--model", "adafortitran", "--preset", "tiny", "--n-train", "32", "--batch-size", "8",
        "--n-val", "8", "--epochs", "2", "--log-every", "0", "--checkpoint-every", "0"]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_error_meter_reads_the_three_sums_back_unchanged():
    """One read-back per step (one device sync) instead of three: the same Python floats."""
    torch.manual_seed(0)
    truth = torch.randn(5, 4, 3, dtype=torch.complex64)
    estimate = truth + 0.1 * torch.randn(5, 4, 3, dtype=torch.complex64)
    loss = recipe_module.ofdm_loss(estimate, truth)
    meter = recipe_module.ErrorMeter()
    meter.update(loss, estimate, truth)
    assert meter.loss_sum == float(loss) * 5
    assert meter.error_sum == float((estimate - truth).abs().square().sum())
    assert meter.power_sum == float(truth.abs().square().sum())
    assert (meter.samples, meter.elements) == (5, 60)


def test_train_ofdm_records_the_device(tmp_path):
    script = load_script("scripts/train_ofdm.py")
    assert script.main(ARGS + ["--out", str(tmp_path)]) == 0
    extra = json.loads((tmp_path / "best" / "config.json").read_text())["extra"]
    assert extra["device"] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_train_ofdm_without_cuda_says_so(tmp_path, capsys):
    script = load_script("scripts/train_ofdm.py")
    with pytest.raises(SystemExit) as stop:
        script.main(ARGS + ["--out", str(tmp_path), "--device", "cuda"])
    assert stop.value.code == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # refused before simulating anything


def test_train_ofdm_refuses_an_unknown_device(tmp_path, capsys):
    script = load_script("scripts/train_ofdm.py")
    with pytest.raises(SystemExit):
        script.main(ARGS + ["--out", str(tmp_path), "--device", "gpu0"])
    assert "expected cpu, cuda or cuda:N" in capsys.readouterr().err


def test_device_cpu_trains_bit_for_bit_as_before():
    """device="cpu" (the scripts' default) is the loop without a device: same weights."""
    data, val = simulate_ofdm(24, seed=1), simulate_ofdm(8, seed=2)
    recipe = recipe_module.OFDMRecipe(max_epochs=1, batch_size=8, lr=5e-3)
    weights = []
    for device in (None, "cpu"):
        torch.manual_seed(0)
        model = create_model("adafortitran", "tiny")
        recipe_module.fit_channel_estimator(model, data, val=val, recipe=recipe, seed=0,
                                            device=device)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@needs_cuda
def test_training_on_cuda_writes_a_bundle_that_validates_the_same_on_the_cpu(tmp_path):
    data = simulate_ofdm(40, seed=2)
    val = simulate_ofdm(16, seed=3)
    torch.manual_seed(0)
    model = create_model("adafortitran", "tiny")
    recipe = recipe_module.OFDMRecipe(max_epochs=2, batch_size=8, lr=5e-3)
    history = recipe_module.fit_channel_estimator(model, data, val=val, recipe=recipe, seed=0,
                                                  checkpoint_dir=tmp_path, device="cuda")
    assert recipe_module.model_device(model).type == "cuda"
    assert len(history.epochs) == 2 and history.best_epoch is not None
    on_gpu = recipe_module.evaluate_loss(model, val)["val_loss"]
    loaded, _ = load_checkpoint(tmp_path / "best")
    on_cpu = recipe_module.evaluate_loss(loaded, val)["val_loss"]
    assert on_cpu == pytest.approx(on_gpu, rel=1e-3)
    # the GPU-written checkpoint resumes on the GPU and on the CPU (a resume may move)
    recipe3 = recipe_module.OFDMRecipe(**{**recipe.__dict__, "max_epochs": 3})
    history = recipe_module.fit_channel_estimator(model, data, val=val, recipe=recipe3, seed=0,
                                                  checkpoint_dir=tmp_path, resume=True,
                                                  device="cuda")
    assert len(history.epochs) == 3
    recipe4 = recipe_module.OFDMRecipe(**{**recipe.__dict__, "max_epochs": 4})
    on_cpu_model = create_model("adafortitran", "tiny")
    history = recipe_module.fit_channel_estimator(on_cpu_model, data, val=val, recipe=recipe4,
                                                  seed=0, checkpoint_dir=tmp_path, resume=True,
                                                  device="cpu")
    assert len(history.epochs) == 4
    assert recipe_module.model_device(on_cpu_model).type == "cpu"
