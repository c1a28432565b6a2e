"""Input checks shared by every entry point: each error names the problem and the expectation."""

from __future__ import annotations

import numpy as np


class SignalError(ValueError):
    """Signal data is malformed (shape, dtype, non-finite values, sampling rate)."""


class DataError(ValueError):
    """A data file or folder is missing, unsupported, truncated or corrupt."""


class ScaleWarning(UserWarning):
    """Data on an amplitude scale that cannot be meant: predict data on another scale than
    the training data, or EEG in volts for models that expect microvolts."""


class DataWarning(UserWarning):
    """A data file is readable but suspicious (clipped or flat channels, renamed files)."""


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


UNITS = ("V", "mV", "uV", "a.u.")
_UNIT_ALIASES = {"µV": "uV", "μV": "uV", "microvolts": "uV", "volts": "V", "v": "V"}


def check_unit(unit: str) -> str:
    """A known physical unit (``"V"``, ``"mV"``, ``"uV"``; ``"a.u."`` for unitless data)."""
    unit = _UNIT_ALIASES.get(unit, unit)
    if unit not in UNITS:
        raise SignalError(f"unit must be one of {UNITS}, got {unit!r}")
    return unit


# Typical EEG amplitudes: a standard deviation of ~2-100 µV, i.e. ~2e-6-1e-4 in volts. The
# gap between the ranges leaves z-scored data (standard deviation 1) as "unknown".
_VOLT_RANGE = (1e-7, 5e-3)
_MICROVOLT_RANGE = (1.5, 1e4)


def detect_scale(X) -> str:
    """Guess whether EEG-like data are in volts or microvolts from their amplitude.

    The robust spread (median absolute deviation, per channel, then the median over channels)
    of EEG is ~1e-5 in volts and ~10 in microvolts. Returns ``"V"``, ``"uV"`` or
    ``"unknown"`` (flat, standardised or non-EEG data).
    """
    arr = np.asarray(X, dtype=float)
    if arr.size == 0:
        return "unknown"
    rows = arr.reshape(-1, arr.shape[-1]) if arr.ndim > 1 else arr[None]
    finite_rows = [r[np.isfinite(r)] for r in rows]
    spreads = [np.median(np.abs(r - np.median(r))) for r in finite_rows if r.size]
    spreads = [s for s in spreads if s > 0]
    if not spreads:
        return "unknown"
    spread = float(np.median(spreads)) * 1.4826  # MAD -> standard deviation for Gaussian data
    if _VOLT_RANGE[0] <= spread <= _VOLT_RANGE[1]:
        return "V"
    if _MICROVOLT_RANGE[0] <= spread <= _MICROVOLT_RANGE[1]:
        return "uV"
    return "unknown"
