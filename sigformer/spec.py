"""``SignalSpec``: what a signal is, so that data, stages, models and bundles agree on it.

A spec records the sampling rate, the channel set (names and kinds: eeg, seeg, ecog, mic, iq,
...), the layout of one example, the window length a model takes and the physical unit of the
values. Loaders emit it with the data, every stage maps spec -> spec (:meth:`SignalSpec.through`),
models are built from it (``create_model(name, spec=spec, n_outputs=2)``) and bundles store it,
so ``chs_info``, ``sfreq``, ``n_chans`` and ``n_times`` are never typed twice.

Layouts:

* ``"channels_time"``: ``(n_channels, n_times)`` real samples (EEG, sEEG, ECoG);
* ``"waveform"``: ``(n_mics, n_samples)`` audio, one row per microphone;
* ``"iq"``: ``(2, n_samples)`` in-phase and quadrature rows of complex baseband samples;
* ``"ofdm_grid"``: a resource grid (subcarriers x OFDM symbols) of complex values; ``sfreq``
  is the subcarrier spacing in Hz and the channels name the receive antennas.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .channels import ChannelSet
from .validation import SignalError, check_sfreq

Layout = Literal["channels_time", "waveform", "iq", "ofdm_grid"]
LAYOUTS: tuple[str, ...] = ("channels_time", "waveform", "iq", "ofdm_grid")
# Physical units a spec may name; "FS" = digital full scale (audio files, IQ captures).
UNITS: tuple[str, ...] = ("V", "mV", "uV", "FS", "Pa", "a.u.")


class SpecError(SignalError):
    """A spec is malformed, or data/stages/models do not match it."""


@dataclass(frozen=True)
class SignalSpec:
    """Sampling rate, channels, layout, window length and unit of a signal."""

    sfreq: float
    channels: ChannelSet
    layout: Layout = "channels_time"
    window: int | None = None  # samples per model input; None: any length
    unit: str = "V"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sfreq", check_sfreq(self.sfreq))
        if not isinstance(self.channels, ChannelSet):
            object.__setattr__(self, "channels", ChannelSet(tuple(self.channels)))
        if self.layout not in LAYOUTS:
            raise SpecError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.window is not None and (not isinstance(self.window, int) or self.window < 1):
            raise SpecError(f"window must be a positive number of samples or None, got "
                            f"{self.window!r}")
        if self.unit not in UNITS:
            raise SpecError(f"unit must be one of {UNITS}, got {self.unit!r}")
        if self.layout == "iq" and len(self.channels) % 2:
            raise SpecError(f"an IQ spec has an I and a Q row per antenna (an even number of "
                            f"channels), got {len(self.channels)}")

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def eeg(cls, sfreq: float, channels: ChannelSet | Sequence[str], window: int | None = None,
            unit: str = "V") -> SignalSpec:
        return cls(sfreq, _channel_set(channels), "channels_time", window, unit)

    @classmethod
    def audio(cls, sample_rate: float, n_mics: int = 1, window: int | None = None
              ) -> SignalSpec:
        names = tuple(f"mic{i}" for i in range(n_mics))
        return cls(sample_rate, ChannelSet(names, ("mic",) * n_mics), "waveform", window, "FS")

    @classmethod
    def iq(cls, sample_rate: float, frame_length: int | None = None) -> SignalSpec:
        from .channels import iq_channel_set

        return cls(sample_rate, iq_channel_set(), "iq", frame_length, "FS")

    @classmethod
    def from_data(cls, obj, window: int | None = None) -> SignalSpec:
        """The spec of a :class:`~sigformer.Recording` or :class:`~sigformer.Epochs`."""
        n_times = getattr(obj, "n_times", None) if window is None else window
        if obj.__class__.__name__ == "Recording":
            n_times = window
        return cls(float(obj.sfreq), obj.channels, "channels_time", n_times,
                   getattr(obj, "unit", "V"))

    def with_(self, **changes) -> SignalSpec:
        """A copy with some fields changed (``spec.with_(window=500)``)."""
        return replace(self, **changes)

    # --- through stages and into models ---------------------------------------------------

    def through(self, chain) -> SignalSpec:
        """The spec after a stage (or :class:`~sigformer.stages.Pipeline`): configures the
        chain for this rate and channel set. A window length is carried in seconds, so a
        resampler rescales it."""
        fmt = chain.configure(self.sfreq, self.channels)
        window = self.window
        if window is not None and fmt.sfreq != self.sfreq:
            window = int(round(window * fmt.sfreq / self.sfreq))
        return replace(self, sfreq=fmt.sfreq, channels=fmt.channels, window=window)

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def window_s(self) -> float | None:
        return None if self.window is None else self.window / self.sfreq

    def model_kwargs(self, model_cls_or_fn) -> dict[str, Any]:
        """Constructor arguments this spec determines, limited to those the model accepts
        (braindecode names: ``n_chans, n_times, sfreq, chs_info``; audio: ``sample_rate``,
        ``n_mics``; RF frames: ``frame_length``)."""
        accepted = _accepted_arguments(model_cls_or_fn)
        values: dict[str, Any] = {"sfreq": self.sfreq, "sample_rate": int(round(self.sfreq))}
        if self.layout in ("channels_time",):
            values["n_chans"] = self.n_channels
            values["chs_info"] = self.channels.to_chs_info()
        if self.layout == "waveform":
            values["n_mics"] = self.n_channels
        if self.window is not None:
            values["n_times"] = self.window
            if self.layout == "iq":
                values["frame_length"] = self.window
        if accepted is None:  # **kwargs: pass only the braindecode-style names
            accepted = {"n_chans", "n_times", "sfreq", "chs_info"}
        return {k: v for k, v in values.items() if k in accepted}

    def check(self, data, *, name: str = "data") -> None:
        """Refuse data whose channel count or window length contradicts the spec."""
        shape = getattr(data, "shape", None)
        if shape is None or len(shape) < 2:
            raise SpecError(f"{name} must be at least 2-D (channels, samples), got shape {shape}")
        if shape[-2] != self.n_channels:
            raise SpecError(f"{name} has {shape[-2]} channels; the spec expects "
                            f"{self.n_channels} ({', '.join(self.channels.names[:6])}"
                            f"{', ...' if self.n_channels > 6 else ''})")
        if self.window is not None and shape[-1] != self.window:
            raise SpecError(f"{name} has {shape[-1]} samples per example; the spec expects "
                            f"{self.window} ({self.window / self.sfreq:g} s at "
                            f"{self.sfreq:g} Hz)")

    # --- serialisation --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"sfreq": self.sfreq, "channels": self.channels.to_dict(),
                "layout": self.layout, "window": self.window, "unit": self.unit,
                "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SignalSpec:
        if not isinstance(d, dict):
            raise SpecError(f"a spec must be a mapping, got {type(d).__name__}")
        unknown = set(d) - {"sfreq", "channels", "layout", "window", "unit", "extra"}
        if unknown:
            raise SpecError(f"unknown spec field(s) {sorted(unknown)}; expected sfreq, "
                            f"channels, layout, window, unit, extra")
        if "sfreq" not in d or "channels" not in d:
            raise SpecError("a spec needs at least 'sfreq' and 'channels'")
        channels = d["channels"]
        channels = (ChannelSet.from_dict(channels) if isinstance(channels, dict)
                    else ChannelSet(tuple(channels)))
        return cls(d["sfreq"], channels, d.get("layout", "channels_time"), d.get("window"),
                   d.get("unit", "V"), dict(d.get("extra") or {}))

    def __repr__(self) -> str:
        window = "" if self.window is None else f", {self.window} samples"
        return (f"<SignalSpec | {self.layout}, {self.n_channels} ch, {self.sfreq:g} Hz"
                f"{window}, {self.unit}>")


def _channel_set(channels) -> ChannelSet:
    return channels if isinstance(channels, ChannelSet) else ChannelSet(tuple(channels))


def _accepted_arguments(fn) -> set[str] | None:
    """Parameter names of a class's constructor or a function; None when it takes **kwargs."""
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return set(params)
