"""IIR filters in second-order sections (band-pass, notch), fused into one cascade when
consecutive; streamed with state or run zero-phase offline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import signal

from ..validation import SignalError
from .base import Stage, StreamFormat, check_phase

try:  # scipy's C kernel behind sosfilt: same arithmetic, without per-call validation
    from scipy.signal._sosfilt import _sosfilt as _sosfilt_kernel
except ImportError:  # pragma: no cover - other scipy layouts use the public function
    _sosfilt_kernel = None


# --- filters -----------------------------------------------------------------------------

class _SOSFilter(Stage):
    """Shared state handling for IIR filters in second-order sections."""

    phase: str = "causal"

    @property
    def streamable(self) -> bool:  # type: ignore[override]
        # from the current phase, so that set_params(phase=...) (GridSearchCV) counts
        return self.phase == "causal"

    def _validate_params(self) -> None:
        check_phase(self.phase)

    def _design(self, sfreq: float) -> np.ndarray:
        raise NotImplementedError

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        self._sos = np.ascontiguousarray(self._design(fmt.sfreq), dtype=np.float64)
        self._zi0 = signal.sosfilt_zi(self._sos)  # (n_sections, 2), for unit step
        return fmt

    def reset(self) -> None:
        self._zi = None  # (n_channels, n_sections, 2)

    def _process(self, chunk: np.ndarray) -> np.ndarray:
        if self._zi is None:
            # Start in steady state for the first sample's value, as if the signal had been
            # constant before: avoids a large onset transient on DC-offset EEG.
            self._zi = np.ascontiguousarray(
                self._zi0[None, :, :] * np.asarray(chunk[:, :1], np.float64)[:, :, None])
        if _sosfilt_kernel is not None:  # hot path of every stream: skip re-validation
            out = np.array(chunk, dtype=np.float64, order="C")
            _sosfilt_kernel(self._sos, out, self._zi)  # filters `out` and updates zi in place
            return out
        out, zf = signal.sosfilt(self._sos, chunk, axis=-1, zi=self._zi.transpose(1, 0, 2))
        self._zi = np.ascontiguousarray(zf.transpose(1, 0, 2))
        return out

    def _offline(self, data: np.ndarray) -> np.ndarray:
        if self.phase == "zero":
            self._check_zero_phase_length(data.shape[-1])
            return signal.sosfiltfilt(self._sos, data, axis=-1)
        return self._process(data)

    def _check_zero_phase_length(self, n: int) -> None:
        """sosfiltfilt pads each edge by ``padlen`` samples (odd extension) and needs more
        than that many; say which stage and how many, not scipy's bare ``padlen`` error."""
        sos = self._sos
        # scipy's default padlen for sosfiltfilt
        padlen = 3 * (2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()),
                                             int((sos[:, 5] == 0).sum())))
        if n <= padlen:
            raise SignalError(
                f"{type(self).__name__}(phase='zero') needs more than {padlen} samples per "
                f"recording or epoch (forward-backward filtering pads each edge by {padlen}), "
                f"got {n}: use longer epochs, a lower order, or phase='causal'")


class _FusedSOS(_SOSFilter):
    """Consecutive causal IIR stages as one cascade: one ``sosfilt`` call per chunk instead of
    one per stage (same output up to rounding, started in the same steady state)."""

    def __init__(self, sos: np.ndarray):
        self.sos = sos
        self._sos = np.ascontiguousarray(sos, dtype=np.float64)
        self._zi0 = signal.sosfilt_zi(self._sos)
        self.reset()


def _fuse_filters(stages: Sequence[Stage]) -> list[Stage]:
    plan: list[Stage] = []
    run: list[_SOSFilter] = []
    for stage in [*stages, None]:
        if isinstance(stage, _SOSFilter) and stage.phase == "causal":
            run.append(stage)
            continue
        if len(run) == 1:
            plan.append(run[0])
        elif run:
            plan.append(_FusedSOS(np.concatenate([r._sos for r in run])))
        run = []
        if stage is not None:
            plan.append(stage)
    return plan


class BandPass(_SOSFilter):
    """Butterworth band-pass (or low-/high-pass when one edge is ``None``).

    ``phase="causal"`` streams with state; ``phase="zero"`` filters forward and backward offline
    (effective order doubles, no phase delay).
    """

    config_name = "bandpass"

    def __init__(self, l_freq: float | None, h_freq: float | None, order: int = 4,
                 phase: str = "causal"):
        self.l_freq, self.h_freq, self.order, self.phase = l_freq, h_freq, order, phase

    def _validate_params(self) -> None:
        l_freq, h_freq = self.l_freq, self.h_freq
        if l_freq is None and h_freq is None:
            raise ValueError("BandPass needs l_freq, h_freq or both")
        if l_freq is not None and h_freq is not None and not 0 < l_freq < h_freq:
            raise ValueError(f"need 0 < l_freq < h_freq, got l_freq={l_freq}, h_freq={h_freq}")
        super()._validate_params()

    def _design(self, sfreq: float) -> np.ndarray:
        nyq = sfreq / 2
        edges = [f for f in (self.l_freq, self.h_freq) if f is not None]
        if max(edges) >= nyq:
            raise SignalError(f"filter edge {max(edges)} Hz must be below Nyquist ({nyq} Hz) "
                              f"at sfreq={sfreq} Hz")
        if self.l_freq is None:
            return signal.butter(self.order, self.h_freq, "lowpass", fs=sfreq, output="sos")
        if self.h_freq is None:
            return signal.butter(self.order, self.l_freq, "highpass", fs=sfreq, output="sos")
        return signal.butter(self.order, [self.l_freq, self.h_freq], "bandpass", fs=sfreq,
                             output="sos")


class Notch(_SOSFilter):
    """IIR notch at ``freq`` (and its harmonics below Nyquist when ``harmonics=True``)."""

    config_name = "notch"

    def __init__(self, freq: float = 50.0, quality: float = 30.0, harmonics: bool = False,
                 phase: str = "causal"):
        self.freq, self.quality, self.harmonics, self.phase = freq, quality, harmonics, phase

    def _design(self, sfreq: float) -> np.ndarray:
        nyq = sfreq / 2
        if not 0 < self.freq < nyq:
            raise SignalError(f"notch frequency {self.freq} Hz must be in (0, {nyq}) Hz at "
                              f"sfreq={sfreq} Hz")
        freqs = [self.freq]
        if self.harmonics:
            freqs = list(np.arange(self.freq, nyq, self.freq))
        sections = [signal.tf2sos(*signal.iirnotch(f, self.quality, fs=sfreq)) for f in freqs]
        return np.concatenate(sections)
