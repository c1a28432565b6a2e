"""The classification task's data loading: recordings without the requested events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sigformer.tasks import load_task_config
from sigformer.tasks.classify import load_epochs
from sigformer.validation import SignalError


def _csv(path: Path, markers: dict[int, str], n: int = 2560) -> Path:
    """A 4-channel 256 Hz table in microvolts with the given marker cells."""
    data = np.random.default_rng(0).standard_normal((4, n)) * 20
    rows = [f"{i / 256:.6f}," + ",".join(f"{v:.3f}" for v in data[:, i]) + f",{markers.get(i, 0)}"
            for i in range(n)]
    path.write_text("\n".join(["timestamps,TP9,AF7,AF8,TP10,Marker0", *rows]) + "\n")
    return path


def _config(path: Path, events):
    return load_task_config({"data": {"source": "files", "files": [str(path)]},
                             "epochs": {"events": events, "tmin": 0.0, "tmax": 1.0}})


def test_missing_events_are_named_with_those_the_file_has(tmp_path):
    path = _csv(tmp_path / "rec.csv", {300: "1", 900: "2", 1500: "1"})
    with pytest.raises(SignalError, match=r"rec\.csv: none of the requested events "
                                          r"\['left_hand', 'right_hand'\] \(epochs\.events\) "
                                          r"occur in it; its events are \['1', '2'\]"):
        load_epochs(_config(path, ["left_hand", "right_hand"]))
    epochs = load_epochs(_config(path, ["1", "2"]))  # names it has
    assert len(epochs) == 3 and epochs.event_id == {"1": 0, "2": 1}


def test_eegmmidb_event_names_get_the_folder_hint(tmp_path):
    path = _csv(tmp_path / "S001R04.csv", {300: "T0", 900: "T1", 1500: "T2"})
    with pytest.raises(SignalError, match=r"its events are \['T0', 'T1', 'T2'\].*pass the "
                                          r"folder holding it as --data"):
        load_epochs(_config(path, ["left_hand", "right_hand"]))


def test_a_recording_without_events_says_so(tmp_path):
    path = _csv(tmp_path / "rest.csv", {})
    with pytest.raises(SignalError, match=r"rest\.csv has no event annotations: epoching needs "
                                          r"events \(\['left_hand'\] requested"):
        load_epochs(_config(path, ["left_hand"]))
    with pytest.raises(SignalError, match=r"rest\.csv has no event annotations"):
        load_epochs(_config(path, None))


# --- evaluation units, alignment and the saved chain -----------------------------------------

def _two_class_csv(path: Path, seed: int, n_events: int = 12) -> Path:
    """A csv with ``n_events`` alternating '1'/'2' markers, 1-s epochs apart."""
    markers = {300 + 400 * i: "12"[i % 2] for i in range(n_events)}
    return _csv(path, markers, n=300 + 400 * n_events + 300)


def test_build_estimator_aligns_per_subject_for_batch_and_with_one_step_for_fit():
    from sigformer.estimators import SignalClassifier
    from sigformer.stages import EuclideanAlignment
    from sigformer.tasks.classify import build_estimator

    batch = build_estimator(load_task_config({"alignment": "batch"}))
    # the classifier itself, so fit_with_subjects reaches it: per-subject alignment
    assert isinstance(batch, SignalClassifier) and batch.euclidean_alignment is True
    fit = build_estimator(load_task_config({"alignment": "fit"}))
    assert isinstance(fit.steps[0][1], EuclideanAlignment) and fit.steps[0][1].mode == "fit"
    assert fit.steps[-1][1].euclidean_alignment is False
    none = build_estimator(load_task_config({"alignment": "none"}))
    assert isinstance(none, SignalClassifier) and none.euclidean_alignment is False


def test_cv_subjects_by_source(tmp_path):
    from sigformer.recording import Epochs
    from sigformer.tasks.classify import cv_subjects

    ep = Epochs(np.zeros((4, 2, 10)), np.array([0, 1, 0, 1]), 100.0, ["a", "b"], {"x": 0, "y": 1},
                groups=np.array([3, 3, 4, 4]))
    moabb = load_task_config({"data": {"source": "moabb"}})
    np.testing.assert_array_equal(cv_subjects(moabb, ep), [3, 3, 4, 4])
    files = load_task_config({"data": {"source": "files", "files": ["a.csv", "b.csv"]}})
    np.testing.assert_array_equal(cv_subjects(files, ep), [3, 3, 4, 4])
    lines = []
    one_class_files = Epochs(ep.data, np.array([0, 0, 1, 1]), 100.0, ["a", "b"],
                             {"x": 0, "y": 1}, groups=np.array([3, 3, 4, 4]))
    assert cv_subjects(files, one_class_files, lines.append) is None  # pooled, with a note
    assert "file(s) [3, 4] lack a class" in lines[0]
    # eegmmidb groups are runs of one subject; Bonn's are segments: one unit each
    assert cv_subjects(load_task_config({"data": {"source": "eegmmidb"}}), ep) is None
    assert cv_subjects(load_task_config({"data": {"source": "bonn"}}), ep) is None


def test_files_are_cross_validated_apart_and_the_bundle_keeps_its_whole_chain(tmp_path):
    import json

    import yaml

    from sigformer.bundle import Bundle
    from sigformer.cli import main

    files = [str(_two_class_csv(tmp_path / f"person{i}.csv", seed=i)) for i in range(2)]
    cfg = {"name": "two_people", "data": {"source": "files", "files": files},
           "preprocess": [{"stage": "standardize", "window_s": 2.0}],
           "epochs": {"events": ["1", "2"], "tmin": 0.0, "tmax": 1.0},
           "alignment": "batch",
           "model": {"name": "dbconformer",
                     "params": {"emb_size": 8, "num_heads": 2, "depth": 1, "spa_dim": 4,
                                "patch_size": 32}},
           "train": {"max_epochs": 1, "batch_size": 8}, "evaluate": {"n_splits": 2}}
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # each file (person) is cross-validated on its own, not pooled with the other
    assert [r["subject"] for r in metrics["folds"]] == ["0", "0", "1", "1"]
    assert all(r["n_test"] == 6 for r in metrics["folds"])
    assert "transductive" in metrics["alignment_note"]
    bundle = Bundle.load(out / "model")
    # every argument saved: a later version knows this chain ran bias-corrected
    assert bundle.chain == [{"stage": "standardize", "bias_correction": True, "eps": 1e-8,
                             "mode": "running", "window_s": 2.0}]
    assert bundle.build_chain().stages[0].bias_correction is True
    ref = np.asarray(bundle.extra["alignment_reference"])
    assert ref.shape == (4, 4) and np.allclose(ref, ref.T) and (np.diag(ref) > 0).all()
