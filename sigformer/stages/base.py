"""The stage interface: input format, offline and chunk-by-chunk processing, sklearn
transformer behaviour, JSON configs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError

from ..channels import ChannelSet
from ..recording import Epochs, Recording
from ..validation import SignalError, check_array, check_sfreq

_PHASES = ("causal", "zero")


@dataclass(frozen=True)
class StreamFormat:
    """What flows between stages: sampling rate and channel set."""

    sfreq: float
    channels: ChannelSet


def check_phase(phase) -> None:
    if phase not in _PHASES:
        raise ValueError(f"phase must be one of {_PHASES}, got {phase!r}")


class StageConfigError(ValueError):
    """A stage configuration names an unknown stage or argument."""


class NotConfiguredError(NotFittedError, RuntimeError):
    """A stage (or :class:`EuclideanAlignment`) used before ``fit`` / ``configure``.

    sklearn's ``NotFittedError`` (so ``except NotFittedError`` catches it, as for the
    estimators) and a ``RuntimeError`` (what these stages raised before, so older ``except
    RuntimeError`` callers keep working)."""


def keep_float_dtype(out: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``out`` in the input's float dtype: stages compute in float64 where they need to, but
    float32 in gives float32 out (integer or complex inputs keep what was computed)."""
    if out.dtype != dtype and dtype.kind == "f" and out.dtype.kind == "f":  # cheap: per chunk
        return out.astype(dtype)
    return out


class Stage(TransformerMixin, BaseEstimator):
    """Base class. Subclasses implement ``_configure`` and ``_process`` (and ``_offline``).

    A stage is also an sklearn transformer: ``fit`` takes the input format from a
    :class:`~sigformer.Recording`, :class:`~sigformer.Epochs`, ``mne.io.Raw`` or ``mne.Epochs``
    (or, for plain arrays, from an earlier :meth:`configure` / ``Pipeline(..., sfreq=...)``), and
    ``transform`` returns the same kind of container it was given. Constructor arguments are
    stored untouched (``get_params``/``clone`` work); :meth:`get_config` gives them as JSON.
    They are checked when the stage is configured (``configure``, ``fit``, ``transform`` of a
    container), not in ``__init__`` or ``set_params``, as sklearn expects; and everything
    derived from them (``streamable``, filter designs) follows ``set_params``. Outputs keep
    the input's float dtype (float32 in, float32 out), whatever precision is used inside.
    """

    streamable = True  # subclasses whose streaming depends on a parameter use a property
    config_name: str | None = None  # the stage's name in configs (see STAGES)
    # Constructor arguments added after configs were first saved, with the value that gives
    # what a config without them did: a bundle saved earlier keeps the behaviour it was
    # trained with (see stage_from_config's legacy_defaults).
    legacy_config: ClassVar[dict[str, Any]] = {}
    fmt_in: StreamFormat | None = None
    fmt_out: StreamFormat | None = None
    _stale = False  # set_params changed a configured stage: configure again before use

    def _validate_params(self) -> None:
        """Check the constructor arguments (raise ValueError naming the problem)."""

    def set_params(self, **params) -> Stage:
        super().set_params(**params)
        if self.fmt_in is not None:  # derived state (filter design, ...) is out of date
            self._stale = True
        return self

    def _refresh(self) -> None:
        """Configure again for the same input after ``set_params`` (lazily: sklearn wants
        parameter errors at fit / first use, not in ``set_params``)."""
        if self._stale and self.fmt_in is not None:
            self.configure(self.fmt_in.sfreq, self.fmt_in.channels)

    def configure(self, sfreq: float, channels: ChannelSet | Sequence[str] | int
                  ) -> StreamFormat:
        """Set the input format: sampling rate and channels (names, or a count for
        anonymous ``ch0, ch1, ...`` channels)."""
        if isinstance(channels, (int, np.integer)):
            channels = [f"ch{i}" for i in range(int(channels))]
        if not isinstance(channels, ChannelSet):
            channels = ChannelSet(tuple(channels))
        self._validate_params()
        self.fmt_in = StreamFormat(check_sfreq(sfreq), channels)
        self.fmt_out = self._configure(self.fmt_in)
        self._stale = False
        self.reset()
        return self.fmt_out

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        return fmt

    def reset(self) -> None:
        """Forget the stream's history (state returns to 'before the first sample')."""

    def process(self, chunk: np.ndarray) -> np.ndarray:
        if self.fmt_in is None:
            raise NotConfiguredError(f"{type(self).__name__}.configure(sfreq, channels) must be "
                                     "called before process()")
        if self._stale:
            self._refresh()
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
        return keep_float_dtype(self._process(chunk), chunk.dtype)

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
        return keep_float_dtype(self._offline(data), data.dtype)

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
        data = keep_float_dtype(self._offline(recording.data), recording.data.dtype)
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
            raise NotConfiguredError(f"{type(self).__name__} does not know the input format of "
                                     "a plain array: call fit(X) or configure(sfreq, channels) "
                                     "first")
        self._refresh()
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
        if self.fmt_in is not None and self._stale:
            # parameters changed since configuring: check them at first use, not in clone
            new.fmt_in, new._stale = self.fmt_in, True
        elif self.fmt_in is not None:
            new.configure(self.fmt_in.sfreq, self.fmt_in.channels)
        return new

    # --- serialisation ----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """``{"stage": <registry name>, **constructor arguments}`` as JSON-friendly values."""
        params = self.get_params(deep=False)
        if self.config_name is None:
            raise StageConfigError(f"{type(self).__name__} is not a registered stage, so it has "
                                   f"no config (set config_name and add it to STAGES)")
        return {"stage": self.config_name,
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
