"""EEG recordings stored as CSV tables (Muse / muselsl, OpenBCI GUI, eeg-notebooks, custom).

One row per sample; columns are a timestamp, channels and optional marker columns::

    timestamps,TP9,AF7,AF8,TP10,Right AUX,Marker0
    17515.950,27.344,26.855,27.832,20.020,6.836,0

* The sampling rate comes from ``sfreq=`` when given, else from an OpenBCI ``%Sample Rate``
  header comment, else from the timestamp column. Consumer headsets round their timestamps
  (Muse: to milliseconds, so neighbouring differences are 3 or 4 ms at 256 Hz) and sometimes
  step backwards, so the rate is the median slope over long spans (a twentieth of the file),
  snapped to a nominal rate (256, 250, 500 Hz, ...) when within 1%. Timestamps in
  milliseconds, microseconds or nanoseconds are recognised (the unit whose rate is nominal,
  else the first giving >= 20 Hz) and named in a warning; a rate that could be either unit
  (3 Hz in seconds or 3 kHz in milliseconds) is refused: give ``sfreq=``. The time base is
  then the sample index / rate, never the raw timestamps.
* A last row cut short (the recording stopped mid-write) is left out with a warning; missing
  cells inside the file are errors. OpenBCI GUI ``OpenBCI-RAW-*.txt`` files are such tables
  (``read_recording`` recognises them by their ``%OpenBCI`` header).
* Marker columns (``Marker``, ``Marker0``, ``event``, ``trigger``, ``stim``, OpenBCI's
  ``Marker Channel``) become annotations at the samples where they turn to a non-zero value
  (a trigger held for several samples is one event; description: the value, or
  ``event_names[value]``). OpenBCI's ``Not Used`` placeholder columns are skipped.
* Data are converted to volts (the unit rule); Muse and OpenBCI write microvolts, the default.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..channels import ChannelSet, normalize_channel_name
from ..recording import Annotation, Recording
from ..validation import DataError, DataWarning, detect_scale

NOMINAL_RATES = (100.0, 125.0, 128.0, 200.0, 250.0, 256.0, 500.0, 512.0, 1000.0, 1024.0,
                 2000.0, 2048.0, 4000.0, 4096.0, 8000.0, 8192.0, 16384.0)
SNAP_TOLERANCE = 0.01  # snap an estimated rate to a nominal one within 1%
RATE_MISMATCH_TOLERANCE = 0.01  # a given sfreq further than this from the timestamps warns
TIMESTAMP_COLUMN = re.compile(r"^(timestamps?|time|time[ _]?stamp|lsl[ _]?timestamp|t)$", re.I)
MARKER_COLUMN = re.compile(r"^(markers?|events?|triggers?|stim)\d*$|^marker[ _]?channel$", re.I)
AUX_COLUMN = re.compile(r"aux|accel|gyro|other|analog|digital|battery|sample[ _]?index|"
                        r"packet|counter|formatted", re.I)
UNUSED_COLUMN = re.compile(r"^not[ _]?used$", re.I)  # OpenBCI GUI placeholders, often twice
# timestamps in ms, us or ns give a period of thousands of "seconds" per sample. A reading that
# snaps to a nominal rate names the unit; else the first unit giving at least MIN_PLAUSIBLE_RATE
# wins, unless a smaller unit gave a rate between MIN_RATE and it (2 kHz in ms reads as 2 Hz in
# seconds, a slow non-EEG sensor as kHz in ms): that is ambiguous and refused (give sfreq=)
MIN_PLAUSIBLE_RATE = 20.0
MIN_RATE = 2.0  # below this, no recording: the next smaller unit is meant
TIME_UNITS = ((1.0, "seconds"), (1e3, "milliseconds"), (1e6, "microseconds"),
              (1e9, "nanoseconds"))
UNIT_SCALE = {"V": 1.0, "mV": 1e-3, "uV": 1e-6}


def estimate_sfreq(timestamps: np.ndarray, *, snap: bool = True) -> float:
    """Sampling rate from (rounded, jittered) per-sample timestamps in seconds.

    The median over all long spans ``(t[i + L] - t[i]) / L`` with ``L = n // 20`` ignores
    rounding (its error shrinks as 1/L) and a few backward steps; milliseconds etc. are
    recognised by a nominal or plausible rate (:func:`_in_seconds`). Snapped to
    :data:`NOMINAL_RATES` within 1%.
    """
    t = np.asarray(timestamps, dtype=float)
    t = t[np.isfinite(t)]
    if len(t) < 3:
        raise DataError(f"cannot estimate a sampling rate from {len(t)} timestamps")
    span = max(1, len(t) // 20)
    period = float(np.median((t[span:] - t[:-span]) / span))
    if not period > 0:
        raise DataError("timestamps do not increase over long spans (median slope "
                        f"{period:g} s/sample): give sfreq= explicitly")
    epoch_unit = _unix_time_unit(float(t[0]))
    rate = _in_seconds(1.0 / period) if epoch_unit is None else \
        _in_unit(1.0 / period, *epoch_unit)
    if snap and _snaps(rate):
        return min(NOMINAL_RATES, key=lambda nominal: abs(nominal - rate))
    return rate


def _unix_time_unit(first: float) -> tuple[float, str] | None:
    """(per-second factor, name) of timestamps that are Unix time (2001 to 2100): their
    size says the unit (~1.7e9 seconds, ~1.7e12 milliseconds, ...), which the step alone
    cannot at low rates; None for timestamps that are not."""
    for factor, unit in TIME_UNITS:
        if 9.8e8 * factor <= first <= 4.1e9 * factor:
            return factor, unit
    return None


def _in_unit(rate: float, factor: float, unit: str) -> float:
    """``rate`` per timestamp unit, in Hz, for a known unit (named in a warning unless it
    is seconds, as :func:`_in_seconds` does)."""
    if unit != "seconds":
        warnings.warn(f"the timestamps step {1 / rate:g} units per sample: read as {unit} "
                      f"({rate * factor:g} Hz) by their Unix-time size; pass sfreq= if they are not",
                      DataWarning, stacklevel=4)
    return rate * factor


def _in_seconds(rate: float) -> float:
    """``rate`` (per timestamp unit) per second: the unit whose rate snaps to a nominal one,
    else the first giving a plausible rate (see MIN_PLAUSIBLE_RATE); a unit other than
    seconds is named in a warning, an ambiguous reading is refused."""
    readings = [(rate * factor, unit) for factor, unit in TIME_UNITS]
    chosen = next(((hz, unit) for hz, unit in readings if _snaps(hz)), None) or \
        _plausible_reading(rate, readings)
    hz, unit = chosen
    if unit != "seconds":
        warnings.warn(f"the timestamps step {1 / rate:g} units per sample: read as {unit} "
                      f"({hz:g} Hz); pass sfreq= if they are not", DataWarning, stacklevel=4)
    return hz


def _snaps(rate: float) -> bool:
    nearest = min(NOMINAL_RATES, key=lambda nominal: abs(nominal - rate))
    return abs(nearest - rate) <= SNAP_TOLERANCE * nearest


def _plausible_reading(rate: float, readings: list[tuple[float, str]]) -> tuple[float, str]:
    """The first reading of at least MIN_PLAUSIBLE_RATE, refused when a smaller unit already
    gave a possible (>= MIN_RATE) rate: then which unit is meant cannot be told."""
    for i, (hz, unit) in enumerate(readings):
        if hz >= MIN_PLAUSIBLE_RATE:
            if i and readings[i - 1][0] >= MIN_RATE:
                low, low_unit = readings[i - 1]
                raise DataError(
                    f"the timestamps step {1 / rate:g} units per sample: {low:g} Hz if they "
                    f"are {low_unit}, {hz:g} Hz if {unit}, and neither is a nominal rate; "
                    f"give sfreq= explicitly")
            return hz, unit
    raise DataError(f"the timestamps step {1 / rate:g} units per sample, too slow for EEG "
                    f"even in nanoseconds: give sfreq= explicitly")


def _read_rows(path: Path) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, data rows and ``%`` comment lines (OpenBCI) of a CSV/TSV file."""
    comments, lines = [], []
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("%") or line.startswith("#"):
                comments.append(line[1:].strip())
            elif line.strip():
                lines.append(line)
    if len(lines) < 2:
        raise DataError(f"{path} has no data rows (a header and at least one sample needed)")
    delimiter = "\t" if lines[0].count("\t") > lines[0].count(",") else ","
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = [h.strip() for h in rows[0]]
    _check_header(path, header)
    return header, _complete_rows(path, [[v.strip() for v in r] for r in rows[1:]]), comments


def _check_header(path: Path, header: list[str]) -> None:
    """Refuse a first line that is data, not column names: all numbers, or mostly numbers
    with fractions among them (an OpenBCI GUI v4 file starts with samples, time strings
    among them); whole numbers alone can be channel names ('time,1,2,3')."""
    filled = [h for h in header if h]
    numbers = [h for h in filled if _is_number(h)]
    fractional = any("." in h or "e" in h.lower() for h in numbers)
    if len(numbers) == len(header) or (fractional and len(numbers) * 2 > len(filled)):
        raise DataError(f"{path} has no header row: its first line is data ({len(numbers)} of "
                        f"{len(filled)} cells are numbers), not column names. Add a first "
                        f"line naming the columns (e.g. 'timestamps,TP9,AF7,AF8,TP10'); then "
                        f"channels= picks the channel columns, and sfreq= gives the rate when "
                        f"there is no timestamp column or '%Sample Rate' comment")


def _complete_rows(path: Path, rows: list[list[str]]) -> list[list[str]]:
    """Drop a last row shorter than the one before it (a recording stopped mid-write), with
    a warning; a short row inside the file stays and is reported as missing cells."""
    if len(rows) < 2 or len(rows[-1]) >= len(rows[-2]):
        return rows
    warnings.warn(f"{path.name}: the last row has {len(rows[-1])} cells, the rows before it "
                  f"{len(rows[-2])} (the recording stopped mid-row?); it is left out",
                  DataWarning, stacklevel=4)
    return rows[:-1]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numeric_column(rows: list[list[str]], j: int) -> np.ndarray | None:
    """Column ``j`` as floats (empty cells -> NaN), or None when it holds text."""
    cells = [row[j] if j < len(row) else "" for row in rows]
    try:  # the common case: every cell is a number, parsed by numpy in one go
        return np.asarray(cells, dtype=float)
    except ValueError:
        pass
    values = np.empty(len(rows))
    for i, row in enumerate(rows):
        cell = row[j] if j < len(row) else ""
        if cell == "":
            values[i] = np.nan
            continue
        try:
            values[i] = float(cell)
        except ValueError:
            return None
    return values


def _header_rate(comments: Sequence[str]) -> float | None:
    for line in comments:
        match = re.search(r"sample\s*rate\s*[=:]\s*([\d.]+)", line, re.I)
        if match:
            return float(match.group(1))
    return None


def _marker_annotations(rows: list[list[str]], j: int, sfreq: float,
                        event_names: Mapping | None) -> list[Annotation]:
    """One annotation where the column turns to a non-zero value: a hardware trigger held
    for several samples is one event (as ``mne.find_events``), not one per sample."""
    annotations, previous = [], None
    for i, row in enumerate(rows):
        value = _marker_value(row[j] if j < len(row) else "")
        if value is not None and value != previous:
            name = event_names.get(value, str(value)) if event_names else str(value)
            annotations.append(Annotation(i / sfreq, 0.0, str(name)))
        previous = value
    return annotations


def _marker_value(cell: str) -> object | None:
    """A marker cell's event value (an int where it is a whole number), None for no event."""
    if cell == "":
        return None
    if not _is_number(cell):
        return cell
    number = float(cell)
    if number == 0 or not np.isfinite(number):
        return None
    return int(number) if number.is_integer() else number


def _channel_type(name: str) -> str:
    return "misc" if AUX_COLUMN.search(name) else "eeg"


def read_csv_recording(path, *, sfreq: float | None = None, unit: str = "uV",
                       timestamp_column: str | None = None,
                       marker_columns: Sequence[str] | None = None,
                       channels: Sequence[str] | None = None, include_misc: bool = False,
                       event_names: Mapping | None = None) -> Recording:
    """Read a CSV/TSV EEG recording into a :class:`Recording` in volts.

    Parameters
    ----------
    sfreq : the sampling rate; estimated from the timestamp column when None.
    unit : unit of the file's values (``"uV"`` for Muse / OpenBCI, ``"mV"``, ``"V"``, or
        ``"auto"`` to guess from the amplitude with :func:`~sigformer.validation.detect_scale`).
    timestamp_column, marker_columns, channels : column names, detected when None (channels:
        every other numeric column; auxiliary ones such as ``Right AUX`` or accelerometers are
        dropped unless ``include_misc=True``, which keeps them as ``misc`` channels).
    event_names : marker value -> description (e.g. ``{1: "non-target", 2: "target"}``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    header, rows, comments = _read_rows(path)
    time_col = timestamp_column or next((h for h in header if TIMESTAMP_COLUMN.match(h)), None)
    if timestamp_column is not None and timestamp_column not in header:
        raise DataError(f"{path.name}: no column {timestamp_column!r}; columns: {header}")
    markers = list(marker_columns) if marker_columns is not None else \
        [h for h in header if MARKER_COLUMN.match(h)]
    missing = [m for m in markers if m not in header]
    if missing:
        raise DataError(f"{path.name}: no marker column(s) {missing}; columns: {header}")
    chosen = _choose_channels(path, header, rows, channels, {time_col, *markers}, include_misc)
    rate = _sampling_rate(path, header, rows, time_col, comments, sfreq)
    data = np.stack([values for _, values in chosen])
    scale = _unit_scale(path, unit, data)
    annotations = [a for m in markers for a in _marker_annotations(
        rows, _unique_column(path, header, m, "marker"), rate, event_names)]
    annotations.sort(key=lambda a: a.onset)
    names = [name for name, _ in chosen]
    types = [_channel_type(n) if channels is None else "eeg" for n in names]
    return Recording(data * scale, rate, ChannelSet(tuple(names), tuple(types)), annotations)


def _choose_channels(path: Path, header: list[str], rows: list[list[str]],
                     channels: Sequence[str] | None, reserved: set, include_misc: bool
                     ) -> list[tuple[str, np.ndarray]]:
    if channels is not None:
        missing = [c for c in channels if c not in header]
        if missing:
            raise DataError(f"{path.name}: no channel column(s) {missing}; columns: {header}")
        candidates = [(_unique_column(path, header, c, "channel"), c) for c in channels]
    else:  # by position: placeholder names ("Not Used") can repeat
        candidates = [(j, h) for j, h in enumerate(header) if h not in reserved
                      and not UNUSED_COLUMN.match(h)
                      and (include_misc or _channel_type(h) == "eeg")]
    chosen = []
    for j, name in candidates:
        values = _numeric_column(rows, j)
        if values is None:
            if channels is not None:
                raise DataError(f"{path.name}: channel column {name!r} holds text")
            continue
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(f"{path.name}: channel {name!r} has {int(bad.sum())} empty, "
                            f"missing, NaN or Inf cells (first at data row "
                            f"{int(np.flatnonzero(bad)[0]) + 1}); every cell must be a "
                            f"finite number")
        chosen.append((normalize_channel_name(name) if channels is None else name, values))
    if not chosen:
        raise DataError(f"{path.name}: no numeric channel columns among {header}")
    return chosen


def _unique_column(path: Path, header: list[str], name: str, what: str) -> int:
    """The position of the one column called ``name`` (several of that name are refused:
    which one was meant is not known)."""
    positions = [j for j, h in enumerate(header) if h == name]
    if len(positions) > 1:
        raise DataError(f"{path.name}: {len(positions)} columns are called {name!r} "
                        f"(positions {positions}); the {what} column must be unique")
    return positions[0]


def _sampling_rate(path: Path, header: list[str], rows: list[list[str]], time_col: str | None,
                   comments: Sequence[str], sfreq: float | None) -> float:
    if sfreq is not None:
        _check_given_rate(path, header, rows, time_col, float(sfreq))
        return float(sfreq)
    declared = _header_rate(comments)
    if declared is not None:
        return declared
    if time_col is None:
        raise DataError(f"{path.name}: no timestamp column (looked for 'timestamps', 'time', "
                        f"...; columns: {header}) and no sfreq given")
    stamps = _numeric_column(rows, _unique_column(path, header, time_col, "timestamp"))
    if stamps is None:
        raise DataError(f"{path.name}: timestamp column {time_col!r} is not numeric")
    return estimate_sfreq(stamps)


def _check_given_rate(path: Path, header: list[str], rows: list[list[str]],
                      time_col: str | None, sfreq: float) -> None:
    """Warn when the timestamps say another rate than ``sfreq``: the given rate wins, but a
    wrong one shifts every event and frequency (e.g. 250 Hz for a 256 Hz Muse file)."""
    if time_col is None:
        return
    stamps = _numeric_column(rows, _unique_column(path, header, time_col, "timestamp"))
    if stamps is None:
        return
    try:
        with warnings.catch_warnings():  # the unit guess: the given sfreq settles it
            warnings.simplefilter("ignore", DataWarning)
            estimate = estimate_sfreq(stamps)
    except DataError:  # too few or non-increasing timestamps: nothing to compare with
        return
    if abs(estimate - sfreq) > RATE_MISMATCH_TOLERANCE * estimate:
        warnings.warn(f"{path.name}: sfreq={sfreq:g} Hz was given, but its timestamps say "
                      f"{estimate:g} Hz ({abs(estimate - sfreq) / estimate:.1%} apart); the "
                      f"given rate is used: leave sfreq out to use the timestamps' rate",
                      DataWarning, stacklevel=4)


def _unit_scale(path: Path, unit: str, data: np.ndarray) -> float:
    if unit == "auto":
        guessed = detect_scale(data)
        if guessed == "unknown":
            warnings.warn(f"{path.name}: the amplitude does not look like EEG in volts or "
                          "microvolts; assuming microvolts (pass unit= to say)", stacklevel=3)
            guessed = "uV"
        unit = guessed
    if unit not in UNIT_SCALE:
        raise DataError(f"unit must be one of {sorted(UNIT_SCALE)} or 'auto', got {unit!r}")
    warn_if_amplitude_contradicts(path, unit, data, stacklevel=4)
    return UNIT_SCALE[unit]


def warn_if_amplitude_contradicts(path: Path, unit: str, data: np.ndarray, source: str = "",
                                  stacklevel: int = 3) -> None:
    """A :class:`DataWarning` when the amplitude (:func:`detect_scale`) says another unit than
    ``unit``, which ``source`` may say where it came from (e.g. a stream's channel metadata):
    a Muse file's microvolts read as volts, volts that a stream declares as microvolts."""
    guessed = detect_scale(data)
    if guessed in ("unknown", unit):
        return
    warnings.warn(f"{path.name}: read as unit={unit!r}{source}, but the amplitude looks like "
                  f"{guessed!r} (EEG is ~10 uV, ~1e-5 V): if the file is in {guessed}, pass "
                  f"unit={guessed!r}, else the volts are off by the factor between the units",
                  DataWarning, stacklevel=stacklevel)
