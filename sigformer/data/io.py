"""Reading EEG files into :class:`~sigformer.Recording` (volts): EDF, BDF, GDF and FIF through
MNE, CSV tables (Muse, OpenBCI) and XDF (Lab Streaming Layer) through sigformer's readers."""

from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..recording import Recording
from ..validation import DataError, DataWarning

__all__ = ["DataError", "DataWarning", "read_raw", "read_recording", "load_npz", "save_npz"]

READERS = {".edf": "read_raw_edf", ".bdf": "read_raw_bdf", ".gdf": "read_raw_gdf",
           ".fif": "read_raw_fif"}
TABLE_FORMATS = (".csv", ".tsv")
FORMATS = (*sorted(READERS), *TABLE_FORMATS, ".xdf")
# First bytes of each binary format: a renamed file is recognised, not called truncated.
MAGIC = {".edf": b"0       ", ".bdf": b"\xffBIOSEMI", ".gdf": b"GDF", ".xdf": b"XDF:"}
OPENBCI_SNIFF_LINES = 5  # the '%OpenBCI Raw EEG Data' line opens the GUI's comment header
CLIPPING_FRACTION = 0.001  # warn when more than 0.1% of a channel's samples sit at a limit
UNIT_FACTORS = {"uv": 1e-6, "µv": 1e-6, "μv": 1e-6, "mv": 1e-3, "v": 1.0, "nv": 1e-9}


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".fif.gz"):
        return ".fif"
    return path.suffix.lower()


def sniff_format(path: Path) -> str | None:
    """The format a file's first bytes announce (``.edf``, ``.bdf``, ``.gdf``, ``.xdf``)."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    for suffix, magic in MAGIC.items():
        if head.startswith(magic):
            return suffix
    return None


@dataclass(frozen=True)
class EDFSignal:
    """One signal of an EDF/BDF header."""

    label: str
    physical_dimension: str
    physical_min: float
    physical_max: float
    digital_min: int
    digital_max: int
    samples_per_record: int

    @property
    def is_annotation(self) -> bool:
        return self.label.strip() in ("EDF Annotations", "BDF Annotations")


def _fields(block: bytes, n: int, width: int) -> list[str]:
    return [block[i * width:(i + 1) * width].decode("latin-1").strip() for i in range(n)]


def read_edf_header(path: Path) -> tuple[int, int, list[EDFSignal]]:
    """Header size, record count and signals of an EDF/BDF file, checked field by field."""
    with open(path, "rb") as fh:
        fixed = fh.read(256)
        if len(fixed) < 256:
            raise DataError(f"{path} is truncated: {path.stat().st_size} bytes, shorter than an "
                            "EDF header (256 bytes)")
        try:
            header_bytes = int(fixed[184:192].decode("ascii").strip())
            n_records = int(fixed[236:244].decode("ascii").strip())
            n_signals = int(fixed[252:256].decode("ascii").strip())
        except ValueError:
            raise DataError(f"{path} has a corrupt EDF header (non-numeric size fields)"
                            ) from None
        if n_signals <= 0:
            raise DataError(f"{path} has a corrupt EDF header: it declares {n_signals} "
                            "signals, and an EDF file needs at least one")
        block = fh.read(n_signals * 256)
    if len(block) < n_signals * 256:
        raise DataError(f"{path} is truncated inside its header ({n_signals} signals declared)")
    widths = [16, 80, 8, 8, 8, 8, 8, 80, 8, 32]
    columns, offset = [], 0
    for width in widths:
        columns.append(_fields(block[offset:], n_signals, width))
        offset += width * n_signals
    labels, _, dims, pmin, pmax, dmin, dmax, _, counts, _ = columns
    signals = []
    for i, label in enumerate(labels):
        try:
            signals.append(EDFSignal(label, dims[i], float(pmin[i]), float(pmax[i]),
                                     int(float(dmin[i])), int(float(dmax[i])), int(counts[i])))
        except ValueError:
            raise DataError(f"{path}: channel {label!r} has a non-numeric physical/digital "
                            f"range or sample count in its header ({pmin[i]!r}, {pmax[i]!r}, "
                            f"{dmin[i]!r}, {dmax[i]!r}, {counts[i]!r})") from None
    return header_bytes, n_records, signals


def check_edf_header(path: Path, signals: list[EDFSignal]) -> None:
    """Ranges that cannot be scaled are errors; a zero physical range is a flat channel."""
    for sig in signals:
        if sig.is_annotation:
            continue
        if sig.digital_min == sig.digital_max:
            raise DataError(f"{path}: channel {sig.label!r} has digital minimum = maximum "
                            f"({sig.digital_min}) in its header, so its samples cannot be "
                            "scaled to physical units (corrupt header; drop or repair it)")
        if sig.physical_min == sig.physical_max:
            warnings.warn(f"{path.name}: channel {sig.label!r} has physical minimum = maximum "
                          f"({sig.physical_min:g} {sig.physical_dimension}); it reads as a "
                          "constant", DataWarning, stacklevel=3)


def check_edf_size(path: Path) -> None:
    """Compare an EDF/BDF file's size with what its header declares (MNE reads a truncated
    file silently, padding or dropping the missing records)."""
    bytes_per_sample = 3 if sniff_format(path) == ".bdf" else 2
    size = path.stat().st_size
    header_bytes, n_records, signals = read_edf_header(path)
    if n_records < 0:  # -1: unknown while recording; nothing to compare
        return
    expected = header_bytes + n_records * sum(s.samples_per_record for s in signals) \
        * bytes_per_sample
    if size < expected:
        raise DataError(f"{path} is truncated: its header declares {n_records} records "
                        f"({expected} bytes) but the file has {size} bytes")


def clipped_channels(raw, signals: list[EDFSignal]) -> dict[str, float]:
    """Fraction of samples at the header's physical limits, per channel above the threshold."""
    by_label = {s.label: s for s in signals if not s.is_annotation}
    data = raw.get_data()
    clipped = {}
    for name, row in zip(raw.ch_names, data):
        sig = by_label.get(name)
        if sig is None or sig.digital_max == sig.digital_min:
            continue
        factor = UNIT_FACTORS.get(sig.physical_dimension.strip().lower(), 1.0)
        step = abs(sig.physical_max - sig.physical_min) / abs(sig.digital_max - sig.digital_min)
        tol = 0.5 * step * factor
        at_limit = (np.abs(row - sig.physical_max * factor) <= tol) | \
            (np.abs(row - sig.physical_min * factor) <= tol)
        fraction = float(at_limit.mean())
        if fraction > CLIPPING_FRACTION:
            clipped[name] = fraction
    return clipped


def _report_clipping(path: Path, clipped: dict[str, float], policy: str) -> None:
    if not clipped or policy == "ignore":
        return
    listing = ", ".join(f"{name!r} ({fraction:.1%} of samples)"
                        for name, fraction in clipped.items())
    message = (f"{path.name}: channel(s) {listing} stuck at the digital limits (amplifier "
               "saturation or clipping)")
    if policy == "raise":
        raise DataError(message)
    warnings.warn(message, DataWarning, stacklevel=3)


def _actual_format(path: Path, suffix: str) -> str:
    """The name's format, checked against the content (renamed files are named as such)."""
    if suffix not in MAGIC or suffix == ".xdf" or path.stat().st_size < 256:
        return suffix  # (a stub shorter than any header is reported as truncated)
    sniffed = sniff_format(path)
    if sniffed == suffix or (suffix == ".edf" and sniffed is None and _looks_like_edf(path)):
        return suffix
    if sniffed is not None:  # MNE's readers go by the name, so the name must change
        raise DataError(f"{path.name} is named {suffix} but its content is "
                        f"{sniffed[1:].upper()} (a renamed file?): rename it to "
                        f"{path.stem}{sniffed}")
    with open(path, "rb") as fh:
        head = fh.read(16)
    raise DataError(f"{path} is not an {suffix[1:].upper()} file: it starts with {head!r}, not "
                    f"{MAGIC[suffix]!r} (another file renamed {suffix}?)")


def _looks_like_edf(path: Path) -> bool:
    """EDF writers are lax with the version field's padding; accept '0' then spaces/NULs."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    return head[:1] == b"0" and head[1:].strip(b" \x00") == b""


def read_raw(path, *, clipping: str = "warn") -> object:
    """``mne.io.Raw`` for an EDF/BDF/GDF/FIF file, with errors that name the file.

    EDF/BDF headers are checked first (size against the declared records, digital and
    physical ranges per channel), and channels stuck at their digital limits are reported
    (``clipping="warn"``, ``"raise"`` or ``"ignore"``). A file whose content is another
    format than its name says is reported as renamed (not as truncated or corrupt).
    """
    import mne

    if clipping not in ("warn", "raise", "ignore"):
        raise ValueError(f"clipping must be 'warn', 'raise' or 'ignore', got {clipping!r}")
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a recording file (expected one of "
                        f"{list(FORMATS)})")
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    suffix = _suffix(path)
    if suffix not in READERS:
        raise DataError(f"{path.name}: unsupported format {suffix!r}; sigformer reads "
                        f"{list(FORMATS)}")
    if path.stat().st_size == 0:  # before the header checks, which would call it truncated
        raise DataError(f"{path} is empty (0 bytes): expected a {suffix[1:].upper()} recording")
    suffix = _actual_format(path, suffix)
    signals: list[EDFSignal] = []
    if suffix in (".edf", ".bdf"):
        _, _, signals = read_edf_header(path)
        check_edf_header(path, signals)
        check_edf_size(path)
    reader = getattr(mne.io, READERS[suffix])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # MNE's own header chatter
            raw = reader(path, preload=True, verbose="error")
    except Exception as err:  # MNE raises many types for damaged files
        raise DataError(f"{path} could not be read as {suffix[1:].upper()} (truncated or "
                        f"corrupt?): {type(err).__name__}: {err}") from err
    if raw.n_times == 0:
        raise DataError(f"{path} contains no samples")
    if signals:
        _report_clipping(path, clipped_channels(raw, signals), clipping)
    return raw


def is_openbci_text(path: Path) -> bool:
    """Whether ``path`` is an OpenBCI GUI recording (``OpenBCI-RAW-*.txt``): a CSV table
    whose comment header starts with ``%OpenBCI``."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = [fh.readline() for _ in range(OPENBCI_SNIFF_LINES)]
    except OSError:
        return False
    return any(line.lstrip().lower().startswith("%openbci") for line in head)


def _is_table(path: Path, suffix: str) -> bool:
    """CSV/TSV by name; a ``.txt`` only when its header says OpenBCI (else refused, named)."""
    if suffix in TABLE_FORMATS:
        return True
    if suffix != ".txt" or not path.is_file():
        return False
    if is_openbci_text(path):
        return True
    raise DataError(f"{path.name}: unsupported format '.txt' (no '%OpenBCI' header line, as an "
                    f"OpenBCI GUI recording starts with); sigformer reads {list(FORMATS)}: a "
                    f"comma- or tab-separated table with a header row can be renamed .csv/.tsv "
                    f"or read with sigformer.data.csv_recording.read_csv_recording")


def read_recording(path, *, normalize_names: bool = False, **options) -> Recording:
    """Read a file into a :class:`Recording` in volts (the unit rule).

    EDF/BDF/GDF/FIF go through MNE (``options``: ``clipping``; a file without annotations
    gets its stim channels' trigger events as annotations); CSV/TSV tables and OpenBCI
    GUI ``.txt`` recordings (recognised by their ``%OpenBCI`` header) through
    :func:`~sigformer.data.csv_recording.read_csv_recording` and XDF through
    :func:`~sigformer.data.xdf.read_xdf_recording` (``options`` are theirs, e.g. ``sfreq``,
    ``unit``, ``event_names``, ``stream``).
    """
    path = Path(path)
    suffix = _suffix(path)
    if _is_table(path, suffix):
        from .csv_recording import read_csv_recording

        rec = read_csv_recording(path, **options)
    elif suffix == ".xdf":
        from .xdf import read_xdf_recording

        rec = read_xdf_recording(path, **options)
    else:
        # trigger channels (a FIF file's STI 014) give the events when nothing else does
        rec = Recording.from_mne(read_raw(path, **options), stim_events=True)
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
    if not zipfile.is_zipfile(path):  # else np.load reads any other bytes as a pickle
        raise DataError(f"{path} is not a readable {what} (.npz): it is not a zip archive "
                        f"(truncated, or another file renamed .npz?)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise DataError(f"{path} is not a readable {what} (.npz): {err}") from None
    missing = (set(required) | {"meta"}) - set(arrays)
    if missing:
        raise DataError(f"{path} lacks the arrays {sorted(missing)} of a {what}")
    return arrays, json.loads(str(arrays.pop("meta")))
