"""The online pipeline: stateful preprocessing -> sliding windows -> model -> smoothing.

Everything here is chunk-size invariant: pushing a recording in any chunking yields the same
windows (and so the same predictions) as processing it whole with the causal stages and
cutting windows at ``0, hop, 2*hop, ...``. That is what :func:`offline_windows` does, and what
the tests compare against.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..channels import ChannelSet
from ..stages import EuclideanAlignment, Pipeline, Stage
from ..validation import SignalError
from ..windowing import SlidingWindows, frame_array

NAN_POLICIES = ("raise", "skip", "interpolate")


class StreamError(RuntimeError):
    """The stream cannot continue under the configured policy (e.g. NaN with 'raise')."""


class StreamWarning(UserWarning):
    """The stream runs, but not as recorded (e.g. model channels filled in)."""


@dataclass
class Prediction:
    window_index: int
    timestamp: float  # stream timestamp of the window's last sample
    probabilities: np.ndarray
    label: str
    compute_s: float  # preprocessing-free model time for this window
    # the window's first sample and length, at the model's rate (a stream the runtime
    # resamples for a bundle counts them in the stream's samples: RateAdaptingPipeline)
    start: int = -1
    length: int = 0


@dataclass
class StreamStats:
    """Counters a live pipeline reports (and the benchmarks read)."""

    samples: int = 0
    chunks: int = 0
    windows: int = 0
    skipped_windows: int = 0
    gaps: int = 0
    dropped_samples: int = 0
    timestamp_jumps: int = 0
    nan_chunks: int = 0
    queue_drops: int = 0
    # bounded: a pipeline left running for days must not grow its memory with statistics
    compute_s: deque = field(default_factory=lambda: deque(maxlen=100_000))

    def as_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "compute_s"}
        if self.compute_s:
            out["compute_ms_p50"] = 1e3 * float(np.median(self.compute_s))
            out["compute_ms_p99"] = 1e3 * float(np.quantile(self.compute_s, 0.99))
        return out


class Smoother:
    """Output smoothing: ``"none"``, ``"ema"`` (exponential average of probabilities with
    ``alpha``) or ``"vote"`` (majority of the last ``n`` argmax labels, probabilities
    averaged over them)."""

    def __init__(self, mode: str = "none", alpha: float = 0.5, n: int = 3):
        if mode not in ("none", "ema", "vote"):
            raise ValueError(f"smoothing must be 'none', 'ema' or 'vote', got {mode!r}")
        self.mode, self.alpha, self.n = mode, alpha, n
        self.reset()

    def reset(self) -> None:
        self._state: np.ndarray | None = None
        self._history: deque = deque(maxlen=self.n)

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        if self.mode == "none":
            return probs
        if self.mode == "ema":
            self._state = probs if self._state is None else \
                self.alpha * probs + (1 - self.alpha) * self._state
            return self._state
        self._history.append(probs)
        votes = np.bincount([int(p.argmax()) for p in self._history], minlength=len(probs))
        mean = np.mean(self._history, axis=0)
        winner = votes.argmax()
        out = mean.copy()
        if out.argmax() != winner:  # the vote decides; keep probabilities consistent with it
            out[winner] = out.max() + 1e-6
            out /= out.sum()
        return out


class QualityMonitor:
    """Detects gaps (missing samples), backwards timestamp jumps and NaN chunks.

    Senders often stamp whole chunks at push time, so timestamps jitter by a few
    milliseconds; only steps off by more than ``tolerance_s`` (default: the larger of 3 sample
    periods and 25 ms) count as gaps or jumps.
    """

    def __init__(self, sfreq: float, tolerance_s: float | None = None,
                 nan_policy: str = "raise"):
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
        self.sfreq, self.nan_policy = sfreq, nan_policy
        self.tolerance_s = tolerance_s if tolerance_s is not None else max(3 / sfreq, 0.025)
        self.last_ts: float | None = None
        self.last_value: np.ndarray | None = None
        self.events: list[dict] = []

    def check(self, chunk: np.ndarray, timestamps: np.ndarray, stats: StreamStats
              ) -> tuple[np.ndarray, bool]:
        """Returns the (possibly interpolated) chunk and whether it is usable."""
        dt = 1.0 / self.sfreq
        if timestamps is not None and len(timestamps):
            prev = self.last_ts
            steps = np.diff(np.concatenate([[prev], timestamps])) if prev is not None else \
                np.diff(timestamps)
            jumps = steps < -self.tolerance_s
            gaps = steps > dt + self.tolerance_s
            if jumps.any():
                stats.timestamp_jumps += int(jumps.sum())
                self.events.append({"event": "timestamp_jump", "at": float(timestamps[0])})
            if gaps.any():
                missing = int(np.round(steps[gaps] / dt).sum() - gaps.sum())
                if missing > 0:
                    stats.gaps += int(gaps.sum())
                    stats.dropped_samples += missing
                    self.events.append({"event": "gap", "missing_samples": missing,
                                        "seconds": float(steps[gaps].max()),
                                        "at": float(timestamps[int(np.argmax(gaps))])})
            self.last_ts = float(timestamps[-1])
        finite = np.isfinite(chunk)
        usable = True
        if not finite.all():
            stats.nan_chunks += 1
            if self.nan_policy == "raise":
                raise StreamError(f"non-finite samples in the stream ({int((~finite).sum())} "
                                  "values); set nan_policy to 'skip' or 'interpolate' "
                                  "(command line: --nan-policy skip|interpolate)")
            if self.nan_policy == "skip":
                usable = False
            else:
                chunk = self._interpolate(chunk)
        if usable and chunk.shape[1]:
            self.last_value = chunk[:, -1].copy()
        return chunk, usable

    def _interpolate(self, chunk: np.ndarray) -> np.ndarray:
        out = chunk.copy()
        idx = np.arange(out.shape[1])
        for c in range(out.shape[0]):
            bad = ~np.isfinite(out[c])
            if not bad.any():
                continue
            good = ~bad
            left = self.last_value[c] if self.last_value is not None else 0.0
            if good.any():
                out[c, bad] = np.interp(idx[bad], idx[good], out[c, good], left=left)
            else:
                out[c] = left
        return out


class ModelRunner:
    """Runs windows through a model under ``torch.inference_mode`` with its own thread count;
    optional online Euclidean alignment (each window aligned with the running mean).

    ``alignment_reference``: the training trials' mean covariance (in the model's input
    unit, as a bundle stores it in ``extra["alignment_reference"]``). The running mean starts
    from it, weighted as ``prior_trials`` windows (default ``n_channels + 1``), and the
    stream's own windows take over as they come; :meth:`reset` returns to it. Without one
    (bundles saved before they carried it) the running mean starts empty, as it always did:
    the first window is whitened by itself alone (an identity covariance, its spatial power
    gone) and the next few by a handful of windows; a :class:`StreamWarning` says so once.
    """

    def __init__(self, model: torch.nn.Module, classes: Sequence[str], *, threads: int = 1,
                 alignment: str = "none", scale: float = 1.0, normalization: str = "none",
                 alignment_reference=None, prior_trials: int | None = None):
        self.model = model.eval()
        self.classes = list(classes)
        self.threads = threads
        self.scale = scale
        self.normalization = normalization  # per-window scaling of IQ frames (l1/rms/peak)
        if alignment not in ("none", "online"):
            raise ValueError(f"online alignment must be 'none' or 'online', got {alignment!r}")
        self.alignment = None
        if alignment == "online" and alignment_reference is not None:
            self.alignment = EuclideanAlignment.from_reference(
                alignment_reference, mode="online", prior_trials=prior_trials)
        elif alignment == "online":
            import warnings

            warnings.warn("online Euclidean alignment without a training reference "
                          "(alignment_reference; bundles saved before they carried "
                          "extra['alignment_reference'] have none): the running mean starts "
                          "empty, so the first windows are whitened by themselves alone and "
                          "their predictions are unreliable until a few dozen windows have "
                          "passed", StreamWarning, stacklevel=2)
            self.alignment = EuclideanAlignment(mode="online")

    def reset(self) -> None:
        if self.alignment is not None:
            self.alignment.reset()

    def prepare(self, windows: np.ndarray) -> np.ndarray:
        """The model's input for ``windows``: scaled, normalised, aligned."""
        x = windows * self.scale if self.scale != 1 else windows
        if self.normalization != "none":
            from ..data.sigmf_io import normalize_frames

            x = normalize_frames(x, self.normalization)
        if self.alignment is not None:
            x = self.alignment.transform(x)
        return x

    def logits(self, x: np.ndarray) -> torch.Tensor:
        """The model's outputs for prepared windows (:meth:`prepare`)."""
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                out = self.model(torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32))
                if isinstance(out, (tuple, list)):
                    out = out[-1]
                return out.float()
        finally:
            torch.set_num_threads(previous)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        from ..bundle import class_probabilities

        probs = class_probabilities(self.logits(self.prepare(windows))).numpy()
        if not np.isfinite(probs).all():
            raise StreamError("the model produced non-finite outputs for a window (the input "
                              "may hold NaN/Inf or be far off the training scale)")
        return probs


class BurstDecisions:
    """``classify-iq --decision burst`` on a stream of IQ frames, causally.

    A frame more than ``min_power_db`` below the loudest frame seen so far (or with no power
    at all) is quiet and gives no prediction; the frames of a burst (at most ``max_gap``
    quiet frames between kept ones) are held and emitted together once it ends, once it
    reaches ``max_burst_frames`` frames (the bound on latency and memory) or at
    :meth:`flush`, all with the burst's class: :func:`~sigformer.rf.amr.burst_decision` over
    the group's frames, which are run through the model as one batch (``classify_sigmf``
    runs all frames in one pass: the same decisions, probabilities within 1e-6). Grouping
    and gate: :class:`~sigformer.rf.amr.BurstGroups`.

    The gate never decays (a decaying one would no longer decide as classify-iq, which
    gates on the loudest frame of the whole capture), so one spike can silence a live stream
    for good: once more than half of the last ``quiet_window`` frames since the first kept
    one were quiet, a :class:`StreamWarning` says so, once."""

    def __init__(self, runner: ModelRunner, window: int, hop: int, *,
                 min_power_db: float | None = 30.0, max_gap: int = 1,
                 max_burst_frames: int = 64, quiet_window: int = 256):
        from ..rf.amr import BurstGroups

        if max_burst_frames is None:
            raise ValueError("max_burst_frames bounds how long a stream holds a burst's "
                             "frames (latency and memory): give a whole number >= 1")
        if quiet_window < 1:
            raise ValueError(f"quiet_window must be a number of frames >= 1, got "
                             f"{quiet_window!r}")
        self.runner, self.window, self.hop = runner, window, hop
        self.groups = BurstGroups(max_gap, max_burst_frames, min_power_db)
        self.quiet_window = int(quiet_window)
        self.reset()

    def reset(self) -> None:
        self.groups.reset()
        self._recent: deque = deque(maxlen=self.quiet_window)  # quiet or not, per frame
        self._recent_quiet = 0
        self._kept_any = False
        self.quiet_warned = False

    def push(self, index: int, window: np.ndarray, timestamp: float) -> list[Prediction]:
        """Window ``index`` ``(2, L)`` (I and Q rows); the predictions it completes."""
        # float32, as classify-iq frames a capture: the same model input bit for bit
        frame = np.asarray(window, np.float32)
        power = float(np.mean(frame.astype(np.float64) ** 2) * frame.shape[0])
        quiet_before = self.groups.n_quiet
        groups = self.groups.push(index, (frame, timestamp), power)
        self._watch_gate(self.groups.n_quiet > quiet_before)
        return self._decide(groups)

    def _watch_gate(self, quiet: bool) -> None:
        """Count quiet frames over the last ``quiet_window`` since the first kept frame and
        warn once when they are more than half (before any burst, quiet is expected)."""
        self._kept_any |= not quiet
        if not self._kept_any or self.quiet_warned:
            return
        if len(self._recent) == self._recent.maxlen:
            self._recent_quiet -= self._recent[0]
        self._recent.append(quiet)
        self._recent_quiet += quiet
        if len(self._recent) < self._recent.maxlen or 2 * self._recent_quiet <= len(self._recent):
            return
        import warnings

        self.quiet_warned = True
        loudest_db = 10 * np.log10(self.groups.loudest)
        warnings.warn(f"{self._recent_quiet} of the last {len(self._recent)} frames were quiet "
                      f"(more than {self.groups.min_power_db:g} dB below the loudest frame so "
                      f"far, {loudest_db:.1f} dB): the burst gate follows the loudest frame and "
                      f"never decays, so one spike silences the stream for good. If the signal "
                      f"is still there, allow a wider range with --min-power-db (stream."
                      f"min_power_db) or keep every frame with --all-frames (min_power_db: "
                      f"null); a stream of sparse bursts is quiet most of the time and can "
                      f"ignore this", StreamWarning, stacklevel=2)

    def skip(self, index: int) -> list[Prediction]:
        """Window ``index`` was dropped (non-finite samples): a missing frame."""
        return self._decide(self.groups.skip(index))

    def flush(self) -> list[Prediction]:
        return self._decide(self.groups.flush())

    def _decide(self, groups) -> list[Prediction]:
        from ..rf.amr import burst_decision

        out = []
        for group in groups:
            t0 = time.perf_counter()
            x = self.runner.prepare(np.stack([frame for frame, _ in group.items]))
            logits = self.runner.logits(x).numpy()
            if not np.isfinite(logits).all():
                raise StreamError("the model produced non-finite outputs for a burst's frames "
                                  "(the input may be far off the training scale)")
            probs = burst_decision(logits, x)
            compute = (time.perf_counter() - t0) / len(group.items)
            label = self.runner.classes[int(probs.argmax())]
            out += [Prediction(index, timestamp, probs, label, compute,
                               start=index * self.hop, length=self.window)
                    for index, (_, timestamp) in zip(group.indices, group.items)]
        return out


class OnlinePipeline:
    """preprocess (stateful stages) -> sliding windows -> model -> smoothing.

    ``process(chunk, timestamps)`` returns the predictions completed by that chunk.
    """

    def __init__(self, stages: Stage | Sequence[Stage], window: int, hop: int,
                 runner: ModelRunner, *, smoothing: Smoother | None = None,
                 nan_policy: str = "raise", gap_tolerance_s: float | None = None,
                 bursts: BurstDecisions | None = None):
        self.bursts = bursts  # IQ burst decisions instead of one prediction per window
        self.pre = stages if isinstance(stages, Stage) else Pipeline(list(stages))
        if not self.pre.streamable:
            raise ValueError("the preprocessing contains zero-phase stages, which cannot stream;"
                             " use phase='causal' for online pipelines")
        self.windows = SlidingWindows(window, hop)
        self.runner = runner
        self.smoother = smoothing or Smoother()
        self.nan_policy, self.gap_tolerance_s = nan_policy, gap_tolerance_s
        self.stats = StreamStats()
        self.monitor: QualityMonitor | None = None
        self.channels_out: ChannelSet | None = None

    def configure(self, sfreq: float, channels) -> None:
        fmt = self.pre.configure(sfreq, channels)
        self.sfreq_in, self.sfreq_out, self.channels_out = sfreq, fmt.sfreq, fmt.channels
        self.monitor = QualityMonitor(sfreq, self.gap_tolerance_s, self.nan_policy)
        self.windows.reset()
        self.smoother.reset()
        self.runner.reset()
        if self.bursts is not None:
            self.bursts.reset()
        self._n_in = 0  # stream samples seen, to place non-finite samples
        self._n_out = 0  # model-rate samples produced, to time each one from its index
        self._invalid: list[tuple[int, int]] = []  # model-rate sample ranges to skip
        self._delay_s, self._filter_span = self._causal_resampling()  # once, not per chunk

    def process(self, chunk: np.ndarray, timestamps: np.ndarray | None = None
                ) -> list[Prediction]:
        if self.monitor is None:
            raise RuntimeError("OnlinePipeline.configure(sfreq, channels) must run first")
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 2:
            raise SignalError(f"chunks must be (n_channels, n_samples), got {chunk.shape}")
        self.stats.chunks += 1
        self.stats.samples += chunk.shape[1]
        chunk, usable = self.monitor.check(chunk, timestamps, self.stats)
        n_in = self._n_in
        self._n_in += chunk.shape[1]
        if not usable:  # skip policy: drop the windows the non-finite samples reach
            self._mark_invalid(n_in, ~np.isfinite(chunk).all(axis=0))
            chunk = np.nan_to_num(chunk, nan=0.0, posinf=0.0, neginf=0.0)
        out = self.pre.process(chunk)
        ts_out = self._output_timestamps(timestamps, chunk.shape[1], out.shape[1])
        self._n_out += out.shape[1]
        predictions = []
        for window, t_last in self.windows.push(out, ts_out):
            self.stats.windows += 1
            index = self.stats.windows - 1
            if self._overlaps_invalid(index * self.windows.hop):
                self.stats.skipped_windows += 1
                if self.bursts is not None:
                    predictions += self._count(self.bursts.skip(index))
                continue
            if self.bursts is not None:
                predictions += self._count(self.bursts.push(index, window, t_last))
                continue
            t0 = time.perf_counter()
            probs = self.runner(window[None])[0]
            compute = time.perf_counter() - t0
            self.stats.compute_s.append(compute)
            probs = self.smoother(probs)
            predictions.append(Prediction(index, t_last, probs,
                                          self.runner.classes[int(probs.argmax())], compute,
                                          start=index * self.windows.hop,
                                          length=self.windows.size))
        return predictions

    def _mark_invalid(self, offset: int, bad: np.ndarray) -> None:
        """Skip what the bad samples (``bad``: per sample of a chunk starting at stream
        sample ``offset``) reach, sample by sample, not the whole chunk: the windows a
        dropout costs must not depend on how the source chunks the stream."""
        for start, stop in _true_runs(bad):
            low, high = self._model_rate_range(offset + start, offset + stop)
            if self._invalid and low <= self._invalid[-1][1]:  # overlaps the previous range
                self._invalid[-1] = (self._invalid[-1][0], max(high, self._invalid[-1][1]))
            else:
                self._invalid.append((low, high))

    def _model_rate_range(self, start: int, stop: int) -> tuple[int, int]:
        """The model-rate samples that stream samples ``[start, stop)`` reach: scaled by the
        rate ratio, and widened by each causal resampler's filter span (its output carries
        input from up to two filter delays back). Windows are counted in model samples, so
        a skip counted in stream samples missed windows whenever the chain resampled."""
        ratio = self.sfreq_out / self.sfreq_in
        return int(np.floor(start * ratio)), int(np.ceil(stop * ratio)) + self._filter_span

    def _overlaps_invalid(self, start: int) -> bool:
        """Whether the window starting at model sample ``start`` overlaps unusable data
        (ranges wholly before it are dropped: windows only move forward)."""
        end = start + self.windows.size
        self._invalid = [(a, b) for a, b in self._invalid if b > start]
        return any(a < end for a, _ in self._invalid)

    def _count(self, predictions: list[Prediction]) -> list[Prediction]:
        self.stats.compute_s.extend(p.compute_s for p in predictions)
        return predictions

    def flush(self) -> list[Prediction]:
        """The end of the stream: a burst still held is decided and emitted."""
        return self._count(self.bursts.flush()) if self.bursts is not None else []

    def _output_timestamps(self, ts: np.ndarray | None, n_in: int, n_out: int):
        if ts is None or n_out == 0:
            return None if ts is None else np.zeros(0)
        if self.sfreq_out == self.sfreq_in:  # (not n_out == n_in: a 1-in/1-out chunk of a
            return np.asarray(ts, dtype=float)  # resampled stream still has the delay)
        # resampled: output sample j of the stream (counted from its start) carries input
        # from j / sfreq_out seconds after the first input sample, less the causal filters'
        # group delay; the first input sample's time comes from this chunk's last stamp.
        # From the global index, not "the chunk's last output = its last input": where a
        # chunk's outputs end depends on how the source chunks the stream
        last_in = self._n_in - 1  # this chunk's last input sample (already counted)
        t_first_in = float(ts[-1]) - last_in / self.sfreq_in
        j = self._n_out + np.arange(n_out)
        return t_first_in + j / self.sfreq_out - self._delay_s

    def _causal_resampling(self) -> tuple[float, int]:
        """The configured chain's causal resamplers: their group delay in seconds
        (``delay_ticks`` ticks of each one's upsampled grid, ``sfreq * down`` ticks per
        second) and their filter span in output samples (two delays each)."""
        from ..stages.resample import Resample

        resamplers = [stage for stage in getattr(self.pre, "stages", [])
                      if isinstance(stage, Resample) and stage.phase == "causal"]
        delay = sum(r.delay_ticks / (r.sfreq * r._configured_ratio()[1]) for r in resamplers)
        span = sum(int(np.ceil(2 * r.delay_ticks / r._configured_ratio()[1]))
                   for r in resamplers)
        return float(delay), span


def _true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of True in a 1-D boolean ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def offline_windows(stages: Stage | Sequence[Stage], data: np.ndarray, sfreq: float, channels,
                    window: int, hop: int) -> np.ndarray:
    """The windows an online pipeline would produce, computed offline on the whole array."""
    pre = stages if isinstance(stages, Stage) else Pipeline(list(stages))
    pre.configure(sfreq, channels)
    return frame_array(pre.process(np.asarray(data, dtype=np.float64)), window, hop)
