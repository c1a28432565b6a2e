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
    """

    config_name = "standardize"

    def __init__(self, mode: str = "running", window_s: float = 10.0, eps: float = 1e-8):
        if mode not in ("running", "recording"):
            raise ValueError(f"mode must be 'running' or 'recording', got {mode!r}")
        self.mode, self.window_s, self.eps = mode, window_s, eps
        self.streamable = mode == "running"

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        self._alpha = 1.0 - np.exp(-1.0 / (self.window_s * fmt.sfreq))
        return fmt

    def reset(self) -> None:
        self._zi = None

    def _process(self, chunk: np.ndarray) -> np.ndarray:
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

    def unit_out(self, unit: str) -> str:
        return "a.u."  # z-scores are dimensionless

    def _offline(self, data: np.ndarray) -> np.ndarray:
        if self.mode == "recording":
            return (data - data.mean(-1, keepdims=True)) / (data.std(-1, keepdims=True) + self.eps)
        return self._process(data)
