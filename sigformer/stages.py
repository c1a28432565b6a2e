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

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import signal
from sklearn.base import BaseEstimator, TransformerMixin

from .channels import TCP_DOUBLE_BANANA, ChannelAdapter, ChannelSet, bipolar_matrix
from .recording import Epochs, Recording
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


class StageConfigError(ValueError):
    """A stage configuration names an unknown stage or argument."""


class Stage(TransformerMixin, BaseEstimator):
    """Base class. Subclasses implement ``_configure`` and ``_process`` (and ``_offline``).

    A stage is also an sklearn transformer: ``fit`` takes the input format from a
    :class:`~sigformer.Recording`, :class:`~sigformer.Epochs`, ``mne.io.Raw`` or ``mne.Epochs``
    (or, for plain arrays, from an earlier :meth:`configure` / ``Pipeline(..., sfreq=...)``), and
    ``transform`` returns the same kind of container it was given. Constructor arguments are
    stored untouched (``get_params``/``clone`` work); :meth:`get_config` gives them as JSON.
    """

    streamable = True
    fmt_in: StreamFormat | None = None
    fmt_out: StreamFormat | None = None

    def configure(self, sfreq: float, channels: ChannelSet | Sequence[str] | int
                  ) -> StreamFormat:
        """Set the input format: sampling rate and channels (names, or a count for
        anonymous ``ch0, ch1, ...`` channels)."""
        if isinstance(channels, (int, np.integer)):
            channels = [f"ch{i}" for i in range(int(channels))]
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

    def _fresh_offline(self, data: np.ndarray) -> np.ndarray:
        self.reset()  # every recording / trial starts 'before the first sample'
        return self._offline(data)

    def unit_out(self, unit: str) -> str:
        """The physical unit of the output for an input in ``unit`` (most stages keep it)."""
        return unit

    # --- sklearn / MNE ----------------------------------------------------------------------
    def _declared_input(self) -> tuple[float | None, ChannelSet | Sequence[str] | None]:
        """Input format given at construction (only :class:`Pipeline` takes one)."""
        return None, None

    def fit(self, X, y=None, sfreq: float | None = None) -> Stage:
        """Fix the input format from ``X`` (containers carry it; arrays need ``sfreq``)."""
        container = _as_container(X)
        if container is not None:
            self.configure(container.sfreq, container.channels)
        else:
            self._configure_for_array(check_array(X, ndim=(2, 3)), sfreq)
        assert self.fmt_in is not None
        self.sfreq_in_ = self.fmt_in.sfreq
        return self

    def _configure_for_array(self, arr: np.ndarray, sfreq: float | None) -> None:
        declared_sfreq, declared_channels = self._declared_input()
        configured = self.fmt_in
        rate = sfreq if sfreq is not None else declared_sfreq
        if rate is None and configured is not None:
            rate = configured.sfreq
        if rate is None:
            raise SignalError(
                f"{type(self).__name__}.fit got a plain array, whose sampling rate is unknown: "
                "call configure(sfreq, channels) first, wrap it as Pipeline([...], sfreq=...), "
                "or pass a Recording / Epochs / mne object")
        n_ch = arr.shape[-2]
        channels: ChannelSet | Sequence[str] | int = n_ch
        if declared_channels is not None:
            channels = declared_channels
        elif configured is not None and len(configured.channels) == n_ch:
            channels = configured.channels
        self.configure(rate, channels)

    def transform(self, X):
        """Process whole recordings / trials (fresh state each); returns the input's kind.

        ``Recording`` -> ``Recording``, ``Epochs`` -> ``Epochs`` (each trial separately),
        ``mne.io.Raw`` -> ``mne.io.RawArray``, ``mne.Epochs`` -> ``mne.EpochsArray``, and
        arrays ``(n_channels, n_times)`` or ``(n_trials, n_channels, n_times)`` -> arrays, in the
        format set by :meth:`fit` / :meth:`configure`.
        """
        if _is_mne_raw(X):
            return self._transform_recording(Recording.from_mne(X)).to_mne()
        if _is_mne_epochs(X):
            return self._transform_epochs(Epochs.from_mne(X)).to_mne()
        if isinstance(X, Recording):
            return self._transform_recording(X)
        if isinstance(X, Epochs):
            return self._transform_epochs(X)
        return self._transform_array(X)

    def _check_rate(self, sfreq: float) -> None:
        fitted = getattr(self, "sfreq_in_", None)
        if fitted is not None and abs(fitted - sfreq) > 1e-9 * fitted:
            raise SignalError(
                f"sampling-rate mismatch: {type(self).__name__} was fitted on data at {fitted:g} "
                f"Hz but got data at {sfreq:g} Hz; resample first (Resample({fitted:g})) or "
                "fit again")

    def _transform_recording(self, recording: Recording) -> Recording:
        self._check_rate(recording.sfreq)
        self.configure(recording.sfreq, recording.channels)
        data = self._offline(recording.data)
        assert self.fmt_out is not None
        return Recording(data, self.fmt_out.sfreq, self.fmt_out.channels,
                         list(recording.annotations), unit=self.unit_out(recording.unit))

    def _transform_epochs(self, epochs: Epochs) -> Epochs:
        self._check_rate(epochs.sfreq)
        self.configure(epochs.sfreq, epochs.channels)
        data = np.stack([self._fresh_offline(trial) for trial in epochs.data])
        assert self.fmt_out is not None
        return Epochs(data, epochs.labels, self.fmt_out.sfreq, self.fmt_out.channels,
                      dict(epochs.event_id), epochs.tmin, epochs.onsets, epochs.groups,
                      epochs.sessions, unit=self.unit_out(epochs.unit))

    def _transform_array(self, X) -> np.ndarray:
        arr = check_array(X, ndim=(2, 3))
        if self.fmt_in is None:
            raise RuntimeError(f"{type(self).__name__} does not know the input format of a "
                               "plain array: call fit(X) or configure(sfreq, channels) first")
        n_ch = len(self.fmt_in.channels)
        if arr.shape[-2] != n_ch:
            raise SignalError(f"{type(self).__name__} was configured for {n_ch} channels, got "
                              f"an array of shape {arr.shape} (channels on axis -2)")
        if arr.ndim == 2:
            return self._fresh_offline(arr)
        return np.stack([self._fresh_offline(trial) for trial in arr])

    def __sklearn_clone__(self) -> Stage:
        # The input format is set by the user, not learned: a clone keeps it, so stages
        # configured for arrays survive sklearn's cross-validation.
        new = super().__sklearn_clone__()
        if self.fmt_in is not None:
            new.configure(self.fmt_in.sfreq, self.fmt_in.channels)
        return new

    # --- serialisation ----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """``{"stage": <registry name>, **constructor arguments}`` as JSON-friendly values."""
        params = self.get_params(deep=False)
        return {"stage": registry_name(type(self)),
                **{k: _jsonable(v, f"{type(self).__name__}.{k}") for k, v in params.items()}}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({params})"


def _is_mne_raw(x) -> bool:
    return type(x).__module__.startswith("mne") and hasattr(x, "annotations") \
        and hasattr(x, "n_times") and not hasattr(x, "events")


def _is_mne_epochs(x) -> bool:
    return type(x).__module__.startswith("mne") and hasattr(x, "events") \
        and hasattr(x, "get_data")


def _as_container(x) -> Recording | Epochs | None:
    """The sigformer container for ``x`` (converted from MNE), or None for arrays."""
    if isinstance(x, (Recording, Epochs)):
        return x
    if _is_mne_raw(x):
        return Recording.from_mne(x)
    if _is_mne_epochs(x):
        return Epochs.from_mne(x)
    return None


def _jsonable(value, where: str):
    """Constructor arguments as JSON values (ChannelSet -> its dict, tuples -> lists)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, ChannelSet):
        return value.to_dict()
    if isinstance(value, Stage):
        return value.get_config()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, where) for k, v in value.items()}
    raise StageConfigError(f"{where} = {value!r} ({type(value).__name__}) has no JSON form")


class Pipeline(Stage):
    """Stages run in sequence; itself a stage.

    ``sfreq`` / ``channels`` optionally declare the input format, so that the pipeline works
    as an sklearn transformer on plain arrays (``fit(X)`` needs no other information).
    """

    def __init__(self, stages: Sequence[Stage], sfreq: float | None = None,
                 channels: ChannelSet | Sequence[str] | None = None):
        self.stages = stages
        self.sfreq = sfreq
        self.channels = channels

    @property
    def streamable(self) -> bool:  # type: ignore[override]
        return all(s.streamable for s in self.stages)

    def _declared_input(self) -> tuple[float | None, ChannelSet | Sequence[str] | None]:
        return self.sfreq, self.channels

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        for stage in self.stages:
            fmt = stage.configure(fmt.sfreq, fmt.channels)
        self._plan = _fuse_filters(list(self.stages))
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

    def unit_out(self, unit: str) -> str:
        for stage in self.stages:
            unit = stage.unit_out(unit)
        return unit

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"stage": "pipeline",
                                  "stages": [s.get_config() for s in self.stages]}
        if self.sfreq is not None:
            config["sfreq"] = _jsonable(self.sfreq, "Pipeline.sfreq")
        if self.channels is not None:
            config["channels"] = _jsonable(self.channels, "Pipeline.channels")
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Pipeline:
        """The reverse of :meth:`get_config` (also accepts a bare list of stage configs)."""
        if not isinstance(config, Mapping):
            config = {"stage": "pipeline", "stages": list(config)}
        stage = stage_from_config(config)
        if not isinstance(stage, Pipeline):
            raise StageConfigError(f"expected a pipeline config, got stage {config['stage']!r}")
        return stage


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


def resample_array(data: np.ndarray, sfreq_in: float, sfreq_out: float, *,
                   phase: str = "zero") -> np.ndarray:
    """Resample ``(..., n)`` with sigformer's one resampler (:class:`Resample`: polyphase
    Kaiser FIR). ``phase="zero"`` (offline, delay-compensated) or ``"causal"`` (what a stream
    sees). Used for audio files, IQ symbol-rate conditioning and EEG stages alike."""
    data = np.asarray(data)
    if float(sfreq_in) == float(sfreq_out):
        return data
    flat = data.reshape(-1, data.shape[-1])
    stage = Resample(float(sfreq_out), phase=phase)
    stage.configure(float(sfreq_in), tuple(f"ch{i}" for i in range(flat.shape[0])))
    if np.iscomplexobj(flat):
        out = stage._offline(flat.real) + 1j * stage._offline(flat.imag)
    else:
        out = stage._offline(flat)
    return out.reshape(*data.shape[:-1], out.shape[-1]).astype(data.dtype, copy=False)


# --- channel operations -----------------------------------------------------------------

class PickChannels(Stage):
    """Keep (and order) the named channels; ``normalize=True`` matches after name clean-up."""

    def __init__(self, names: Sequence[str], normalize: bool = False):
        self.names, self.normalize = names, normalize

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        chans = fmt.channels.normalized() if self.normalize else fmt.channels
        names = [self.names] if isinstance(self.names, str) else list(self.names)
        self._idx = chans.indices(names)
        return StreamFormat(fmt.sfreq, chans.pick(names))

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

    def __init__(self, target: ChannelSet | Sequence[str] | Mapping[str, Any],
                 fill: str = "auto", min_match: float = 0.5):
        self.target, self.fill, self.min_match = target, fill, min_match

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        # A mapping is a ChannelSet.to_dict() (names, types, positions), as configs store it.
        target = ChannelSet.from_dict(self.target) if isinstance(self.target, Mapping) \
            else self.target
        self._adapter = ChannelAdapter(target, fill=self.fill,
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


# --- registry and configs ----------------------------------------------------------------

STAGES: dict[str, type[Stage]] = {
    "bandpass": BandPass, "notch": Notch, "resample": Resample, "rereference": Rereference,
    "pick": PickChannels, "scale": Scale, "standardize": Standardize,
    "adapt_channels": AdaptChannels, "bipolar": Bipolar,
}


def registry_name(cls: type[Stage]) -> str:
    """The name a stage class has in :data:`STAGES` (and in configs)."""
    if cls is Pipeline:
        return "pipeline"
    for name, registered in STAGES.items():
        if registered is cls:
            return name
    raise StageConfigError(f"{cls.__name__} is not a registered stage, so it has no config; "
                           f"registered: {sorted(STAGES)}")


def _constructor_arguments(cls: type[Stage]) -> dict[str, inspect.Parameter]:
    params = inspect.signature(cls.__init__).parameters
    return {k: p for k, p in params.items() if k != "self"}


def stage_from_config(config: Mapping[str, Any]) -> Stage:
    """Build a stage from ``{"stage": name, **arguments}`` (the reverse of ``get_config``)."""
    if not isinstance(config, Mapping) or "stage" not in config:
        raise StageConfigError(f"a stage config is a mapping with a 'stage' key naming one of "
                               f"{sorted(STAGES)} or 'pipeline', got {config!r}")
    arguments = dict(config)
    name = arguments.pop("stage")
    if name == "pipeline":
        stages = arguments.pop("stages", None)
        if not isinstance(stages, Sequence) or isinstance(stages, str):
            raise StageConfigError("a pipeline config needs 'stages': a list of stage configs")
        arguments["stages"] = [stage_from_config(c) for c in stages]
    cls = Pipeline if name == "pipeline" else STAGES.get(name)
    if cls is None:
        raise StageConfigError(f"unknown stage {name!r}; known stages: {sorted(STAGES)} "
                               "and 'pipeline'")
    accepted = _constructor_arguments(cls)
    unknown = sorted(set(arguments) - set(accepted))
    if unknown:
        raise StageConfigError(f"stage {name!r} has no argument(s) {unknown}; it takes "
                               f"{list(accepted)}")
    missing = [k for k, p in accepted.items()
               if p.default is inspect.Parameter.empty and k not in arguments]
    if missing:
        raise StageConfigError(f"stage {name!r} needs the argument(s) {missing}")
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as err:
        raise StageConfigError(f"stage {name!r} with {arguments}: {err}") from err


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
