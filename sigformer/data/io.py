"""Reading EEG files (EDF, BDF, FIF, GDF) through MNE into :class:`~sigformer.Recording`."""

from __future__ import annotations

from pathlib import Path

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
