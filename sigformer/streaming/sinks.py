"""Stream sinks: callbacks, LSL outlets (class probabilities + markers) and a crash-safe
recorder."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .runtime import Prediction

RECORDER_MAGIC = b"SGFREC1\n"


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

    def __init__(self, path, columns: Sequence[str], durable: bool = True):
        self.path = Path(path)
        self.columns = list(columns)
        self.durable = durable
        self._row = struct.Struct(f"<d{len(self.columns)}f")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "wb")
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


def read_recorder(path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(columns, timestamps (n,), values (n, n_columns))``; a torn last row is dropped."""
    raw = Path(path).read_bytes()
    if not raw.startswith(RECORDER_MAGIC):
        raise ValueError(f"{path} is not a sigformer recorder file")
    header_end = raw.index(b"\n", len(RECORDER_MAGIC))
    header = json.loads(raw[len(RECORDER_MAGIC):header_end])
    n_cols = len(header["columns"])
    dtype = np.dtype([("t", "<f8"), ("v", "<f4", (n_cols,))])
    body = raw[header_end + 1:]
    n_rows = len(body) // dtype.itemsize
    rows = np.frombuffer(body[:n_rows * dtype.itemsize], dtype=dtype)
    return header["columns"], rows["t"].copy(), rows["v"].reshape(n_rows, n_cols).copy()
