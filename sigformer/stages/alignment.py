"""Euclidean alignment (He & Wu 2019) as an sklearn transformer: fit, per batch, online."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ..validation import SignalError, check_array

# --- Euclidean alignment ----------------------------------------------------------------

def inverse_sqrtm(cov: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(cov)
    floor = max(vals.max(), 0.0) * 1e-10 + 1e-30  # guard rank-deficient references
    return (vecs / np.sqrt(np.maximum(vals, floor))) @ vecs.T


def trial_covariances(X: np.ndarray) -> np.ndarray:
    """Per-trial sample covariance (centred, ``n_times - 1``), as ``np.cov`` in DBConformer's EA."""
    Xc = X - X.mean(-1, keepdims=True)
    return np.einsum("nct,ndt->ncd", Xc, Xc) / max(X.shape[-1] - 1, 1)


class EuclideanAlignment(TransformerMixin, BaseEstimator):
    """Euclidean alignment (He & Wu, IEEE TBME 2019): whiten trials by ``R^-1/2``.

    ``R`` is the arithmetic mean of the trial covariances.

    mode : ``"fit"`` estimates ``R`` from the training trials in ``fit`` and applies it to all
        later data (the usual sklearn semantics). ``"batch"`` aligns every ``transform`` call's
        trials with their own mean covariance (DBConformer's offline protocol aligns the train
        and test folds separately; needs several trials per call). ``"online"`` aligns each
        trial with the mean of the trials seen so far, itself included (DBConformer's
        incremental target alignment, and what a live BCI can do); the running mean persists
        across calls until :meth:`reset`.
    """

    _MODES = ("fit", "batch", "online")

    def __init__(self, mode: str = "fit"):
        self.mode = mode

    def _check_mode(self) -> None:
        if self.mode not in self._MODES:
            raise ValueError(f"mode must be one of {self._MODES}, got {self.mode!r}")

    def fit(self, X, y=None):
        self._check_mode()
        X = check_array(X, ndim=3)
        self.reference_ = trial_covariances(X).mean(0)
        self.whitener_ = inverse_sqrtm(self.reference_)
        self.n_seen_ = len(X)
        self.n_channels_ = X.shape[1]
        if self.mode == "online":  # online alignment starts from scratch on new data
            self.reset()
        return self

    def reset(self) -> EuclideanAlignment:
        for attr in ("reference_", "whitener_", "n_seen_"):
            self.__dict__.pop(attr, None)
        return self

    def transform(self, X):
        self._check_mode()
        X = check_array(X, ndim=3)
        n_ch = getattr(self, "n_channels_", X.shape[1])
        if X.shape[1] != n_ch:
            raise SignalError(f"EuclideanAlignment was fitted on {n_ch} channels, got {X.shape[1]}")
        if self.mode == "batch":
            return np.einsum("cd,ndt->nct", inverse_sqrtm(trial_covariances(X).mean(0)), X)
        if self.mode == "online":
            return self._transform_online(X)
        if not hasattr(self, "whitener_"):
            raise RuntimeError("EuclideanAlignment is not fitted; call fit(X) first")
        return np.einsum("cd,ndt->nct", self.whitener_, X)

    def _transform_online(self, X: np.ndarray) -> np.ndarray:
        covs = trial_covariances(X)
        out = np.empty(X.shape, dtype=float)
        ref = getattr(self, "reference_", np.zeros_like(covs[0]))
        n = getattr(self, "n_seen_", 0)
        for i, cov in enumerate(covs):
            n += 1
            ref = ref + (cov - ref) / n
            out[i] = inverse_sqrtm(ref) @ X[i]
        self.reference_, self.n_seen_ = ref, n
        return out
