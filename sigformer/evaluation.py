"""Evaluation protocols following MOABB: within-session k-fold and leave-one-subject-out.

Each returns one row per fold with every metric of :mod:`sigformer.metrics`, plus the pooled
confusion matrix and each fold's training history, so reports can plot learning curves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold

from .estimators import _labels_of, as_trials
from .metrics import METRICS, classification_metrics
from .validation import SignalError, check_labels


@dataclass
class EvaluationResult:
    rows: list[dict] = field(default_factory=list)
    classes: list = field(default_factory=list)
    confusion: np.ndarray | None = None
    histories: list = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, float]]:
        """Mean and standard deviation of each metric over folds (and seeds)."""
        out = {}
        for metric in METRICS:
            values = [r[metric] for r in self.rows if metric in r]
            if values:
                out[metric] = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values))}
        return out

    def to_dict(self) -> dict:
        return {"folds": self.rows, "summary": self.summary(), "classes": list(self.classes),
                "confusion_matrix": None if self.confusion is None else self.confusion.tolist()}


def final_step(estimator):
    """The last step of an sklearn ``Pipeline`` (or the estimator itself)."""
    return estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator


def _run_splits(estimator, X, y, splits, meta: dict, result: EvaluationResult, seed,
                progress: Callable | None = None) -> None:
    for fold, (train, test) in enumerate(splits):
        est = clone(estimator)
        if seed is not None and "random_state" in est.get_params():
            est.set_params(random_state=seed)
        est.fit(X[train], y[train])
        proba = est.predict_proba(X[test])
        pred = est.classes_[proba.argmax(1)]
        row = {**meta, "fold": fold, "seed": seed, "n_train": len(train), "n_test": len(test)}
        row.update(classification_metrics(y[test], pred, proba, est.classes_))
        result.rows.append(row)
        if progress is not None:
            where = ", ".join(f"{k} {v}" for k, v in meta.items())
            progress(f"      seed {seed}, {where}, fold {fold + 1}/{len(splits)}: "
                     f"accuracy {row['accuracy']:.3f}")
        cm = confusion_matrix(y[test], pred, labels=result.classes)
        result.confusion = cm if result.confusion is None else result.confusion + cm
        history = getattr(final_step(est), "history_", None)
        if history is not None:
            result.histories.append(history.epochs)


def _prepare(X, y):
    y = _labels_of(X, y)
    X, _ = as_trials(X)
    return X, check_labels(y, len(X))


def within_session_cv(estimator, X, y=None, *, sessions=None, n_splits: int = 5,
                      seeds=(0,), shuffle: bool = True,
                      progress: Callable | None = None) -> EvaluationResult:
    """Stratified k-fold inside each session (MOABB ``WithinSessionEvaluation``).

    ``shuffle=False`` gives the contiguous folds of DBConformer's CV script.
    """
    X, y = _prepare(X, y)
    sessions = np.zeros(len(y), int) if sessions is None else np.asarray(sessions)
    result = EvaluationResult(classes=sorted(np.unique(y).tolist()))
    for seed in seeds:
        for session in np.unique(sessions):
            idx = np.flatnonzero(sessions == session)
            counts = np.unique(y[idx], return_counts=True)[1]
            if counts.min() < n_splits:
                raise SignalError(f"session {session!r} has a class with {counts.min()} trials, "
                                  f"fewer than n_splits={n_splits}")
            cv = StratifiedKFold(n_splits, shuffle=shuffle,
                                 random_state=seed if shuffle else None)
            splits = [(idx[a], idx[b]) for a, b in cv.split(idx, y[idx])]
            _run_splits(estimator, X, y, splits, {"session": str(session)}, result, seed,
                        progress)
    return result


def leave_one_subject_out(estimator, X, y=None, *, subjects, seeds=(0,),
                          progress: Callable | None = None) -> EvaluationResult:
    """Train on all subjects but one, test on the held-out one (MOABB cross-subject)."""
    X, y = _prepare(X, y)
    subjects = np.asarray(subjects)
    if len(subjects) != len(y):
        raise SignalError(f"subjects has {len(subjects)} entries for {len(y)} trials")
    if len(np.unique(subjects)) < 2:
        raise SignalError("leave-one-subject-out needs at least 2 subjects")
    result = EvaluationResult(classes=sorted(np.unique(y).tolist()))
    for seed in seeds:
        for train, test in LeaveOneGroupOut().split(X, y, subjects):
            meta = {"subject": str(subjects[test][0])}
            _run_splits(estimator, X, y, [(train, test)], meta, result, seed, progress)
    return result
