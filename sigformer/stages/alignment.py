"""Euclidean alignment (He & Wu 2019) as an sklearn transformer: fit, per batch, online."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ..validation import SignalError, check_array
from .base import NotConfiguredError, keep_float_dtype

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
        and test folds separately; needs several trials per call, and is transductive: the
        test fold's unlabelled statistics shape its own input). ``"online"`` aligns each
        trial with the mean of the trials seen so far, itself included (DBConformer's
        incremental target alignment, and what a live BCI can do); the running mean persists
        across calls until :meth:`reset`.
    prior_trials : online mode only. After ``fit`` (or :meth:`from_reference`) the running
        mean starts at the training reference, counted as ``prior_trials`` trials (default
        ``n_channels + 1``), so the first window is not whitened by itself alone (one trial
        alone comes out with an identity covariance: all its spatial power gone); new
        trials take over as they accumulate. ``0``, or an unfitted stage, starts from
        nothing, as before.
    """

    _MODES = ("fit", "batch", "online")

    def __init__(self, mode: str = "fit", prior_trials: int | None = None):
        self.mode = mode
        self.prior_trials = prior_trials

    def _check_mode(self) -> None:
        if self.mode not in self._MODES:
            raise ValueError(f"mode must be one of {self._MODES}, got {self.mode!r}")
        p = self.prior_trials
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, np.integer))
                              or p < 0):
            raise ValueError(f"prior_trials must be a whole number >= 0 or None, got {p!r}")

    def fit(self, X, y=None):
        self._check_mode()
        X = check_array(X, ndim=3)
        return self._set_reference(trial_covariances(X).mean(0))

    @classmethod
    def from_reference(cls, reference, mode: str = "online",
                       prior_trials: int | None = None) -> EuclideanAlignment:
        """A fitted stage from a stored reference covariance (e.g. a bundle's training
        reference), as ``fit`` on the trials it came from would give."""
        ea = cls(mode=mode, prior_trials=prior_trials)
        ea._check_mode()
        ref = np.asarray(reference, dtype=float)
        if ref.ndim != 2 or ref.shape[0] != ref.shape[1] or not np.isfinite(ref).all():
            raise SignalError(f"an alignment reference is a finite square (n_channels, "
                              f"n_channels) covariance, got shape {ref.shape}")
        return ea._set_reference(ref)

    def _set_reference(self, reference: np.ndarray) -> EuclideanAlignment:
        self.n_channels_ = reference.shape[0]
        if self.mode == "online":  # the training mean seeds the running mean (prior_trials)
            self.prior_ = reference
            return self.reset()
        self.reference_ = reference
        self.whitener_ = inverse_sqrtm(reference)
        return self

    def _prior_weight(self) -> int:
        prior = getattr(self, "prior_", None)
        if prior is None:
            return 0
        return len(prior) + 1 if self.prior_trials is None else int(self.prior_trials)

    def reset(self) -> EuclideanAlignment:
        """Forget the trials seen; online mode returns to the training prior, if any."""
        for attr in ("reference_", "whitener_", "n_seen_"):
            self.__dict__.pop(attr, None)
        weight = self._prior_weight() if self.mode == "online" else 0
        if weight:
            self.reference_, self.n_seen_ = self.prior_.copy(), weight
        return self

    def transform(self, X):
        self._check_mode()
        X = check_array(X, ndim=3)
        n_ch = getattr(self, "n_channels_", X.shape[1])
        if X.shape[1] != n_ch:
            raise SignalError(f"EuclideanAlignment was fitted on {n_ch} channels, got {X.shape[1]}")
        # whitening is computed in float64; the result keeps X's float dtype, as stages do
        if self.mode == "batch":
            out = np.einsum("cd,ndt->nct", inverse_sqrtm(trial_covariances(X).mean(0)), X)
        elif self.mode == "online":
            out = self._transform_online(X)
        elif not hasattr(self, "whitener_"):
            raise NotConfiguredError("EuclideanAlignment(mode='fit') is not fitted; call fit(X) "
                                     "first (or use mode='batch' / 'online')")
        else:
            out = np.einsum("cd,ndt->nct", self.whitener_, X)
        return keep_float_dtype(out, X.dtype)

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
