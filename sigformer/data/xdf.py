"""XDF files (Lab Streaming Layer recordings, e.g. LabRecorder) as :class:`Recording`.

Reading goes through ``pyxdf`` (optional dependency: ``pip install 'sigformer[eeg]'``). One
signal stream becomes the recording (by default the EEG stream with the most channels); every
string / marker stream becomes annotations, on the signal stream's clock (pyxdf applies the
recorded clock offsets). :func:`write_xdf` writes a minimal valid XDF file (file header,
stream headers, samples, footers), enough for tests and for recording predictions.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from ..channels import ChannelSet, normalize_channel_name
from ..recording import Annotation, Recording
from ..validation import DataError, detect_scale
from .csv_recording import UNIT_SCALE, estimate_sfreq, warn_if_amplitude_contradicts

XDF_UNITS = {"microvolts": "uV", "microvolt": "uV", "uv": "uV", "µv": "uV", "millivolts": "mV",
             "mv": "mV", "volts": "V", "volt": "V", "v": "V"}


def _first(info: dict, key: str, default=None):
    value = info.get(key, [default])
    return value[0] if isinstance(value, list) and value else default


def _channel_labels(info: dict) -> tuple[list[str], list[str]]:
    """Channel labels and units from a pyxdf stream ``info`` (empty when not described)."""
    try:
        channels = info["desc"][0]["channels"][0]["channel"]
    except (KeyError, IndexError, TypeError):
        return [], []
    labels = [str(_first(ch, "label", "")) for ch in channels]
    units = [str(_first(ch, "unit", "") or "") for ch in channels]
    return labels, units


def _is_marker_stream(stream: dict) -> bool:
    info = stream["info"]
    return _first(info, "channel_format") == "string" or \
        str(_first(info, "type", "")).lower() in ("markers", "marker", "events")


def _pick_signal_stream(streams: list[dict], stream: str | None, path: Path) -> dict:
    signals = [s for s in streams if not _is_marker_stream(s) and len(s["time_stamps"])]
    if stream is not None:
        named = [s for s in streams if _first(s["info"], "name") == stream]
        if not named:
            raise DataError(f"{path.name} has no stream named {stream!r}; streams: "
                            f"{[_first(s['info'], 'name') for s in streams]}")
        if _is_marker_stream(named[0]):
            raise DataError(f"{path.name}: stream {stream!r} is a marker stream (its events "
                            f"become the annotations); name a signal stream: "
                            f"{[_first(s['info'], 'name') for s in signals]}")
        return named[0]
    if not signals:
        raise DataError(f"{path.name} has no signal stream with samples (streams: "
                        f"{[(_first(s['info'], 'name'), _first(s['info'], 'type')) for s in streams]})")
    eeg = [s for s in signals if str(_first(s["info"], "type", "")).upper() == "EEG"]
    return max(eeg or signals, key=lambda s: int(_first(s["info"], "channel_count", 0)))


def read_xdf_recording(path, *, stream: str | None = None, unit: str = "auto",
                       sfreq: float | None = None) -> Recording:
    """Read the signal stream of an XDF file into a :class:`Recording` in volts.

    ``stream`` names the stream (default: the EEG stream with the most channels). ``unit``:
    ``"auto"`` takes it from the channels' ``unit`` metadata, else guesses it from the
    amplitude (microvolts if unclear, with a warning). ``sfreq`` overrides the nominal rate
    (estimated from the timestamps for irregular streams).
    """
    try:
        import pyxdf
    except ImportError:
        raise DataError("reading XDF needs the pyxdf package: pip install 'sigformer[eeg]' "
                        "(or pip install pyxdf)") from None
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    with open(path, "rb") as fh:
        if fh.read(4) != b"XDF:":
            raise DataError(f"{path} is not an XDF file (it does not start with 'XDF:')")
    try:
        streams, _ = pyxdf.load_xdf(str(path), verbose=False)
    except Exception as err:  # pyxdf raises many types for damaged files
        raise DataError(f"{path} could not be read as XDF (truncated or corrupt?): "
                        f"{type(err).__name__}: {err}") from err
    signal = _pick_signal_stream(streams, stream, path)
    return _stream_to_recording(signal, [s for s in streams if _is_marker_stream(s)], path,
                                unit, sfreq)


def _stream_to_recording(signal: dict, markers: list[dict], path: Path, unit: str,
                         sfreq: float | None) -> Recording:
    info = signal["info"]
    data = np.asarray(signal["time_series"], dtype=float).T
    stamps = np.asarray(signal["time_stamps"], dtype=float)
    if data.ndim != 2 or data.shape[1] == 0:
        raise DataError(f"{path.name}: stream {_first(info, 'name')!r} has no samples")
    rate = sfreq or float(_first(info, "nominal_srate", 0) or 0) or estimate_sfreq(stamps)
    labels, units = _channel_labels(info)
    if len(labels) != data.shape[0] or len(set(labels)) != len(labels) or not all(labels):
        labels = [f"ch{i}" for i in range(data.shape[0])]
    names = tuple(normalize_channel_name(n) for n in labels)
    types = tuple("eeg" if str(_first(info, "type", "")).upper() == "EEG" else "misc"
                  for _ in names)
    scale = UNIT_SCALE[_stream_unit(path, unit, units, data)]
    annotations = [Annotation(marker_onset(t, stamps, rate), 0.0,
                              str(value[0] if value else ""))
                   for m in markers for t, value in zip(m["time_stamps"], m["time_series"])
                   if stamps[0] <= t <= stamps[-1] + 1.0 / rate]
    annotations.sort(key=lambda a: a.onset)
    return Recording(data * scale, rate, ChannelSet(names, types), annotations)


def marker_onset(t: float, stamps: np.ndarray, rate: float) -> float:
    """A marker's onset in the recording's time (sample index / ``rate``): its LSL timestamp
    placed between the signal samples' own timestamps. Seconds since the first sample would
    drift from the samples whenever the amplifier's real rate differs from the nominal one
    (255.5 Hz read as 256: 0.4 s off after 10 minutes)."""
    index = np.interp(t, stamps, np.arange(len(stamps), dtype=float),
                      right=len(stamps) - 1 + (t - stamps[-1]) * rate)
    return float(index / rate)


def _stream_unit(path: Path, unit: str, units: Sequence[str], data: np.ndarray) -> str:
    if unit != "auto":
        if unit not in UNIT_SCALE:
            raise DataError(f"unit must be one of {sorted(UNIT_SCALE)} or 'auto', got {unit!r}")
        warn_if_amplitude_contradicts(path, unit, data, stacklevel=4)
        return unit
    declared = {XDF_UNITS.get(u.strip().lower()) for u in units if u.strip()}
    if len(declared) == 1 and None not in declared:
        # trusted, but checked as the CSV reader checks: a stream declaring microvolts while
        # sending volts would otherwise come out 1e6 too small
        unit = declared.pop()
        named = sorted({u.strip() for u in units if u.strip()})
        warn_if_amplitude_contradicts(path, unit, data, f" (the stream's channel units say "
                                      f"{', '.join(named)})", stacklevel=4)
        return unit
    guessed = detect_scale(data)
    if guessed == "unknown":
        warnings.warn(f"{path.name}: no channel units in the stream and an amplitude unlike EEG "
                      "in volts or microvolts; assuming microvolts (pass unit= to say)",
                      stacklevel=3)
        return "uV"
    return guessed


# --- writing -----------------------------------------------------------------------------

@dataclass
class XDFStream:
    """One stream to write: numeric ``(n_samples, n_channels)`` data or a list of strings."""

    name: str
    stype: str
    samples: np.ndarray | list[str]
    time_stamps: np.ndarray
    nominal_srate: float = 0.0
    labels: list[str] = field(default_factory=list)
    unit: str = "microvolts"


def _chunk(tag: int, content: bytes) -> bytes:
    body = struct.pack("<H", tag) + content
    return b"\x08" + struct.pack("<Q", len(body)) + body


def _varlen(n: int) -> bytes:
    return b"\x08" + struct.pack("<Q", n)


def _header_xml(stream: XDFStream, n_channels: int, fmt: str) -> bytes:
    channels = "".join(f"<channel><label>{escape(label)}</label><unit>{escape(stream.unit)}"
                       f"</unit><type>{escape(stream.stype)}</type></channel>"
                       for label in stream.labels)
    return (f'<?xml version="1.0"?><info><name>{escape(stream.name)}</name>'
            f"<type>{escape(stream.stype)}</type><channel_count>{n_channels}</channel_count>"
            f"<nominal_srate>{stream.nominal_srate}</nominal_srate>"
            f"<channel_format>{fmt}</channel_format><source_id>{escape(stream.name)}</source_id>"
            f"<desc><channels>{channels}</channels></desc></info>").encode()


def _samples_chunk(stream_id: int, stream: XDFStream) -> bytes:
    stamps = np.asarray(stream.time_stamps, dtype=float)
    parts = [struct.pack("<I", stream_id), _varlen(len(stamps))]
    if isinstance(stream.samples, np.ndarray):
        values = np.asarray(stream.samples, dtype="<f8")
        for t, row in zip(stamps, values):
            parts.append(b"\x08" + struct.pack("<d", t) + row.tobytes())
    else:
        for t, text in zip(stamps, stream.samples):
            encoded = str(text).encode()
            parts.append(b"\x08" + struct.pack("<d", t) + _varlen(len(encoded)) + encoded)
    return _chunk(3, b"".join(parts))


def write_xdf(path, streams: Sequence[XDFStream]) -> Path:
    """Write ``streams`` as an XDF 1.0 file (numeric streams as ``double64``)."""
    path = Path(path)
    out = [b"XDF:", _chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')]
    for sid, stream in enumerate(streams, start=1):
        numeric = isinstance(stream.samples, np.ndarray)
        n_channels = stream.samples.shape[1] if numeric else 1  # type: ignore[union-attr]
        fmt = "double64" if numeric else "string"
        out.append(_chunk(2, struct.pack("<I", sid) + _header_xml(stream, n_channels, fmt)))
    for sid, stream in enumerate(streams, start=1):
        out.append(_samples_chunk(sid, stream))
        stamps = np.asarray(stream.time_stamps, dtype=float)
        for collected in (stamps[0], stamps[-1]):  # one clock, zero offset (readers expect it)
            out.append(_chunk(4, struct.pack("<Idd", sid, collected, 0.0)))
    for sid, stream in enumerate(streams, start=1):
        stamps = np.asarray(stream.time_stamps, dtype=float)
        footer = (f'<?xml version="1.0"?><info><first_timestamp>{stamps[0]}</first_timestamp>'
                  f"<last_timestamp>{stamps[-1]}</last_timestamp>"
                  f"<sample_count>{len(stamps)}</sample_count></info>").encode()
        out.append(_chunk(6, struct.pack("<I", sid) + footer))
    path.write_bytes(b"".join(out))
    return path
