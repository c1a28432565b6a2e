"""SigMF recordings through the ``sigmf`` package: read, write, frame, annotate.

* :func:`read_sigmf` reads a ``.sigmf-meta``/``.sigmf-data`` pair or a ``.sigmf`` archive,
  verifies the SHA-512 checksum and that the data length fits the datatype, and returns a
  :class:`SigMFRecording` (samples, rate, centre frequency, captures, annotations).
* :func:`write_sigmf` writes samples with captures and annotations (optionally as an
  archive); files appear complete or not at all.
* :func:`labelled_frames` maps annotations to labelled fixed-length frames (``(n, 2, L)``
  I/Q rows, as RadioML stores them); :func:`frame_signal` cuts any recording into frames.
* :func:`prediction_annotations` turns per-frame predictions into merged annotations and
  :func:`write_annotations` adds them to a copy of a recording's metadata (``out_meta``, a
  complete recording) or, only when asked, to the recording itself (``in_place=True``);
  :class:`AnnotationWriter` does it for both ``classify-iq`` and ``sigformer stream --out``.
* Metadata is validated against the SigMF schema (:func:`validate_metadata`); NaN/Inf samples
  follow an explicit ``nan_policy`` (``"raise"``, ``"skip"``, ``"interpolate"``); data files
  shorter than their metadata says are reported as truncated.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .io import DataError

DATATYPE_RE = re.compile(r"^(c|r)(f32|f64|i32|i16|u32|u16|i8|u8)(_le|_be)?$")
NORMALIZATIONS = ("l1", "rms", "peak", "none")
# frames for an IQ model that states no scaling: RadioML 2016's (Bundle.predict_proba,
# classify-iq and `sigformer stream` alike, so one capture gets the same labels through all)
CAPTURE_NORMALIZATION = "l1"
NAN_POLICIES = ("raise", "skip", "interpolate")  # as the streaming runtime
EXTENSION = {"name": "sigformer", "version": "1.0.0", "optional": True}


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

    def frequency_at(self, sample: int) -> float | None:
        """``core:frequency`` of the capture segment holding ``sample``."""
        return capture_frequency(self.captures, sample)

    @property
    def is_complex(self) -> bool:
        return self.datatype.startswith("c")


def _meta_and_data(path: Path) -> tuple[Path, Path | None]:
    """The metadata path and the default (compliant) data path; ``None`` for an archive."""
    name = str(path)
    for suffix in (".sigmf-meta", ".sigmf-data"):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            return Path(base + ".sigmf-meta"), Path(base + ".sigmf-data")
    if name.endswith(".sigmf"):
        return path, None
    return Path(name + ".sigmf-meta"), Path(name + ".sigmf-data")


def _expectation(err) -> str:
    """What the schema expected, in words, from a jsonschema error."""
    value = err.validator_value
    words = {"type": f"a value of type {value!r}", "minimum": f"a value >= {value}",
             "exclusiveMinimum": f"a value > {value}", "maximum": f"a value <= {value}",
             "pattern": f"a string matching {value!r}", "enum": f"one of {value}",
             "required": f"the fields {value}", "additionalProperties": "no other fields"}
    return words.get(err.validator, f"{err.validator} {value!r}")


def validate_metadata(meta: Any, where: str | os.PathLike = "metadata") -> None:
    """Check SigMF metadata against the standard's JSON schema (the one the ``sigmf`` package
    ships and validates with) and its ordering rules; raises :class:`DataError` naming every
    offending field and what the standard expects (e.g. ``core:num_channels`` 0 or 2.5,
    ``captures`` that is not a list, a negative ``core:sample_rate``)."""
    if not isinstance(meta, dict) or not isinstance(meta.get("global"), dict):
        raise DataError(f"{where} lacks the SigMF 'global' object")
    import jsonschema
    from sigmf import schema as sigmf_schema
    from sigmf import validate as sigmf_validate

    ref = sigmf_schema.get_schema()
    checker = jsonschema.validators.validator_for(ref)(ref)
    errors = sorted(checker.iter_errors(meta), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for err in errors[:6]:
            field_path = "/".join(str(p) for p in err.absolute_path) or "(top level)"
            shown = json.dumps(err.instance)[:60]
            lines.append(f"{field_path} = {shown}: expected {_expectation(err)}")
        more = f" (and {len(errors) - 6} more)" if len(errors) > 6 else ""
        raise DataError(f"{where} is not valid SigMF metadata: " + "; ".join(lines) + more)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # undeclared extensions
        try:
            sigmf_validate.validate(meta, ref)
        except jsonschema.ValidationError as err:
            raise DataError(f"{where} is not valid SigMF metadata: {err.message}") from None


def _data_path(meta_path: Path, meta: dict, default: Path) -> Path:
    """``core:dataset`` (a file name beside the metadata) or the compliant ``.sigmf-data``."""
    name = meta["global"].get("core:dataset")
    if name is None:
        return default
    if Path(name).name != name:
        raise DataError(f"{meta_path}: core:dataset {name!r} must be a file name in the same "
                        f"folder as the metadata (the SigMF rule), not a path")
    return meta_path.parent / name


def _check_meta(meta_path: Path, data_path: Path) -> tuple[dict[str, Any], Path]:
    """Validates the metadata and the data size before handing them to ``sigmf``; returns the
    metadata and the data file it describes."""
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
    validate_metadata(meta, meta_path)
    headers = [c for c in meta.get("captures", []) if int(c.get("core:header_bytes", 0) or 0)]
    if headers and not meta["global"].get("core:dataset"):
        # the standard defines header bytes for non-conforming datasets (core:dataset) only,
        # and the sigmf reader skips them only there: read as samples, they shifted every
        # sample and annotation
        raise DataError(f"{meta_path}: a capture has core:header_bytes but the recording has "
                        f"no core:dataset; header bytes belong to non-conforming datasets: "
                        f"name the data file with global core:dataset")
    data_path = _data_path(meta_path, meta, data_path)
    if not data_path.is_file():
        raise DataError(f"SigMF data file {data_path} does not exist")
    size, header, frame = _data_layout(meta, data_path)
    channels = int(meta["global"].get("core:num_channels", 1))
    if (size - header) % frame:
        raise DataError(f"{data_path} holds {size} bytes, not a whole number of {dtype} "
                        f"samples x {channels} channel(s) ({frame} bytes each): "
                        f"truncated or written with another datatype")
    n_samples = (size - header) // frame
    _check_extent(meta, n_samples, data_path)
    return meta, data_path


def _check_extent(meta: dict, n_samples: int, data_path: Path) -> None:
    """Captures or annotations that reach past the data mean a truncated data file."""
    ends = [(c["core:sample_start"], "capture") for c in meta.get("captures", [])]
    ends += [(a["core:sample_start"] + a.get("core:sample_count", 0), "annotation")
             for a in meta.get("annotations", [])]
    beyond = [(end, kind) for end, kind in ends if end > n_samples]
    if beyond:
        end, kind = max(beyond)
        raise DataError(f"{data_path} holds {n_samples} samples but a {kind} in the metadata "
                        f"reaches sample {end}: the data file is truncated (or the metadata "
                        f"belongs to a longer recording)")


def _interpolate_nonfinite(samples: np.ndarray) -> np.ndarray:
    """Linear interpolation over non-finite samples, per channel and per I/Q part."""
    out = samples.copy()
    flat = out.reshape(len(out), -1)
    index = np.arange(len(out))
    parts = (lambda v: v.real, lambda v: v.imag) if np.iscomplexobj(out) else (lambda v: v,)
    for c in range(flat.shape[1]):
        column = flat[:, c]
        good = np.isfinite(column)
        if good.all():
            continue
        if not good.any():
            raise DataError("every sample of a channel is NaN or Inf: nothing to interpolate "
                            "from")
        fixed = [np.interp(index, index[good], part(column)[good]) for part in parts]
        flat[:, c] = fixed[0] + 1j * fixed[1] if len(fixed) == 2 else fixed[0]
    return out


def apply_nan_policy(samples: np.ndarray, nan_policy: str, where: str = "samples"
                     ) -> np.ndarray:
    """The streaming runtime's policy for NaN/Inf samples: ``"raise"`` (default) names how
    many and where; ``"interpolate"`` fills them linearly; ``"skip"`` leaves them for the
    framing to drop the frames that contain them (and only those)."""
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    bad = ~np.isfinite(samples)
    if not bad.any():
        return samples
    if nan_policy == "raise":
        first = int(np.flatnonzero(bad.reshape(len(samples), -1).any(axis=1))[0])
        raise DataError(f"{where}: {int(bad.sum())} NaN/Inf sample value(s), the first at "
                        f"sample {first}; pass nan_policy='skip' (drop the frames that contain "
                        f"them) or 'interpolate' (command line: --nan-policy skip or "
                        f"--nan-policy interpolate)")
    if nan_policy == "interpolate":
        return _interpolate_nonfinite(samples)
    return samples


def read_sigmf(path: str | os.PathLike, *, verify_checksum: bool = True,
               autoscale: bool = True, nan_policy: str = "raise") -> SigMFRecording:
    """Read a SigMF recording (meta/data pair by either name or base name, or an archive);
    the metadata is validated against the standard first, ``core:dataset`` is honoured and
    NaN/Inf samples follow ``nan_policy`` (:func:`apply_nan_policy`)."""
    sigmf = _sigmf()
    from sigmf.error import SigMFError

    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
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
                            f"(the data changed, is truncated or corrupt); pass "
                            f"verify_checksum=False to read it anyway (command line: "
                            f"classify-iq --no-verify-checksum)") from None
        raise DataError(f"{meta_path} could not be read as SigMF: {message}") from None
    except UserWarning as err:
        raise DataError(f"{path}: {err}") from None
    except (OSError, ValueError, json.JSONDecodeError) as err:
        raise DataError(f"{path} could not be read as SigMF: {err}") from None
    samples = apply_nan_policy(np.asarray(samples), nan_policy, str(path))
    info = handle.get_global_info()
    annotations = []
    for a in handle.get_annotations():
        extra = {k: v for k, v in a.items() if k not in (
            "core:sample_start", "core:sample_count", "core:label", "core:comment")}
        annotations.append(SigMFAnnotation(int(a["core:sample_start"]),
                                           int(a.get("core:sample_count", len(samples)
                                                     - a["core:sample_start"])),
                                           a.get("core:label"), a.get("core:comment"), extra))
    return SigMFRecording(samples, info.get("core:sample_rate"), info["core:datatype"],
                          annotations, handle.get_captures(), info, path)


# global keys that describe the data file itself: derived from what is written
DESCRIBES_THE_DATA = ("core:datatype", "core:sha512", "core:num_channels", "core:version",
                      "core:dataset", "core:trailing_bytes", "core:metadata_only")


def _channel_count(samples: np.ndarray) -> int:
    """Channels of samples to write: ``(n,)`` is one, complex ``(n, channels)`` is several
    (SigMF interleaves them per sample, as C order does). A real 2-D array is refused: an
    ``(n, 2)`` int16 array may be I/Q pairs or two real channels, and was written as one real
    channel of interleaved values."""
    if samples.ndim == 1:
        return 1
    if samples.ndim == 2 and np.iscomplexobj(samples):
        return int(samples.shape[1])
    kind = "complex" if np.iscomplexobj(samples) else "real"
    raise DataError(f"samples of shape {samples.shape} ({kind} {samples.dtype}) cannot be "
                    f"written: give (n,) samples or complex (n, channels) (I/Q pairs as "
                    f"complex: x[:, 0] + 1j * x[:, 1])")


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
    channels = _channel_count(samples)
    base = Path(str(path).removesuffix(".sigmf-meta").removesuffix(".sigmf-data")
                .removesuffix(".sigmf"))
    base.parent.mkdir(parents=True, exist_ok=True)
    # the keys that describe the bytes written come from the samples, never from a
    # global_info copied from another recording (its datatype labelled cf32 bytes ci8)
    given = {k: v for k, v in (global_info or {}).items() if k not in DESCRIBES_THE_DATA}
    info = {**given, sigmf.DATATYPE_KEY: get_data_type_str(samples),
            sigmf.VERSION_KEY: sigmf.__specification__}
    if channels > 1:
        info[sigmf.NUM_CHANNELS_KEY] = channels
    if sample_rate is not None:
        info[sigmf.SAMPLE_RATE_KEY] = float(sample_rate)
    annotation_meta = [a.to_metadata() for a in annotations or []]
    if _uses_extension(annotation_meta + [info]):
        _declare_extension(info)
    with tempfile.TemporaryDirectory(dir=base.parent, prefix=".sigmf-") as tmp:
        tmp_base = Path(tmp) / base.name
        samples.tofile(str(tmp_base) + ".sigmf-data")
        handle = sigmf.SigMFFile(data_file=str(tmp_base) + ".sigmf-data", global_info=info)
        capture = {} if center_frequency is None else {sigmf.FREQUENCY_KEY:
                                                        float(center_frequency)}
        handle.add_capture(0, metadata=capture)
        for a, meta in zip(annotations or [], annotation_meta):
            handle.add_annotation(int(a.start), int(a.count), metadata=meta)
        handle.tofile(str(tmp_base), toarchive=archive)
        if archive:
            os.replace(str(tmp_base) + ".sigmf", str(base) + ".sigmf")
            return Path(str(base) + ".sigmf")
        os.replace(str(tmp_base) + ".sigmf-data", str(base) + ".sigmf-data")
        os.replace(str(tmp_base) + ".sigmf-meta", str(base) + ".sigmf-meta")
    return Path(str(base) + ".sigmf-meta")


# --- frames ---------------------------------------------------------------------------------

# A frame whose scale is this close to 1 is already normalised: it is left as it is, so that
# normalising twice changes nothing, bit for bit (a recomputed scale is 1 only to ~2e-7).
UNIT_SCALE_TOLERANCE = 1e-5


def normalize_frames(frames: np.ndarray, mode: str = "l1") -> np.ndarray:
    """Per-frame normalisation of ``(n, 2, L)`` I/Q frames: ``"l1"`` divides by
    ``sum |x|`` (RadioML 2016's generator), ``"rms"`` to unit power, ``"peak"`` to unit peak.

    Idempotent, exactly: frames already at unit scale (within :data:`UNIT_SCALE_TOLERANCE`)
    come back unchanged, so a bundle that normalises its input as it was trained
    (:meth:`sigformer.bundle.Bundle.predict_proba`) gives the same outputs for frames the
    caller normalised already."""
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
    scale = np.where(np.abs(scale - 1) <= UNIT_SCALE_TOLERANCE, 1, np.maximum(scale, 1e-12))
    return (frames / scale[:, None, None]).astype(np.float32)


def check_min_power_db(min_power_db: float | None) -> None:
    """The power gate's level: dB below the loudest frame, >= 0, or None (no gate). A
    negative level is refused everywhere (classify-iq, the stream, capture datasets), so no
    two paths disagree on what it means."""
    if min_power_db is not None and not (np.isfinite(min_power_db) and min_power_db >= 0):
        raise ValueError(f"min_power_db must be a level in dB below the loudest frame "
                         f"(>= 0) or None (no gate), got {min_power_db!r}")


def frame_signal(iq: np.ndarray, frame_length: int, hop: int | None = None, *,
                 start: int = 0, stop: int | None = None, normalization: str = "l1",
                 min_power_db: float | None = None, nan_policy: str = "raise"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Cut complex ``iq`` into ``(n, 2, frame_length)`` float32 frames; returns
    ``(frames, starts)``. ``min_power_db`` drops frames whose mean power is that many dB
    below the recording's loudest frame (the gaps between bursts). NaN/Inf samples follow
    ``nan_policy``: ``"raise"``, ``"interpolate"``, or ``"skip"`` - only the frames that
    contain them are dropped (a warning says how many), never the rest of the recording."""
    iq = np.asarray(iq)
    if iq.ndim != 1 or not np.iscomplexobj(iq):
        raise DataError(f"expected one channel of complex IQ samples, got {iq.dtype} "
                        f"{iq.shape}")
    check_min_power_db(min_power_db)
    hop = hop or frame_length
    stop = len(iq) if stop is None else min(stop, len(iq))
    if nan_policy != "skip":
        iq = iq.copy()
        iq[start:stop] = apply_nan_policy(iq[start:stop], nan_policy, "IQ samples")
    from ..windowing import frame_array, frame_starts  # the one windowing module

    starts = start + np.asarray(frame_starts(stop - start, frame_length, hop))
    if len(starts) == 0:
        return np.zeros((0, 2, frame_length), np.float32), starts
    segment = frame_array(iq[start:stop], frame_length, hop)
    finite = np.isfinite(segment).all(axis=1)
    if not finite.all():
        warnings.warn(f"skipped {int((~finite).sum())} of {len(finite)} frames that contain "
                      f"NaN/Inf samples (nan_policy='skip')", stacklevel=2)
        segment, starts = segment[finite], starts[finite]
    if min_power_db is not None and len(segment):
        power = np.mean(np.abs(segment) ** 2, axis=1)
        # a silent frame is never kept: all-zero input (a dead receiver) has nothing to classify
        keep = (power > 0) & (power >= power.max() * 10 ** (-min_power_db / 10))
        segment, starts = segment[keep], starts[keep]
    frames = np.stack([segment.real, segment.imag], axis=1).astype(np.float32)
    return normalize_frames(frames, normalization), starts


def capture_frequency(captures: list[dict[str, Any]], sample: int) -> float | None:
    """``core:frequency`` of the capture segment (of ``captures``, sorted by
    ``core:sample_start``) that holds ``sample``: a recording retuned between segments has a
    centre per segment. None before the first segment or when the segment states none."""
    segment = [c for c in captures if c.get("core:sample_start", 0) <= sample]
    return segment[-1].get("core:frequency") if segment else None


def retune_points(captures: list[dict[str, Any]]) -> list[int]:
    """The ``core:sample_start`` of every capture segment whose ``core:frequency`` differs
    from the segment before it: a label run must not cross one (its frequency edges would
    mix two centres)."""
    points, previous = [], None
    for i, c in enumerate(sorted(captures, key=lambda c: c.get("core:sample_start", 0))):
        frequency = c.get("core:frequency")
        if i and frequency != previous:
            points.append(int(c.get("core:sample_start", 0)))
        previous = frequency
    return points


def set_frequency_edges(annotation: SigMFAnnotation, low: float, high: float, *,
                        sample_rate: float, centre: float) -> None:
    """``core:freq_lower_edge`` / ``core:freq_upper_edge`` in Hz from a band in cycles per
    sample (as :func:`occupied_band` gives it) around ``centre`` Hz; the one conversion that
    ``classify-iq`` and the stream's SigMF sink share, so their edges agree."""
    annotation.extra["core:freq_lower_edge"] = float(centre + low * sample_rate)
    annotation.extra["core:freq_upper_edge"] = float(centre + high * sample_rate)


def occupied_band(iq: np.ndarray, fraction: float = 0.99, nfft: int = 256
                  ) -> tuple[float, float]:
    """Lower and upper edge (cycles/sample, -0.5..0.5) of the band holding ``fraction`` of
    the power of complex ``iq`` (averaged periodogram of ``nfft``-sample Hann blocks of its
    finite samples). Fewer finite samples than ``nfft``: one block of all of them, and the
    whole band (-0.5, 0.5) below 8. The same computation as :class:`OccupiedBand` fed
    ``iq`` in pieces (the stream's SigMF sink): one code path, equal results."""
    return OccupiedBand(nfft).add(iq).band(fraction)


class OccupiedBand:
    """:func:`occupied_band` of samples that arrive in pieces, in bounded memory: the block
    spectra are summed as they complete and only the finite samples after the last whole
    block are kept (fewer than ``nfft``), so a run of any length costs ``nfft`` floats and
    one pass over its samples, and extending it reads only the new ones. The blocks are the
    one-shot computation's (consecutive ``nfft`` finite samples from the first), and the
    spectra are summed in the same order, so the result does not depend on the pieces."""

    BLOCKS_PER_STEP = 1024  # blocks transformed at once: bounds the temporary arrays

    def __init__(self, nfft: int = 256):
        self.nfft = int(nfft)
        if self.nfft < 1:
            raise ValueError(f"nfft must be a positive number of samples, got {nfft}")
        self._sum = np.zeros(self.nfft)  # power spectra of the whole blocks, summed
        self._blocks = 0
        self._rest: np.ndarray | None = None  # finite samples after the last whole block

    def add(self, iq: np.ndarray) -> OccupiedBand:
        """Add the next samples (non-finite ones are left out, as :func:`occupied_band`
        leaves them out); returns ``self``."""
        iq = np.asarray(iq)
        finite = iq[np.isfinite(iq)]
        pending = finite if self._rest is None else np.concatenate([self._rest, finite])
        usable = len(pending) // self.nfft * self.nfft
        step = self.nfft * self.BLOCKS_PER_STEP
        for lo in range(0, usable, step):
            blocks = pending[lo:min(lo + step, usable)].reshape(-1, self.nfft)
            # one sum over the running total and the new spectra, row after row: the order
            # a single np.sum over all blocks adds them in, so pieces give identical sums
            self._sum = np.sum(np.concatenate([self._sum[None], _block_power(blocks)]),
                               axis=0)
            self._blocks += len(blocks)
        self._rest = pending[usable:].copy()  # a copy: never a view that pins a large chunk
        return self

    def band(self, fraction: float = 0.99) -> tuple[float, float]:
        """The edges (cycles/sample) of the band holding ``fraction`` of the power so far."""
        if self._blocks:
            return _band_edges(self._sum / self._blocks, fraction)
        rest = np.zeros(0) if self._rest is None else self._rest
        nfft = min(self.nfft, max(8, len(rest)))  # shorter than a block: one of all of them
        if len(rest) < nfft:
            return -0.5, 0.5
        return _band_edges(_block_power(rest[:nfft].reshape(1, nfft))[0], fraction)


def _block_power(blocks: np.ndarray) -> np.ndarray:
    """Power spectrum of each Hann-windowed row of ``blocks`` (FFT order)."""
    return np.abs(np.fft.fft(blocks * np.hanning(blocks.shape[1]), axis=1)) ** 2


def _band_edges(power: np.ndarray, fraction: float) -> tuple[float, float]:
    """The band holding ``fraction`` of an averaged power spectrum (FFT order), widened by
    half a bin on each side, in cycles/sample."""
    nfft = len(power)
    psd = np.fft.fftshift(power)
    freqs = np.fft.fftshift(np.fft.fftfreq(nfft))
    cumulative = np.cumsum(psd) / max(psd.sum(), 1e-30)
    tail = (1 - fraction) / 2
    low = freqs[min(int(np.searchsorted(cumulative, tail)), nfft - 1)]
    high = freqs[min(int(np.searchsorted(cumulative, 1 - tail)), nfft - 1)]
    return float(low - 0.5 / nfft), float(high + 0.5 / nfft)


def labelled_frames(recording: SigMFRecording, frame_length: int, hop: int | None = None, *,
                    classes: list[str] | None = None, normalization: str = "l1",
                    min_power_db: float | None = None, nan_policy: str = "raise"
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
                            normalization=normalization, min_power_db=min_power_db,
                            nan_policy=nan_policy)
        parts.append(f)
        labels += [a.label] * len(f)
        starts.append(s)
    if not parts:
        raise DataError(f"{recording.path}: no labelled annotation long enough for "
                        f"{frame_length}-sample frames")
    return np.concatenate(parts), np.asarray(labels), np.concatenate(starts)


def prediction_annotations(starts: np.ndarray, frame_length: int, labels: list[str],
                           confidences: np.ndarray | None = None, *,
                           generator: str = "sigformer", merge: bool = True,
                           breaks: Sequence[int] = ()) -> list[SigMFAnnotation]:
    """One annotation per run of consecutive frames with the same predicted label (the rule:
    :func:`merge_frame`; ``breaks``: samples no run crosses, e.g. :func:`retune_points`)."""
    out: list[SigMFAnnotation] = []
    for i, (start, label) in enumerate(zip(starts, labels)):
        conf = None if confidences is None else confidences[i]
        merge_frame(out, start, frame_length, label, conf, generator=generator, merge=merge,
                    breaks=breaks)
    return out


def merge_frame(runs: list[SigMFAnnotation], start: int, count: int, label: str,
                confidence: float | None = None, *, generator: str = "sigformer",
                merge: bool = True, breaks: Sequence[int] = ()) -> SigMFAnnotation:
    """Add the classified frame ``[start, start + count)`` to ``runs`` (annotations in sample
    order) and return the annotation that holds it: the last run grows over it when it has
    the same label and reaches the frame's start (overlapping or touching frames: none missing
    between them), else (another label, a gap, ``merge=False``) a new run starts.

    A run counts its frames in ``sigformer:frames`` and keeps its best frame's confidence
    (``sigformer:confidence``, also in ``core:comment``). The one merge rule: classify-iq
    (:func:`prediction_annotations`) and the stream's
    :class:`~sigformer.streaming.sinks.SigMFAnnotationSink`, frame by frame, both call it, so
    the two write the same runs. A run never crosses one of ``breaks`` (the samples where a
    retuned recording changes centre frequency: :func:`retune_points`); a frame is in the
    segment where it starts."""
    start, count = int(start), int(count)
    prev = runs[-1] if runs else None
    same_segment = prev is not None and bisect.bisect_right(breaks, prev.start) == \
        bisect.bisect_right(breaks, start)
    if (merge and prev is not None and prev.label == label and same_segment
            and start <= prev.start + prev.count):
        prev.count = max(prev.count, start + count - prev.start)
        prev.extra["sigformer:frames"] += 1
        if confidence is not None:
            _set_confidence(prev, max(prev.extra["sigformer:confidence"], float(confidence)))
        return prev
    run = SigMFAnnotation(start, count, str(label), None,
                          {"core:generator": generator, "sigformer:frames": 1})
    if confidence is not None:
        _set_confidence(run, float(confidence))
    runs.append(run)
    return run


def _set_confidence(run: SigMFAnnotation, confidence: float) -> None:
    run.extra["sigformer:confidence"] = confidence
    run.comment = f"predicted {run.label} (max confidence {confidence:.2f})"


def _declare_extension(global_info: dict[str, Any]) -> None:
    """Declare the ``sigformer:`` namespace in ``core:extensions`` (once)."""
    extensions = list(global_info.get("core:extensions", []))
    if not any(e.get("name") == EXTENSION["name"] for e in extensions):
        extensions.append(dict(EXTENSION))
    global_info["core:extensions"] = extensions


def _uses_extension(items: list[dict[str, Any]]) -> bool:
    return any(k.startswith(EXTENSION["name"] + ":") for item in items for k in item)


def check_replaceable(recording: str | os.PathLike, *, in_place: bool = True) -> None:
    """Refuse to replace a recording's metadata file when it has no write permission bit (a
    shared, read-only 0444 file): ``os.access`` cannot tell when running as root, and the
    atomic replace never asks the file's mode. ``recording``: the ``.sigmf-meta`` file, its
    data file or their common base; ``in_place`` picks the advice (the input itself, or an
    existing output). A missing file is fine (nothing to replace)."""
    target = _meta_and_data(Path(recording))[0]
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return
    if mode & 0o222:
        return
    instead = ("write the annotations to a new file instead (classify-iq --out "
               "NEW.sigmf-meta, or out_meta=...)" if in_place else
               "choose another output path (classify-iq --out, out_meta=...)")
    raise DataError(f"{target} is read-only (mode {mode & 0o777:04o}): refusing to "
                    f"{'rewrite it in place' if in_place else 'replace it'}; {instead}, or "
                    f"make the file writable first if it is meant to change")


def _write_json_atomically(meta: dict[str, Any], target: Path) -> None:
    """Replace ``target`` in one step, keeping its permission bits (0644 for a new file)."""
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".meta.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(meta, fh, indent=2)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _copy_atomically(source: Path, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".data.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _data_layout(meta: dict[str, Any], data_path: Path) -> tuple[int, int, int]:
    """``(data bytes without trailing bytes, header bytes, bytes per sample of all
    channels)`` of a recording whose datatype is already checked."""
    match = DATATYPE_RE.match(str(meta["global"]["core:datatype"]))
    width = int(match.group(2)[1:]) // 8 * (2 if match.group(1) == "c" else 1)
    channels = int(meta["global"].get("core:num_channels", 1))
    size = data_path.stat().st_size - int(meta["global"].get("core:trailing_bytes", 0))
    header = sum(int(c.get("core:header_bytes", 0)) for c in meta.get("captures", []))
    return size, header, width * channels


def _recorded_samples(meta: dict[str, Any], data_path: Path) -> int:
    """How many samples (per channel) the data file holds, as ``_check_meta`` counts them."""
    size, header, frame = _data_layout(meta, data_path)
    return (size - header) // frame


def _load_annotated(meta_path: Path, default_data: Path) -> tuple[dict[str, Any], Path | None]:
    """The metadata to annotate and its data file; ``None`` for a metadata-only recording
    (``core:metadata_only``, e.g. one written by a stream from a live source) without data."""
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            meta = None  # _check_meta names the problem
        if (isinstance(meta, dict) and isinstance(meta.get("global"), dict)
                and meta["global"].get("core:metadata_only") is True
                and not _data_path(meta_path, meta, default_data).is_file()):
            validate_metadata(meta, meta_path)
            return meta, None
    return _check_meta(meta_path, default_data)


def _annotation_rows(annotations: list[SigMFAnnotation]) -> list[dict[str, Any]]:
    return [{"core:sample_start": a.start, "core:sample_count": a.count, **a.to_metadata()}
            for a in annotations]


class AnnotationWriter:
    """The one SigMF annotation writer: :func:`write_annotations` (``classify-iq``) and the
    streaming sink (:class:`~sigformer.streaming.sinks.SigMFAnnotationSink`, ``sigformer
    stream --out``) both write through it, so their files agree: the source's global fields
    (``core:version``, ``core:sha512``, author, licence, ...) kept, the ``sigformer``
    extension declared at :data:`EXTENSION`'s version, earlier annotations by
    ``replace_generator`` dropped, the data file placed the same way, every write atomic and
    validated against the standard.

    ``recording``: the annotated capture (``.sigmf-meta``, its data file or their base). With
    ``out_meta`` the result is a complete recording: beside the original data (same folder)
    the new metadata names it with ``core:dataset``; elsewhere (or with ``copy_data=True``)
    the data is copied to ``<out_meta base>.sigmf-data`` (once, before the first metadata
    that names it); ``copy_data=False`` elsewhere is refused (``core:dataset`` can only name a
    file in its own folder). ``in_place=True`` rewrites the recording's own metadata instead.

    ``recording=None``: there is no capture (a stream from a live source); the metadata is
    written with ``core:metadata_only: true`` (SigMF's flag for metadata without a dataset),
    ``global_info`` over the defaults (``cf32_le``, the ``sigmf`` package's specification
    version, as :func:`write_sigmf`) and ``captures`` (default: one at sample 0).

    :meth:`add` validates each batch of annotations as it comes (a long stream is not
    revalidated whole at every flush); :meth:`replace_last` updates the annotation added last
    (a run of frames that is still growing: the stream writes it as it stands and extends it
    later); :meth:`flush` writes everything added so far and can be called as often as
    wanted; :meth:`read_samples` reads the recording's samples an annotation covers."""

    def __init__(self, recording: str | os.PathLike | None,
                 out_meta: str | os.PathLike | None = None, *, in_place: bool = False,
                 replace_generator: str | None = "sigformer", copy_data: bool | None = None,
                 global_info: dict[str, Any] | None = None,
                 captures: list[dict[str, Any]] | None = None):
        self._copy: tuple[Path, Path] | None = None
        self.n_samples: int | None = None  # of the recording's data, when there is one
        self._source_meta: Path | None = None  # the recording's metadata, when it has data
        self._reader = None  # a sigmf handle on the recording's data, opened when first read
        self._new: list[dict[str, Any]] = []
        if recording is None:
            self._start_metadata_only(out_meta, in_place, global_info, captures)
        else:
            if global_info is not None or captures is not None:
                raise ValueError("global_info and captures describe a stream without a "
                                 "recording; with a recording its own metadata is kept")
            self._start_from_recording(Path(recording), out_meta, in_place,
                                       replace_generator, copy_data)
        if _uses_extension(self._kept + self.captures + [self.global_info]):
            _declare_extension(self.global_info)

    @property
    def global_info(self) -> dict[str, Any]:
        return self._meta["global"]

    @property
    def captures(self) -> list[dict[str, Any]]:
        return self._meta.get("captures", [])

    def _start_from_recording(self, recording: Path, out_meta, in_place: bool,
                              replace_generator: str | None, copy_data: bool | None) -> None:
        meta_path, default_data = _meta_and_data(recording)
        if default_data is None:
            raise DataError("annotations are written to a .sigmf-meta file, not into an "
                            "archive")
        if (out_meta is None) == (not in_place):
            raise ValueError("pass either out_meta (a new metadata file; the input stays as "
                             "it is) or in_place=True (rewrite the input's metadata), not "
                             "both or neither")
        if in_place:  # before any work: the answer cannot change
            check_replaceable(meta_path, in_place=True)
        self._meta, data_path = _load_annotated(meta_path, default_data)
        if data_path is not None:
            self.n_samples = _recorded_samples(self._meta, data_path)
            self._source_meta = meta_path
        self._kept = [a for a in self._meta.get("annotations", [])
                      if replace_generator is None
                      or a.get("core:generator") != replace_generator]
        if in_place:
            self.target = meta_path
            return
        self.target = _new_target(out_meta, meta_path)
        if data_path is not None:
            self._place_data(data_path, copy_data)

    def _place_data(self, data_path: Path, copy_data: bool | None) -> None:
        """``core:dataset`` beside the original data, a copy elsewhere (or when asked)."""
        target_data = _meta_and_data(self.target)[1]
        same_folder = self.target.parent.resolve() == data_path.parent.resolve()
        if copy_data is None:
            copy_data = not same_folder
        if copy_data:
            self.global_info.pop("core:dataset", None)
            if target_data.resolve() != data_path.resolve():
                self._copy = (data_path, target_data)
        elif not same_folder:
            raise DataError(f"core:dataset can only name a file in the metadata's own "
                            f"folder; {self.target} is not beside {data_path}: pass "
                            f"copy_data=True")
        elif target_data.resolve() != data_path.resolve():
            self.global_info["core:dataset"] = data_path.name

    def _start_metadata_only(self, out_meta, in_place: bool, global_info: dict | None,
                             captures: list[dict] | None) -> None:
        if in_place or out_meta is None:
            raise ValueError("without a recording the annotations need out_meta (a new "
                             "metadata file); there is no recording to rewrite in place")
        sigmf = _sigmf()
        info = {sigmf.DATATYPE_KEY: "cf32_le", sigmf.VERSION_KEY: sigmf.__specification__,
                **(global_info or {}), "core:metadata_only": True}
        self._meta = {"global": info, "captures": [dict(c) for c in captures or
                                                   [{"core:sample_start": 0}]],
                      "annotations": []}
        self._kept = []
        self.target = _new_target(out_meta, None)
        validate_metadata(self._meta, self.target)

    def add(self, annotations: list[SigMFAnnotation]) -> None:
        """Validate ``annotations`` (with the recording's global object and captures) and
        keep them for the next :meth:`flush`."""
        rows = sorted(_annotation_rows(annotations), key=lambda a: a["core:sample_start"])
        self._validate(rows)
        self._new.extend(rows)

    def replace_last(self, annotation: SigMFAnnotation) -> None:
        """Put ``annotation`` in place of the one added last (the latest-starting of the last
        :meth:`add`), validated as :meth:`add` validates; the next :meth:`flush` writes it.
        For a run of frames that grows after it was written (the stream's open run): it is
        extended in place, never written twice. It must start where the one it replaces
        starts: annotations are updated, not moved."""
        if not self._new:
            raise ValueError("replace_last: no annotation has been added to replace; add() "
                             "the first version of it")
        row = _annotation_rows([annotation])[0]
        last = self._new[-1]["core:sample_start"]
        if row["core:sample_start"] != last:
            raise ValueError(f"replace_last: the annotation added last starts at sample "
                             f"{last}, this one at {row['core:sample_start']}; a replacement "
                             f"must start at the same sample (add() a new annotation instead)")
        self._validate([row])
        self._new[-1] = row

    def _validate(self, rows: list[dict[str, Any]]) -> None:
        if _uses_extension(rows):
            _declare_extension(self.global_info)
        validate_metadata({**self._meta, "annotations": rows}, self.target)

    def read_samples(self, start: int, count: int) -> np.ndarray:
        """``count`` samples of the annotated recording from ``start`` (its first channel),
        as :func:`read_sigmf` reads them (scaled, NaN/Inf left as they are) without reading
        the rest: the samples whose occupied band gives an annotation's frequency edges."""
        if self._source_meta is None:
            raise ValueError("this writer annotates no recording with data (a stream from a "
                             "live source, or a metadata-only recording): no samples to read")
        if self._reader is None:
            self._reader = _sigmf().sigmffile.fromfile(str(self._source_meta),
                                                       skip_checksum=True)
        samples = np.asarray(self._reader.read_samples(int(start), int(count)))
        return samples if samples.ndim == 1 else samples[:, 0]

    def flush(self) -> Path:
        """Write the metadata (the recording's annotations that are kept, and every one
        added), atomically; the data is copied first when it is to be."""
        if self._copy is not None:
            _copy_atomically(*self._copy)
            self._copy = None
        meta = {**self._meta, "annotations": sorted(self._kept + self._new,
                                                    key=lambda a: a["core:sample_start"])}
        _write_json_atomically(meta, self.target)
        return self.target


def _new_target(out_meta: str | os.PathLike | None, source_meta: Path | None) -> Path:
    """The new metadata file: a ``.sigmf-meta`` path, not the input's own and not a
    read-only file; its folder is created."""
    target, target_data = _meta_and_data(Path(out_meta))
    if target_data is None:
        raise DataError(f"out_meta {out_meta} must be a .sigmf-meta path, not an archive")
    if source_meta is not None and target.resolve() == source_meta.resolve():
        raise DataError(f"out_meta {target} is the input's own metadata; pass in_place=True "
                        f"to modify the input")
    check_replaceable(target, in_place=False)  # before the data is copied beside it
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def write_annotations(recording_path: str | os.PathLike, annotations: list[SigMFAnnotation],
                      out_meta: str | os.PathLike | None = None, *, in_place: bool = False,
                      replace_generator: str | None = "sigformer",
                      copy_data: bool | None = None) -> Path:
    """Add ``annotations`` to a recording's metadata, dropping earlier ones made by
    ``replace_generator``; written atomically and validated against the standard.

    The input is never modified unless ``in_place=True``. With ``out_meta`` the result is a
    complete recording: beside the original data (same folder) the new metadata names it with
    ``core:dataset``; elsewhere (or with ``copy_data=True``) the data is copied to
    ``<out_meta base>.sigmf-data``. The ``sigformer:`` extension is declared in
    ``core:extensions`` whenever its fields are used. One writer (:class:`AnnotationWriter`)
    serves this and ``sigformer stream --out``."""
    writer = AnnotationWriter(recording_path, out_meta, in_place=in_place,
                              replace_generator=replace_generator, copy_data=copy_data)
    writer.add(annotations)
    return writer.flush()
