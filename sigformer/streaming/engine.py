"""The streaming loop: a reader thread fills a bounded queue from the source; the main loop
runs the online pipeline and hands predictions to the sinks.

Two latencies are recorded: ``processing_latencies`` (chunk arrival -> prediction ready, what
sigformer adds) and, with a ``clock`` (LSL ``local_clock``), ``latencies`` (prediction ready
minus the window's last-sample timestamp, i.e. end to end when the sender stamps samples with
the same clock at push; mne-lsl's PlayerLSL stamps ahead of the clock, so use the former for
replays).

A slow consumer never makes memory grow, and what happens when the queue is full depends on
the source (:func:`~sigformer.streaming.sources.is_live`): a live source (LSL, ZeroMQ, sound
card) cannot wait, so the oldest chunk is dropped and counted (``stats.queue_drops``); a source
that can wait (a file, an array) is held back until there is room (backpressure), so every
sample is processed. A source that stops sending (an LSL player killed) shows up as a pause in
the queue and a timestamp gap when data resumes; the loop keeps running.

A sink that buffers between periodic writes (the SigMF annotation sink) defines ``tick()``:
the loop calls it after every chunk and while the queue is empty, so what it holds reaches
disk on time even when no new output comes (a quiet stream between sparse bursts); ``write``
alone would only be called with new outputs. Sinks without one are not asked.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from .runtime import OnlinePipeline, Prediction
from .sources import EndOfStream, is_live


class StreamRunner:
    """Run ``pipeline`` on ``source`` until the source ends, ``duration`` seconds pass or
    ``max_predictions`` are made (exactly that many reach the sinks: a chunk, or an IQ
    burst, that completes more is cut there). ``status`` receives a one-line report every
    ``report_every`` seconds (live latency and throughput)."""

    def __init__(self, source, pipeline: OnlinePipeline, sinks: Sequence = (), *,
                 queue_size: int = 256, status: Callable[[str], None] | None = None,
                 report_every: float = 2.0, clock: Callable[[], float] | None = None,
                 keep_outputs: bool = True):
        self.source, self.pipeline, self.sinks = source, pipeline, list(sinks)
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.status, self.report_every = status, report_every
        self.clock = clock
        self._stop = threading.Event()
        self._ended = threading.Event()
        # bounded, like everything a long-running stream keeps
        self.latencies: deque = deque(maxlen=100_000)  # clock() - window's last-sample stamp
        self.processing_latencies: deque = deque(maxlen=100_000)  # chunk arrival -> prediction
        self.idle_events: list[dict] = []
        self.error: BaseException | None = None
        # audio and long runs: count outputs instead of keeping them (flat memory)
        self.keep_outputs = keep_outputs
        self.n_outputs = 0
        self.max_outputs: int | None = None  # set by run(max_predictions=...)
        self.interrupted = False
        self.last_output = None  # the newest prediction, shown on the status line

    def _reader(self) -> None:
        put = self._put_dropping_oldest if is_live(self.source) else self._put_waiting
        try:
            while not self._stop.is_set():
                try:
                    item = self.source.read(timeout=0.05)
                except EndOfStream:
                    break
                if item is None:
                    continue
                put((*item, time.perf_counter()))
        except BaseException as err:  # surfaced by run()
            self.error = err
        finally:
            self._ended.set()

    def _put_dropping_oldest(self, item) -> None:
        """A live source: waiting would fall further behind real time, so a full queue loses
        its oldest chunk (counted)."""
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.pipeline.stats.queue_drops += 1
                except queue.Empty:
                    pass

    def _put_waiting(self, item) -> None:
        """A source that can wait (a file): hold the reader until there is room, so nothing
        is dropped; a stop request still ends the wait."""
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def stop(self) -> None:
        """Ask the loop (and the reader) to finish; safe from another thread."""
        self._stop.set()

    def run(self, duration: float | None = None, max_predictions: int | None = None,
            idle_report: float = 1.0, configure: bool = True) -> list[Prediction]:
        """``configure=False``: the pipeline was configured for this source already (by
        :func:`~sigformer.streaming.app.stream_bundle`, before opening the sinks)."""
        if configure:
            self.pipeline.configure(self.source.sfreq, self.source.channels)
        self.max_outputs = max_predictions
        reader = threading.Thread(target=self._reader, daemon=True, name="sigformer-reader")
        reader.start()
        predictions: list[Prediction] = []
        failed = False  # the processing itself raised (the reader's errors are self.error)
        try:
            with self._ctrl_c_stops_between_chunks():
                self._loop(duration, predictions, idle_report)
            if self.interrupted:
                self._say("interrupted: flushing outputs")
        except KeyboardInterrupt:  # a second Ctrl-C, or no main thread to catch the first
            self.interrupted = True
            self._say("interrupted: flushing outputs")
        except BaseException:
            failed = True
            raise
        finally:
            self.stop()
            reader.join(timeout=2.0)
            try:
                flush = getattr(self.pipeline, "flush", None)
                if flush is not None and self.error is None and not failed \
                        and not self._limit_reached():
                    self._emit(self._within_limit(flush()), predictions)
            except BaseException:  # a flush that fails leaves the output incomplete too
                failed = True
                raise
            finally:
                self._close_sinks(failed)
        if self.error is not None:
            raise self.error
        return predictions

    def _close_sinks(self, failed: bool = False) -> None:
        """Publish every sink's output; a sink for a whole input file (``abort_when_incomplete``)
        discards its output instead when the run stopped early (error or Ctrl-C).

        Every sink is closed even when one fails (one sink's error must not lose the others'
        outputs); the first error is raised after all of them, unless the run is failing
        already (that error is the one to report; the sink's is said on the status line)."""
        incomplete = failed or self.error is not None or self.interrupted
        first: Exception | None = None
        for sink in self.sinks:
            try:
                if incomplete and getattr(sink, "abort_when_incomplete", False):
                    sink.abort()
                else:
                    sink.close()
            except Exception as err:  # noqa: BLE001 - raised below, after the other sinks
                first = first or err
                self._say(f"closing {type(sink).__name__} failed: {err}")
        if first is not None and not failed and self.error is None:
            raise first

    @contextlib.contextmanager
    def _ctrl_c_stops_between_chunks(self):
        """The first Ctrl-C ends the loop after the current chunk, never inside a sink write
        (a KeyboardInterrupt there left the recording one output ahead of the report); a
        second one raises as usual. Only the main thread can take the signal."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop_after_this_chunk(signum, frame):
            self.interrupted = True
            self._stop.set()
            signal.signal(signal.SIGINT, previous)  # a second Ctrl-C stops at once

        previous = signal.signal(signal.SIGINT, stop_after_this_chunk)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _loop(self, duration: float | None, predictions: list[Prediction],
              idle_report: float) -> None:
        t_start = time.perf_counter()
        last_report = t_start
        last_data = t_start
        idle_reported = False
        ticks = [tick for sink in self.sinks if (tick := getattr(sink, "tick", None))]
        while not self._stop.is_set():
            if duration is not None and time.perf_counter() - t_start >= duration:
                break
            if self._limit_reached():
                break
            try:
                chunk, ts, arrival = self.queue.get(timeout=0.05)
            except queue.Empty:
                if self._ended.is_set() and self.queue.empty():
                    break
                _call_all(ticks)  # a silent source: buffered outputs still reach disk
                idle = time.perf_counter() - last_data
                if idle > idle_report and not idle_reported:
                    idle_reported = True
                    self.idle_events.append({"event": "source_silent", "after_s": idle})
                    self._say(f"no data for {idle:.1f} s: waiting for the source to return")
                continue
            if idle_reported:
                self._say(f"source back after {time.perf_counter() - last_data:.1f} s")
                idle_reported = False
            last_data = time.perf_counter()
            new = self._within_limit(self.pipeline.process(chunk, ts))
            if new:
                self.processing_latencies.extend([time.perf_counter() - arrival] * len(new))
                now = self.clock() if self.clock is not None else None
                for p in new:
                    if now is not None:
                        self.latencies.append(now - p.timestamp)
                self._emit(new, predictions)
            _call_all(ticks)  # also after a chunk with no output (quiet frames)
            if self.status and time.perf_counter() - last_report >= self.report_every:
                last_report = time.perf_counter()
                self._say(self.summary(time.perf_counter() - t_start))

    def _limit_reached(self) -> bool:
        return self.max_outputs is not None and self.n_outputs >= self.max_outputs

    def _within_limit(self, new: list) -> list:
        """The outputs that fit under ``max_predictions``: a chunk (or a held IQ burst, held
        up to ``max_burst_frames`` frames) can complete many at once."""
        if self.max_outputs is None:
            return new
        return new[:max(self.max_outputs - self.n_outputs, 0)]

    def _emit(self, new: list, predictions: list) -> None:
        if not new:
            return
        for sink in self.sinks:
            sink.write(new)
        self.n_outputs += len(new)
        self.last_output = new[-1]
        if self.keep_outputs:
            predictions.extend(new)

    def _say(self, message: str) -> None:
        if self.status:
            self.status(message)

    def summary(self, elapsed: float) -> str:
        st = self.pipeline.stats
        rate = st.samples / elapsed if elapsed > 0 else 0.0
        # speed as a multiple of real time (a paced source that keeps up shows ~1.00x)
        speed = "" if getattr(self.source, "rate_is_nominal", False) else \
            f", {rate / self.source.sfreq:.2f}x real time"  # a nominal rate has no real time
        msg = f"{st.windows} windows, {st.samples} samples ({rate:,.0f}/s{speed})"
        if self.processing_latencies:
            import numpy as np

            lat = 1e3 * np.asarray(list(self.processing_latencies)[-200:])
            msg += (f", processing latency p50 {np.median(lat):.1f} ms p99 "
                    f"{np.quantile(lat, 0.99):.1f} ms")
        delay_ms = getattr(st, "resample_delay_ms", 0.0)
        if delay_ms:  # audio at a rate other than the model's: the resamplers' latency
            msg += f", resampling delay {delay_ms:.1f} ms"
        msg += _latest_class(self.last_output)
        if st.gaps or st.queue_drops or st.timestamp_jumps:
            msg += (f", gaps {st.gaps} ({st.dropped_samples} samples), jumps "
                    f"{st.timestamp_jumps}, queue drops {st.queue_drops}")
        return msg


def _call_all(functions: Sequence[Callable[[], None]]) -> None:
    for fn in functions:
        fn()


def _latest_class(output) -> str:
    """``, latest left_hand (p=0.83)`` for a classification output, else nothing (audio
    blocks and channel estimates have no class)."""
    label = getattr(output, "label", None)
    probabilities = getattr(output, "probabilities", None)
    if label is None or probabilities is None or len(probabilities) == 0:
        return ""
    return f", latest {label} (p={float(max(probabilities)):.2f})"
