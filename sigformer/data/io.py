"""Reading EEG files (EDF, BDF, FIF, GDF) through MNE into :class:`~sigformer.Recording`."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..recording import Recording

READERS = {".edf": "read_raw_edf", ".bdf": "read_raw_bdf", ".gdf": "read_raw_gdf",
           ".fif": "read_raw_fif"}


class DataError(ValueError):
    """A data file or folder is missing, unsupported, truncated or corrupt."""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".fif.gz"):
        return ".fif"
    return path.suffix.lower()


def check_edf_size(path: Path) -> None:
    """Compare an EDF/BDF file's size with what its header declares (MNE reads a truncated
    file silently, padding or dropping the missing records)."""
    bytes_per_sample = 3 if _suffix(path) == ".bdf" else 2
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fixed = fh.read(256)
        if len(fixed) < 256:
            raise DataError(f"{path} is truncated: {size} bytes, shorter than an EDF header")
        try:
            header_bytes = int(fixed[184:192].decode("ascii").strip())
            n_records = int(fixed[236:244].decode("ascii").strip())
            n_signals = int(fixed[252:256].decode("ascii").strip())
        except ValueError:
            raise DataError(f"{path} has a corrupt EDF header (non-numeric size fields)"
                            ) from None
        fh.seek(256 + n_signals * 216)
        raw_counts = fh.read(n_signals * 8)
    try:
        samples = [int(raw_counts[i * 8:(i + 1) * 8].decode("ascii").strip())
                   for i in range(n_signals)]
    except ValueError:
        raise DataError(f"{path} has a corrupt EDF header (samples per record)") from None
    if n_records < 0:  # -1: unknown while recording; nothing to compare
        return
    expected = header_bytes + n_records * sum(samples) * bytes_per_sample
    if size < expected:
        raise DataError(f"{path} is truncated: its header declares {n_records} records "
                        f"({expected} bytes) but the file has {size} bytes")


def read_raw(path) -> object:
    """``mne.io.Raw`` for an EDF/BDF/GDF/FIF file, with errors that name the file."""
    import mne

    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    suffix = _suffix(path)
    if suffix not in READERS:
        raise DataError(f"{path.name}: unsupported format {suffix!r}; sigformer reads "
                        f"{sorted(READERS)} (through MNE)")
    reader = getattr(mne.io, READERS[suffix])
    if suffix in (".edf", ".bdf"):
        check_edf_size(path)
    try:
        raw = reader(path, preload=True, verbose="error")
    except Exception as err:  # MNE raises many types for damaged files
        raise DataError(f"{path} could not be read as {suffix[1:].upper()} (truncated or "
                        f"corrupt?): {type(err).__name__}: {err}") from err
    if raw.n_times == 0:
        raise DataError(f"{path} contains no samples")
    return raw


def read_recording(path, *, normalize_names: bool = False) -> Recording:
    """Read a file into a :class:`Recording` (data in volts, as MNE returns them)."""
    rec = Recording.from_mne(read_raw(path))
    if normalize_names:
        rec.channels = rec.channels.normalized()
    return rec


def save_npz(path: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Arrays plus JSON metadata as a compressed ``.npz`` (no pickle), written atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays, meta=np.asarray(json.dumps(meta)))
    tmp.replace(path)
    return path


def load_npz(path: str | Path, required: set[str], what: str
             ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read what :func:`save_npz` wrote (``allow_pickle=False``); names the missing arrays."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise DataError(f"{path} is not a readable {what} (.npz): {err}") from None
    missing = (set(required) | {"meta"}) - set(arrays)
    if missing:
        raise DataError(f"{path} lacks the arrays {sorted(missing)} of a {what}")
    return arrays, json.loads(str(arrays.pop("meta")))
