"""AMR resume (review 11, finding 2): every reused model is checked against the run's seed,
generator settings and architecture (preset), and an SKD student against its teacher;
checkpoints written before these fields existed are reused with a note."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from sigformer.checkpoint import CheckpointError, load_checkpoint, read_config, save_checkpoint
from sigformer.data.modgen import ModGenConfig, family_mode_config
from sigformer.data.radioml import generate_radioml

CLASSES = ["BPSK", "CPFSK"]


@pytest.fixture
def amr(tmp_path, counted_amr_fits):
    """A tiny train_bundles call (clst 'tiny' teacher, kd_cnn with and without SKD, one
    32-frame step each) that records the labels it trains."""
    from sigformer.recipes.amr import StreamRecipe
    from sigformer.rf.amr import train_bundles

    trained = counted_amr_fits
    test = generate_radioml(2, snrs=[10], classes=CLASSES, normalization="rms", seed=9)
    recipe = StreamRecipe(epochs=1, frames_per_epoch=32, batch_size=32, lr=3e-3)
    lines: list[str] = []

    def run(out: Path, *, resume=True, seed=0, config=None, preset="tiny", epochs=1,
            temperature=4.0):
        rec = StreamRecipe(**{**recipe.__dict__, "epochs": epochs,
                              "temperature": temperature})
        return train_bundles(out, classes=CLASSES, config=config, recipe=rec, test=test,
                             teacher_name="clst", teacher_preset=preset, students=("kd_cnn",),
                             baselines=(), seed=seed, resume=resume, log=lines.append,
                             log_every=0)

    return run, trained, lines


def _unfinish(folder: Path) -> None:
    """Rewrite a finished model as if interrupted after its first epoch."""
    from sigformer.recipes.amr import TRAIN_STATE

    config = read_config(folder)
    model, _ = load_checkpoint(folder)
    save_checkpoint(folder, model, extra={**config["extra"], "training_done": False,
                                          "epoch": 1}, extra_files={TRAIN_STATE: b"unused"})


def test_resume_records_and_checks_the_seed(tmp_path, amr):
    run, trained, _ = amr
    run(tmp_path / "a", resume=False)
    extra = read_config(tmp_path / "a" / "kd_cnn")["extra"]
    assert extra["seed"] == 0
    assert extra["generator_config"]["sps_range"] == list(ModGenConfig().sps_range)
    trained.clear()
    with pytest.raises(CheckpointError, match=r"a/clst: it was trained on other frames: "
                                              r"seed 0 -> 1\."):
        run(tmp_path / "a", seed=1)
    assert trained == []
    run(tmp_path / "a")  # the same seed: everything reused
    assert trained == []


def test_resume_refuses_another_generator_config(tmp_path, amr):
    run, trained, _ = amr
    run(tmp_path / "a", resume=False, config=family_mode_config(8.0))
    trained.clear()
    # family mode with another --target-sps: same classes and frame length, other frames
    with pytest.raises(CheckpointError, match=r"generator_config sps_range \[4\.0, 16\.0\] -> "
                                              r"\[2\.0, 8\.0\]"):
        run(tmp_path / "a", config=family_mode_config(4.0))
    assert trained == []


def test_a_changed_preset_is_refused_cleanly_for_an_unfinished_teacher(tmp_path, amr):
    run, trained, _ = amr
    run(tmp_path / "a", resume=False, epochs=2)
    _unfinish(tmp_path / "a" / "clst")
    trained.clear()
    with pytest.raises(CheckpointError, match=r"a/clst: it holds a 'clst' model built with .*"
                                              r"--clst-preset"):
        run(tmp_path / "a", epochs=2, preset="small")
    assert trained == []
    run(tmp_path / "b", resume=False)
    trained.clear()
    with pytest.raises(CheckpointError, match="--clst-preset"):  # a finished teacher too
        run(tmp_path / "b", preset="small")
    assert trained == []


def test_fit_stream_refuses_weights_of_another_architecture(tmp_path):
    """Called directly (no up-front check), a shape mismatch is a CheckpointError."""
    from sigformer.models import create_model
    from sigformer.recipes.amr import GeneratedFrames, StreamRecipe, fit_stream

    recipe = StreamRecipe(epochs=2, frames_per_epoch=32, batch_size=32)
    stream = GeneratedFrames(CLASSES, frame_length=128)
    torch.manual_seed(0)
    model = create_model("clst", "tiny", n_outputs=2, n_times=128)
    fit_stream(model, stream, recipe, checkpoint_dir=tmp_path / "m", log=lambda _: None,
               log_every=0)
    _unfinish(tmp_path / "m")
    other = create_model("clst", "small", n_outputs=2, n_times=128)
    with pytest.raises(CheckpointError, match=r"cannot resume from .*m: its 'clst' weights"):
        fit_stream(other, stream, recipe, checkpoint_dir=tmp_path / "m", resume=True,
                   log=lambda _: None, log_every=0)


def test_skd_student_of_a_retrained_teacher_is_refused(tmp_path, amr):
    run, trained, _ = amr
    run(tmp_path / "a", resume=False)
    sha = read_config(tmp_path / "a" / "clst")["files"]["model.safetensors"]["sha256"]
    assert read_config(tmp_path / "a" / "kd_cnn+SKD")["extra"]["teacher"] == sha
    assert "teacher" not in read_config(tmp_path / "a" / "kd_cnn")["extra"]
    # the teacher deleted (to retrain it): its old student must not be reused
    shutil.rmtree(tmp_path / "a" / "clst")
    trained.clear()
    with pytest.raises(CheckpointError, match=r"kd_cnn\+SKD: it was distilled from a teacher "
                                              r".*no finished teacher"):
        run(tmp_path / "a")
    assert trained == []
    # another finished teacher in its place (another seed's run, same settings otherwise)
    run(tmp_path / "b", resume=False, seed=1)
    trained.clear()
    shutil.copytree(tmp_path / "b" / "clst", tmp_path / "a" / "clst")
    seedless = read_config(tmp_path / "a" / "clst")
    model, _ = load_checkpoint(tmp_path / "a" / "clst")
    save_checkpoint(tmp_path / "a" / "clst", model,
                    extra={**seedless["extra"], "seed": 0})
    new_sha = read_config(tmp_path / "a" / "clst")["files"]["model.safetensors"]["sha256"]
    with pytest.raises(CheckpointError, match=f"sha256 {sha}, but the teacher there now has "
                                              f"sha256 {new_sha}"):
        run(tmp_path / "a")
    assert trained == []


def test_checkpoints_without_the_new_fields_are_reused_with_a_note(tmp_path, amr):
    run, trained, lines = amr
    run(tmp_path / "a", resume=False)
    for label in ("clst", "kd_cnn+SKD", "kd_cnn"):  # as an earlier sigformer wrote them
        folder = tmp_path / "a" / label
        config = read_config(folder)
        model, _ = load_checkpoint(folder)
        old = {k: v for k, v in config["extra"].items()
               if k not in ("seed", "generator_config", "teacher")}
        save_checkpoint(folder, model, extra=old)
    trained.clear()
    run(tmp_path / "a", seed=1)  # cannot be checked: reused, with one note per model
    assert trained == []
    notes = [line for line in lines if "records no" in line]
    assert len(notes) == 3
    assert any("kd_cnn+SKD records no seed, generator_config, teacher" in n for n in notes)


def test_another_skd_temperature_reuses_the_teacher_and_refuses_the_distilled_student(
        tmp_path, amr):
    """--temperature shapes only the SKD students' training: a teacher (and a student trained
    alone) is reused at another temperature, an SKD student trained at the old one is not."""
    run, trained, _ = amr
    run(tmp_path / "a", resume=False)
    shutil.rmtree(tmp_path / "a" / "kd_cnn+SKD")  # as if the run stopped after the teacher
    trained.clear()
    run(tmp_path / "a", temperature=1.0)
    assert trained == ["kd_cnn+SKD"]  # teacher and kd_cnn reused, the SKD student retrained
    assert read_config(tmp_path / "a" / "kd_cnn+SKD")["extra"]["recipe"]["temperature"] == 1.0
    with pytest.raises(CheckpointError, match=r"kd_cnn\+SKD.*temperature 1\.0 -> 4\.0"):
        run(tmp_path / "a", temperature=4.0)


def test_students_distil_from_a_given_teacher_bundle(tmp_path, amr):
    """``teacher_bundle`` (train_amr.py --teacher): the students learn from that trained
    teacher, which is evaluated but not trained again, and record its weights' sha256;
    ``plain_students=False`` skips the students without SKD."""
    from sigformer.recipes.amr import StreamRecipe
    from sigformer.rf.amr import train_bundles

    run, trained, _ = amr
    run(tmp_path / "first", resume=False)
    teacher = tmp_path / "first" / "clst"
    test = generate_radioml(2, snrs=[10], classes=CLASSES, normalization="rms", seed=9)
    trained.clear()
    lines: list[str] = []
    rows = train_bundles(tmp_path / "second", classes=CLASSES, config=None,
                         recipe=StreamRecipe(epochs=1, frames_per_epoch=32, batch_size=32,
                                             lr=3e-3, temperature=1.0),
                         test=test, students=("kd_cnn",), baselines=(), log=lines.append,
                         log_every=0, teacher_bundle=teacher, plain_students=False)
    assert trained == ["kd_cnn+SKD"]
    assert set(rows) == {"clst", "kd_cnn+SKD"} and rows["clst"]["source"] == str(teacher)
    sha = read_config(teacher)["files"]["model.safetensors"]["sha256"]
    assert read_config(tmp_path / "second" / "kd_cnn+SKD")["extra"]["teacher"] == sha
    assert not (tmp_path / "second" / "clst").exists()
    assert any("not trained here" in line for line in lines)


def test_a_teacher_bundle_of_other_classes_is_refused_before_training(tmp_path, amr):
    from sigformer.recipes.amr import StreamRecipe
    from sigformer.rf.amr import train_bundles

    run, trained, _ = amr
    run(tmp_path / "first", resume=False)
    trained.clear()
    other = ["BPSK", "QPSK"]
    test = generate_radioml(2, snrs=[10], classes=other, normalization="rms", seed=9)
    with pytest.raises(CheckpointError, match=r"does not fit this run: classes \['BPSK', "
                                              r"'CPFSK'\] \(this run: \['BPSK', 'QPSK'\]\)"):
        train_bundles(tmp_path / "second", classes=other, config=None,
                      recipe=StreamRecipe(epochs=1, frames_per_epoch=32, batch_size=32),
                      test=test, students=("kd_cnn",), baselines=(), log_every=0,
                      teacher_bundle=tmp_path / "first" / "clst")
    assert trained == []


def _teacher_run(tmp_path, **kwargs):
    from sigformer.recipes.amr import StreamRecipe
    from sigformer.rf.amr import train_bundles

    test = generate_radioml(2, snrs=[10], classes=CLASSES, normalization="rms", seed=9)
    return train_bundles(tmp_path, classes=CLASSES, config=None,
                         recipe=StreamRecipe(epochs=1, frames_per_epoch=32, batch_size=32,
                                             lr=3e-3),
                         test=test, students=("kd_cnn",), baselines=(), log_every=0,
                         **kwargs)


def test_an_unfinished_or_unlabelled_teacher_bundle_is_refused(tmp_path, amr):
    from sigformer.rf.amr import load_teacher_bundle

    run, trained, _ = amr
    run(tmp_path / "first", resume=False)
    teacher = tmp_path / "first" / "clst"
    _unfinish(teacher)
    with pytest.raises(CheckpointError, match=r"has not finished training \(epoch 1 of its "
                                              r"run\)"):
        load_teacher_bundle(teacher, classes=CLASSES, frame_length=128)
    config = read_config(teacher)
    model, _ = load_checkpoint(teacher)
    extra = {k: v for k, v in config["extra"].items() if k not in ("classes", "training_done")}
    save_checkpoint(tmp_path / "unlabelled", model, extra=extra)
    with pytest.raises(CheckpointError, match=r"records no class list"):
        load_teacher_bundle(tmp_path / "unlabelled", classes=CLASSES, frame_length=128)


def test_a_resumed_run_without_plain_students_still_reports_finished_ones(tmp_path, amr):
    """--no-plain-students on a resume: plain students the run finished earlier are loaded
    and reported (report.json is rewritten), not dropped; none is trained."""
    run, trained, _ = amr
    run(tmp_path / "a", resume=False)  # teacher, kd_cnn+SKD and kd_cnn, finished
    trained.clear()
    rows = _teacher_run(tmp_path / "a", resume=True, plain_students=False, teacher_preset="tiny")
    assert trained == [] and set(rows) == {"clst", "kd_cnn+SKD", "kd_cnn"}
    rows = _teacher_run(tmp_path / "b", plain_students=False, teacher_preset="tiny")
    assert set(rows) == {"clst", "kd_cnn+SKD"}


def test_a_resume_that_drops_the_teacher_bundle_names_it(tmp_path, amr):
    run, trained, _ = amr
    run(tmp_path / "first", resume=False)
    teacher = tmp_path / "first" / "clst"
    _teacher_run(tmp_path / "second", teacher_bundle=teacher, plain_students=False)
    assert read_config(tmp_path / "second" / "kd_cnn+SKD")["extra"]["teacher_source"] == str(
        teacher)
    with pytest.raises(CheckpointError, match=r"distilled from --teacher .*first/clst: pass "
                                              r"that again to resume"):
        _teacher_run(tmp_path / "second", resume=True, plain_students=False,
                     teacher_preset="tiny")


def test_captures_are_evaluated_for_the_run_models_and_the_given_teacher(tmp_path, amr,
                                                                         monkeypatch):
    """Family mode with --teacher: the teacher bundle is evaluated on the captures, not a
    leftover model folder of the same label in --out."""
    from repo_scripts import load_script

    import sigformer.rf.amr as amr_module

    run, _, _ = amr
    run(tmp_path / "teacher_run", resume=False, seed=1)  # another teacher than out/clst
    run(tmp_path / "out", resume=False)  # leaves its own clst: not the teacher asked for
    teacher = tmp_path / "teacher_run" / "clst"
    captures = tmp_path / "captures"
    captures.mkdir()
    (captures / "a.sigmf-meta").write_text("{}")
    monkeypatch.setattr(amr_module, "capture_dataset", lambda *a, **k: None)
    monkeypatch.setattr(amr_module, "evaluate_by_capture", lambda model, data: {
        "a": float(next(model.parameters()).detach().sum())})
    script = load_script("scripts/train_amr.py")
    rows = {"clst": {"source": str(teacher)}, "kd_cnn+SKD": {}}
    results = script.evaluate_captures(tmp_path / "out", captures, 8.0, lambda line: None, rows)
    assert set(results) == {"clst", "kd_cnn+SKD"}
    expected = float(next(load_checkpoint(teacher)[0].parameters()).detach().sum())
    assert results["clst"]["a"] == expected
    leftover = float(next(load_checkpoint(tmp_path / "out" / "clst")[0].parameters()).sum())
    assert leftover != expected
