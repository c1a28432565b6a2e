"""SigMF recordings through the ``sigmf`` package: read, write, frame, annotate.

* :func:`read_sigmf` reads a ``.sigmf-meta``/``.sigmf-data`` pair or a ``.sigmf`` archive,
  verifies the SHA-512 checksum and that the data length fits the datatype, and returns a
  :class:`SigMFRecording` (samples, rate, centre frequency, captures, annotations).
* :func:`write_sigmf` writes samples with captures and annotations (optionally as an
  archive); files appear complete or not at all.
* :func:`labelled_frames` maps annotations to labelled fixed-length frames (``(n, 2, L)``
  I/Q rows, as RadioML stores them); :func:`frame_signal` cuts any recording into frames.
* :func:`prediction_annotations` turns per-frame predictions into merged annotations and
  :func:`write_annotations` adds them to an existing recording's metadata.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .io import DataError

DATATYPE_RE = re.compile(r"^(c|r)(f32|f64|i32|i16|u32|u16|i8|u8)(_le|_be)?$")
NORMALIZATIONS = ("l1", "rms", "peak", "none")


def _sigmf():
    try:
        import sigmf
    except ImportError:
        raise ImportError("SigMF support needs the sigmf package: pip install "
                          "'sigformer[rf]'") from None
    return sigmf


@dataclass
class SigMFAnnotation:
    start: int
    count: int
    label: str | None = None
    comment: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, Any]:
        meta = dict(self.extra)
        if self.label is not None:
            meta["core:label"] = self.label
        if self.comment is not None:
            meta["core:comment"] = self.comment
        return meta


@dataclass
class SigMFRecording:
    """Samples ``(n,)`` (or ``(n, channels)``) with the recording's metadata."""

    samples: np.ndarray
    sample_rate: float | None
    datatype: str
    annotations: list[SigMFAnnotation]
    captures: list[dict[str, Any]]
    global_info: dict[str, Any]
    path: Path | None = None

    @property
    def center_frequency(self) -> float | None:
        return self.captures[0].get("core:frequency") if self.captures else None

    @property
    def is_complex(self) -> bool:
        return self.datatype.startswith("c")


def _meta_and_data(path: Path) -> tuple[Path, Path | None]:
    name = str(path)
    for suffix in (".sigmf-meta", ".sigmf-data"):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            return Path(base + ".sigmf-meta"), Path(base + ".sigmf-data")
    if name.endswith(".sigmf"):
        return path, None
    return Path(name + ".sigmf-meta"), Path(name + ".sigmf-data")


def _check_meta(meta_path: Path, data_path: Path) -> dict[str, Any]:
    """Checks the metadata and the data size before handing them to ``sigmf``."""
    if not meta_path.is_file():
        raise DataError(f"SigMF metadata {meta_path} does not exist")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{meta_path} is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("global"), dict):
        raise DataError(f"{meta_path} lacks the SigMF 'global' object")
    dtype = meta["global"].get("core:datatype")
    if dtype is None:
        raise DataError(f"{meta_path}: global core:datatype is missing; expected e.g. "
                        f"'cf32_le' or 'ci16_le'")
    match = DATATYPE_RE.match(str(dtype))
    if match is None:
        raise DataError(f"{meta_path}: core:datatype {dtype!r} is not a SigMF datatype "
                        f"((c|r)(f32|f64|i32|i16|u32|u16|i8|u8)(_le|_be), e.g. 'cf32_le')")
    if not data_path.is_file():
        raise DataError(f"SigMF data file {data_path} does not exist")
    width = int(match.group(2)[1:]) // 8 * (2 if match.group(1) == "c" else 1)
    channels = int(meta["global"].get("core:num_channels", 1))
    size = data_path.stat().st_size - int(meta["global"].get("core:trailing_bytes", 0))
    header = sum(int(c.get("core:header_bytes", 0)) for c in meta.get("captures", []))
    if (size - header) % (width * channels):
        raise DataError(f"{data_path} holds {size} bytes, not a whole number of {dtype} "
                        f"samples x {channels} channel(s) ({width * channels} bytes each): "
                        f"truncated or written with another datatype")
    return meta


def read_sigmf(path: str | os.PathLike, *, verify_checksum: bool = True,
               autoscale: bool = True) -> SigMFRecording:
    """Read a SigMF recording (meta/data pair by either name or base name, or an archive)."""
    sigmf = _sigmf()
    from sigmf.error import SigMFError

    path = Path(path)
    meta_path, data_path = _meta_and_data(path)
    if data_path is not None:
        _check_meta(meta_path, data_path)
    elif not path.is_file():
        raise DataError(f"SigMF archive {path} does not exist")
    try:
        handle = sigmf.sigmffile.fromfile(str(meta_path), skip_checksum=not verify_checksum,
                                          autoscale=autoscale)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # sigmf only warns on bad lengths
            samples = handle.read_samples()
    except SigMFError as err:
        message = str(err)
        if "hash does not match" in message:
            raise DataError(f"{meta_path}: the SHA-512 of the data does not match core:sha512 "
                            f"(the data changed or is corrupt); pass verify_checksum=False "
                            f"to read it anyway") from None
        raise DataError(f"{meta_path} could not be read as SigMF: {message}") from None
    except UserWarning as err:
        raise DataError(f"{path}: {err}") from None
    except (OSError, ValueError, json.JSONDecodeError) as err:
        raise DataError(f"{path} could not be read as SigMF: {err}") from None
    info = handle.get_global_info()
    annotations = []
    for a in handle.get_annotations():
        extra = {k: v for k, v in a.items() if k not in (
            "core:sample_start", "core:sample_count", "core:label", "core:comment")}
        annotations.append(SigMFAnnotation(int(a["core:sample_start"]),
                                           int(a.get("core:sample_count", len(samples)
                                                     - a["core:sample_start"])),
                                           a.get("core:label"), a.get("core:comment"), extra))
    return SigMFRecording(np.asarray(samples), info.get("core:sample_rate"),
                          info["core:datatype"], annotations, handle.get_captures(), info,
                          path)


def write_sigmf(path: str | os.PathLike, samples: np.ndarray, *,
                sample_rate: float | None = None, center_frequency: float | None = None,
                annotations: list[SigMFAnnotation] | None = None,
                global_info: dict[str, Any] | None = None, archive: bool = False) -> Path:
    """Write ``samples`` (complex64 -> ``cf32_le``; any numpy dtype sigmf knows) as
    ``path.sigmf-meta``/``.sigmf-data`` (or ``path.sigmf`` with ``archive=True``).

    Everything is written to a temporary folder first and moved into place last.
    """
    sigmf = _sigmf()
    from sigmf.utils import get_data_type_str

    samples = np.ascontiguousarray(samples)
    if not np.isfinite(samples).all():
        raise DataError("refusing to write samples that contain NaN or Inf")
    base = Path(str(path).removesuffix(".sigmf-meta").removesuffix(".sigmf-data")
                .removesuffix(".sigmf"))
    base.parent.mkdir(parents=True, exist_ok=True)
    info = {sigmf.DATATYPE_KEY: get_data_type_str(samples), sigmf.VERSION_KEY:
            sigmf.__specification__, **(global_info or {})}
    if sample_rate is not None:
        info[sigmf.SAMPLE_RATE_KEY] = float(sample_rate)
    with tempfile.TemporaryDirectory(dir=base.parent, prefix=".sigmf-") as tmp:
        tmp_base = Path(tmp) / base.name
        samples.tofile(str(tmp_base) + ".sigmf-data")
        handle = sigmf.SigMFFile(data_file=str(tmp_base) + ".sigmf-data", global_info=info)
        capture = {} if center_frequency is None else {sigmf.FREQUENCY_KEY:
                                                        float(center_frequency)}
        handle.add_capture(0, metadata=capture)
        for a in annotations or []:
            handle.add_annotation(int(a.start), int(a.count), metadata=a.to_metadata())
        handle.tofile(str(tmp_base), toarchive=archive)
        if archive:
            os.replace(str(tmp_base) + ".sigmf", str(base) + ".sigmf")
            return Path(str(base) + ".sigmf")
        os.replace(str(tmp_base) + ".sigmf-data", str(base) + ".sigmf-data")
        os.replace(str(tmp_base) + ".sigmf-meta", str(base) + ".sigmf-meta")
    return Path(str(base) + ".sigmf-meta")


# --- frames ---------------------------------------------------------------------------------

def normalize_frames(frames: np.ndarray, mode: str = "l1") -> np.ndarray:
    """Per-frame normalisation of ``(n, 2, L)`` I/Q frames: ``"l1"`` divides by
    ``sum |x|`` (RadioML 2016's generator), ``"rms"`` to unit power, ``"peak"`` to unit peak."""
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {mode!r}")
    if mode == "none":
        return frames
    mag = np.hypot(frames[:, 0], frames[:, 1])
    if mode == "l1":
        scale = mag.sum(axis=1)
    elif mode == "rms":
        scale = np.sqrt((mag ** 2).mean(axis=1))
    else:
        scale = mag.max(axis=1)
    return (frames / np.maximum(scale, 1e-12)[:, None, None]).astype(np.float32)


def frame_signal(iq: np.ndarray, frame_length: int, hop: int | None = None, *,
                 start: int = 0, stop: int | None = None, normalization: str = "l1",
                 min_power_db: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cut complex ``iq`` into ``(n, 2, frame_length)`` float32 frames; returns
    ``(frames, starts)``. ``min_power_db`` drops frames whose mean power is that many dB
    below the recording's loudest frame (the gaps between bursts)."""
    iq = np.asarray(iq)
    if iq.ndim != 1 or not np.iscomplexobj(iq):
        raise DataError(f"expected one channel of complex IQ samples, got {iq.dtype} "
                        f"{iq.shape}")
    hop = hop or frame_length
    stop = len(iq) if stop is None else min(stop, len(iq))
    starts = np.arange(start, stop - frame_length + 1, hop)
    if len(starts) == 0:
        return np.zeros((0, 2, frame_length), np.float32), starts
    index = starts[:, None] + np.arange(frame_length)
    segment = iq[index]
    if min_power_db is not None:
        power = np.mean(np.abs(segment) ** 2, axis=1)
        keep = power >= power.max() * 10 ** (-abs(min_power_db) / 10)
        segment, starts = segment[keep], starts[keep]
    frames = np.stack([segment.real, segment.imag], axis=1).astype(np.float32)
    return normalize_frames(frames, normalization), starts


def labelled_frames(recording: SigMFRecording, frame_length: int, hop: int | None = None, *,
                    classes: list[str] | None = None, normalization: str = "l1",
                    min_power_db: float | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames inside every labelled annotation: ``(frames, labels, starts)``.

    With ``classes`` given, a label outside them is an error that lists both."""
    if not recording.is_complex:
        raise DataError(f"{recording.path}: {recording.datatype} holds real samples; "
                        f"modulation frames need complex IQ (a 'c...' datatype)")
    iq = recording.samples if recording.samples.ndim == 1 else recording.samples[:, 0]
    parts, labels, starts = [], [], []
    for a in recording.annotations:
        if a.label is None:
            continue
        if classes is not None and a.label not in classes:
            raise DataError(f"{recording.path}: annotation label {a.label!r} at sample "
                            f"{a.start} is not one of the known classes {list(classes)}")
        f, s = frame_signal(iq, frame_length, hop, start=a.start, stop=a.start + a.count,
                            normalization=normalization, min_power_db=min_power_db)
        parts.append(f)
        labels += [a.label] * len(f)
        starts.append(s)
    if not parts:
        raise DataError(f"{recording.path}: no labelled annotation long enough for "
                        f"{frame_length}-sample frames")
    return np.concatenate(parts), np.asarray(labels), np.concatenate(starts)


def prediction_annotations(starts: np.ndarray, frame_length: int, labels: list[str],
                           confidences: np.ndarray | None = None, *,
                           generator: str = "sigformer", merge: bool = True
                           ) -> list[SigMFAnnotation]:
    """One annotation per run of consecutive frames with the same predicted label."""
    out: list[SigMFAnnotation] = []
    for i, (start, label) in enumerate(zip(starts, labels)):
        conf = None if confidences is None else float(confidences[i])
        end = int(start) + frame_length
        prev = out[-1] if out else None
        if (merge and prev is not None and prev.label == label
                and int(start) <= prev.start + prev.count):
            prev.count = end - prev.start
            prev.extra["sigformer:frames"] += 1
            if conf is not None:
                prev.extra["sigformer:confidence"] = max(prev.extra["sigformer:confidence"],
                                                         conf)
            continue
        extra: dict[str, Any] = {"core:generator": generator, "sigformer:frames": 1}
        if conf is not None:
            extra["sigformer:confidence"] = conf
        out.append(SigMFAnnotation(int(start), frame_length, str(label), None, extra))
    for a in out:
        if "sigformer:confidence" in a.extra:
            a.comment = f"predicted {a.label} (max confidence {a.extra['sigformer:confidence']:.2f})"
    return out


def write_annotations(recording_path: str | os.PathLike, annotations: list[SigMFAnnotation],
                      out_meta: str | os.PathLike | None = None,
                      replace_generator: str | None = "sigformer") -> Path:
    """Add ``annotations`` to a recording's metadata (in place, or into ``out_meta``), dropping
    earlier ones made by ``replace_generator``; written atomically."""
    meta_path, data_path = _meta_and_data(Path(recording_path))
    if data_path is None:
        raise DataError("annotations are written to a .sigmf-meta file, not into an archive")
    meta = _check_meta(meta_path, data_path)
    kept = [a for a in meta.get("annotations", [])
            if replace_generator is None or a.get("core:generator") != replace_generator]
    new = [{"core:sample_start": a.start, "core:sample_count": a.count, **a.to_metadata()}
           for a in annotations]
    meta["annotations"] = sorted(kept + new, key=lambda a: a["core:sample_start"])
    target = Path(out_meta) if out_meta is not None else meta_path
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".meta.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(meta, fh, indent=2)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
