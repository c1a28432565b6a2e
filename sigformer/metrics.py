"""Classification metrics following MOABB conventions (accuracy, balanced accuracy, Cohen's
kappa, ROC-AUC: binary on the positive-class probability, one-vs-rest macro otherwise)."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

METRICS = ("accuracy", "balanced_accuracy", "kappa", "roc_auc")


def roc_auc(y_true, proba: np.ndarray, classes) -> float:
    classes = np.asarray(classes)
    if proba.shape[1] != len(classes):
        raise ValueError(f"proba has {proba.shape[1]} columns for {len(classes)} classes")
    if len(np.unique(y_true)) < 2:
        return float("nan")  # undefined with one class present
    y_true, proba = np.asarray(y_true), np.asarray(proba, dtype=float)
    if len(classes) == 2:
        return float(skm.roc_auc_score(y_true == classes[1], proba[:, 1]))
    # one-vs-rest macro over the classes this fold holds (sklearn's ovr macro average when
    # all are present); a fold without one class (a held-out subject that never saw it)
    # would otherwise be NaN as a whole
    present = [i for i, c in enumerate(classes) if np.any(y_true == c)]
    return float(np.mean([skm.roc_auc_score(y_true == classes[i], proba[:, i])
                          for i in present]))


def classification_metrics(y_true, y_pred, proba: np.ndarray | None = None, classes=None,
                           which=METRICS) -> dict[str, float]:
    """The requested metrics as a dict of floats (``roc_auc`` needs ``proba`` and ``classes``)."""
    unknown = sorted(set(which) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; available: {list(METRICS)}")
    out: dict[str, float] = {}
    if "accuracy" in which:
        out["accuracy"] = float(skm.accuracy_score(y_true, y_pred))
    if "balanced_accuracy" in which:
        out["balanced_accuracy"] = float(skm.balanced_accuracy_score(y_true, y_pred))
    if "kappa" in which:
        out["kappa"] = float(skm.cohen_kappa_score(y_true, y_pred))
    if "roc_auc" in which and proba is not None and classes is not None:
        out["roc_auc"] = roc_auc(y_true, proba, classes)
    return out
