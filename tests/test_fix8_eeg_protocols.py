"""EEG evaluation protocols of ``task: classify``: within-session folds keep the windows of
one Bonn segment together; leave-one-subject-out is refused where the data hold one subject
(eegmmidb's groups are runs, Bonn's are segments)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from sigformer.evaluation import within_session_cv
from sigformer.recording import Epochs
from sigformer.tasks import load_task_config
from sigformer.tasks.classify import load_epochs, loso_subjects, run_eeg
from sigformer.tasks.config import PipelineConfigError
from sigformer.tasks.registry import RunContext

N_SAMPLES = 4097  # a Bonn segment


def _recording_ids(X: np.ndarray) -> set[int]:
    """Segment ``i`` is ``i`` plus small noise: each window's mean names its recording."""
    return set(np.round(np.asarray(X, dtype=np.float64).mean(axis=(1, 2))).astype(int).tolist())


class _RecordingSpy(ClassifierMixin, BaseEstimator):
    """Predicts uniformly and records, per fold, the recordings trained and tested on
    (class-level: the protocols clone the estimator)."""

    folds: list[tuple[set[int], set[int]]] = []

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.train_ids_ = _recording_ids(X)
        self.module_ = torch.nn.Linear(1, 1)  # run_eeg counts the final model's parameters
        return self

    def predict_proba(self, X):
        _RecordingSpy.folds.append((self.train_ids_, _recording_ids(X)))
        return np.full((len(X), len(self.classes_)), 1 / len(self.classes_))


def _bonn_npz(path: Path, per_set: int = 6) -> Path:
    rng = np.random.default_rng(0)
    letters = np.array(["Z"] * per_set + ["S"] * per_set)
    X = np.arange(len(letters))[:, None] + 0.01 * rng.standard_normal((len(letters), N_SAMPLES))
    np.savez(path, X=X, set_label=letters, fs=173.61)
    return path


def _bonn_config(path: Path, **evaluate):
    return load_task_config({"name": "bonn", "data": {"source": "bonn", "path": str(path),
                                                      "bonn": {"window_s": 5.0}},
                             "evaluate": {"protocol": "within_session", "n_splits": 3,
                                          **evaluate}})


def test_bonn_windows_of_one_segment_never_straddle_a_fold(tmp_path, monkeypatch):
    import sigformer.tasks.classify as classify

    cfg = _bonn_config(_bonn_npz(tmp_path / "bonn.npz"), seeds=[0, 1])
    epochs = load_epochs(cfg)
    assert len(epochs) == 12 * 4 and _recording_ids(epochs.data) == set(range(12))
    monkeypatch.setattr(classify, "build_estimator", lambda cfg, spec=None: _RecordingSpy())
    _RecordingSpy.folds = []
    lines: list[str] = []
    report = run_eeg(cfg, RunContext(tmp_path, tmp_path, lines.append, main=False))
    assert len(_RecordingSpy.folds) == 3 * 2  # 3 folds x 2 seeds
    tested = set()
    for train, test in _RecordingSpy.folds:
        assert train and test and not train & test  # no segment on both sides
        tested |= test
    assert tested == set(range(12))
    assert "48 windows cut from 12 bonn segments" in report["cv_folds"]
    assert any("folds grouped by recording" in line for line in lines)


def test_the_ungrouped_split_shares_segments_between_train_and_test():
    """What the pipeline did before: stratified folds over windows put windows of one
    segment on both sides (the spy sees it), so the check above can fail."""
    X = np.repeat(np.arange(12.0), 4)[:, None, None] * np.ones((1, 1, 8))
    y = np.repeat(np.arange(12) % 2, 4)
    _RecordingSpy.folds = []
    within_session_cv(_RecordingSpy(), X, y, n_splits=3)
    assert any(train & test for train, test in _RecordingSpy.folds)
    _RecordingSpy.folds = []
    within_session_cv(_RecordingSpy(), X, y, recordings=np.repeat(np.arange(12), 4),
                      n_splits=3, shuffle=False)
    assert not any(train & test for train, test in _RecordingSpy.folds)


def test_grouped_folds_need_enough_recordings_per_class():
    from sigformer.validation import SignalError

    X = np.zeros((16, 1, 8))
    y = np.repeat([0, 0, 1, 1], 4)  # two recordings per class, four windows each
    with pytest.raises(SignalError, match=r"class\(es\) \{0: 2, 1: 2\} come from fewer "
                                          r"recordings than n_splits=3"):
        within_session_cv(_RecordingSpy(), X, y, recordings=np.repeat(np.arange(4), 4),
                          n_splits=3)
    within_session_cv(_RecordingSpy(), X, y, n_splits=3)  # enough windows ungrouped


def test_whole_bonn_segments_and_event_trials_are_not_grouped(tmp_path):
    from sigformer.tasks.classify import cv_recordings

    path = _bonn_npz(tmp_path / "bonn.npz")
    whole = load_task_config({"data": {"source": "bonn", "path": str(path),
                                       "bonn": {"window_s": None}}})
    assert cv_recordings(whole, load_epochs(whole)) is None  # one epoch per segment
    ep = Epochs(np.zeros((4, 2, 10)), np.array([0, 1, 0, 1]), 100.0, ["a", "b"],
                {"x": 0, "y": 1}, groups=np.array([4, 4, 8, 8]))
    eegmmidb = load_task_config({"data": {"source": "eegmmidb"}})
    assert cv_recordings(eegmmidb, ep) is None  # trials of a run, as MOABB splits them


# --- leave-one-subject-out ------------------------------------------------------------------

def _loso(data: dict):
    return load_task_config({"data": data, "evaluate": {"protocol": "leave_one_subject_out"}})


@pytest.mark.parametrize("data, found", [
    ({"source": "eegmmidb", "path": "/nonexistent", "eegmmidb": {"subject": 7}},
     r"one subject, S007 .*grouped by run \[4, 8, 12\].*leave-one-run-out"),
    ({"source": "simulator"}, "one simulated subject"),
    ({"source": "bonn", "path": "/nonexistent"}, "leave-one-segment-out"),
    ({"source": "moabb", "moabb": {"subjects": [3]}}, r"subject\(s\) \[3\]"),
])
def test_loso_with_one_subject_is_refused_before_loading(tmp_path, data, found):
    cfg = _loso(data)
    # refused before any data is read (/nonexistent would fail otherwise)
    with pytest.raises(PipelineConfigError, match=r"leave_one_subject_out needs at least 2 "
                                                  r"subjects; .*" + found + r".*within_session"
                                                  r".*moabb"):
        run_eeg(cfg, RunContext(tmp_path, tmp_path, lambda _: None, main=False))


def test_loso_subjects_by_source():
    ep = Epochs(np.zeros((4, 2, 10)), np.array([0, 1, 0, 1]), 100.0, ["a", "b"],
                {"x": 0, "y": 1}, groups=np.array([3, 3, 4, 4]))
    moabb = _loso({"source": "moabb"})
    assert loso_subjects(moabb) is None  # all subjects: known only once loaded
    np.testing.assert_array_equal(loso_subjects(moabb, ep), [3, 3, 4, 4])
    lines: list[str] = []
    files = _loso({"source": "files", "files": ["a.csv", "b.csv"]})
    np.testing.assert_array_equal(loso_subjects(files, ep, lines.append), [3, 3, 4, 4])
    assert "each of the 2 files is taken as one subject" in lines[0]
    one = Epochs(ep.data, ep.labels, 100.0, ["a", "b"], {"x": 0, "y": 1},
                 groups=np.array([3, 3, 3, 3]))
    with pytest.raises(PipelineConfigError, match=r"the moabb data hold subject\(s\) \[3\]"):
        loso_subjects(moabb, one)
    with pytest.raises(PipelineConfigError, match=r"one file \(\['a.csv'\]\)"):
        loso_subjects(_loso({"source": "files", "files": ["a.csv"]}))
    with pytest.raises(PipelineConfigError, match="leave-one-run-out"):
        loso_subjects(_loso({"source": "eegmmidb"}), ep)  # its groups are runs
