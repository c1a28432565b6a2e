"""Stream sinks: callbacks, LSL outlets (class probabilities + markers), crash-safe
recorders (binary and CSV), an XDF prediction writer, WAV writers (one file per separated
speaker), a SigMF annotation writer and an npz writer for channel estimates.

Nothing a sink writes replaces earlier results: the recorder starts a new file when the
target exists, and file sinks write to a temporary name that is renamed into place when the
stream ends.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .runtime import Prediction

if TYPE_CHECKING:
    from ..data.sigmf_io import OccupiedBand, SigMFAnnotation

RECORDER_MAGIC = b"SGFREC1\n"


class OutputNotWritableError(PermissionError):
    """A sink's output folder cannot take new files (said when the sink is made)."""


def prepare_output_folder(path: Path) -> None:
    """Create the folder ``path`` goes in and check that it takes new files, when the sink
    is made: a sink that writes only when the stream ends (XDF, a PNG) would otherwise find
    out then, and every prediction of the session would be lost."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(f"cannot write {path}: {folder} (or a folder above it) is "
                                 f"an existing file; expected a folder") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputNotWritableError(f"cannot write {path}: the folder {folder} is not "
                                     f"writable; expected a folder this user can create "
                                     f"files in")


class CallbackSink:
    """Calls ``fn(prediction)`` for every prediction."""

    def __init__(self, fn: Callable[[Prediction], None]):
        self.fn = fn

    def write(self, predictions: Sequence[Prediction]) -> None:
        for p in predictions:
            self.fn(p)

    def close(self) -> None:
        pass


class ListSink(CallbackSink):
    """Collects predictions in ``.predictions`` (tests, notebooks)."""

    def __init__(self):
        self.predictions: list[Prediction] = []
        super().__init__(self.predictions.append)


class LSLSink:
    """Publishes class probabilities (one float32 channel per class, stamped with the
    window's last-sample timestamp) and, optionally, the predicted label on a marker stream
    ``<name>-markers``."""

    def __init__(self, classes: Sequence[str], name: str = "sigformer-predictions",
                 source_id: str = "sigformer-predictions", markers: bool = True):
        from .lsl import lsl

        self._lsl = lsl()
        info = self._lsl.StreamInfo(name, "Predictions", len(classes), 0.0, "float32", source_id)
        info.set_channel_names(list(classes))
        self.outlet = self._lsl.StreamOutlet(info)
        self.markers = None
        if markers:
            minfo = self._lsl.StreamInfo(f"{name}-markers", "Markers", 1, 0.0, "string",
                                         f"{source_id}-markers")
            self.markers = self._lsl.StreamOutlet(minfo)

    def write(self, predictions: Sequence[Prediction]) -> None:
        for p in predictions:
            self.outlet.push_sample(p.probabilities.astype(np.float32), timestamp=p.timestamp)
            if self.markers is not None:
                self.markers.push_sample([p.label], timestamp=p.timestamp)

    def close(self) -> None:
        self.outlet = None
        self.markers = None


class Recorder:
    """Append-only recording of ``(timestamp, values)`` rows, crash-safe.

    The file holds a magic line, a JSON header line (channel names, dtype) and fixed-size
    binary rows (float64 timestamp + float32 values). Each :meth:`write` appends whole rows
    and flushes (and ``fsync``s with ``durable=True``): after a crash or kill, every row
    written before the last flush is readable; :func:`read_recorder` ignores a torn trailing
    row.
    """

    FORMAT = "crash-safe binary, read_recorder"

    def __init__(self, path, columns: Sequence[str], durable: bool = True):
        self.requested_path = Path(path)
        self.columns = list(columns)
        self.durable = durable
        self._row = struct.Struct(f"<d{len(self.columns)}f")
        prepare_output_folder(self.requested_path)
        # never truncate an earlier recording: a new session gets a new file
        self.path, self._fh = _create_new(self.requested_path)
        header = json.dumps({"columns": self.columns, "row": "float64 timestamp + float32 "
                             "values, little-endian"}).encode()
        self._fh.write(RECORDER_MAGIC + header + b"\n")
        self._flush()

    def _flush(self) -> None:
        self._fh.flush()
        if self.durable:
            os.fsync(self._fh.fileno())

    def write_rows(self, timestamps: np.ndarray, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float32).reshape(len(timestamps), -1)
        if values.shape[1] != len(self.columns):
            raise ValueError(f"recorder has {len(self.columns)} columns, got rows of "
                             f"{values.shape[1]}")
        rows = np.zeros(len(timestamps), dtype=[("t", "<f8"), ("v", "<f4", (values.shape[1],))])
        rows["t"], rows["v"] = timestamps, values
        self._fh.write(rows.tobytes())
        self._flush()

    def write(self, predictions: Sequence[Prediction]) -> None:
        if predictions:
            self.write_rows(np.array([p.timestamp for p in predictions]),
                            np.stack([p.probabilities for p in predictions]))

    def close(self) -> None:
        if not self._fh.closed:
            self._flush()
            self._fh.close()

    def abort(self) -> None:
        """Close and remove the file this recorder created (a session that never started:
        another sink could not be made)."""
        _discard_created(self._fh, self.path)


class CSVRecorder:
    """Predictions as CSV text, appended and flushed (``fsync``'d with ``durable=True``) as
    they are made: a header ``timestamp,<columns>``, then one row per prediction, formatted as
    :meth:`RecorderData.to_csv` writes them. A crash keeps every row up to the last flush (at
    most the last line is torn). Never truncates an earlier recording: a new session gets a
    new file (``preds-2.csv``)."""

    FORMAT = "crash-safe text rows"

    def __init__(self, path, columns: Sequence[str], durable: bool = True):
        self.requested_path = Path(path)
        self.columns = list(columns)
        self.durable = durable
        prepare_output_folder(self.requested_path)
        self.path, self._fh = _create_new(self.requested_path)
        self._fh.write((_csv_header(self.columns) + "\n").encode())
        self._flush()

    def _flush(self) -> None:
        self._fh.flush()
        if self.durable:
            os.fsync(self._fh.fileno())

    def write(self, predictions: Sequence[Prediction]) -> None:
        if not predictions:
            return
        for p in predictions:
            if len(p.probabilities) != len(self.columns):
                raise ValueError(f"CSV recorder has {len(self.columns)} columns, got a "
                                 f"prediction with {len(p.probabilities)} probabilities")
        lines = [_csv_row(p.timestamp, p.probabilities) for p in predictions]
        self._fh.write(("\n".join(lines) + "\n").encode())
        self._flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._flush()
            self._fh.close()

    def abort(self) -> None:
        """As :meth:`Recorder.abort`."""
        _discard_created(self._fh, self.path)


def _discard_created(handle, path: Path) -> None:
    """Close ``handle`` and remove ``path``, a file its recorder created (never an earlier
    recording: :func:`_create_new` only opens new names)."""
    if not handle.closed:
        handle.close()
    path.unlink(missing_ok=True)


def _csv_header(columns: Sequence[str]) -> str:
    return ",".join(["timestamp", *columns])


def _csv_row(timestamp: float, values) -> str:
    """One CSV row: the timestamp exactly (repr), the values to 6 significant digits."""
    return ",".join([repr(float(timestamp)), *(f"{float(v):.6g}" for v in values)])


def _create_new(path: Path):
    """Open ``path`` for writing if it does not exist, else ``<stem>-<n><suffix>``."""
    candidate = path
    for n in range(1, 10_000):
        try:
            return candidate, open(candidate, "xb")
        except FileExistsError:
            candidate = path.with_name(f"{path.stem}-{n + 1}{path.suffix}")
    raise FileExistsError(f"too many recordings named like {path}")


class XDFRecorder:
    """Predictions as an XDF file, readable by pyxdf / MNE / EEGLAB next to the EEG recorded by
    LabRecorder: a ``Predictions`` stream (one ``probability`` channel per class, labelled) and a
    ``Markers`` stream with the predicted label, both stamped with the window's last-sample
    timestamp. XDF has no append-safe layout, so rows are kept in memory (a few MB for a
    session) and the file is written when the stream ends, under a temporary name renamed into
    place; use :class:`Recorder` (``--record``) where a crash must not lose rows."""

    FORMAT = "written when the stream ends"

    def __init__(self, path, classes: Sequence[str], name: str = "sigformer-predictions"):
        self.requested_path = Path(path)
        prepare_output_folder(self.requested_path)  # now, not when the rows are due
        self.classes = list(classes)
        self.name = name
        self.path: Path | None = None
        self._timestamps: list[float] = []
        self._probabilities: list[np.ndarray] = []
        self._labels: list[str] = []

    def write(self, predictions: Sequence[Prediction]) -> None:
        for p in predictions:
            if len(p.probabilities) != len(self.classes):
                raise ValueError(f"XDFRecorder has {len(self.classes)} classes, got a prediction "
                                 f"with {len(p.probabilities)} probabilities")
            self._timestamps.append(float(p.timestamp))
            self._probabilities.append(np.asarray(p.probabilities, dtype=float))
            self._labels.append(str(p.label))

    def close(self) -> None:
        if self.path is not None or not self._timestamps:
            return  # already written, or nothing to write (XDF needs one sample per stream)
        from ..data.xdf import XDFStream, write_xdf

        stamps = np.asarray(self._timestamps)
        streams = [XDFStream(self.name, "Predictions", np.stack(self._probabilities), stamps,
                             labels=self.classes, unit="probability"),
                   XDFStream(f"{self.name}-markers", "Markers", list(self._labels), stamps,
                             labels=["label"], unit="")]
        target, handle = _create_new(self.requested_path)  # never replace a recording
        handle.close()
        tmp = target.with_name(f".{target.name}.tmp")
        write_xdf(tmp, streams)
        os.replace(tmp, target)
        self.path = target

    def abort(self) -> None:
        """Drop the rows, write nothing (a session that never started)."""
        self._timestamps, self._probabilities, self._labels = [], [], []


class RecorderData(NamedTuple):
    """A recorder file's content: column names, timestamps and values (labelled)."""

    columns: list[str]
    timestamps: np.ndarray
    values: np.ndarray

    def to_dataframe(self):
        """A pandas DataFrame with a ``timestamp`` column and one column per label."""
        import pandas as pd

        frame = pd.DataFrame(self.values, columns=self.columns)
        frame.insert(0, "timestamp", self.timestamps)
        return frame

    def to_csv(self, path) -> Path:
        """Write ``timestamp,<columns>`` rows (atomically)."""
        from ..atomic import atomic_write_text

        lines = [_csv_header(self.columns)]
        lines += [_csv_row(t, row) for t, row in zip(self.timestamps, self.values)]
        return atomic_write_text(path, "\n".join(lines) + "\n")


# `--record PATH` (stream.output.record): the recorder for each suffix
RECORD_FORMATS = {".sgrec": Recorder, ".csv": CSVRecorder, ".xdf": XDFRecorder}


def read_recorder(path) -> RecorderData:
    """``(columns, timestamps (n,), values (n, n_columns))`` as a :class:`RecorderData`;
    a torn last row is dropped."""
    raw = Path(path).read_bytes()
    if not raw.startswith(RECORDER_MAGIC):
        raise ValueError(f"{path} is not a sigformer recorder file (expected a file written by "
                         f"Recorder / --record, starting with {RECORDER_MAGIC!r})")
    header_end = raw.index(b"\n", len(RECORDER_MAGIC))
    header = json.loads(raw[len(RECORDER_MAGIC):header_end])
    n_cols = len(header["columns"])
    dtype = np.dtype([("t", "<f8"), ("v", "<f4", (n_cols,))])
    body = raw[header_end + 1:]
    n_rows = len(body) // dtype.itemsize
    rows = np.frombuffer(body[:n_rows * dtype.itemsize], dtype=dtype)
    return RecorderData(list(header["columns"]), rows["t"].copy(),
                        rows["v"].reshape(n_rows, n_cols).copy())


class WAVSink:
    """Writes audio blocks (:class:`~sigformer.streaming.processors.AudioBlock`) to one WAV
    file per output (``<stem>_<label>.wav`` in ``directory``, or exactly ``path`` for a
    single output). Files are written under a temporary name and renamed on close. A target
    that cannot take them (an existing file where the outputs need a folder, a folder where
    one file is asked) is refused here, before any audio is processed."""

    def __init__(self, target, sample_rate: float, *, stem: str = "output",
                 single_file: bool = False, whole_input: bool = False):
        """``whole_input``: the outputs stand for a whole input file (``sigformer separate``
        / ``enhance``), so a run that stops early (an error, Ctrl-C) publishes nothing: a
        cut-short WAV at the final name would look complete. A live stream's recording is
        kept up to where it stopped (the default)."""
        self.target, self.sample_rate = Path(target), int(round(sample_rate))
        self.abort_when_incomplete = whole_input
        problem = wav_target_problem(self.target, single_file)
        if problem:
            raise (IsADirectoryError if single_file else NotADirectoryError)(problem)
        self.stem, self.single_file = stem, single_file
        self._writers: list = []
        self.paths: list[Path] = []
        self.samples = 0

    def _open(self, labels: Sequence[str]) -> None:
        import soundfile as sf

        if self.single_file:
            self.paths = [self.target]
        else:
            self.target.mkdir(parents=True, exist_ok=True)
            self.paths = [self.target / f"{self.stem}_{label}.wav" for label in labels]
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.part")
            self._writers.append((sf.SoundFile(str(tmp), "w", self.sample_rate, 1,
                                               subtype="FLOAT", format="WAV"), tmp, path))

    def write(self, blocks) -> None:
        for block in blocks:
            if not self._writers:
                self._open(block.labels[:1] if self.single_file else block.labels)
            for (writer, _, _), row in zip(self._writers, block.data):
                writer.write(np.asarray(row, np.float32))
            self.samples += block.data.shape[1]

    def close(self) -> None:
        for writer, tmp, path in self._writers:
            writer.close()
            tmp.replace(path)
        self._writers = []

    def abort(self) -> None:
        """Close without publishing: the temporary files are removed, earlier files at the
        final names stay as they were."""
        for writer, tmp, _ in self._writers:
            writer.close()
            tmp.unlink(missing_ok=True)
        self._writers, self.paths = [], []


class SigMFAnnotationSink:
    """Writes frame predictions as SigMF annotations while the stream runs, through the same
    writer as ``classify-iq --out`` (:class:`~sigformer.data.sigmf_io.AnnotationWriter`) and
    with the same merge rule and edges. The two files agree (start, count, label, edges,
    ``sigformer:frames``; confidences within 1e-6, as the stream runs the model on other
    batches: ``tests/test_stream_sigmf_runs.py``) when both see the same frames with the
    same decisions, that is for the same capture, bundle and hop, and:

    * frame decisions: ``classify-iq --all-frames`` (without it classify-iq drops frames
      more than ``--min-power-db`` below the loudest; a stream's frame decisions gate none);
    * burst decisions: the loudest burst comes first (the stream gates on the loudest frame
      *so far*, classify-iq on the loudest of the capture, so a quiet burst before a louder
      one is kept by the stream only), and no burst is longer than ``max_burst_frames`` (64:
      the stream decides a longer one every 64 frames, classify-iq as a whole);
    * the capture is at the bundle's sample rate (the stream resamples another rate to the
      bundle's, classify-iq classifies the capture as it is);
    * no family bundle conditioning: classify-iq centres the carrier of a family bundle's
      capture and resamples it whole (blind symbol-length estimate or ``--sps``), the stream
      never centres and resamples by ``--sps`` causally, mapping frame positions back
      through the resampler's delay. Given the bundle's own symbol length, the stream
      matches :func:`~sigformer.rf.amr.classify_sigmf` without ``target_sps``.

    ``recording``: the SigMF capture being streamed (``sigmf:`` sources). The output is then
    a complete recording as ``classify-iq --out`` writes it: the capture's global fields and
    ``core:version`` kept, its own annotations kept except earlier ``core:generator:
    sigformer`` ones, the data named with ``core:dataset`` beside the capture and copied
    elsewhere (``copy_data`` as in :func:`~sigformer.data.sigmf_io.write_annotations`).
    Without one (a live source: ZeroMQ, ...) there is no data to keep: the metadata says
    ``core:metadata_only: true``, with ``global_info`` over the defaults. ``path`` gets
    ``.sigmf-meta`` appended unless it ends so; it is never the capture's own metadata.

    Annotations are runs, merged as classify-iq merges them
    (:func:`~sigformer.data.sigmf_io.merge_frame`): consecutive frames with the same label
    make one annotation (``sigformer:frames`` counts them, ``sigformer:confidence`` is the
    best frame's, ``core:comment`` says both) until a frame with another label or a gap (a
    frame that neither overlaps nor touches the run: quiet frames left out by burst
    decisions, windows skipped for NaN, predictions under ``min_probability``) ends it. Each
    carries ``core:generator: sigformer``, so a later run replaces it.

    Frequency edges as classify-iq's, where the stream knows what it knows: with a capture
    and ``sample_rate``, the occupied band (99 % of the power) of the run's samples, read
    from the capture, relative to the centre frequency (``center_freq``, else the
    ``core:frequency`` of the capture segment holding the run's start, else 0 Hz: baseband).
    Without a capture there is no band to measure: with ``center_freq`` the runs span the
    whole band (centre +- rate / 2), without it they get no edges; ``sigformer stream``
    passes no centre frequency for a live source (no source reports one), so there its runs
    get no edges. ``sample_rate`` None (a stream at a nominal rate, as a capture without
    ``core:sample_rate``): no edges, as classify-iq. Where they can still differ:
    classify-iq measures the band on samples its ``nan_policy`` ``"interpolate"`` filled
    (the stream reads the capture as recorded, leaving non-finite samples out).

    The band is measured in bounded memory: the run's samples are read in pieces of at most
    :attr:`READ_SAMPLES` into a running spectrum (:class:`~sigformer.data.sigmf_io.
    OccupiedBand`, the computation classify-iq's ``occupied_band`` runs in one piece), and
    the open run keeps its own, so extending it reads only its new samples: every sample is
    read once, and the edges written with an open run are exact for what it holds.

    The file is rewritten atomically on close and, while runs are waiting, once ``every_s``
    seconds have passed since the last rewrite: at a :meth:`write`, or at a :meth:`tick`,
    which the stream runner calls after every chunk and while the source is silent, so the
    open run reaches disk within about ``every_s`` of its last frame even when no
    prediction follows, and a crash loses at most that much. The run still open is written
    as it stands and extended by the next rewrite
    (:meth:`~sigformer.data.sigmf_io.AnnotationWriter.replace_last`). ``clock``: the time
    source for ``every_s`` (default :func:`time.monotonic`; tests pass a fake one).
    """

    GENERATOR = "sigformer"
    READ_SAMPLES = 1 << 18  # samples read at once to measure a band (2 MB of cf32)

    def __init__(self, path, *, sample_rate: float | None, labels: Sequence[str],
                 global_info: dict | None = None, center_freq: float | None = None,
                 every_s: float = 1.0, min_probability: float = 0.0,
                 recording: str | os.PathLike | None = None, copy_data: bool | None = None,
                 clock: Callable[[], float] | None = None):
        import time

        from ..data.sigmf_io import AnnotationWriter

        self.path = Path(path)
        if not self.path.name.endswith(".sigmf-meta"):
            self.path = self.path.with_name(self.path.name + ".sigmf-meta")
        self.sample_rate = None if sample_rate is None else float(sample_rate)
        self.labels = list(labels)
        self.center_freq = center_freq
        if recording is None:
            default = {} if self.sample_rate is None else {"core:sample_rate":
                                                           self.sample_rate}
            capture = {"core:sample_start": 0}
            if center_freq is not None:
                capture["core:frequency"] = float(center_freq)
            self.writer = AnnotationWriter(None, self.path,
                                           global_info={**default, **(global_info or {})},
                                           captures=[capture])
        else:
            if global_info is not None:
                raise ValueError("global_info is for a stream without a recording; a "
                                 "recording's own global object is kept")
            self.writer = AnnotationWriter(recording, self.path, copy_data=copy_data,
                                           replace_generator=self.GENERATOR)
        self.every_s, self.min_probability = every_s, min_probability
        self._clock = clock or time.monotonic
        # runs not yet final in the writer: the first may be the open run written at the last
        # flush (``_written_open``: it as it stood), the last is the open one. They reach the
        # writer at each flush, not per chunk: validation has a fixed cost of milliseconds a
        # call, too much for every chunk of a live stream
        self._runs: list[SigMFAnnotation] = []
        self._written_open: dict | None = None
        self._pending = False  # frames merged since the last flush
        # the running spectrum of the run measured last: (its start, samples read, spectrum)
        self._band: tuple[int, int, OccupiedBand] | None = None
        from ..data.sigmf_io import retune_points

        # a run never crosses a retune (a given center_freq: one centre for everything)
        self._breaks = [] if center_freq is not None else retune_points(self.writer.captures)
        self.written = 0  # annotations (runs) handed to the writer
        self.cut_at_end = 0  # predictions that reached past the recording's last sample
        self._last_write = 0.0
        # the data copy (a whole capture, when it is written elsewhere) and the first
        # metadata happen now, before streaming starts, not inside the first chunk's write
        self._flush()

    def _centre(self, start: int) -> float | None:
        """``center_freq``, else the ``core:frequency`` of the capture segment holding
        ``start``."""
        if self.center_freq is not None:
            return float(self.center_freq)
        from ..data.sigmf_io import capture_frequency

        return capture_frequency(self.writer.captures, start)

    def _span(self, p) -> tuple[int, int] | None:
        """The samples prediction ``p`` labels, cut at the end of the recording's data (as
        classify-iq cuts them); None when it starts past the end."""
        start, count = int(max(p.start, 0)), int(p.length)
        end = self.writer.n_samples
        if end is not None and start + count > end:
            if not self.cut_at_end:
                import warnings

                warnings.warn(f"a prediction at sample {start} (+{count}) reaches past the "
                              f"last sample of the recording ({end}): its annotation is cut "
                              f"at the end of the data, as classify-iq cuts them",
                              stacklevel=3)
            self.cut_at_end += 1
            if start >= end:
                return None
            count = end - start
        return start, count

    def write(self, predictions) -> None:
        from ..data.sigmf_io import merge_frame

        for p in predictions:
            confidence = float(np.max(p.probabilities))
            if confidence < self.min_probability:
                continue
            span = self._span(p)
            if span is not None:
                merge_frame(self._runs, *span, p.label, confidence, generator=self.GENERATOR,
                            breaks=self._breaks)
                self._pending = True
        self.tick()

    def tick(self) -> None:
        """Rewrite the file if frames are waiting and ``every_s`` has passed since the last
        rewrite. The stream runner calls it after every chunk and while the source is
        silent: without it, the run a stream ends on would stay in memory for as long as no
        new prediction comes (sparse bursts: minutes)."""
        if self._pending and self._clock() - self._last_write >= self.every_s:
            self._flush()

    def _edges(self, run: SigMFAnnotation, *, closed: bool) -> None:
        """``core:freq_lower_edge`` / ``core:freq_upper_edge`` of ``run`` (see the class
        docstring), computed as classify-iq computes them."""
        from ..data.sigmf_io import set_frequency_edges

        if self.sample_rate is None:
            return
        centre = self._centre(run.start)
        if self.writer.n_samples is None:  # no capture: the band the stream spans
            if centre is None:
                return
            low, high = -0.5, 0.5
        else:
            low, high = self._run_spectrum(run).band()
            if closed:
                self._band = None  # final: its spectrum is not needed again
            centre = centre or 0.0
        set_frequency_edges(run, low, high, sample_rate=self.sample_rate, centre=centre)

    def _run_spectrum(self, run: SigMFAnnotation) -> OccupiedBand:
        """The running spectrum of ``run``, brought up to its last sample: a run measured
        before (the open one) reads only the samples added since, a new one all of its own,
        :attr:`READ_SAMPLES` at a time."""
        from ..data.sigmf_io import OccupiedBand

        if self._band is None or self._band[0] != run.start:
            self._band = (run.start, 0, OccupiedBand())
        start, done, spectrum = self._band
        while done < run.count:
            count = min(self.READ_SAMPLES, run.count - done)
            spectrum.add(self.writer.read_samples(start + done, count))
            done += count
        self._band = (start, done, spectrum)
        return spectrum

    def _flush(self, *, final: bool = False) -> None:
        """Hand the runs since the last flush to the writer and rewrite the file: the run
        written open last time is replaced (it may have grown), the others added; the last
        stays open unless ``final``."""
        runs = self._runs
        if runs:
            open_run = None if final else runs[-1]
            for run in runs:
                self._edges(run, closed=run is not open_run)
            if self._written_open is not None:
                if _as_written(runs[0]) != self._written_open:
                    self.writer.replace_last(runs[0])
                runs = runs[1:]
            if runs:
                self.writer.add(runs)
                self.written += len(runs)
            self._runs = [] if open_run is None else [open_run]
            self._written_open = None if open_run is None else _as_written(open_run)
        self.writer.flush()
        self._pending = False
        self._last_write = self._clock()

    def close(self) -> None:
        self._flush(final=True)


def _as_written(annotation: SigMFAnnotation) -> dict:
    """What the writer gets of ``annotation`` (to tell whether it changed since)."""
    return {"start": annotation.start, "count": annotation.count,
            **annotation.to_metadata()}


def discard_sinks(sinks) -> None:
    """Undo sinks made for a session that will not run (another sink could not be made):
    each is aborted where it can be (its files removed), else closed; their own errors are
    not raised, as the error that stopped the session is the one to report."""
    for sink in sinks:
        try:
            (getattr(sink, "abort", None) or sink.close)()
        except Exception:  # noqa: BLE001 - the first error is already on its way up
            pass


def wav_target_problem(target: Path, single_file: bool) -> str | None:
    """Why ``target`` cannot receive a :class:`WAVSink`'s files, or None."""
    if single_file and target.is_dir():
        return f"{target} is a folder; the output is one WAV file: give a file path (OUT.wav)"
    if not single_file and target.exists() and not target.is_dir():
        return (f"{target} is an existing file; the outputs are one WAV file per output "
                f"({target.name}/<stem>_<label>.wav): give a folder")
    return None


class NpzSink:
    """Collects channel estimates and writes ``slots``, ``timestamps`` and ``estimates``
    (complex64) to an npz file atomically on close."""

    def __init__(self, path):
        self.path = Path(path)
        prepare_output_folder(self.path)  # written when the stream ends: checked now
        self.slots: list[int] = []
        self.timestamps: list[float] = []
        self.estimates: list[np.ndarray] = []

    def write(self, estimates) -> None:
        for e in estimates:
            self.slots.append(e.slot)
            self.timestamps.append(e.timestamp)
            self.estimates.append(np.asarray(e.estimate, np.complex64))

    def close(self) -> None:
        import io

        from ..atomic import atomic_write_bytes

        buffer = io.BytesIO()
        np.savez(buffer, slots=np.asarray(self.slots), timestamps=np.asarray(self.timestamps),
                 estimates=np.stack(self.estimates) if self.estimates else np.zeros((0,)))
        atomic_write_bytes(self.path, buffer.getvalue())


class LivePlotSink:
    """A live plot of the class probabilities (last ``history`` windows) and of the latest
    window's signal when the stream provides it; redrawn at most every ``every_s`` seconds.
    With a non-interactive matplotlib backend (servers, CI) nothing is shown; ``save`` writes
    the final figure as a PNG when the stream ends."""

    def __init__(self, classes: Sequence[str], *, history: int = 200, every_s: float = 0.5,
                 save: str | os.PathLike | None = None):
        from ..report import pyplot

        self.classes, self.history, self.every_s = list(classes), history, every_s
        self.save = None if save is None else Path(save)
        if self.save is not None:
            prepare_output_folder(self.save)  # now, not when the stream ends
        self._plt = pyplot()
        self.fig, self.ax = self._plt.subplots(figsize=(7, 3))
        self._times: list[float] = []
        self._probs: list[np.ndarray] = []
        self._lines = [self.ax.plot([], [], label=c)[0] for c in self.classes]
        self.ax.set(ylim=(0, 1), xlabel="stream time (s)", ylabel="probability")
        self.ax.legend(loc="upper left", fontsize=8)
        self._last_draw = 0.0
        self.draws = 0

    def write(self, predictions: Sequence[Prediction]) -> None:
        import time

        for p in predictions:
            self._times.append(p.timestamp)
            self._probs.append(np.asarray(p.probabilities, float))
        self._times, self._probs = self._times[-self.history:], self._probs[-self.history:]
        if predictions and time.monotonic() - self._last_draw >= self.every_s:
            self._draw()

    def _draw(self) -> None:
        import time

        if not self._probs:
            return
        probs = np.stack(self._probs)
        for i, line in enumerate(self._lines):
            line.set_data(self._times, probs[:, i])
        self.ax.set_xlim(self._times[0], max(self._times[-1], self._times[0] + 1e-6))
        self.ax.set_title(f"latest: {self.classes[int(probs[-1].argmax())]} "
                          f"(p={probs[-1].max():.2f})")
        self.fig.canvas.draw_idle()
        self._plt.pause(0.001) if self._plt.isinteractive() else None
        self._last_draw = time.monotonic()
        self.draws += 1

    def close(self) -> None:
        try:
            self._draw()
            if self.save is not None:
                self.fig.savefig(self.save, dpi=100)
        finally:  # the figure is released even when saving fails
            self._plt.close(self.fig)

    def abort(self) -> None:
        """Close the figure without saving it (a session that never started)."""
        self._plt.close(self.fig)
