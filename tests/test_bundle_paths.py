"""How bundle paths are written: '.', './', '~', a run folder instead of its model/, an
empty string and typo'd pretrained names."""

from __future__ import annotations

import shutil

import pytest
import torch

from sigformer.atomic import (
    OutputLock,
    discard_stale_staging,
    recover_directory,
    staging_directory,
)
from sigformer.bundle import Bundle
from sigformer.catalogue import list_pretrained, resolve_bundle_path
from sigformer.checkpoint import CheckpointError, load_checkpoint
from sigformer.pretrained import from_pretrained

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def bundle_dir(family_bundle, tmp_path):
    """A private copy of the tiny IQ bundle (tests move into it and around it)."""
    return shutil.copytree(family_bundle, tmp_path / "bundle")


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("source", [".", "./"])
def test_current_folder_loads_when_it_is_a_bundle(bundle_dir, monkeypatch, source):
    reference = _state(Bundle.load(bundle_dir).model)
    monkeypatch.chdir(bundle_dir)
    assert _same_weights(_state(Bundle.load(source).model), reference)
    model, config = load_checkpoint(source)
    assert _same_weights(_state(model), reference) and config["task"] == "classify"
    assert _same_weights(_state(from_pretrained(source)), reference)
    assert resolve_bundle_path(source).resolve() == bundle_dir.resolve()


def test_empty_path_is_an_error_not_the_current_folder(bundle_dir, monkeypatch):
    monkeypatch.chdir(bundle_dir)  # even where '.' would load, '' is refused
    for load in (from_pretrained, Bundle.load, resolve_bundle_path):
        with pytest.raises(CheckpointError, match=r"empty bundle path ''.*'\.' for the current"):
            load("")


def test_run_folder_points_at_its_model_subfolder(bundle_dir, tmp_path, capsys):
    from sigformer.cli import main

    run = tmp_path / "runs" / "eeg_mi"
    run.mkdir(parents=True)
    shutil.move(bundle_dir, run / "model")  # what `sigformer run` writes
    (run / "metrics.json").write_text("{}")
    with pytest.raises(CheckpointError, match=rf"did you mean {run / 'model'}\?"):
        Bundle.load(run)
    assert main(["export", str(run), "--out", str(tmp_path / "deploy"), "--format",
                 "torchscript"]) == 2
    assert f"did you mean {run / 'model'}?" in capsys.readouterr().err
    Bundle.load(run / "model")  # the suggested folder is the bundle


def test_home_folder_is_expanded(bundle_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_bundle_path("~/bundle") == bundle_dir
    assert _same_weights(_state(Bundle.load("~/bundle").model),
                         _state(Bundle.load(bundle_dir).model))


def test_typo_in_a_pretrained_name_suggests_the_close_one():
    names = [e["name"] for e in list_pretrained()]
    if "amr-clst-modgen" not in names:
        pytest.skip("the shipped catalogue is not installed")
    with pytest.raises(CheckpointError, match=r"\(did you mean 'amr-clst-modgen'\?\)"):
        resolve_bundle_path("amr-clst-modgn")
    with pytest.raises(CheckpointError, match="neither a bundle folder") as err:
        resolve_bundle_path("zzzz")
    assert "did you mean" not in str(err.value)  # nothing close: no guess


def test_atomic_helpers_accept_the_current_folder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    stale = tmp_path / ".out.staging-old"
    stale.mkdir()
    monkeypatch.chdir(out)
    assert recover_directory(".") is False
    assert discard_stale_staging("./", older_than_s=-1.0) == 1 and not stale.exists()
    with OutputLock("."):
        assert (tmp_path / "out.lock").is_file()
    staging = staging_directory(".")  # beside out/, named after it (not inside it)
    assert staging.parent == tmp_path and staging.name.startswith(".out.staging-")


def test_a_folder_of_the_users_is_never_replaced(tmp_path, monkeypatch):
    """--out . (or a project folder) must not be swapped for the run's outputs: the previous
    content of a published folder is deleted."""
    from sigformer.atomic import OutputFolderError, check_replaceable, publish_directory
    from sigformer.checkpoint import save_checkpoint
    from sigformer.models import create_model

    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "thesis.tex").write_text("years of work")
    monkeypatch.chdir(project)
    for target in (".", str(project)):
        with pytest.raises(OutputFolderError, match="thesis.tex|src"):
            check_replaceable(target)
    staging = staging_directory(project)
    (staging / "metrics.json").write_text("{}")
    with pytest.raises(OutputFolderError):
        publish_directory(staging, project)
    with pytest.raises(OutputFolderError):
        save_checkpoint(".", create_model("ofdm_linear"))
    assert (project / "src" / "thesis.tex").read_text() == "years of work"
    # an empty folder, and one that sigformer wrote, are replaced as before
    empty = tmp_path / "empty"
    empty.mkdir()
    first = save_checkpoint(empty, create_model("ofdm_linear"))
    save_checkpoint(first, create_model("ofdm_linear"))
    assert (empty / "config.json").is_file()


def test_run_refuses_an_output_folder_of_the_users_before_any_work(tmp_path, capsys):
    import yaml

    from sigformer.cli import EXIT_BAD_INPUT, main

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    cfg = {"name": "x", "data": {"source": "simulator", "simulator": {"n_trials": 10}},
           "epochs": {"events": ["left_hand", "right_hand"], "tmin": 0.0, "tmax": 2.0},
           "model": {"name": "dbconformer"}, "train": {"max_epochs": 1}}
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "--out", str(folder)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "notes.txt" in err and "would be deleted" in err and "Traceback" not in err
    assert (folder / "notes.txt").read_text() == "keep me"
    (tmp_path / "file.txt").write_text("a file")
    assert main(["run", str(path), "--out", str(tmp_path / "file.txt")]) == EXIT_BAD_INPUT
    assert "is not a folder" in capsys.readouterr().err


def test_placeholder_files_do_not_make_a_folder_the_users_but_a_foreign_model_folder_does(
        tmp_path):
    import json

    from sigformer.atomic import OutputFolderError, check_replaceable

    placeholder = tmp_path / "keep"
    placeholder.mkdir()
    (placeholder / ".gitkeep").write_text("")
    check_replaceable(placeholder)  # as good as empty
    hub = tmp_path / "hf-model"
    (hub / ".git").mkdir(parents=True)
    (hub / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    (hub / "model.safetensors").write_bytes(b"x")
    with pytest.raises(OutputFolderError, match="did not write"):
        check_replaceable(hub)


def test_a_checkpoint_folder_the_user_added_files_to_is_not_replaced(tmp_path):
    from sigformer.atomic import OutputFolderError
    from sigformer.checkpoint import save_checkpoint
    from sigformer.models import create_model

    folder = save_checkpoint(tmp_path / "ck", create_model("ofdm_linear"))
    save_checkpoint(folder, create_model("ofdm_linear"))  # only sigformer's files: replaced
    (folder / "notes.md").write_text("what I tried")
    (folder / "eval").mkdir()
    (folder / "eval" / "results.csv").write_text("acc\n0.9\n")
    with pytest.raises(OutputFolderError, match=r"\(eval, notes\.md\)"):
        save_checkpoint(folder, create_model("ofdm_linear"))
    assert (folder / "notes.md").read_text() == "what I tried"
    assert (folder / "eval" / "results.csv").is_file()


def test_a_report_the_user_put_in_a_checkpoint_folder_is_not_deleted(tmp_path):
    # report.json / summary.json: sigformer's scripts write them in run folders (no
    # config.json), so in a checkpoint folder they are the user's
    from sigformer.atomic import OutputFolderError
    from sigformer.checkpoint import save_checkpoint
    from sigformer.models import create_model

    folder = save_checkpoint(tmp_path / "ck", create_model("ofdm_linear"))
    (folder / "report.json").write_text('{"acc": 0.9}')
    with pytest.raises(OutputFolderError, match="report.json"):
        save_checkpoint(folder, create_model("ofdm_linear"))
    assert (folder / "report.json").is_file()
