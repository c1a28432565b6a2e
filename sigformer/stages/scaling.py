"""Scaling: constant factors (units) and running or whole-recording standardisation."""

from __future__ import annotations

import numpy as np
from scipy import signal

from .base import Stage, StreamFormat


class Scale(Stage):
    """Multiply by a constant, e.g. ``1e6`` for volts -> microvolts."""

    config_name = "scale"

    def __init__(self, factor: float):
        self.factor = factor

    def _process(self, chunk: np.ndarray) -> np.ndarray:
        return chunk * self.factor

    def unit_out(self, unit: str) -> str:
        conversions = {("V", 1e6): "uV", ("uV", 1e-6): "V", ("uV", 1e-3): "mV",
                       ("mV", 1e3): "uV", ("V", 1e3): "mV", ("mV", 1e-3): "V"}
        for (unit_in, factor), result in conversions.items():
            if unit == unit_in and np.isclose(self.factor, factor, rtol=1e-9, atol=0):
                return result
        return unit if self.factor == 1 else "a.u."


class Standardize(Stage):
    """Per-channel z-scoring.

    ``mode="running"``: exponentially weighted mean/variance with time constant ``window_s``,
    updated sample by sample (causal, streamable). ``mode="recording"``: statistics of the whole
    recording (offline only).

    ``bias_correction=True`` (the default) divides the running averages by the weight they
    have gathered so far (``1 - (1 - a)^(n + 1)`` after ``n + 1`` samples, as Adam does), so
    the statistics are those of the samples seen, from the first one on. Without it (what
    configs saved before the option existed get) the variance starts at 0 and the output
    blows up for about a time constant: at 250 Hz with ``window_s=10`` its standard
    deviation is ~20 over samples 1-25, 5 over 25-250 and 2 over 250-1000, so an epoch
    standardised on its own (each trial starts afresh) lies wholly inside that transient.
    With it: 1.1, 1.0 and 1.0.
    """

    config_name = "standardize"
    # configs saved before bias_correction existed ran without it
    legacy_config = {"bias_correction": False}

    def __init__(self, mode: str = "running", window_s: float = 10.0, eps: float = 1e-8,
                 bias_correction: bool = True):
        self.mode, self.window_s, self.eps = mode, window_s, eps
        self.bias_correction = bias_correction

    @property
    def streamable(self) -> bool:  # type: ignore[override]
        # from the current mode, so that set_params(mode=...) (GridSearchCV) counts
        return self.mode == "running"

    def _validate_params(self) -> None:
        if self.mode not in ("running", "recording"):
            raise ValueError(f"mode must be 'running' or 'recording', got {self.mode!r}")
        if not isinstance(self.bias_correction, (bool, np.bool_)):
            raise ValueError(f"bias_correction must be true or false, got "
                             f"{self.bias_correction!r}")

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        self._alpha = 1.0 - np.exp(-1.0 / (self.window_s * fmt.sfreq))
        return fmt

    def reset(self) -> None:
        self._zi = None
        self._n = 0  # samples seen: the one scalar the bias correction needs

    def _process(self, chunk: np.ndarray) -> np.ndarray:
        if self.bias_correction:
            return self._process_corrected(chunk)
        a = self._alpha
        b, den = [a], [1.0, -(1.0 - a)]
        if self._zi is None:  # start the averages at the first sample (mean) and zero (var)
            first = chunk[:, :1]
            self._zi = np.stack([first * (1 - a), first**2 * (1 - a)])
        mean, zm = signal.lfilter(b, den, chunk, axis=-1, zi=self._zi[0])
        sq, zs = signal.lfilter(b, den, chunk**2, axis=-1, zi=self._zi[1])
        self._zi = np.stack([zm, zs])
        var = np.maximum(sq - mean**2, 0.0)
        return (chunk - mean) / np.sqrt(var + self.eps)

    def _process_corrected(self, chunk: np.ndarray) -> np.ndarray:
        a = self._alpha
        b, den = [a], [1.0, -(1.0 - a)]
        x = np.asarray(chunk, dtype=np.float64)
        if self._zi is None:  # averages start empty; the weight below normalises them
            self._zi = np.zeros((2, x.shape[0], 1))
        mean, zm = signal.lfilter(b, den, x, axis=-1, zi=self._zi[0])
        sq, zs = signal.lfilter(b, den, x**2, axis=-1, zi=self._zi[1])
        self._zi = np.stack([zm, zs])
        # weight gathered after sample n (counted from the stream's start): 1 - (1-a)^(n+1);
        # from the sample count, so any chunking gives the same weights
        n = self._n + np.arange(1, x.shape[1] + 1)
        self._n += x.shape[1]
        weight = -np.expm1(n * np.log1p(-a))
        mean, sq = mean / weight, sq / weight
        var = np.maximum(sq - mean**2, 0.0)
        return (x - mean) / np.sqrt(var + self.eps)

    def unit_out(self, unit: str) -> str:
        return "a.u."  # z-scores are dimensionless

    def _offline(self, data: np.ndarray) -> np.ndarray:
        if self.mode == "recording":
            return (data - data.mean(-1, keepdims=True)) / (data.std(-1, keepdims=True) + self.eps)
        return self._process(data)
