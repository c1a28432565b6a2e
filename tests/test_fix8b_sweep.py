"""scripts/amr_skd_sweep.py records its teacher in every student and refuses, on --resume, a
student distilled from another teacher (review 11, findings 1.4 and 2); ``~`` in --run/--out
is the home folder (finding 5)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from sigformer.checkpoint import CheckpointError, load_checkpoint, read_config, save_checkpoint
from sigformer.data.modgen import RML2016_CLASSES
from sigformer.data.radioml import generate_radioml

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "amr_skd_sweep.py"


def _sweep():
    spec = importlib.util.spec_from_file_location("amr_skd_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_folder(tmp_path, monkeypatch) -> Path:
    """A train_amr-style run with a finished tiny ClST teacher (one 32-frame step), under a
    HOME that is not the working folder."""
    from sigformer.recipes.amr import StreamRecipe
    from sigformer.rf.amr import train_bundles

    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    test = generate_radioml(1, snrs=[10], classes=RML2016_CLASSES, normalization="rms", seed=9)
    train_bundles(home / "run", classes=RML2016_CLASSES, config=None, test=test,
                  recipe=StreamRecipe(epochs=1, frames_per_epoch=32, batch_size=32),
                  teacher_preset="tiny", students=(), baselines=(), log=lambda _: None,
                  log_every=0)
    return home / "run"


def test_sweep_students_record_and_check_their_teacher(run_folder):
    sweep = _sweep()
    home = run_folder.parent
    argv = ["--run", "~/run", "--out", "~/sweep", "--pairs", "2:0.5", "--threads", "1",
            "--val-per-condition", "1", "--seed", "0", "--test-per-condition", "1", "--resume"]
    assert sweep.main(argv) == 0
    student = home / "sweep" / "kd_cnn+SKD-T2-a0.5"
    assert student.is_dir() and not (Path.cwd() / "~").exists()
    sha = read_config(run_folder / "clst")["files"]["model.safetensors"]["sha256"]
    extra = read_config(student)["extra"]
    assert extra["teacher"] == sha and extra["seed"] == 0
    assert sweep.main(argv) == 0  # the same teacher: the finished student is reused
    # the teacher retrained (other weights, same settings): the student is refused
    config = read_config(run_folder / "clst")
    teacher, _ = load_checkpoint(run_folder / "clst")
    with torch.no_grad():
        next(teacher.parameters()).add_(1.0)
    save_checkpoint(run_folder / "clst", teacher, extra=config["extra"])
    with pytest.raises(CheckpointError, match=r"T2-a0\.5: it was distilled from a teacher "
                                              f"whose model.safetensors has sha256 {sha}"):
        sweep.main(argv)
