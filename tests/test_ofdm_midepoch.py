"""Mid-epoch checkpoints of the OFDM trainer: a run stopped inside an epoch and resumed is
bitwise the run that was never stopped (weights, optimiser, RNG streams, history)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from safetensors.torch import load_file

import sigformer.recipes.ofdm as recipe_module
from sigformer.checkpoint import CheckpointError, load_checkpoint
from sigformer.data.ofdm import OFDMSlotStream, simulate_ofdm
from sigformer.models import create_model

# 24 slots, 6 held out: 18 training slots in batches of 4 (the last one short), 5 steps/epoch
RECIPE = recipe_module.OFDMRecipe(max_epochs=2, batch_size=4, lr=5e-3, val_fraction=0.25)
STEPS = 5
TIMING = ("seconds", "samples_per_s")  # wall-clock fields: never equal between two runs
# the trainer.json / latest.json keys of an epoch-end checkpoint (what runs written before
# mid-epoch checkpoints hold; their format must not change)
EPOCH_END_KEYS = {"param_groups", "scalars", "scheduler", "epoch", "bad_epochs", "recipe",
                  "history", "best_epoch", "best_val_loss", "seed"}


class Interrupted(Exception):
    """Stands in for the process being stopped (session end, Ctrl-C, a queue limit)."""


def _fixed_data():
    return simulate_ofdm(24, seed=2)


def _stream():
    return OFDMSlotStream(4, STEPS, seed=1)


def _model(init_seed: int = 0):
    """Tiny AdaFortiTran: dropout 0.1, so the global RNG stream matters."""
    torch.manual_seed(init_seed)
    return create_model("adafortitran", "tiny")


def _stop_at_loss_call(monkeypatch, call: int) -> None:
    """Raise inside the ``call``-th loss evaluation (1-based, training and validation
    batches alike): the step it belongs to is lost, as when a process is killed."""
    calls = {"n": 0}
    loss_fn = recipe_module.ofdm_loss

    def stopping(estimate, truth):
        calls["n"] += 1
        if calls["n"] == call:
            raise Interrupted(f"stopped at loss call {call}")
        return loss_fn(estimate, truth)

    monkeypatch.setattr(recipe_module, "ofdm_loss", stopping)


def _fit(data, out: Path | None, recipe=RECIPE, init_seed: int = 0, **kwargs):
    model = _model(init_seed)
    history = recipe_module.fit_channel_estimator(model, data, recipe=recipe, seed=4,
                                                  checkpoint_dir=out, **kwargs)
    return model, history


def _without_timing(history) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history.epochs]


def _latest(out: Path) -> tuple[dict, Path]:
    pointer = json.loads((out / "latest.json").read_text())
    return pointer, out / pointer["folder"]


def assert_same_run(out_a: Path, model_a, hist_a, out_b: Path, model_b, hist_b) -> None:
    """Bitwise: returned weights, the final checkpoint's weights, optimiser moments, RNG
    states, scheduler and history (timing aside)."""
    for key, value in model_a.state_dict().items():
        assert torch.equal(model_b.state_dict()[key], value), key
    assert _without_timing(hist_b) == _without_timing(hist_a)
    assert (hist_b.best_epoch, hist_b.best_val_loss) == (hist_a.best_epoch, hist_a.best_val_loss)
    (pointer_a, folder_a), (pointer_b, folder_b) = _latest(out_a), _latest(out_b)
    assert pointer_a == pointer_b
    tensors_a = load_file(str(folder_a / "trainer.safetensors"))
    tensors_b = load_file(str(folder_b / "trainer.safetensors"))
    assert tensors_a.keys() == tensors_b.keys()
    assert any(name.startswith("optimizer.") for name in tensors_a)
    for name, value in tensors_a.items():  # Adam moments, step counts, both RNG states
        assert torch.equal(tensors_b[name], value), name
    meta_a = json.loads((folder_a / "trainer.json").read_text())
    meta_b = json.loads((folder_b / "trainer.json").read_text())
    for key in ("param_groups", "scalars", "scheduler", "epoch", "bad_epochs", "best_epoch",
                "best_val_loss", "seed"):
        assert meta_b[key] == meta_a[key], key
    weights_a, _ = load_checkpoint(folder_a / "model")
    weights_b, _ = load_checkpoint(folder_b / "model")
    for key, value in weights_a.state_dict().items():  # the last epoch's, not the best one's
        assert torch.equal(weights_b.state_dict()[key], value), key


# --- the invariant ----------------------------------------------------------------------------

@pytest.mark.parametrize("stop_call, resume_every_s", [
    (3, None),            # epoch 0 after 2 steps; resumed without mid-epoch checkpoints
    (STEPS + 1 + 2, 0.0),  # epoch 1 after 1 step (the loss calls: 5 steps + 1 validation)
])
def test_fixed_dataset_resumed_mid_epoch_is_the_uninterrupted_run(tmp_path, monkeypatch,
                                                                   stop_call, resume_every_s):
    data = _fixed_data()
    straight_lines, resumed_lines = [], []
    straight = _fit(data, tmp_path / "straight", log=straight_lines.append, log_every_s=0)
    with monkeypatch.context() as patch:
        _stop_at_loss_call(patch, stop_call)
        with pytest.raises(Interrupted):
            _fit(data, tmp_path / "stopped", checkpoint_every_s=0.0)
    pointer, folder = _latest(tmp_path / "stopped")
    epoch, step = divmod(stop_call - 1, STEPS + 1)  # finished epochs, steps into the next
    assert (pointer["epoch"], pointer["step"]) == (epoch, step)
    assert folder.name == f"epoch-{epoch:04d}-step-{step:06d}"
    assert [p.name for p in (tmp_path / "stopped" / "epochs").iterdir()] == [folder.name]
    resumed = _fit(data, tmp_path / "stopped", init_seed=99, resume=True,
                   checkpoint_every_s=resume_every_s, log=resumed_lines.append, log_every_s=0)
    assert_same_run(tmp_path / "straight", *straight, tmp_path / "stopped", *resumed)
    assert f"resumed in epoch {epoch + 1} after step {step}/{STEPS}" in resumed_lines[0]
    # progress lines after the resume: the epoch's running mean includes the steps before it
    shown = re.compile(r"epoch (\d+)/\d+ step (\d+)/\d+ \| .* mean loss (\S+) \|")
    before = {m.groups()[:2]: m.group(3) for line in straight_lines if (m := shown.search(line))}
    after = {m.groups()[:2]: m.group(3) for line in resumed_lines if (m := shown.search(line))}
    assert min(int(s) for e, s in after if int(e) == epoch + 1) == step + 1
    assert after and all(before[key] == value for key, value in after.items())


@pytest.mark.parametrize("num_workers", [0, 2])
def test_stream_resumed_mid_epoch_is_the_uninterrupted_run(tmp_path, monkeypatch, num_workers):
    val = simulate_ofdm(6, seed=5)
    straight = _fit(_stream(), tmp_path / "straight", val=val, num_workers=num_workers)
    with monkeypatch.context() as patch:
        _stop_at_loss_call(patch, STEPS + 1 + 4)  # epoch 1 after 3 of its 5 batches
        with pytest.raises(Interrupted):
            _fit(_stream(), tmp_path / "stopped", val=val, num_workers=num_workers,
                 checkpoint_every_s=0.0)
    assert _latest(tmp_path / "stopped")[0] == {
        "epoch": 1, "step": 3, "folder": "epochs/epoch-0001-step-000003"}
    simulated = []
    batch = OFDMSlotStream.batch

    def counting(self, step, epoch=None):
        simulated.append(step)
        return batch(self, step, epoch)

    monkeypatch.setattr(OFDMSlotStream, "batch", counting)
    resumed = _fit(_stream(), tmp_path / "stopped", val=val, init_seed=99, resume=True,
                   num_workers=num_workers, checkpoint_every_s=0.0)
    assert_same_run(tmp_path / "straight", *straight, tmp_path / "stopped", *resumed)
    if num_workers == 0:  # (workers simulate in other processes: not counted here)
        assert simulated == [3, 4]  # the trained batches are not simulated again


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stops=hs.lists(hs.integers(1, 2 * (STEPS + 1)), min_size=1, max_size=3))
def test_any_sequence_of_stops_gives_the_uninterrupted_run(tmp_path_factory, stops):
    """Stopped at any loss call (including inside validation, before the epoch-end checkpoint
    is written, and before any checkpoint exists), several times over, then resumed."""
    data = _fixed_data()
    root = tmp_path_factory.mktemp("stops")
    straight = _fit(data, root / "straight")
    out = root / "stopped"
    for stop in stops:
        with pytest.MonkeyPatch.context() as patch:
            _stop_at_loss_call(patch, stop)
            try:  # a stop after the run's last loss call lets it finish
                _fit(data, out, resume=True, checkpoint_every_s=0.0)
            except Interrupted:
                pass
    # a stop before the first checkpoint leaves none: that restart begins from the same init
    resumed = _fit(data, out, resume=True, checkpoint_every_s=0.0)
    assert_same_run(root / "straight", *straight, out, *resumed)


# --- compatibility and refusals ------------------------------------------------------------------

def test_epoch_end_checkpoints_keep_their_format_and_resume_as_before(tmp_path):
    data = _fixed_data()
    straight = _fit(data, tmp_path / "straight")
    _fit(data, tmp_path / "old", recipe=replace(RECIPE, max_epochs=1))  # no mid-epoch ones
    pointer, folder = _latest(tmp_path / "old")
    assert pointer == {"epoch": 1, "folder": "epochs/epoch-0001"}
    assert set(json.loads((folder / "trainer.json").read_text())) == EPOCH_END_KEYS
    lines = []
    resumed = _fit(data, tmp_path / "old", init_seed=99, resume=True, checkpoint_every_s=0.0,
                   log=lines.append)
    assert lines[0] == f"resumed after epoch 1 from {tmp_path / 'old'}"
    assert_same_run(tmp_path / "straight", *straight, tmp_path / "old", *resumed)


def test_a_mid_epoch_checkpoint_refuses_another_recipe_or_another_epoch_size(tmp_path,
                                                                             monkeypatch):
    data = _fixed_data()
    with monkeypatch.context() as patch:
        _stop_at_loss_call(patch, 4)
        with pytest.raises(Interrupted):
            _fit(data, tmp_path, checkpoint_every_s=0.0)
    with pytest.raises(CheckpointError, match=r"epoch-0000-step-000003.*lr 0\.005 -> 0\.01\."):
        _fit(data, tmp_path, recipe=replace(RECIPE, lr=1e-2), resume=True)
    with pytest.raises(CheckpointError, match=r"batch 3 of an epoch of 5 batches, but this run "
                                              r"makes 6"):
        _fit(simulate_ofdm(28, seed=2), tmp_path, resume=True)
    _, history = _fit(data, tmp_path, recipe=replace(RECIPE, max_epochs=3), resume=True)
    assert [row["epoch"] for row in history.epochs] == [0, 1, 2]  # more epochs: allowed


def test_mid_epoch_checkpoints_follow_the_clock(tmp_path, monkeypatch):
    """A mid-epoch checkpoint once ``checkpoint_every_s`` have passed since the last checkpoint
    (mid-epoch or epoch-end), never at an epoch's last step (the epoch end follows); None
    writes epoch-end checkpoints only."""
    saved = []
    write = recipe_module.save_training_state

    def recording(*args, progress=None, **kwargs):
        saved.append((args[5], progress.step if progress else None))  # (epoch, step)
        return write(*args, progress=progress, **kwargs)

    monkeypatch.setattr(recipe_module, "save_training_state", recording)
    for every_s, expected in [(None, []), (1e9, []), (0.0, [1, 2, 3, 4])]:
        saved.clear()
        _fit(_fixed_data(), tmp_path / str(every_s), checkpoint_every_s=every_s)
        assert saved == [(0, s) for s in expected] + [(1, None)] + [
            (1, s) for s in expected] + [(2, None)]
    # a clock that reads the number of loss calls so far (5 steps + 1 validation per epoch)
    calls = {"n": 0}
    loss_fn = recipe_module.ofdm_loss

    def counting(estimate, truth):
        calls["n"] += 1
        return loss_fn(estimate, truth)

    monkeypatch.setattr(recipe_module, "ofdm_loss", counting)
    monkeypatch.setattr(recipe_module, "time", SimpleNamespace(
        perf_counter=lambda: float(calls["n"])))
    saved.clear()
    _fit(_fixed_data(), tmp_path / "clock", checkpoint_every_s=2.5)
    # epoch 0: due at step 3 (t = 3); the epoch end (t = 6) restarts the clock, so epoch 1
    # is due at its step 3 (t = 9), not at its step 1 (t = 7, 4 s after the last mid-epoch one)
    assert saved == [(0, 3), (1, None), (1, 3), (2, None)]
    with pytest.raises(ValueError, match="checkpoint_every_s must be >= 0"):
        _fit(_fixed_data(), tmp_path / "bad", checkpoint_every_s=-1.0)


def test_the_live_paper_checkpoint_still_loads(tmp_path):
    """The paper run's checkpoint (runs/ofdm_ada_paper, when present), copied: it restores
    into the paper model, at an epoch end or inside an epoch."""
    live = Path(__file__).resolve().parents[1] / "runs" / "ofdm_ada_paper"
    if not (live / "latest.json").is_file():
        pytest.skip("no paper-run checkpoint in runs/ofdm_ada_paper")
    import shutil

    pointer = json.loads((live / "latest.json").read_text())
    shutil.copytree(live / pointer["folder"], tmp_path / pointer["folder"])
    (tmp_path / "latest.json").write_text(json.dumps(pointer))
    model = create_model("adafortitran")
    optimizer, scheduler = recipe_module.build_optimizer(model, recipe_module.RELEASE_RECIPE)
    generator = torch.Generator()
    epoch, _, history, progress = recipe_module.load_training_state(
        tmp_path, model, optimizer, scheduler, generator)
    assert epoch == pointer["epoch"] and len(history.epochs) == epoch
    assert (progress.step if progress else 0) == pointer.get("step", 0)
    assert optimizer.state  # Adam moments restored


# --- the training script -----------------------------------------------------------------------

def _train_script():
    from repo_scripts import load_script

    return load_script("scripts/train_ofdm.py")


def test_train_script_passes_checkpoint_every_in_seconds(tmp_path, monkeypatch):
    script = _train_script()
    passed = []

    def spy(*args, **kwargs):
        passed.append(kwargs["checkpoint_every_s"])
        return recipe_module.OFDMHistory()

    monkeypatch.setattr(script, "fit_channel_estimator", spy)
    args = ["--model", "linear", "--n-train", "16", "--batch-size", "8", "--n-val", "4",
            "--out", str(tmp_path)]
    for extra in ([], ["--checkpoint-every", "2.5"], ["--checkpoint-every", "0"]):
        assert script.main(args + extra) == 0
    assert passed == [600.0, 150.0, None]
    with pytest.raises(SystemExit):
        script.parse_args(args + ["--checkpoint-every", "-1"])


def test_train_script_resumes_mid_epoch_with_another_checkpoint_interval(tmp_path,
                                                                         monkeypatch, capsys):
    script = _train_script()
    args = ["--model", "linear", "--n-train", "32", "--batch-size", "8", "--n-val", "8",
            "--epochs", "1", "--out", str(tmp_path), "--log-every", "0"]
    with monkeypatch.context() as patch:
        _stop_at_loss_call(patch, 3)
        with pytest.raises(Interrupted):
            script.main(args + ["--checkpoint-every", "1e-9"])
    assert _latest(tmp_path)[0]["step"] == 2
    assert script.main(args + ["--resume", "--checkpoint-every", "0"]) == 0
    assert "resumed in epoch 1 after step 2/4" in capsys.readouterr().out
    assert _latest(tmp_path)[0] == {"epoch": 1, "folder": "epochs/epoch-0001"}
