"""sEEG / ECoG contacts from BIDS-style ``*_electrodes.tsv`` files.

Contacts are grouped by shaft (depth electrode: the name without its trailing contact number,
``L'1`` -> ``L'``) and by region (a ``region``/``anat``/``group`` column when the file has one,
or a mapping the user supplies). Du-IN selects its input channels by region this way.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .core import ChannelError, ChannelSet

REGION_COLUMNS = ("region", "anat", "anatomy", "roi", "location", "group")


def shaft_of(name: str) -> str:
    """Shaft (electrode) of a contact: its name without the trailing contact number."""
    match = re.match(r"^(.*?)(\d+)$", name.strip())
    return match.group(1) if match else name.strip()


@dataclass
class ContactTable:
    """Contacts with positions (metres), shaft and region."""

    names: list[str]
    positions: np.ndarray
    ch_type: str = "seeg"
    regions: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.regions:
            self.regions = [None] * len(self.names)

    @property
    def shafts(self) -> list[str]:
        return [shaft_of(n) for n in self.names]

    def channel_set(self, names: Iterable[str] | None = None) -> ChannelSet:
        names = list(self.names) if names is None else list(names)
        idx = [self._index(n) for n in names]
        return ChannelSet(tuple(names), (self.ch_type,) * len(names), self.positions[idx])

    def _index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ChannelError(f"contact {name!r} is not in the electrodes table") from None

    def by_shaft(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = defaultdict(list)
        for name, shaft in zip(self.names, self.shafts):
            groups[shaft].append(name)
        return dict(groups)

    def by_region(self) -> dict[str, list[str]]:
        if all(r is None for r in self.regions):
            raise ChannelError("the electrodes table has no region column; pass regions with "
                               "with_regions({...}) or group by shaft instead")
        groups: dict[str, list[str]] = defaultdict(list)
        for name, region in zip(self.names, self.regions):
            if region is not None:
                groups[region].append(name)
        return dict(groups)

    def with_regions(self, mapping: Mapping[str, Iterable[str]]) -> ContactTable:
        """Assign regions from ``{region: [contact or shaft names]}``."""
        regions = list(self.regions)
        for region, members in mapping.items():
            members = set(members)
            for i, (name, shaft) in enumerate(zip(self.names, self.shafts)):
                if name in members or shaft in members:
                    regions[i] = region
        return ContactTable(list(self.names), self.positions, self.ch_type, regions)

    def select(self, *, regions: Iterable[str] | None = None,
               shafts: Iterable[str] | None = None) -> list[str]:
        """Contact names in the given regions and/or shafts (file order)."""
        chosen = set()
        if regions is not None:
            groups = self.by_region()
            unknown = sorted(set(regions) - set(groups))
            if unknown:
                raise ChannelError(f"unknown region(s) {unknown}; regions: {sorted(groups)}")
            chosen |= {n for r in regions for n in groups[r]}
        if shafts is not None:
            groups = self.by_shaft()
            unknown = sorted(set(shafts) - set(groups))
            if unknown:
                raise ChannelError(f"unknown shaft(s) {unknown}; shafts: {sorted(groups)}")
            chosen |= {n for s in shafts for n in groups[s]}
        return [n for n in self.names if n in chosen]


def read_electrodes_tsv(path, ch_type: str = "seeg", units: str = "auto") -> ContactTable:
    """Read ``name, x, y, z[, region...]`` (BIDS ``electrodes.tsv``).

    ``units``: ``"m"``, ``"mm"`` or ``"auto"`` (millimetres when any coordinate exceeds 1, as
    MNI-space millimetre files do). Positions are returned in metres.
    """
    path = Path(path)
    if not path.is_file():
        raise ChannelError(f"electrodes file {path} does not exist")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows:
        raise ChannelError(f"{path} has no contacts")
    missing = [c for c in ("name", "x", "y", "z") if c not in rows[0]]
    if missing:
        raise ChannelError(f"{path} lacks the column(s) {missing}; BIDS electrodes files have "
                           "name, x, y, z")
    names = [r["name"] for r in rows]
    try:
        pos = np.array([[float(r[c]) if r[c] not in ("n/a", "") else np.nan
                         for c in ("x", "y", "z")] for r in rows])
    except ValueError as err:
        raise ChannelError(f"{path}: non-numeric coordinate ({err})") from None
    if units not in ("auto", "m", "mm"):
        raise ValueError(f"units must be 'auto', 'm' or 'mm', got {units!r}")
    if units == "mm" or (units == "auto" and np.nanmax(np.abs(pos)) > 1.0):
        pos = pos / 1000.0
    region_col = next((c for c in REGION_COLUMNS if c in rows[0]), None)
    regions = [r[region_col] or None for r in rows] if region_col else []
    return ContactTable(names, pos, ch_type, regions)
