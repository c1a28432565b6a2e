import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from sigformer import SignalError
from sigformer.evaluation import leave_one_subject_out, within_session_cv
from sigformer.metrics import classification_metrics


class _PowerClassifier(ClassifierMixin, BaseEstimator):
    """Log-variance of channel 0 vs channel 1: a fast, real classifier for protocol tests."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        feat = self._feature(X)
        self.threshold_ = (feat[y == self.classes_[0]].mean() + feat[y == self.classes_[1]]
                           .mean()) / 2
        self.sign_ = np.sign(feat[y == self.classes_[1]].mean() - self.threshold_)
        return self

    @staticmethod
    def _feature(X):
        return np.log(X[:, 0].var(-1)) - np.log(X[:, 1].var(-1))

    def predict_proba(self, X):
        p = 1 / (1 + np.exp(-self.sign_ * (self._feature(X) - self.threshold_) * 5))
        return np.column_stack([1 - p, p])


def _data(rng, n=60):
    X = rng.standard_normal((n, 2, 100))
    y = np.arange(n) % 2
    X[y == 1, 0] *= 2
    return X, y


def test_metrics_match_sklearn(rng):
    y = rng.integers(0, 3, 50)
    proba = rng.dirichlet(np.ones(3), 50)
    pred = proba.argmax(1)
    m = classification_metrics(y, pred, proba, [0, 1, 2])
    assert m["kappa"] == pytest.approx(cohen_kappa_score(y, pred))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"))
    with pytest.raises(ValueError, match="unknown metric"):
        classification_metrics(y, pred, which=["f1"])


def test_within_session_cv(rng):
    X, y = _data(rng)
    sessions = np.repeat(["s1", "s2"], 30)
    res = within_session_cv(_PowerClassifier(), X, y, sessions=sessions, n_splits=3, seeds=(0, 1))
    assert len(res.rows) == 2 * 2 * 3
    assert {r["session"] for r in res.rows} == {"s1", "s2"}
    summary = res.summary()
    assert summary["accuracy"]["mean"] > 0.8 and summary["roc_auc"]["mean"] > 0.9
    assert res.confusion.sum() == 2 * len(y)  # every trial tested once per seed
    with pytest.raises(SignalError, match="fewer than n_splits"):
        within_session_cv(_PowerClassifier(), X[:6], y[:6], n_splits=5)


def test_leave_one_subject_out(rng):
    X, y = _data(rng)
    subjects = np.repeat([1, 2, 3], 20)
    res = leave_one_subject_out(_PowerClassifier(), X, y, subjects=subjects)
    assert [r["subject"] for r in res.rows] == ["1", "2", "3"]
    assert all(r["n_test"] == 20 for r in res.rows)
    with pytest.raises(SignalError, match="at least 2 subjects"):
        leave_one_subject_out(_PowerClassifier(), X, y, subjects=np.ones(60))
