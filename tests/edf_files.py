"""Minimal EDF files written byte by byte, for reader tests and the bad-input catalogue
(header fields can be set to any value, valid or not)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _field(value, width: int) -> bytes:
    return str(value).ljust(width)[:width].encode("latin-1")


def write_edf(path: Path, digital: np.ndarray, labels: list[str], *, sfreq: int = 100,
              phys=(-500.0, 500.0), dig=(-32768, 32767), overrides: dict | None = None,
              header: dict | None = None, n_records: int | None = None) -> Path:
    """A minimal EDF (1-s records, int16 samples); ``overrides[(label, field)]`` replaces a
    signal's header field, ``header[field]`` one of the fixed fields."""
    n_ch, n = digital.shape
    n_rec = n // sfreq
    overrides, header = overrides or {}, header or {}
    fixed = {"version": "0", "bytes": 256 * (n_ch + 1), "records": n_records or n_rec,
             "n_signals": n_ch, **header}
    head = _field(fixed["version"], 8) + _field("X X X X", 80) + _field("Startdate X X X X", 80)
    head += b"01.01.0100.00.00" + _field(fixed["bytes"], 8) + _field("", 44)
    head += _field(fixed["records"], 8) + _field(1, 8) + _field(fixed["n_signals"], 4)

    def column(key, default, width):
        return b"".join(_field(overrides.get((lab, key), default), width) for lab in labels)
    head += b"".join(_field(label, 16) for label in labels) + column("t", "", 80)
    head += column("dim", "uV", 8) + column("pmin", phys[0], 8) + column("pmax", phys[1], 8)
    head += column("dmin", dig[0], 8) + column("dmax", dig[1], 8) + column("pf", "", 80)
    head += column("n", sfreq, 8) + column("r", "", 32)
    records = digital[:, :n_rec * sfreq].reshape(n_ch, n_rec, sfreq).transpose(1, 0, 2)
    path.write_bytes(head + records.astype("<i2").tobytes())
    return path
