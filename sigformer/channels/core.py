"""Channel sets: names, types and positions, with name normalisation and MNE montages.

A :class:`ChannelSet` is the one description of "which channels" used across sigformer: the
recording type, the preprocessing stages, the models' expected inputs and the checkpoints all
carry one, so a mismatch is caught by name rather than by a silent shape coincidence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

CHANNEL_TYPES = (
    "eeg", "seeg", "ecog", "eog", "emg", "ecg", "stim", "misc", "mic", "iq", "antenna",
)
# sigformer type -> MNE channel type (mic/iq/antenna have no MNE counterpart).
_TO_MNE_TYPE = {t: t for t in ("eeg", "seeg", "ecog", "eog", "emg", "ecg", "stim", "misc")}
_TO_MNE_TYPE.update({"mic": "misc", "iq": "misc", "antenna": "misc"})


class ChannelError(ValueError):
    """A channel set does not match what was expected."""


# MNE 1.13 renamed its template montages (standard_1005 -> colin27_1005, ...); the old names,
# which most tutorials use, stay valid here on every MNE version.
MONTAGE_ALIASES = {
    "standard_1005": "colin27_1005", "standard_1020": "colin27_1020",
    "standard_alphabetic": "colin27_alphabetic", "standard_postfixed": "colin27_postfixed",
    "standard_prefixed": "colin27_prefixed", "standard_primed": "colin27_primed",
}


def resolve_montage_name(montage: str | None, builtin: Sequence[str]) -> str:
    """The built-in montage to load for ``montage`` (None: the 10-05 template)."""
    if montage is None:
        montage = "standard_1005"
    if montage in builtin:
        return montage
    alias = MONTAGE_ALIASES.get(montage)
    reverse = {v: k for k, v in MONTAGE_ALIASES.items()}.get(montage)
    for candidate in (alias, reverse):
        if candidate is not None and candidate in builtin:
            return candidate
    raise ChannelError(f"unknown montage {montage!r}; MNE offers {list(builtin)} (and the "
                       f"aliases {sorted(MONTAGE_ALIASES)})")


@lru_cache(maxsize=1)
def _canonical_10_05_names() -> dict[str, str]:
    """Lower-case -> canonical spelling of every 10-05 electrode name MNE knows."""
    import mne

    name = resolve_montage_name("standard_1005", mne.channels.get_builtin_montages())
    montage = mne.channels.make_standard_montage(name)
    return {ch.lower(): ch for ch in montage.ch_names}


def normalize_channel_name(name: str) -> str:
    """Canonical 10-05 spelling of an electrode name.

    Strips BCI2000/eegmmidb dot padding (``"Fc5."`` -> ``"FC5"``, ``"Cz.."`` -> ``"Cz"``), an
    ``"EEG "`` prefix and reference suffixes (``"EEG C3-REF"`` -> ``"C3"``), and fixes case
    against MNE's 10-05 list. Names that are not 10-05 electrodes are returned stripped only.
    """
    cleaned = name.strip().strip(".").strip()
    cleaned = re.sub(r"^(EEG|eeg)[\s_-]+", "", cleaned)
    cleaned = re.sub(r"[-_](REF|Ref|ref|LE|AR|A1|A2)$", "", cleaned)
    cleaned = cleaned.replace(".", "")
    return _canonical_10_05_names().get(cleaned.lower(), cleaned)


def _known_positions(locs: np.ndarray) -> np.ndarray | None:
    """Per-channel positions with NaN where a channel has none (MNE leaves zeros or NaN
    for EOG, stim, misc): one channel without a position must not discard everyone's, which
    turned every interpolation into zero filling. None when no channel has a position."""
    locs = np.array(locs, dtype=float)
    unknown = ~np.isfinite(locs).all(axis=1) | (locs == 0).all(axis=1)
    if unknown.all():
        return None
    locs[unknown] = np.nan
    return locs


# old 10-20 temporal names -> the 10-10 names of the same positions
OLD_1020_NAMES = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}


def _montage_position(lookup: dict[str, np.ndarray], name: str) -> np.ndarray:
    """A channel's position in a montage: by its normalised name ("Fc5." -> FC5, "EEG O1-REF"
    -> O1), else by the other spelling of an old 10-20 temporal name (T3 <-> T7, ...), since
    some montages list only one of the two."""
    key = normalize_channel_name(name)
    modern = {**OLD_1020_NAMES, **{v: k for k, v in OLD_1020_NAMES.items()}}
    for candidate in (key, modern.get(key)):
        if candidate is not None and candidate.lower() in lookup:
            return lookup[candidate.lower()]
    return np.full(3, np.nan)


@lru_cache(maxsize=8)
def _head_frame_positions(montage: str) -> dict[str, np.ndarray]:
    """A built-in montage's positions in MNE's head frame, as ``raw.set_montage`` gives them
    to a recording: the template's own coordinates differ by up to ~5 cm, so a model's
    channels from ``with_montage`` and a Raw's channels would be interpolated across two
    frames."""
    import mne

    template = mne.channels.make_standard_montage(montage)
    info = mne.create_info(template.ch_names, 100.0, "eeg")
    info.set_montage(template, on_missing="ignore", verbose="error")
    return {ch["ch_name"].lower(): np.array(ch["loc"][:3], float) for ch in info["chs"]}


@dataclass(frozen=True)
class ChannelSet:
    """Ordered channel names with their types and (optional) 3-D positions in metres."""

    names: tuple[str, ...]
    types: tuple[str, ...] = ()
    positions: np.ndarray | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        object.__setattr__(self, "names", names)
        types = tuple(self.types) if self.types else ("eeg",) * len(names)
        if len(types) != len(names):
            raise ChannelError(f"got {len(names)} channel names but {len(types)} channel types")
        unknown = sorted(set(types) - set(CHANNEL_TYPES))
        if unknown:
            raise ChannelError(f"unknown channel type(s) {unknown}; expected one of {CHANNEL_TYPES}")
        object.__setattr__(self, "types", types)
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ChannelError(f"duplicate channel names {duplicates}: channel names must be unique")
        if self.positions is not None:
            pos = np.asarray(self.positions, dtype=float)
            if pos.shape != (len(names), 3):
                raise ChannelError(
                    f"positions must have shape ({len(names)}, 3), got {pos.shape}"
                )
            object.__setattr__(self, "positions", pos)

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_names(cls, names: Iterable[str], ch_type: str = "eeg", *, normalize: bool = False,
                   montage: str | None = None) -> ChannelSet:
        names = [normalize_channel_name(n) if normalize else n for n in names]
        chs = cls(tuple(names), (ch_type,) * len(names))
        return chs.with_montage(montage) if montage else chs

    @classmethod
    def from_mne_info(cls, info) -> ChannelSet:
        types = tuple(_from_mne_type(t) for t in info.get_channel_types())
        locs = np.array([ch["loc"][:3] for ch in info["chs"]], dtype=float)
        return cls(tuple(info.ch_names), types, _known_positions(locs))

    @classmethod
    def from_chs_info(cls, chs_info: Sequence[dict]) -> ChannelSet:
        """From braindecode's ``chs_info`` (a list of MNE ``info['chs']`` dicts)."""
        names = tuple(ch["ch_name"] for ch in chs_info)
        locs = np.array([np.asarray(ch.get("loc", np.zeros(12)))[:3] for ch in chs_info], float)
        return cls(names, ("eeg",) * len(names), _known_positions(locs))

    def with_montage(self, montage: str | None = None) -> ChannelSet:
        """Attach positions from an MNE built-in montage (channels it lacks get NaN).

        The default is MNE's 10-05 template (``colin27_1005``, called ``standard_1005`` before
        MNE 1.13; both names work on every MNE version).
        """
        import mne

        lookup = _head_frame_positions(
            resolve_montage_name(montage, mne.channels.get_builtin_montages()))
        pos = np.array([_montage_position(lookup, n) for n in self.names])
        return ChannelSet(self.names, self.types, pos)

    # --- queries ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for t in self.types:
            counts[t] = counts.get(t, 0) + 1
        kinds = ", ".join(f"{n} {t}" for t, n in counts.items()) or "empty"
        shown = ", ".join(self.names[:4]) + (", ..." if len(self.names) > 4 else "")
        pos = ", positions" if self.positions is not None else ""
        return f"<ChannelSet | {len(self)} ch ({kinds}): {shown}{pos}>"

    def __iter__(self):
        return iter(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ChannelError(f"channel {name!r} not in {list(self.names)}") from None

    def indices(self, names: Iterable[str]) -> list[int]:
        names = list(names)
        missing = [n for n in names if n not in self.names]
        if missing:
            raise ChannelError(
                f"channels {missing} are not in this channel set ({len(self)} channels: "
                f"{list(self.names)})"
            )
        return [self.names.index(n) for n in names]

    def pick(self, names: Iterable[str]) -> ChannelSet:
        idx = self.indices(names)
        pos = None if self.positions is None else self.positions[idx]
        return ChannelSet(tuple(self.names[i] for i in idx), tuple(self.types[i] for i in idx), pos)

    def normalized(self) -> ChannelSet:
        return ChannelSet(
            tuple(normalize_channel_name(n) for n in self.names), self.types, self.positions
        )

    def to_mne_info(self, sfreq: float):
        import mne

        info = mne.create_info(list(self.names), sfreq, [_TO_MNE_TYPE[t] for t in self.types])
        if self.positions is not None:
            for ch, pos in zip(info["chs"], self.positions):
                ch["loc"][:3] = pos
        return info

    def to_chs_info(self) -> list[dict]:
        """braindecode's ``chs_info`` format."""
        return list(self.to_mne_info(1.0)["chs"])

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "types": list(self.types),
            "positions": None if self.positions is None else self.positions.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ChannelSet:
        pos = d.get("positions")
        return cls(tuple(d["names"]), tuple(d.get("types") or ()),
                   None if pos is None else np.asarray(pos, float))


def _from_mne_type(mne_type: str) -> str:
    return mne_type if mne_type in CHANNEL_TYPES else "misc"


def check_channels_match(expected: ChannelSet | Sequence[str], got: ChannelSet | Sequence[str],
                         what: str = "model") -> None:
    """Raise a :class:`ChannelError` naming missing/extra/reordered channels."""
    exp, act = list(expected), list(got)
    if exp == act:
        return
    missing = [n for n in exp if n not in act]
    extra = [n for n in act if n not in exp]
    if missing or extra:
        raise ChannelError(
            f"channel set does not match the {what}: missing {missing}, unexpected {extra} "
            f"(expected {len(exp)} channels, got {len(act)})"
        )
    raise ChannelError(f"channels are in a different order than the {what} expects: {exp}")
