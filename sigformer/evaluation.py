"""Evaluation protocols following MOABB: within-session k-fold, cross-session and
cross-subject, plus a few-shot calibration curve for a new subject.

Each returns one row per fold with every metric of :mod:`sigformer.metrics`, plus the pooled
confusion matrix and each fold's training history, so reports can plot learning curves.
Estimators whose ``fit``/``predict_proba`` take ``subjects=`` (e.g. a
:class:`~sigformer.estimators.SignalClassifier` with ``euclidean_alignment=True``) receive the
subject of every trial, so alignment is per subject on both sides of a split. Test trials
aligned with their own mean are a transductive protocol (the test fold's unlabelled
statistics shape its input), as DBConformer's; ``few_shot_curve`` aligns the target with its
calibration pool instead.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import (
    GroupKFold,
    LeaveOneGroupOut,
    StratifiedGroupKFold,
    StratifiedKFold,
)

from .estimators import as_trials, labels_of
from .metrics import METRICS, classification_metrics
from .stages import trial_covariances
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


def _takes_subjects(method) -> bool:
    return _takes(method, "subjects")


def fit_with_subjects(est, X, y, subjects=None):
    """``est.fit(X, y)``, passing ``subjects`` to the final step when it accepts them."""
    last = final_step(est)
    if subjects is None or not _takes_subjects(last.fit):
        return est.fit(X, y)
    if hasattr(est, "steps"):
        return est.fit(X, y, **{f"{est.steps[-1][0]}__subjects": subjects})
    return est.fit(X, y, subjects=subjects)


def _takes(method, name: str) -> bool:
    try:
        return name in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def predict_proba_with_subjects(est, X, subjects=None, reference=None) -> np.ndarray:
    """``est.predict_proba(X)``, passing ``subjects`` and an alignment ``reference`` to the
    final step when it accepts them."""
    method = final_step(est).predict_proba
    kwargs = {}
    if subjects is not None and _takes_subjects(method):
        kwargs["subjects"] = subjects
    if reference is not None and _takes(method, "reference"):
        kwargs["reference"] = reference
    return est.predict_proba(X, **kwargs)


def set_random_state(est, seed: int) -> None:
    """Seed every step: ``random_state`` and, inside a ``Pipeline`` or any meta-estimator,
    every ``<step>__random_state`` (a Pipeline itself has no ``random_state``)."""
    names = [k for k in est.get_params() if k == "random_state" or
             k.endswith("__random_state")]
    if names:
        est.set_params(**dict.fromkeys(names, seed))


def _run_splits(estimator, X, y, splits, meta: dict, result: EvaluationResult, seed,
                progress: Callable | None = None, subjects=None) -> None:
    for fold, (train, test) in enumerate(splits):
        est = clone(estimator)
        if seed is not None:
            set_random_state(est, seed)
        groups = (None, None) if subjects is None else (subjects[train], subjects[test])
        fit_with_subjects(est, X[train], y[train], groups[0])
        proba = predict_proba_with_subjects(est, X[test], groups[1])
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
    y = labels_of(X, y)
    X, _ = as_trials(X)
    return X, check_labels(y, len(X))


def within_session_cv(estimator, X, y=None, *, sessions=None, subjects=None, recordings=None,
                      n_splits: int = 5, seeds=(0,), shuffle: bool = True,
                      progress: Callable | None = None) -> EvaluationResult:
    """Stratified k-fold inside each session of each subject (MOABB
    ``WithinSessionEvaluation``): every fold trains and tests on one (subject, session).

    Session names repeat across subjects (MOABB's ``"0train"``), so give ``subjects`` when
    the trials come from several people; without it all trials are one subject's. Each
    row names its ``subject`` and ``session``. ``shuffle=False`` gives the contiguous folds
    of DBConformer's CV script.

    ``recordings``: the recording each trial was cut from, when trials are windows of longer
    recordings (e.g. 5 s windows of a 23.6 s Bonn segment). The folds then keep each
    recording's windows together (stratified *group* k-fold): neighbouring windows of one
    recording are near copies of each other, and a test window whose recording was trained
    on measures memory, not generalisation.
    """
    X, y = _prepare(X, y)
    sessions = (np.zeros(len(y), int) if sessions is None
                else _check_groups("sessions", sessions, len(y)))
    subjects = (np.zeros(len(y), int) if subjects is None
                else _check_groups("subjects", subjects, len(y)))
    if recordings is not None:
        recordings = _check_groups("recordings", recordings, len(y))
    result = EvaluationResult(classes=sorted(np.unique(y).tolist()))
    units = [(subject, session) for subject in np.unique(subjects)
             for session in np.unique(sessions[subjects == subject])]
    for seed in seeds:
        for subject, session in units:
            idx = np.flatnonzero((subjects == subject) & (sessions == session))
            where = f"subject {subject}, session {session}"
            splits = session_splits(idx, y, None if recordings is None else recordings[idx],
                                    result.classes, n_splits=n_splits, shuffle=shuffle,
                                    seed=seed, where=where)
            meta = {"subject": str(subject), "session": str(session)}
            _run_splits(estimator, X, y, splits, meta, result, seed, progress,
                        subjects=subjects)
    return result


def session_splits(idx: np.ndarray, y: np.ndarray, recordings: np.ndarray | None,
                   classes: Sequence, *, n_splits: int, shuffle: bool, seed: int | None,
                   where: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(train, test)`` folds (indices into the full arrays) of the trials ``idx`` of
    one session: stratified k-fold, grouped by ``recordings`` (one entry per trial of
    ``idx``) when given. A ``SignalError`` names a class missing from the session or with too
    few trials (or recordings) for ``n_splits`` folds."""
    labels = y[idx]
    present, counts = np.unique(labels, return_counts=True)
    if len(present) < len(classes):
        raise SignalError(f"{where} lacks class(es) "
                          f"{sorted(set(classes) - set(present.tolist()))}: "
                          f"within-session CV needs every class in every session")
    if counts.min() < n_splits:
        raise SignalError(f"{where} has a class with {counts.min()} trials, fewer "
                          f"than n_splits={n_splits}")
    random_state = seed if shuffle else None
    if recordings is None:
        cv = StratifiedKFold(n_splits, shuffle=shuffle, random_state=random_state)
        return [(idx[a], idx[b]) for a, b in cv.split(idx, labels)]
    per_class = {c: len(np.unique(recordings[labels == c])) for c in present.tolist()}
    short = {c: n for c, n in per_class.items() if n < n_splits}
    if short:
        raise SignalError(f"{where}: class(es) {short} come from fewer recordings than "
                          f"n_splits={n_splits}; folds keep each recording's windows "
                          f"together, so every class needs at least {n_splits} recordings "
                          f"(lower evaluate.n_splits)")
    cv = StratifiedGroupKFold(n_splits, shuffle=shuffle, random_state=random_state)
    return [(idx[a], idx[b]) for a, b in cv.split(idx, labels, recordings)]


def _check_groups(name: str, groups, n: int) -> np.ndarray:
    if groups is None:
        raise SignalError(f"{name} is required: one entry per trial")
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) != n:
        raise SignalError(f"{name} has {len(groups)} entries for {n} trials")
    return groups


def cross_subject(estimator, X, y=None, *, subjects, n_splits: int | None = None, seeds=(0,),
                  progress: Callable | None = None) -> EvaluationResult:
    """Train on some subjects, test on unseen ones (MOABB ``CrossSubjectEvaluation``):
    leave-one-subject-out, or ``GroupKFold(n_splits)`` over subjects when given."""
    X, y = _prepare(X, y)
    subjects = _check_groups("subjects", subjects, len(y))
    n_subjects = len(np.unique(subjects))
    if n_subjects < 2:
        raise SignalError("cross-subject evaluation needs at least 2 subjects")
    if n_splits is not None and not 2 <= n_splits <= n_subjects:
        raise SignalError(f"n_splits must be between 2 and the number of subjects "
                          f"({n_subjects}), got {n_splits}")
    cv = LeaveOneGroupOut() if n_splits is None else GroupKFold(n_splits)
    result = EvaluationResult(classes=sorted(np.unique(y).tolist()))
    for seed in seeds:
        for train, test in cv.split(X, y, subjects):
            meta = {"subject": ",".join(str(s) for s in np.unique(subjects[test]))}
            _run_splits(estimator, X, y, [(train, test)], meta, result, seed, progress,
                        subjects=subjects)
    return result


def leave_one_subject_out(estimator, X, y=None, *, subjects, seeds=(0,),
                          progress: Callable | None = None) -> EvaluationResult:
    """Train on all subjects but one, test on the held-out one (MOABB cross-subject)."""
    try:
        return cross_subject(estimator, X, y, subjects=subjects, seeds=seeds, progress=progress)
    except SignalError as err:
        if "at least 2 subjects" in str(err):
            raise SignalError("leave-one-subject-out needs at least 2 subjects") from None
        raise


def cross_session(estimator, X, y=None, *, sessions, subjects=None, seeds=(0,),
                  progress: Callable | None = None) -> EvaluationResult:
    """Within each subject, train on all sessions but one and test on the held-out session
    (MOABB ``CrossSessionEvaluation``)."""
    X, y = _prepare(X, y)
    sessions = _check_groups("sessions", sessions, len(y))
    subjects = (np.zeros(len(y), int) if subjects is None
                else _check_groups("subjects", subjects, len(y)))
    result = EvaluationResult(classes=sorted(np.unique(y).tolist()))
    for seed in seeds:
        for subject in np.unique(subjects):
            idx = np.flatnonzero(subjects == subject)
            if len(np.unique(sessions[idx])) < 2:
                raise SignalError(f"subject {subject!r} has one session; cross-session "
                                  "evaluation needs at least 2 per subject")
            for train, test in LeaveOneGroupOut().split(idx, y[idx], sessions[idx]):
                meta = {"subject": str(subject), "session": str(sessions[idx][test][0])}
                _run_splits(estimator, X, y, [(idx[train], idx[test])], meta, result, seed,
                            progress, subjects=sessions)
    return result


# --- few-shot calibration -------------------------------------------------------------------

@dataclass
class FewShotResult:
    """Accuracy on a new subject vs calibration trials per class (one row per shot count,
    repeat and target subject)."""

    rows: list[dict] = field(default_factory=list)

    def curve(self, metric: str = "accuracy") -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        for k in sorted({r["shots"] for r in self.rows}):
            values = [r[metric] for r in self.rows if r["shots"] == k]
            out[k] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
        return out

    def to_dict(self) -> dict:
        return {"rows": self.rows, "curve": {str(k): v for k, v in self.curve().items()}}


def _calibration_order(y: np.ndarray, classes, rng: np.random.Generator) -> dict:
    return {c: rng.permutation(np.flatnonzero(y == c)) for c in classes}


def _pool_reference(model, X_pool: np.ndarray):
    """The alignment reference of a target subject: the mean covariance of its calibration
    pool, as the final step sees it; ``None`` when the final step does no Euclidean
    alignment (or takes no reference) or the pool is empty."""
    last = final_step(model)
    if not (getattr(last, "euclidean_alignment", False) and _takes(last.predict_proba,
                                                                   "reference")):
        return None
    if not len(X_pool):
        return None
    if hasattr(model, "steps"):
        X_pool = model[:-1].transform(X_pool)
    return trial_covariances(np.asarray(X_pool, dtype=np.float64)).mean(0)


def _adapt(pretrained, estimator, X_src, y_src, s_src, X_cal, y_cal, s_cal, fine_tune_epochs,
           new_head: bool, reference=None, fine_tune_lr: float | None = None):
    """Fine-tune a copy of the pretrained model, or, for estimators without ``fine_tune``
    (classical pipelines), refit on the source trials plus the calibration trials."""
    if hasattr(final_step(pretrained), "fine_tune"):
        model = copy.deepcopy(pretrained)
        if hasattr(model, "steps"):  # the final step was trained on what the others output
            X_cal = model[:-1].transform(X_cal)
        tune = final_step(model).fine_tune
        extra = {"reference": reference} if reference is not None and _takes(
            tune, "reference") else {}
        if fine_tune_lr is not None:
            extra["lr"] = fine_tune_lr
        tune(X_cal, y_cal, subjects=s_cal, max_epochs=fine_tune_epochs, new_head=new_head,
             **extra)
        return model
    model = clone(estimator)
    return fit_with_subjects(model, np.concatenate([X_src, X_cal]),
                             np.concatenate([y_src, y_cal]), np.concatenate([s_src, s_cal]))


def few_shot_curve(estimator, X, y=None, *, subjects, targets=None,
                   shots: Sequence[int] = (0, 1, 2, 5, 10), n_repeats: int = 3,
                   fine_tune_epochs: int = 20, new_head: bool = False, seed: int = 0,
                   progress: Callable | None = None,
                   fine_tune_lr: float | None = None) -> FewShotResult:
    """Accuracy on each target subject after calibrating with ``k`` trials per class.

    The estimator is trained once on the other subjects; for every ``k`` in ``shots`` a copy
    is fine-tuned (``fine_tune``, optionally with a new head) on ``k`` trials per class of the
    target and tested on the target's remaining trials. The test trials are the same for every
    ``k`` of a repeat (the calibration pool is the first ``max(shots)`` trials per class of a
    random order), so the curve compares like with like. ``k = 0`` is the pretrained model as
    is. Estimators without ``fine_tune`` are refitted on the source plus calibration trials.
    ``fine_tune_lr``: the fine-tune's learning rate (None: the estimator's own). A few trials
    at the training rate can undo what the source subjects taught (the Muse P300 curve fell
    from 0.55 balanced accuracy at 0 shots to chance); a tenth of it is the usual choice.

    With Euclidean alignment (a final step with ``euclidean_alignment`` whose ``fine_tune``
    and ``predict_proba`` take ``reference=``), the target's calibration and test trials are
    all whitened by one reference: the mean covariance of the calibration pool (its labels
    unused, as a calibration recording's would be), the same for every ``k``; the test
    trials' own statistics are never used. With ``shots=(0,)`` alone there is no pool, and
    the test trials are aligned with their own mean (transductive).
    """
    X, y = _prepare(X, y)
    subjects = _check_groups("subjects", subjects, len(y))
    shots = sorted({int(k) for k in shots})
    if not shots or shots[0] < 0:
        raise SignalError(f"shots must be non-negative trial counts per class, got {shots}")
    classes = np.unique(y)
    result = FewShotResult()
    for target in (np.unique(subjects) if targets is None else targets):
        tgt = subjects == target
        if not tgt.any() or tgt.all():
            raise SignalError(f"target {target!r} must be one of several subjects; subjects: "
                              f"{np.unique(subjects).tolist()}")
        smallest = min(int((y[tgt] == c).sum()) for c in classes)
        if shots[-1] >= smallest:
            raise SignalError(f"shots up to {shots[-1]} per class leave no test trial for "
                              f"subject {target!r}, whose smallest class has {smallest} trials")
        X_src, y_src, s_src = X[~tgt], y[~tgt], subjects[~tgt]
        pretrained = fit_with_subjects(clone(estimator), X_src, y_src, s_src)
        X_t, y_t, s_t = X[tgt], y[tgt], subjects[tgt]
        for repeat in range(n_repeats):
            order = _calibration_order(y_t, classes, np.random.default_rng(seed + repeat))
            test = np.concatenate([o[shots[-1]:] for o in order.values()])
            pool = np.concatenate([o[:shots[-1]] for o in order.values()])
            reference = _pool_reference(pretrained, X_t[pool])
            for k in shots:
                cal = np.concatenate([o[:k] for o in order.values()])
                model = pretrained if k == 0 else _adapt(
                    pretrained, estimator, X_src, y_src, s_src, X_t[cal], y_t[cal], s_t[cal],
                    fine_tune_epochs, new_head, reference, fine_tune_lr)
                proba = predict_proba_with_subjects(model, X_t[test], s_t[test], reference)
                pred = model.classes_[proba.argmax(1)]
                row = {"target": str(target), "repeat": repeat, "shots": k,
                       "n_test": len(test)}
                row.update(classification_metrics(y_t[test], pred, proba, model.classes_))
                result.rows.append(row)
                if progress is not None:
                    progress(f"      target {target}, repeat {repeat}, {k} shot(s): "
                             f"accuracy {row['accuracy']:.3f}")
    return result
