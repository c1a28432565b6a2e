"""Preprocessing stages with one API for whole recordings and for chunk-by-chunk streaming.

Every stage is configured once with the input sampling rate and channel set, then either

* ``stage.transform(recording)`` processes a whole :class:`~sigformer.Recording` offline, or
* ``stage.process(chunk)`` processes successive ``(n_channels, n_samples)`` chunks, carrying
  internal state (filter memories, resampler phase, running statistics) between calls.

For every causal stage, concatenating the ``process`` outputs over any chunking gives the same
result as one call on the whole array (tested with hypothesis). Filters also offer
``phase="zero"`` (forward-backward, no delay) for offline analysis; such a stage refuses to
stream, since zero-phase filtering needs the future.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal
from sklearn.base import BaseEstimator, TransformerMixin

from .channels import ChannelSet
from .recording import Recording
from .validation import SignalError, check_array, check_sfreq

try:  # scipy's C kernel behind sosfilt: same arithmetic, without per-call validation
    from scipy.signal._sosfilt import _sosfilt as _sosfilt_kernel
except ImportError:  # pragma: no cover - other scipy layouts use the public function
    _sosfilt_kernel = None

_PHASES = ("causal", "zero")


@dataclass(frozen=True)
class StreamFormat:
    """What flows between stages: sampling rate and channel set."""

    sfreq: float
    channels: ChannelSet


class Stage:
    """Base class. Subclasses implement ``_configure`` and ``_process`` (and ``_offline``)."""

    streamable = True
    fmt_in: StreamFormat | None = None
    fmt_out: StreamFormat | None = None

    def configure(self, sfreq: float, channels: ChannelSet | Sequence[str]) -> StreamFormat:
        if not isinstance(channels, ChannelSet):
            channels = ChannelSet(tuple(channels))
        self.fmt_in = StreamFormat(check_sfreq(sfreq), channels)
        self.fmt_out = self._configure(self.fmt_in)
        self.reset()
        return self.fmt_out

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        return fmt

    def reset(self) -> None:
        """Forget the stream's history (state returns to 'before the first sample')."""

    def process(self, chunk: np.ndarray) -> np.ndarray:
        if self.fmt_in is None:
            raise RuntimeError(f"{type(self).__name__}.configure(sfreq, channels) must be called "
                               "before process()")
        if not self.streamable:
            raise RuntimeError(f"{self!r} cannot run chunk by chunk (zero-phase filtering "
                               "needs future samples); use phase='causal' for streaming")
        chunk = np.asarray(chunk)
        if chunk.ndim != 2 or chunk.shape[0] != len(self.fmt_in.channels):
            raise SignalError(
                f"{type(self).__name__} expects chunks of shape ({len(self.fmt_in.channels)}, "
                f"n_samples), got {chunk.shape}"
            )
        if chunk.shape[1] == 0:
            return self._empty(chunk.dtype)
        return self._process(chunk)

    def _empty(self, dtype) -> np.ndarray:
        assert self.fmt_out is not None
        return np.zeros((len(self.fmt_out.channels), 0), dtype=dtype)

    def _process(self, chunk: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _offline(self, data: np.ndarray) -> np.ndarray:
        """Whole-array processing; by default the causal stream over one chunk."""
        return self._process(data)

    def transform(self, recording: Recording) -> Recording:
        """Process a whole recording (fresh state; the recording is not modified)."""
        self.configure(recording.sfreq, recording.channels)
        data = self._offline(recording.data)
        assert self.fmt_out is not None
        return Recording(data, self.fmt_out.sfreq, self.fmt_out.channels,
                         list(recording.annotations))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                           if not k.startswith("_") and k not in ("fmt_in", "fmt_out"))
        return f"{type(self).__name__}({params})"


class Pipeline(Stage):
    """Stages run in sequence; itself a stage."""

    def __init__(self, stages: Sequence[Stage]):
        self.stages = list(stages)

    @property
    def streamable(self) -> bool:  # type: ignore[override]
        return all(s.streamable for s in self.stages)

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        for stage in self.stages:
            fmt = stage.configure(fmt.sfreq, fmt.channels)
        self._plan = _fuse_filters(self.stages)
        return fmt

    def reset(self) -> None:
        for stage in self.stages:
            stage.reset()
        for step in getattr(self, "_plan", []):
            step.reset()

    def _process(self, chunk: np.ndarray) -> np.ndarray:
        for step in self._plan:
            if chunk.shape[1] == 0:  # e.g. a resampler that had no complete output yet
                return self._empty(chunk.dtype)
            chunk = step._process(chunk)
        return chunk

    def _offline(self, data: np.ndarray) -> np.ndarray:
        for stage in self.stages:
            data = stage._offline(data)
        return data


# --- filters -----------------------------------------------------------------------------

class _SOSFilter(Stage):
    """Shared state handling for IIR filters in second-order sections."""

    phase: str = "causal"

    def _check_phase(self) -> None:
        if self.phase not in _PHASES:
            raise ValueError(f"phase must be one of {_PHASES}, got {self.phase!r}")
        self.streamable = self.phase == "causal"

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
            return signal.sosfiltfilt(self._sos, data, axis=-1)
        return self._process(data)


class _FusedSOS(_SOSFilter):
    """Consecutive causal IIR stages as one cascade: one ``sosfilt`` call per chunk instead of
    one per stage (same output up to rounding, started in the same steady state)."""

    def __init__(self, sos: np.ndarray):
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

    def __init__(self, l_freq: float | None, h_freq: float | None, order: int = 4,
                 phase: str = "causal"):
        self.l_freq, self.h_freq, self.order, self.phase = l_freq, h_freq, order, phase
        if l_freq is None and h_freq is None:
            raise ValueError("BandPass needs l_freq, h_freq or both")
        if l_freq is not None and h_freq is not None and not 0 < l_freq < h_freq:
            raise ValueError(f"need 0 < l_freq < h_freq, got l_freq={l_freq}, h_freq={h_freq}")
        self._check_phase()

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

    def __init__(self, freq: float = 50.0, quality: float = 30.0, harmonics: bool = False,
                 phase: str = "causal"):
        self.freq, self.quality, self.harmonics, self.phase = freq, quality, harmonics, phase
        self._check_phase()

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


# --- resampling --------------------------------------------------------------------------

class Resample(Stage):
    """Rational resampling with a polyphase Kaiser FIR (same design as ``resample_poly``).

    ``phase="causal"``: streaming polyphase filter (delay of half the filter length);
    ``phase="zero"``: offline :func:`scipy.signal.resample_poly` (delay compensated).
    """

    def __init__(self, sfreq: float, phase: str = "causal"):
        self.sfreq, self.phase = sfreq, phase
        if phase not in _PHASES:
            raise ValueError(f"phase must be one of {_PHASES}, got {phase!r}")
        self.streamable = phase == "causal"

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        from fractions import Fraction

        ratio = Fraction(check_sfreq(self.sfreq, "target sfreq")).limit_denominator(1000) / \
            Fraction(fmt.sfreq).limit_denominator(1000)
        self._up, self._down = ratio.numerator, ratio.denominator
        if self._up > 1000 or self._down > 1000:
            raise SignalError(f"resampling {fmt.sfreq} Hz -> {self.sfreq} Hz needs a ratio "
                              f"{self._up}/{self._down}; choose rates with a simpler ratio")
        max_rate = max(self._up, self._down)
        half_len = 10 * max_rate
        h = signal.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * self._up
        n_taps = -(-len(h) // self._up)  # input samples one output depends on
        h = np.concatenate([h, np.zeros(n_taps * self._up - len(h))])
        # bank[p, t] weighs the t-th sample (oldest first) of the n_taps inputs ending at
        # floor(k*down/up), for outputs k of phase p = (k*down) % up
        self._bank = h.reshape(n_taps, self._up).T[:, ::-1].copy()
        self._n_taps = n_taps
        return StreamFormat(float(self.sfreq), fmt.channels)

    def reset(self) -> None:
        # The last n_taps inputs: a pending output's newest input can be one sample older
        # than the newest input seen (when upsampling), so one more than the filter span.
        self._history = None
        self._n_in = 0  # inputs seen
        self._n_out = 0  # outputs produced

    def _process(self, chunk: np.ndarray) -> np.ndarray:
        up, down, n_taps = self._up, self._down, self._n_taps
        n_ch, n_new = chunk.shape
        if self._history is None:  # implicit zeros before the stream starts
            self._history = np.zeros((n_ch, n_taps), dtype=np.result_type(chunk, float))
        buf = np.concatenate([self._history, chunk], axis=1)
        g0 = self._n_in - n_taps  # global input index of buf[:, 0]
        self._n_in += n_new
        self._history = buf[:, buf.shape[1] - n_taps:]
        last_k = ((self._n_in - 1) * up) // down
        first_k = self._n_out
        if last_k < first_k:
            return np.zeros((n_ch, 0), dtype=buf.dtype)
        self._n_out = last_k + 1
        first_row = (first_k * down) // up - g0 - (n_taps - 1)
        if up == 1:  # integer decimation: every down-th window, one filter, as a strided view
            s_ch, s_t = buf.strides
            rows = np.lib.stride_tricks.as_strided(
                buf[:, first_row:], shape=(n_ch, last_k - first_k + 1, n_taps),
                strides=(s_ch, down * s_t, s_t), writeable=False)
            return np.dot(rows, self._bank[0])
        windows = np.lib.stride_tricks.sliding_window_view(buf, n_taps, axis=-1)
        pos = np.arange(first_k, last_k + 1) * down
        rows = pos // up - g0 - (n_taps - 1)
        return np.einsum("cok,ok->co", windows[:, rows], self._bank[pos % up])

    def _offline(self, data: np.ndarray) -> np.ndarray:
        if self.phase == "zero":
            return signal.resample_poly(data, self._up, self._down, axis=-1)
        return self._process(data)


# --- channel operations -----------------------------------------------------------------

class PickChannels(Stage):
    """Keep (and order) the named channels; ``normalize=True`` matches after name clean-up."""

    def __init__(self, names: Sequence[str], normalize: bool = False):
        self.names, self.normalize = list(names), normalize

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        chans = fmt.channels.normalized() if self.normalize else fmt.channels
        self._idx = chans.indices(self.names)
        return StreamFormat(fmt.sfreq, chans.pick(self.names))

    def _process(self, chunk: np.ndarray) -> np.ndarray:
        return chunk[self._idx]


class Rereference(Stage):
    """Subtract the average of all channels (``"average"``) or of the named reference ones."""

    def __init__(self, ref: str | Sequence[str] = "average"):
        self.ref = ref

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        if self.ref == "average":
            self._ref_idx = list(range(len(fmt.channels)))
        else:
            names = [self.ref] if isinstance(self.ref, str) else list(self.ref)
            self._ref_idx = fmt.channels.indices(names)
        return fmt

    def _process(self, chunk: np.ndarray) -> np.ndarray:
        return chunk - chunk[self._ref_idx].mean(axis=0, keepdims=True)


class AdaptChannels(Stage):
    """Map the stream onto a model's channel set with a :class:`ChannelAdapter` (reorder,
    drop extras, interpolate or zero-fill missing channels). ``mask_`` marks recorded ones."""

    def __init__(self, target: ChannelSet | Sequence[str], fill: str = "auto",
                 min_match: float = 0.5):
        self.target, self.fill, self.min_match = target, fill, min_match

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        from .channels import ChannelAdapter

        self._adapter = ChannelAdapter(self.target, fill=self.fill,
                                       min_match=self.min_match).fit(fmt.channels)
        self.mask_ = self._adapter.mask_
        return StreamFormat(fmt.sfreq, self._adapter.target)

    def _process(self, chunk: np.ndarray) -> np.ndarray:
        return self._adapter.matrix_ @ chunk


class Bipolar(Stage):
    """Bipolar derivations (anode - cathode); default: the 16-channel double banana."""

    def __init__(self, pairs: Sequence[Sequence[str]] | None = None):
        self.pairs = pairs

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        from .channels import TCP_DOUBLE_BANANA, bipolar_matrix

        pairs = [tuple(p) for p in (self.pairs or TCP_DOUBLE_BANANA)]
        self._matrix, channels = bipolar_matrix(fmt.channels, pairs)
        return StreamFormat(fmt.sfreq, channels)

    def _process(self, chunk: np.ndarray) -> np.ndarray:
        return self._matrix @ chunk


class Scale(Stage):
    """Multiply by a constant, e.g. ``1e6`` for volts -> microvolts."""

    def __init__(self, factor: float):
        self.factor = factor

    def _process(self, chunk: np.ndarray) -> np.ndarray:
        return chunk * self.factor


class Standardize(Stage):
    """Per-channel z-scoring.

    ``mode="running"``: exponentially weighted mean/variance with time constant ``window_s``,
    updated sample by sample (causal, streamable). ``mode="recording"``: statistics of the whole
    recording (offline only).
    """

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

    def _offline(self, data: np.ndarray) -> np.ndarray:
        if self.mode == "recording":
            return (data - data.mean(-1, keepdims=True)) / (data.std(-1, keepdims=True) + self.eps)
        return self._process(data)


# --- Euclidean alignment ----------------------------------------------------------------

def _inv_sqrtm(cov: np.ndarray) -> np.ndarray:
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
        self.whitener_ = _inv_sqrtm(self.reference_)
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
            return np.einsum("cd,ndt->nct", _inv_sqrtm(trial_covariances(X).mean(0)), X)
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
            out[i] = _inv_sqrtm(ref) @ X[i]
        self.reference_, self.n_seen_ = ref, n
        return out
