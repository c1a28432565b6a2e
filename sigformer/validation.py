"""Input checks shared by every entry point: each error names the problem and the expectation."""

from __future__ import annotations

import numpy as np


class SignalError(ValueError):
    """Signal data is malformed (shape, dtype, non-finite values, sampling rate)."""


def check_array(x, *, ndim: int | tuple[int, ...], name: str = "X",
                allow_complex: bool = False) -> np.ndarray:
    """Return ``x`` as a float (or complex) array after shape/finiteness checks."""
    arr = np.asarray(x)
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in ndims:
        layout = {2: "(n_channels, n_times)", 3: "(n_trials, n_channels, n_times)"}
        expected = " or ".join(layout.get(d, f"{d}-D") for d in ndims)
        raise SignalError(f"{name} must be {expected}, got an array of shape {arr.shape}")
    if arr.size == 0:
        raise SignalError(f"{name} is empty (shape {arr.shape}): at least one sample is needed")
    if np.iscomplexobj(arr) and not allow_complex:
        raise SignalError(f"{name} is complex: Complex data not supported here; this step "
                          "expects real-valued signals (split IQ into two real channels)")
    if not (np.issubdtype(arr.dtype, np.number)):
        raise SignalError(f"{name} must be numeric, got dtype {arr.dtype}")
    check_finite(arr, name)
    return arr


def check_finite(arr: np.ndarray, name: str = "X") -> None:
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.argwhere(~finite)
        n_nan, n_inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
        raise SignalError(
            f"{name} contains {n_nan} NaN and {n_inf} Inf values (first at index "
            f"{tuple(int(i) for i in bad[0])}); clean or interpolate them before this step"
        )


def check_sfreq(sfreq, name: str = "sfreq") -> float:
    try:
        value = float(sfreq)
    except (TypeError, ValueError):
        raise SignalError(f"{name} must be a positive number in Hz, got {sfreq!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise SignalError(f"{name} must be a positive number in Hz, got {sfreq!r}")
    return value


def check_labels(y, n_trials: int) -> np.ndarray:
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise SignalError(f"y must be 1-D with one label per trial, got shape {labels.shape}")
    if len(labels) != n_trials:
        raise SignalError(
            f"X has {n_trials} trials but y has {len(labels)} labels: they must match"
        )
    return labels
