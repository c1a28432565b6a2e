"""``~`` in checkpoint and bundle paths; an AMR resume refuses every reused model (finished
or not) trained with another recipe or class list."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sigformer.bundle import Bundle
from sigformer.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_config,
    read_safetensors_header,
    save_checkpoint,
)
from sigformer.data.radioml import generate_radioml
from sigformer.models import create_model
from sigformer.spec import SignalSpec


def _weights(model) -> list[torch.Tensor]:
    return list(model.state_dict().values())


def test_checkpoint_paths_expand_the_home_folder(home):
    torch.manual_seed(0)
    model = create_model("kd_cnn", n_outputs=3)
    final = save_checkpoint("~/ck", model, extra={"note": "home"})
    assert final == home / "ck" and (home / "ck" / "config.json").is_file()
    assert not (Path.cwd() / "~").exists()
    assert read_config("~/ck")["extra"]["note"] == "home"
    assert read_safetensors_header("~/ck/model.safetensors")
    loaded, config = load_checkpoint("~/ck")
    assert config["model"] == "kd_cnn"
    for a, b in zip(_weights(model), _weights(loaded)):
        torch.testing.assert_close(a, b)
    with pytest.raises(CheckpointError, match=str(home / "missing")):
        load_checkpoint("~/missing")  # the error names the expanded folder


def test_bundle_save_and_load_expand_the_home_folder(home):
    torch.manual_seed(0)
    spec = SignalSpec.eeg(160, ["C3", "Cz", "C4"], window=160)
    model = create_model("dbconformer", spec=spec, n_outputs=2, preset="tiny").eval()
    bundle = Bundle(model=model, task="classify", input_spec=spec, chain=[], model_spec=spec,
                    labels=["left", "right"])
    assert bundle.save("~/bundle") == home / "bundle"
    assert not (Path.cwd() / "~").exists()
    loaded = Bundle.load("~/bundle")  # also checks the config digest stamped after saving
    assert loaded.labels == ["left", "right"]
    for a, b in zip(_weights(model), _weights(loaded.model)):
        torch.testing.assert_close(a, b)


# --- AMR resume ------------------------------------------------------------------------------

CLASSES = ["BPSK", "CPFSK"]


@pytest.fixture
def amr_setup(counted_amr_fits):
    """A tiny train_bundles call (kd_cnn teacher, vtcnn2 baseline, one 32-frame step each)
    that counts the models it trains."""
    from sigformer.recipes.amr import StreamRecipe
    from sigformer.rf.amr import train_bundles

    trained = counted_amr_fits
    test = generate_radioml(2, snrs=[10], classes=CLASSES, normalization="rms", seed=9)
    recipe = StreamRecipe(epochs=1, frames_per_epoch=32, batch_size=32, lr=3e-3)
    lines: list[str] = []

    def run(out, *, classes=CLASSES, resume=True, **changes):
        rec = StreamRecipe(**{**recipe.__dict__, **changes})
        data = test if classes == CLASSES else generate_radioml(
            2, snrs=[10], classes=classes, normalization="rms", seed=9)
        return train_bundles(out, classes=classes, config=None, recipe=rec, test=data,
                             teacher_name="kd_cnn", students=(), baselines=("vtcnn2",),
                             resume=resume, log=lines.append, log_every=0)

    return run, trained, lines


def test_resume_reuses_finished_models_trained_with_the_same_recipe(home, amr_setup):
    run, trained, lines = amr_setup
    first = run("~/amr", resume=False)
    assert trained == ["kd_cnn", "vtcnn2"] and (home / "amr" / "vtcnn2").is_dir()
    trained.clear()
    again = run("~/amr", num_workers=1)  # the worker count may change
    assert trained == []  # both finished models were reused, not retrained
    assert sum("finished earlier" in line for line in lines) == 2
    assert again == first


def test_resume_refuses_a_finished_model_trained_with_another_recipe(home, amr_setup):
    run, trained, lines = amr_setup
    run(home / "a", resume=False)
    run(home / "b", resume=False, lr=1e-3)
    # out/a with the baseline of another recipe: the teacher matches, vtcnn2 does not
    shutil.rmtree(home / "a" / "vtcnn2")
    shutil.copytree(home / "b" / "vtcnn2", home / "a" / "vtcnn2")
    trained.clear()
    with pytest.raises(CheckpointError, match=r"a/vtcnn2: the recipe differs .*lr 0\.001 -> "
                                              r"0\.003\..*delete .*vtcnn2"):
        run(home / "a")
    assert trained == []  # refused before anything trained
    # every finished model is checked, the teacher too
    with pytest.raises(CheckpointError, match=r"b/kd_cnn: .*epochs 1 -> 2"):
        run(home / "b", lr=1e-3, epochs=2)
    assert trained == []


def test_resume_refuses_an_unfinished_model_before_training_others(home, amr_setup):
    from sigformer.recipes.amr import TRAIN_STATE

    run, trained, _ = amr_setup
    run(home / "a", resume=False, epochs=2)
    # the baseline as if interrupted after epoch 1: training_done false, state beside it
    config = read_config(home / "a" / "vtcnn2")
    model, _ = load_checkpoint(home / "a" / "vtcnn2")
    save_checkpoint(home / "a" / "vtcnn2", model,
                    extra={**config["extra"], "training_done": False, "epoch": 1},
                    extra_files={TRAIN_STATE: b"unused"})
    shutil.rmtree(home / "a" / "kd_cnn")  # the teacher would train first, from scratch
    trained.clear()
    with pytest.raises(CheckpointError, match=r"vtcnn2: the recipe differs .*frames_per_epoch "
                                              r"32 -> 64"):
        run(home / "a", epochs=2, frames_per_epoch=64)
    assert trained == []  # refused up front, not after training the teacher


def test_resume_refuses_a_model_trained_on_other_classes(home, amr_setup):
    run, trained, _ = amr_setup
    run(home / "a", resume=False)
    trained.clear()
    other = ["BPSK", "QPSK"]
    with pytest.raises(CheckpointError, match=r"classes \['BPSK', 'CPFSK'\] -> "
                                              r"\['BPSK', 'QPSK'\]"):
        run(home / "a", classes=other)
    assert trained == []
    fresh = run(home / "a", classes=other, resume=False)  # no resume: retrained, no check
    assert trained == ["kd_cnn", "vtcnn2"] and np.isfinite(fresh["vtcnn2"]["accuracy"])


def test_pipeline_file_path_expands_the_home_folder(home):
    from sigformer.tasks.registry import read_raw_config

    (home / "p.yaml").write_text("name: from_home\ntask: classify\n")
    raw, source = read_raw_config("~/p.yaml")
    assert raw["name"] == "from_home" and source == str(home / "p.yaml")
