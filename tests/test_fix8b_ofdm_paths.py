"""Review 11: an OFDM mid-epoch checkpoint resumed with too few epochs is refused (finding 3);
a resume that toggles attention dropout or the fused-projection fast path is refused
(finding 4); ``~`` in the training loops' and scripts' output folders is the home folder
(finding 5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from repo_scripts import load_script
from test_ofdm_midepoch import Interrupted, _stop_at_loss_call

import sigformer.recipes.ofdm as recipe_module
from sigformer.checkpoint import CheckpointError
from sigformer.data.ofdm import simulate_ofdm
from sigformer.models import create_model

# 24 slots, 6 held out: 18 training slots in batches of 4, 5 steps per epoch
RECIPE = recipe_module.OFDMRecipe(max_epochs=2, batch_size=4, lr=5e-3, val_fraction=0.25)
STEPS = 5




def _script(name: str):
    return load_script(f"scripts/{name}.py")




def _fit(data, out, recipe=RECIPE, **kwargs):
    torch.manual_seed(0)
    model = create_model("adafortitran", "tiny")
    history = recipe_module.fit_channel_estimator(model, data, recipe=recipe, seed=4,
                                                  checkpoint_dir=out, **kwargs)
    return model, history


# --- finding 3 --------------------------------------------------------------------------------

def test_mid_epoch_checkpoint_resumed_with_too_few_epochs_is_refused(tmp_path, monkeypatch):
    data = simulate_ofdm(24, seed=2)
    with monkeypatch.context() as patch:  # stopped in epoch 2 after one step (5 + 1 val + 2)
        _stop_at_loss_call(patch, STEPS + 1 + 2)
        with pytest.raises(Interrupted):
            _fit(data, tmp_path / "run", checkpoint_every_s=0.0)
    pointer = json.loads((tmp_path / "run" / "latest.json").read_text())
    assert (pointer["epoch"], pointer["step"]) == (1, 1)
    short = recipe_module.OFDMRecipe(**{**RECIPE.__dict__, "max_epochs": 1})  # = finished
    with pytest.raises(CheckpointError, match=r"stopped inside epoch 2 \(after step 1 of "
                                              r"5\).*max_epochs >= 2"):
        _fit(data, tmp_path / "run", recipe=short, resume=True)
    _, history = _fit(data, tmp_path / "run", resume=True)  # max_epochs 2 finishes it
    assert len(history.epochs) == 2


# --- finding 4 --------------------------------------------------------------------------------

ARGS = ["--model", "linear", "--n-train", "16", "--batch-size", "8", "--n-val", "4",
        "--epochs", "2", "--log-every", "0", "--checkpoint-every", "0"]


@pytest.mark.parametrize("flag, key", [("--no-attention-dropout", "attention_dropout"),
                                       ("--fast", "fast")])
def test_ofdm_resume_refuses_a_toggled_switch(tmp_path, flag, key):
    script = _script("train_ofdm")
    args = ARGS + ["--out", str(tmp_path)]
    assert script.main(args) == 0
    recorded = json.loads((tmp_path / "epochs" / "epoch-0002" / "model" / "config.json"
                           ).read_text())["extra"]
    assert recorded["attention_dropout"] is True and recorded["fast"] is False
    with pytest.raises(SystemExit, match=rf"error: cannot resume .*{key} .*\({flag}\)"):
        script.main(args + ["--resume", flag])
    assert script.main(args + ["--resume"]) == 0  # the same switches resume


def test_ofdm_resume_of_a_checkpoint_without_the_fast_record_is_noted(tmp_path, capsys):
    script = _script("train_ofdm")
    args = ARGS + ["--out", str(tmp_path)]
    assert script.main(args + ["--no-attention-dropout"]) == 0
    config = tmp_path / "epochs" / "epoch-0002" / "model" / "config.json"
    saved = json.loads(config.read_text())
    del saved["extra"]["fast"]  # as written before --fast was recorded
    config.write_text(json.dumps(saved))
    capsys.readouterr()
    assert script.main(args + ["--no-attention-dropout", "--resume"]) == 0
    assert "records no fast" in capsys.readouterr().out


# --- finding 5 --------------------------------------------------------------------------------

def test_training_loops_expand_the_home_folder(home):
    from sigformer.recipes.amr import GeneratedFrames, StreamRecipe, fit_stream
    from sigformer.recipes.tfm import finetune, latest_checkpoint

    data = simulate_ofdm(24, seed=2)
    _fit(data, "~/ofdm")
    assert (home / "ofdm" / "latest.json").is_file()

    model = create_model("kd_cnn", n_outputs=2)
    fit_stream(model, GeneratedFrames(["BPSK", "CPFSK"]),
               StreamRecipe(epochs=1, frames_per_epoch=16, batch_size=16),
               checkpoint_dir="~/amr", log=lambda _: None, log_every=0)
    assert (home / "amr" / "config.json").is_file()

    torch.manual_seed(0)
    encoder = create_model("tfm_encoder", "tiny", n_outputs=3, n_codes=64)
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 64, (16, 2, 9)), rng.integers(0, 3, 16)
    finetune(encoder, X, y, X_val=X, y_val=y, max_epochs=1, batch_size=8, warmup_epochs=1,
             checkpoint_dir="~/tfm")
    assert latest_checkpoint("~/tfm") is not None and (home / "tfm" / "best").is_dir()
    assert not (Path.cwd() / "~").exists()


def test_train_ofdm_out_expands_the_home_folder(home):
    script = _script("train_ofdm")
    assert script.main(ARGS + ["--out=~/o"]) == 0
    assert (home / "o" / "latest.json").is_file() and not (Path.cwd() / "~").exists()
