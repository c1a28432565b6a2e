"""Recording and epoch types, with converters to and from MNE.

``Recording``: a continuous ``(n_channels, n_times)`` array + sampling rate + :class:`ChannelSet`
+ annotations. ``Epochs``: ``(n_epochs, n_channels, n_times)`` trials with labels. Both convert
losslessly to and from ``mne.io.Raw`` / ``mne.Epochs``.

The unit rule: sigformer containers hold volts, as MNE does (``unit="V"``); readers convert
(a Muse CSV in µV is scaled by 1e-6), and ``from_mne`` / ``to_mne`` never rescale. Containers
record their unit, so data scaled on purpose (``Scale(1e6)``) says ``"uV"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .channels import ChannelSet
from .validation import DataWarning, SignalError, check_array, check_sfreq, check_unit, detect_scale

__all__ = ["Annotation", "Epochs", "Recording", "detect_scale"]


@dataclass(frozen=True)
class Annotation:
    onset: float  # seconds from the start of the recording
    duration: float
    description: str


@dataclass
class Recording:
    """A continuous multichannel signal.

    Parameters
    ----------
    data : array, shape (n_channels, n_times)
    sfreq : sampling rate in Hz.
    channels : the channel set (a list of names is accepted; type defaults to ``eeg``).
    annotations : onsets/durations in seconds with a description each.
    unit : physical unit of ``data``; ``"V"`` (volts, MNE's convention) by default.
    """

    data: np.ndarray
    sfreq: float
    channels: ChannelSet
    annotations: list[Annotation] = field(default_factory=list)
    unit: str = "V"

    def __post_init__(self) -> None:
        self.data = check_array(self.data, ndim=2, name="data", allow_complex=True)
        self.sfreq = check_sfreq(self.sfreq)
        self.unit = check_unit(self.unit)
        if not isinstance(self.channels, ChannelSet):
            self.channels = ChannelSet(tuple(self.channels))
        if len(self.channels) != self.data.shape[0]:
            raise SignalError(
                f"data has {self.data.shape[0]} channels but the channel set names "
                f"{len(self.channels)}"
            )

    @property
    def n_channels(self) -> int:
        return self.data.shape[0]

    @property
    def n_times(self) -> int:
        return self.data.shape[1]

    @property
    def duration(self) -> float:
        return self.n_times / self.sfreq

    @property
    def ch_names(self) -> list[str]:
        return list(self.channels.names)

    @property
    def spec(self):
        """The :class:`~sigformer.spec.SignalSpec` of this recording (rate, channels, unit;
        any length)."""
        from .spec import SignalSpec

        return SignalSpec(self.sfreq, self.channels, "channels_time", None, self.unit)

    def __repr__(self) -> str:
        unit = "" if self.unit == "V" else f", unit={self.unit}"
        return f"<Recording | {self.n_channels} ch, {self.sfreq:g} Hz, {self.duration:.1f} s{unit}>"

    def copy(self, **changes) -> Recording:
        new = replace(self, **changes)
        if "data" not in changes:
            new.data = self.data.copy()
        return new

    def pick(self, names: Sequence[str]) -> Recording:
        idx = self.channels.indices(names)
        return Recording(self.data[idx], self.sfreq, self.channels.pick(names),
                         list(self.annotations), unit=self.unit)

    @property
    def stim_channels(self) -> list[str]:
        """Names of the trigger (``stim``) channels, e.g. a FIF file's ``STI 014``."""
        return [n for n, t in zip(self.channels.names, self.channels.types) if t == "stim"]

    @property
    def trigger_channel(self) -> str | None:
        """The stim channel events are read from, as ``mne.find_events`` picks it: the
        combined ``STI101`` / ``STI 014`` where a file has it (Neuromag files also hold the
        per-line ``STI 001...`` channels, whose events it repeats), else the first one."""
        stim = self.stim_channels
        preferred = [n for n in _COMBINED_TRIGGERS if n in stim]
        return (preferred or stim or [None])[0]

    def stim_annotations(self) -> list[Annotation]:
        """Annotations from the trigger channel (:attr:`trigger_channel`): one where it turns
        to a new non-zero value (as ``mne.find_events(consecutive=True)``), described by
        the value."""
        name = self.trigger_channel
        if name is None:
            return []
        return _trigger_annotations(self.data[self.channels.index(name)].real, self.sfreq)

    def annotations_from_stim(self) -> Recording:
        """A copy whose annotations are the stim channels' events (added to any it has)."""
        merged = sorted([*self.annotations, *self.stim_annotations()], key=lambda a: a.onset)
        return self.copy(annotations=merged)

    # --- MNE interop --------------------------------------------------------------------
    @classmethod
    def from_mne(cls, raw, *, stim_events: bool = False) -> Recording:
        """From an ``mne.io.Raw`` (volts, as MNE stores them; no rescaling).

        ``stim_events=True`` (what ``read_recording`` does): a Raw without annotations but
        with stim channels (a FIF file's ``STI 014``) gets its trigger events as annotations
        (:meth:`stim_annotations`), so ``epochs()`` can cut them. Off by default, so that a
        Raw passed through a stage comes back with the annotations it had. The stim channels
        stay in the recording either way (estimators leave them out)."""
        # MNE onsets count from sample 0 of the acquisition, not from the first sample kept
        # (a cropped Raw), with or without a measurement date (orig_time)
        shift = raw.first_time
        ann = [Annotation(float(a["onset"]) - shift, float(a["duration"]), str(a["description"]))
               for a in raw.annotations]
        rec = cls(raw.get_data(), raw.info["sfreq"], ChannelSet.from_mne_info(raw.info), ann)
        if stim_events and not ann and rec.stim_channels:
            rec.annotations = rec.stim_annotations()
        return rec

    def to_mne(self):
        """An ``mne.io.RawArray``; data not in volts are refused (MNE assumes volts)."""
        import mne

        _check_volts(self.unit, "Recording")
        raw = mne.io.RawArray(self.data, self.channels.to_mne_info(self.sfreq), verbose="error")
        if self.annotations:
            raw.set_annotations(mne.Annotations(
                [a.onset for a in self.annotations], [a.duration for a in self.annotations],
                [a.description for a in self.annotations]))
        return raw

    # --- epoching -----------------------------------------------------------------------
    def epochs(self, event_id: Mapping[str, int] | None = None, tmin: float = 0.0,
               tmax: float = 4.0, *, include_tmax: bool = False,
               on_missing: str = "warn") -> Epochs:
        """Cut epochs from annotations, ``[onset + tmin, onset + tmax)`` by default.

        ``event_id`` maps annotation descriptions to integer labels; annotations it does not
        name are ignored. Epochs that run past the recording's ends are dropped.
        ``on_missing`` (as MNE's): what a name of ``event_id`` that never occurs does -
        ``"warn"`` (default: a misspelt name would otherwise drop a class unnoticed),
        ``"raise"`` or ``"ignore"`` (e.g. one event_id for runs with different event sets).
        None of them occurring is always an error. Stim (trigger) channels are left out of
        the epochs: the trigger's value at each onset is the event code, i.e. the label.
        """
        if on_missing not in ("warn", "raise", "ignore"):
            raise ValueError(f"on_missing must be 'warn', 'raise' or 'ignore', got "
                             f"{on_missing!r}")
        if not self.annotations:
            raise SignalError(self._no_annotations_message())
        descriptions = sorted({a.description for a in self.annotations})
        if event_id is None:
            event_id = {d: i for i, d in enumerate(descriptions)}
        unknown = [k for k in event_id if k not in descriptions]
        if len(unknown) == len(event_id):
            raise SignalError(
                f"none of the requested events {list(event_id)} occur in the annotations "
                f"(found {descriptions})"
            )
        if unknown and on_missing != "ignore":
            message = (f"event(s) {unknown} of event_id do not occur in the annotations "
                       f"(found {descriptions}): no epochs of them")
            if on_missing == "raise":
                raise SignalError(message)
            warnings.warn(f"{message}; on_missing='ignore' silences this", DataWarning,
                          stacklevel=2)
        n_samples = int(round((tmax - tmin) * self.sfreq)) + int(include_tmax)
        if n_samples <= 0:
            raise SignalError(f"tmax ({tmax}) must be greater than tmin ({tmin})")
        trials, labels, onsets = [], [], []
        for a in self.annotations:
            if a.description not in event_id:
                continue
            start = int(round((a.onset + tmin) * self.sfreq))
            if start < 0 or start + n_samples > self.n_times:
                continue
            trials.append(self.data[:, start:start + n_samples])
            labels.append(event_id[a.description])
            onsets.append(a.onset)
        if not trials:
            raise SignalError("no epoch fits inside the recording with this tmin/tmax")
        data, channels = np.stack(trials), self.channels
        keep = [n for n in channels.names if n not in self.stim_channels]
        if self.stim_channels and keep:  # a trigger's value at the onset is the label itself
            data, channels = data[:, channels.indices(keep)], channels.pick(keep)
        return Epochs(data, np.asarray(labels), self.sfreq, channels,
                      dict(event_id), tmin=tmin, onsets=np.asarray(onsets), unit=self.unit)

    def _no_annotations_message(self) -> str:
        """Why epochs cannot be cut, naming the stim channels that could give the events."""
        message = "the recording has no annotations to cut epochs from"
        stim = self.stim_channels
        if not stim:
            return message
        if not self.stim_annotations():
            return f"{message}; its stim channel(s) {stim} hold no trigger events (all zero)"
        return (f"{message}, but its stim channel(s) {stim} hold trigger events: "
                f"rec.annotations_from_stim() turns them into annotations (as "
                f"mne.find_events; read_recording and Recording.from_mne(raw, "
                f"stim_events=True) do it for a file or Raw without annotations)")


# MNE's default stim channels for find_events, in its order of preference
_COMBINED_TRIGGERS = ("STI101", "STI 101", "STI 014", "STI014")


def _trigger_annotations(values: np.ndarray, sfreq: float) -> list[Annotation]:
    """One annotation where a trigger channel turns to a new non-zero value (a trigger held
    for several samples is one event), described by the value (an int when whole)."""
    previous = np.concatenate([[0.0], values[:-1]])
    onsets = np.flatnonzero((values != previous) & (values != 0) & np.isfinite(values))
    return [Annotation(i / sfreq, 0.0, _event_name(float(values[i]))) for i in onsets]


def _event_name(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _check_volts(unit: str, what: str) -> None:
    if unit != "V":
        raise SignalError(f"this {what} is in {unit!r}, but MNE objects hold volts: convert "
                          "first (e.g. Scale(1e-6) for microvolts)")


def _merge_event_ids(parts: Sequence[Epochs]) -> tuple[dict[str, int], np.ndarray]:
    """One ``event_id`` for epochs cut from several recordings, and their labels in it.

    Names are the truth: each recording numbers its own events (``Recording.epochs`` without
    ``event_id`` codes its sorted descriptions), so the same code can name different events
    in two parts. Codes stay those of the first part that names an event; a name new to the
    union gets the smallest code not yet taken, and the part's labels are renumbered."""
    union: dict[str, int] = {}
    labels = []
    for part in parts:
        mapping = {}
        for name, code in part.event_id.items():
            if name not in union:
                taken = set(union.values())
                union[name] = code if code not in taken else min(
                    c for c in range(len(taken) + 1) if c not in taken)
            mapping[code] = union[name]
        renumbered = np.asarray(part.labels).copy()
        for code, new in mapping.items():
            renumbered[np.asarray(part.labels) == code] = new
        labels.append(renumbered)
    return union, np.concatenate(labels)


@dataclass
class Epochs:
    """Trials ``(n_epochs, n_channels, n_times)`` with integer labels and their names."""

    data: np.ndarray
    labels: np.ndarray
    sfreq: float
    channels: ChannelSet
    event_id: dict[str, int] = field(default_factory=dict)
    tmin: float = 0.0
    onsets: np.ndarray | None = None
    groups: np.ndarray | None = None  # e.g. subject (or run) per epoch
    sessions: np.ndarray | None = None  # session per epoch
    unit: str = "V"  # volts, MNE's convention

    def __post_init__(self) -> None:
        self.data = check_array(self.data, ndim=3, name="epochs data")
        self.sfreq = check_sfreq(self.sfreq)
        self.unit = check_unit(self.unit)
        if not isinstance(self.channels, ChannelSet):
            self.channels = ChannelSet(tuple(self.channels))
        self.labels = np.asarray(self.labels)
        if len(self.labels) != len(self.data):
            raise SignalError(f"{len(self.data)} epochs but {len(self.labels)} labels")
        if len(self.channels) != self.data.shape[1]:
            raise SignalError(
                f"epochs have {self.data.shape[1]} channels but the channel set names "
                f"{len(self.channels)}"
            )

    def __len__(self) -> int:
        return len(self.data)

    @property
    def n_times(self) -> int:
        return self.data.shape[2]

    @property
    def spec(self):
        """The :class:`~sigformer.spec.SignalSpec` of these epochs (window = epoch length),
        e.g. ``create_model("dbconformer", spec=epochs.spec, n_outputs=2)``."""
        from .spec import SignalSpec

        return SignalSpec(self.sfreq, self.channels, "channels_time", self.n_times, self.unit)

    def __repr__(self) -> str:
        counts = {name: int((self.labels == code).sum()) for name, code in self.event_id.items()}
        events = ", ".join(f"'{k}': {v}" for k, v in counts.items()) or \
            f"{len(np.unique(self.labels))} labels"
        tmax = self.tmin + (self.n_times - 1) / self.sfreq
        unit = "" if self.unit == "V" else f", unit={self.unit}"
        return (f"<Epochs | {len(self)} events ({events}), {self.data.shape[1]} ch, "
                f"{self.sfreq:g} Hz, {self.tmin:g} – {tmax:g} s{unit}>")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_epochs, n_channels, n_times)``; also what lets scikit-learn's cross-validation
        index Epochs like an array (``epochs[train_idx]`` stays Epochs)."""
        return self.data.shape

    def __getitem__(self, idx) -> Epochs:
        idx = np.atleast_1d(np.arange(len(self))[idx])
        per_epoch = {k: None if getattr(self, k) is None else getattr(self, k)[idx]
                     for k in ("onsets", "groups", "sessions")}
        return Epochs(self.data[idx], self.labels[idx], self.sfreq, self.channels,
                      dict(self.event_id), self.tmin, **per_epoch, unit=self.unit)

    @staticmethod
    def concatenate(parts: Sequence[Epochs]) -> Epochs:
        if not parts:
            raise SignalError("nothing to concatenate: no epochs were given")
        first = parts[0]
        for i, p in enumerate(parts[1:], start=1):
            if p.sfreq != first.sfreq:  # checked before lengths: a rate mismatch explains both
                raise SignalError(f"sampling-rate mismatch: part {i} is at {p.sfreq:g} Hz, part "
                                  f"0 at {first.sfreq:g} Hz; resample to one rate first")
            if list(p.channels) != list(first.channels):
                raise SignalError(f"epochs to concatenate must share channels: part {i} has "
                                  f"{list(p.channels)}, part 0 {list(first.channels)}")
            if p.unit != first.unit:
                raise SignalError(f"part {i} is in {p.unit!r}, part 0 in {first.unit!r}")
            if p.n_times != first.n_times:
                raise SignalError(f"epochs to concatenate must have the same length: part {i} "
                                  f"has {p.n_times} samples, part 0 {first.n_times}")
        per_epoch = {}
        for key in ("onsets", "groups", "sessions"):
            values = [getattr(p, key) for p in parts]
            per_epoch[key] = None if any(v is None for v in values) else np.concatenate(values)
        event_id, labels = _merge_event_ids(parts)
        return Epochs(np.concatenate([p.data for p in parts]), labels, first.sfreq,
                      first.channels, event_id, first.tmin, **per_epoch, unit=first.unit)

    @classmethod
    def from_mne(cls, epochs) -> Epochs:
        """From ``mne.Epochs``: volts, as MNE stores them (never converted to µV)."""
        events = epochs.events[:, 2]
        return cls(epochs.get_data(copy=True), events, epochs.info["sfreq"],
                   ChannelSet.from_mne_info(epochs.info), dict(epochs.event_id),
                   tmin=float(epochs.tmin))

    def to_mne(self):
        """An ``mne.EpochsArray``; data not in volts are refused (MNE assumes volts)."""
        import mne

        _check_volts(self.unit, "Epochs")
        n = len(self)
        sample = np.arange(n) * (self.n_times + 1)
        events = np.column_stack([sample, np.zeros(n, int), self.labels.astype(int)])
        event_id = self.event_id or {str(v): int(v) for v in np.unique(self.labels)}
        return mne.EpochsArray(self.data, self.channels.to_mne_info(self.sfreq), events,
                               tmin=self.tmin, event_id=event_id, verbose="error")
