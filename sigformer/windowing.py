"""Windowing and overlap-add: the one module that cuts signals into windows and stitches
model outputs back together, offline and chunk by chunk.

* :class:`SlidingWindows` cuts a stream into windows of ``size`` samples every ``hop``
  samples (classification, IQ frames), holding only ``size - 1`` samples;
  :func:`frame_starts` / :func:`frame_array` do the same offline on a whole array; the two
  agree window for window for any chunking.
* :class:`OverlapAdd` (alias ``ChunkedProcessor``) runs a sequence-to-sequence model
  (separation, enhancement) on overlapping chunks, cross-fades them (the fades sum to one, so
  an identity model gives the input back exactly, for any chunking), keeps the speaker order
  consistent across chunks (``align=True``) and emits output as soon as it is final; memory
  stays flat whatever the length.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def frame_starts(n_samples: int, size: int, hop: int) -> range:
    """Start indices of the complete windows ``0, hop, 2*hop, ...`` of an ``n_samples`` signal."""
    if size < 1 or hop < 1:
        raise ValueError(f"window size and hop must be positive, got {size} and {hop}")
    return range(0, n_samples - size + 1, hop)


def frame_array(data: np.ndarray, size: int, hop: int) -> np.ndarray:
    """``(n_windows, ..., size)`` windows of a ``(..., n_samples)`` array (a copy)."""
    starts = frame_starts(data.shape[-1], size, hop)
    if not len(starts):
        return np.zeros((0, *data.shape[:-1], size), dtype=data.dtype)
    view = np.lib.stride_tricks.sliding_window_view(data, size, axis=-1)[..., ::hop, :]
    return np.ascontiguousarray(np.moveaxis(view, -2, 0))


class SlidingWindows:
    """Windows of ``size`` samples every ``hop`` samples; memory holds ``size - 1`` samples."""

    def __init__(self, size: int, hop: int):
        if size < 1 or hop < 1:
            raise ValueError(f"window size and hop must be positive, got {size} and {hop}")
        self.size, self.hop = size, hop
        self.reset()

    def reset(self) -> None:
        self._buf: np.ndarray | None = None
        self._ts = np.zeros(0)
        self._count = 0  # samples seen

    def push(self, chunk: np.ndarray, timestamps: np.ndarray | None = None
             ) -> list[tuple[np.ndarray, float]]:
        """Returns ``(window (C, size), timestamp of its last sample)`` per completed window."""
        n = chunk.shape[1]
        if timestamps is None:
            timestamps = np.arange(self._count, self._count + n, dtype=float)
        buf = chunk if self._buf is None else np.concatenate([self._buf, chunk], axis=1)
        ts = np.concatenate([self._ts, timestamps])
        start = self._count - (buf.shape[1] - n)  # global index of buf[:, 0]
        self._count += n
        out = []
        # window ends e (exclusive) with e >= size and (e - size) % hop == 0, within the buffer
        first_end = max(self.size, start + self.size)
        first_end += (-(first_end - self.size)) % self.hop
        for end in range(first_end, self._count + 1, self.hop):
            lo = end - self.size - start
            out.append((buf[:, lo:lo + self.size], float(ts[lo + self.size - 1])))
        keep = min(self.size - 1, buf.shape[1])
        self._buf = buf[:, buf.shape[1] - keep:] if keep else buf[:, :0]
        self._ts = ts[len(ts) - keep:] if keep else ts[:0]
        return out



ModelFn = Callable[[np.ndarray], np.ndarray]


def model_function(model: torch.nn.Module, multichannel: bool = False) -> ModelFn:
    """Wrap a model: ``(channels, n)`` float32 -> ``(n_out, n)``, no grad, eval mode."""
    model.eval()

    @torch.inference_mode()
    def run(chunk: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.ascontiguousarray(chunk, np.float32))
        if not multichannel and x.shape[0] != 1:  # keeping channel 0 alone was silent
            raise ValueError(f"this single-channel model got {x.shape[0]} channels: choose "
                             f"one (process_file(..., channels=[0])) or mix them down first")
        x = x[None] if multichannel else x[:1]  # (1, M, n) or (1, n)
        out = model(x)
        return out[0].reshape(-1, chunk.shape[-1]).numpy()

    return run


def best_alignment(previous: np.ndarray, current: np.ndarray) -> tuple[int, ...]:
    """The permutation ``p`` of ``current``'s sources that best matches ``previous``
    (``current[p[i]] ~ previous[i]``) by normalised correlation on the overlap."""
    n = previous.shape[0]
    prev = previous / (np.linalg.norm(previous, axis=1, keepdims=True) + 1e-12)
    cur = current / (np.linalg.norm(current, axis=1, keepdims=True) + 1e-12)
    similarity = prev @ cur.T  # (n, n)
    return max(itertools.permutations(range(n)),
               key=lambda p: sum(similarity[i, p[i]] for i in range(n)))


class OverlapAdd:
    """Incremental chunked inference: feed blocks with :meth:`process`, then :meth:`flush`.

    ``fn`` maps a ``(channels, n)`` chunk to ``(n_out, n)`` (any ``n <= chunk``).
    """

    def __init__(self, fn: ModelFn, chunk: int, overlap: int, align: bool = False):
        if chunk <= 0 or not 0 <= overlap <= chunk // 2:
            raise ValueError(f"need chunk > 0 and 0 <= overlap <= chunk / 2 (each sample is "
                             f"shared by at most two chunks), got chunk={chunk}, "
                             f"overlap={overlap}")
        self.fn, self.chunk, self.overlap, self.align = fn, chunk, overlap, align
        self.hop = chunk - overlap
        self._buffer: np.ndarray | None = None  # input not yet consumed
        self._pending: np.ndarray | None = None  # output overlap awaiting the next chunk
        self.permutations: list[tuple[int, ...]] = []
        self.fade_in = (np.arange(overlap, dtype=np.float64) + 0.5) / max(overlap, 1)

    def _run(self, segment: np.ndarray, final: bool) -> np.ndarray:
        n = segment.shape[1]
        if final and self._pending is not None and n < self.chunk:
            # the remainder after the last full chunk can be a few samples (with no overlap,
            # one): too short for a model that needs a minimum length (MossFormer crashed at
            # flush, after the whole file) and with little context; it runs zero-padded to a
            # whole chunk and is cut back. A single short input still runs as it is.
            padded = np.pad(segment, ((0, 0), (0, self.chunk - n)))
            est = np.asarray(self.fn(padded), np.float64)
            if est.ndim == 2 and est.shape[1] == self.chunk:
                est = est[:, :n]
        else:
            est = np.asarray(self.fn(segment), np.float64)
        if est.ndim != 2 or est.shape[1] != segment.shape[1]:
            raise ValueError(f"the model returned {est.shape} for a chunk of "
                             f"{segment.shape[1]} samples; expected (n_out, samples)")
        out = []
        if self._pending is None:
            head_len = 0
        else:
            head_len = min(self.overlap, est.shape[1])
            if self.align and head_len:
                perm = best_alignment(self._pending[:, :head_len], est[:, :head_len])
                est = est[list(perm)]
                self.permutations.append(perm)
            fade = self.fade_in[:head_len]
            out.append(self._pending[:, :head_len] * (1 - fade) + est[:, :head_len] * fade)
        if final:
            out.append(est[:, head_len:])
            self._pending = None
        else:
            out.append(est[:, head_len:self.hop])
            self._pending = est[:, self.hop:]
        return np.concatenate(out, axis=1)

    def process(self, block: np.ndarray) -> np.ndarray:
        """Add ``(channels, n)`` samples; returns the output that is final so far."""
        block = np.atleast_2d(np.asarray(block, np.float32))
        self._buffer = block if self._buffer is None else np.concatenate(
            [self._buffer, block], axis=1)
        outputs = []
        while self._buffer.shape[1] >= self.chunk + self.hop:  # keep the last chunk for flush
            outputs.append(self._run(self._buffer[:, :self.chunk], final=False))
            self._buffer = self._buffer[:, self.hop:]
        if not outputs:
            return np.zeros((0, 0))
        return np.concatenate(outputs, axis=1)

    def flush(self) -> np.ndarray:
        """Process what is left and return the rest of the output."""
        outputs = []
        if self._buffer is not None and self._buffer.shape[1]:
            if self._buffer.shape[1] > self.chunk:
                outputs.append(self._run(self._buffer[:, :self.chunk], final=False))
                self._buffer = self._buffer[:, self.hop:]
            outputs.append(self._run(self._buffer, final=True))
        self._buffer = None
        return np.concatenate(outputs, axis=1) if outputs else np.zeros((0, 0))


def process_array(fn: ModelFn, audio: np.ndarray, chunk: int, overlap: int,
                  align: bool = False) -> np.ndarray:
    """Chunked inference over a whole ``(channels, samples)`` array."""
    proc = OverlapAdd(fn, chunk, overlap, align)
    parts = [p for p in (proc.process(audio), proc.flush()) if p.size]
    return np.concatenate(parts, axis=1)


def process_file(fn: ModelFn, in_path: str | Path, out_paths: list[str | Path], chunk: int,
                 overlap: int, align: bool = False, block: int = 16000,
                 channels: list[int] | None = None, model_rate: float | None = None) -> int:
    """Stream ``in_path`` through the model block by block into one file per output; memory
    stays flat whatever the file length. Returns the number of samples written.

    ``model_rate``: the rate the model was trained at; a file at another rate is refused
    (this helper does not resample: ``sigformer separate`` / ``enhance`` do). One output path
    per model output: a model with more outputs than paths is refused, not cut short."""
    import soundfile as sf

    proc = OverlapAdd(fn, chunk, overlap, align)
    info = sf.info(str(in_path))
    if model_rate is not None and abs(info.samplerate - float(model_rate)) > 1e-6:
        raise ValueError(f"{in_path} is sampled at {info.samplerate} Hz, the model at "
                         f"{model_rate:g} Hz: resample first (sigformer separate / enhance "
                         f"resample for you)")
    tmp_paths = [Path(p).with_name(f".{Path(p).name}.part") for p in out_paths]
    writers = [sf.SoundFile(str(t), "w", info.samplerate, 1, subtype="FLOAT", format="WAV")
               for t in tmp_paths]
    written = 0
    try:
        for data in sf.blocks(str(in_path), blocksize=block, dtype="float32", always_2d=True):
            audio = data.T if channels is None else data.T[channels]
            written += _write(writers, proc.process(audio))
        written += _write(writers, proc.flush())
    except BaseException:
        for w, t in zip(writers, tmp_paths):
            w.close()
            t.unlink(missing_ok=True)
        raise
    for w, t, p in zip(writers, tmp_paths, out_paths):
        w.close()
        t.replace(p)
    return written


def _write(writers, out: np.ndarray) -> int:
    if out.size == 0:
        return 0
    if len(out) != len(writers):
        raise ValueError(f"the model gives {len(out)} outputs but {len(writers)} output "
                         f"path(s) were given: one path per output")
    for w, row in zip(writers, out):
        w.write(row.astype(np.float32))
    return out.shape[1]


ChunkedProcessor = OverlapAdd  # earlier name
