"""Online processors for the non-classification bundles, with the interface of
:class:`~sigformer.streaming.runtime.OnlinePipeline` (``configure``, ``process(chunk,
timestamps) -> outputs``, ``flush()``, ``stats``, ``monitor``), so one
:class:`~sigformer.streaming.engine.StreamRunner` drives every domain:

* :class:`AudioStream`: overlap-add separation or enhancement of an audio stream, speaker
  order kept across chunks, output at the input's sample rate (resampled internally), aligned
  with the input sample for sample and, once flushed, exactly as long;
* :class:`SlotEstimator`: OFDM channel estimation slot by slot. A slot stream carries, per
  "sample", one slot's LS pilot estimates (real and imaginary rows) and its SNR, delay
  spread and Doppler (see :func:`slots_to_stream`).

Chunked == offline: the concatenated outputs of any chunking equal one call on the whole
signal (tested with hypothesis).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..channels import ChannelSet
from ..stages import Resample
from ..validation import SignalError
from ..windowing import OverlapAdd, model_function
from .runtime import QualityMonitor, StreamStats


@dataclass
class AudioBlock:
    """Final output samples: ``data (n_outputs, n)`` starting at output sample ``start``."""

    start: int
    data: np.ndarray
    timestamp: float
    labels: Sequence[str]


@dataclass
class ChannelEstimate:
    """The estimated channel grid ``(n_subcarriers, n_symbols)`` (complex) of one slot."""

    slot: int
    estimate: np.ndarray
    timestamp: float
    compute_s: float


@dataclass
class AudioStats(StreamStats):
    """:class:`StreamStats` plus the delay the rate conversion adds (0 at the model's rate):
    output sample ``k`` is final only once input sample ``k + resample_delay_samples`` (and
    the overlap-add chunk that holds it) has arrived."""

    resample_delay_samples: int = 0
    resample_delay_ms: float = 0.0


def describe_array(array: dict | None) -> str:
    """`` (trained for a uniform circular array of radius 0.05-0.1 m, ...)`` from an
    enhancement bundle's ``extra["array"]``; empty when it records none."""
    if not array:
        return ""
    radius = array.get("radius_m")
    if isinstance(radius, (list, tuple)):
        radius = f"{radius[0]:g}-{radius[1]:g}"
    parts = [f"a {array.get('geometry', 'microphone')} array"]
    if radius is not None:
        parts.append(f"radius {radius} m")
    if "reference_mic" in array:
        parts.append(f"reference microphone {array['reference_mic']}")
    return f" (trained for {', '.join(parts)})"


def shipped_for_mics(n_mics: int) -> str:
    """``; or a shipped bundle for N microphones: --model NAME`` when the catalogue has
    enhancement bundles for an array of ``n_mics`` (empty when it has none)."""
    from ..catalogue import find_pretrained

    names = find_pretrained("deftan2", task="enhance",
                            accept=lambda config: config["kwargs"].get("n_mics") == n_mics)
    if not names:
        return ""
    return (f"; or a shipped bundle for {n_mics} microphones: "
            + ", ".join(f"--model {name}" for name in names))


class AudioStream:
    """Stateful separation / enhancement of an audio stream.

    ``model`` maps ``(1, n)`` (separation) or ``(1, n_mics, n)`` (enhancement) to
    ``(1, n_out, n)``. Input at another rate is resampled to ``model_rate`` and outputs back
    to the input rate with the streaming (causal) polyphase resampler. The two filters are
    linear phase and laid out so that together they delay the signal by a whole number of
    input samples (``stats.resample_delay_samples``, about 20 samples at the lower of the two
    rates: 2.5 ms for 8 kHz), which are dropped: output sample ``k`` is aligned with input
    sample ``k``, and :meth:`flush` pushes the last samples out of the filters with the
    zeros that follow the signal and stops at the input's length. A whole file therefore
    comes back zero phase and exactly as long as it went in; live, the output lags the input
    by that delay (plus the overlap-add chunking, as at the model's rate).
    """

    def __init__(self, model: torch.nn.Module, model_rate: float, *, multichannel: bool,
                 chunk_s: float = 4.0, overlap_s: float = 0.5, labels: Sequence[str] = (),
                 channel: int | None = None, n_mics: int | None = None,
                 nan_policy: str = "raise", array: dict | None = None,
                 mics: Sequence[int] | None = None):
        self.model, self.model_rate = model, float(model_rate)
        self.array = array  # the microphone array an enhancement bundle was trained for
        self.multichannel, self.channel, self.n_mics = multichannel, channel, n_mics
        if mics is not None and not multichannel:
            raise ValueError("mics picks an enhancement model's microphones; separation "
                             "takes one channel: channel=N")
        self.mics = list(mics) if mics else None  # the stream channels used, in array order
        self.chunk, self.overlap = int(chunk_s * model_rate), int(overlap_s * model_rate)
        self.labels = list(labels)
        self.nan_policy = nan_policy
        self.stats = AudioStats()
        self.monitor: QualityMonitor | None = None
        self.resampled_from: float | None = None  # the stream's rate when it is not the model's

    def configure(self, sfreq: float, channels) -> None:
        channels = channels if isinstance(channels, ChannelSet) else ChannelSet(tuple(channels))
        n_stream = n = len(channels)
        if self.mics is not None:
            if max(self.mics) >= n:
                raise SignalError(f"mics {','.join(map(str, self.mics))} (--mics): the stream "
                                  f"has microphones 0..{n - 1} only")
            n = len(self.mics)
        if self.multichannel and self.n_mics is not None and n != self.n_mics:
            given = (f"--mics picks {n} of the stream's {n_stream} channels"
                     if self.mics is not None else f"the stream has {n} channels")
            raise SignalError(f"{given}; this enhancement bundle takes "
                              f"{self.n_mics} microphones{describe_array(self.array)}: give "
                              f"{self.n_mics} channels (or one file per microphone) in the "
                              f"array's order"
                              + (f", e.g. the {self.n_mics} of your {n_stream} that form "
                                 f"such an array (--mics)" if n_stream > self.n_mics else "")
                              + shipped_for_mics(n_stream))
        if not self.multichannel and n > 1 and self.channel is None:
            raise SignalError(f"the stream has {n} channels; separation takes mono audio: "
                              f"choose one with channel=N (--channel N)")
        if self.channel is not None and not 0 <= self.channel < n:
            raise SignalError(f"channel {self.channel} does not exist: the stream has "
                              f"channels 0..{n - 1}")
        self.sfreq_in = float(sfreq)
        n_used = n if self.multichannel else 1
        names = tuple(f"ch{i}" for i in range(n_used))
        self._down = self._up = None
        self._n_in = self._produced = 0  # input samples seen, input-rate samples produced
        self.delay = 0  # input samples the resamplers delay the output by (dropped)
        self.stats.resample_delay_samples, self.stats.resample_delay_ms = 0, 0.0
        self.resampled_from = None
        if abs(self.sfreq_in - self.model_rate) > 1e-6:
            self._configure_resampling(names)
        fn = model_function(self.model, multichannel=self.multichannel)
        self._ola = OverlapAdd(fn, self.chunk, self.overlap, align=not self.multichannel)
        self._n_out: int | None = None
        self._emitted = 0
        self.monitor = QualityMonitor(sfreq, None, self.nan_policy)

    def _select(self, chunk: np.ndarray) -> np.ndarray:
        if self.multichannel:
            return chunk if self.mics is None else chunk[self.mics]
        return chunk[(self.channel or 0):(self.channel or 0) + 1]

    def _configure_resampling(self, names: tuple[str, ...]) -> None:
        self._down = Resample(self.model_rate)
        self._down.configure(self.sfreq_in, names)
        # Both filters run on one grid with `up` ticks per input sample (the way back swaps
        # the ratio's terms); pad the second so that the pair's delay is whole input samples.
        per_sample = self._down.up
        ticks = 2 * self._down.delay_ticks
        self._up = Resample(self.sfreq_in, delay_pad=-ticks % per_sample)
        self.delay = (ticks + self._up.delay_pad) // per_sample
        self.stats.resample_delay_samples = self.delay
        self.stats.resample_delay_ms = 1e3 * self.delay / self.sfreq_in
        self.resampled_from = self.sfreq_in

    def _resample_out(self, out: np.ndarray) -> np.ndarray:
        """Model-rate output -> input-rate samples aligned with the input: the resamplers'
        delay dropped from the front, nothing past the input's length."""
        if self._down is None or out.size == 0:
            return out
        if self._up.fmt_in is None:  # the number of outputs is known from the first block
            self._up.configure(self.model_rate, tuple(f"o{i}" for i in range(out.shape[0])))
        out = self._up.process(out)
        start, self._produced = self._produced, self._produced + out.shape[1]
        lo = max(self.delay - start, 0)
        hi = max(min(out.shape[1], self.delay + self._n_in - start), lo)
        return out[:, lo:hi]

    def _blocks(self, out: np.ndarray, timestamp: float) -> list[AudioBlock]:
        out = self._resample_out(out)
        if out.size == 0 or out.shape[1] == 0:
            return []
        labels = self.labels or [f"out{i}" for i in range(out.shape[0])]
        if len(labels) != out.shape[0]:  # a sink would write some outputs and drop the rest
            raise SignalError(f"the model returns {out.shape[0]} output signal(s) but "
                              f"{len(labels)} label(s) were given ({labels}); give one label "
                              f"per output, or none (out0, out1, ...)")
        block = AudioBlock(self._emitted, out.astype(np.float32), timestamp, labels)
        self._emitted += out.shape[1]
        self.stats.windows += 1
        return [block]

    def process(self, chunk: np.ndarray, timestamps: np.ndarray | None = None
                ) -> list[AudioBlock]:
        if self.monitor is None:
            raise RuntimeError("AudioStream.configure(sfreq, channels) must run first")
        chunk = np.asarray(chunk, dtype=np.float64)
        self.stats.chunks += 1
        self.stats.samples += chunk.shape[1]
        chunk, usable = self.monitor.check(chunk, timestamps, self.stats)
        if not usable:
            chunk = np.nan_to_num(chunk, nan=0.0, posinf=0.0, neginf=0.0)
        x = self._select(chunk)
        self._n_in += x.shape[1]
        if self._down is not None:
            x = self._down.process(x)
        t0 = time.perf_counter()
        out = self._ola.process(x) if x.shape[1] else np.zeros((0, 0))
        if out.size:
            self.stats.compute_s.append(time.perf_counter() - t0)
        stamp = float(timestamps[-1]) if timestamps is not None and len(timestamps) else 0.0
        return self._blocks(out, stamp)

    def flush(self) -> list[AudioBlock]:
        if self._down is None or self._n_in == 0:
            return self._blocks(self._ola.flush(), 0.0)
        # The last `delay` samples are still inside the filters: push them out with the zeros
        # that follow the signal (what zero-phase resampling of the whole file assumes);
        # enough for the last input sample's output whatever the ratio's rounding.
        n_ch = len(self._down.fmt_in.channels)
        n_zeros = self.delay + int(np.ceil(self.sfreq_in / self.model_rate)) + 2
        tail = np.zeros((n_ch, n_zeros))
        parts = [self._ola.process(self._down.process(tail)), self._ola.flush()]
        parts = [p for p in parts if p.size]
        out = np.concatenate(parts, axis=1) if parts else np.zeros((0, 0))
        return self._blocks(out, 0.0)


def slots_to_stream(ls: np.ndarray, statistics: np.ndarray) -> np.ndarray:
    """Pack slots into stream samples: ``(2 * n_pilots + 3, n_slots)`` rows = real parts,
    imaginary parts of the LS pilots, then SNR (dB), delay spread (ns), Doppler (Hz)."""
    ls = np.asarray(ls)
    flat = ls.reshape(len(ls), -1)
    stats = np.asarray(statistics, dtype=np.float64).reshape(len(ls), 3)
    return np.concatenate([flat.real.T, flat.imag.T, stats.T], axis=0)


def slot_channels(n_pilots: int) -> ChannelSet:
    names = ([f"re{i}" for i in range(n_pilots)] + [f"im{i}" for i in range(n_pilots)]
             + ["snr_db", "delay_spread_ns", "doppler_hz"])
    return ChannelSet(tuple(names), ("misc",) * len(names))


class SlotEstimator:
    """Channel estimation slot by slot (each stream sample is one slot)."""

    def __init__(self, model: torch.nn.Module, pilot_shape: tuple[int, int], *,
                 threads: int = 1, nan_policy: str = "raise"):
        self.model = model.eval()
        self.pilot_shape = tuple(pilot_shape)
        self.threads, self.nan_policy = threads, nan_policy
        self.stats = StreamStats()
        self.monitor: QualityMonitor | None = None

    def configure(self, sfreq: float, channels) -> None:
        n_pilots = int(np.prod(self.pilot_shape))
        n = len(channels)
        if n != 2 * n_pilots + 3:
            raise SignalError(f"a slot stream for this bundle has {2 * n_pilots + 3} rows "
                              f"({n_pilots} pilots as real and imaginary parts + SNR, delay "
                              f"spread, Doppler), got {n}")
        self.monitor = QualityMonitor(sfreq, None, self.nan_policy)
        self._slot = 0

    def process(self, chunk: np.ndarray, timestamps: np.ndarray | None = None
                ) -> list[ChannelEstimate]:
        if self.monitor is None:
            raise RuntimeError("SlotEstimator.configure(sfreq, channels) must run first")
        chunk = np.asarray(chunk, dtype=np.float64)
        self.stats.chunks += 1
        self.stats.samples += chunk.shape[1]
        chunk, usable = self.monitor.check(chunk, timestamps, self.stats)
        n_slots = chunk.shape[1]
        # slots are independent: the skip policy drops the slots with bad values, not the
        # chunk they came in (which made the result depend on the chunk size)
        keep = np.ones(n_slots, bool) if usable else np.isfinite(chunk).all(axis=0)
        self.stats.skipped_windows += int((~keep).sum())
        if not keep.any():
            self._slot += n_slots
            return []
        n_pilots = int(np.prod(self.pilot_shape))
        good = chunk[:, keep]
        pilots = (good[:n_pilots] + 1j * good[n_pilots:2 * n_pilots]).T
        pilots = pilots.reshape(good.shape[1], *self.pilot_shape).astype(np.complex64)
        stats = good[2 * n_pilots:].T.astype(np.float32)
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                grids = self.model(torch.as_tensor(pilots), torch.as_tensor(stats)).numpy()
        finally:
            torch.set_num_threads(previous)
        compute = (time.perf_counter() - t0) / len(grids)
        out = []
        estimates = iter(grids)
        for i in range(n_slots):
            if keep[i]:
                stamp = float(timestamps[i]) if timestamps is not None else float(self._slot)
                out.append(ChannelEstimate(self._slot, next(estimates), stamp, compute))
                self.stats.windows += 1
                self.stats.compute_s.append(compute)
            self._slot += 1
        return out

    def flush(self) -> list[ChannelEstimate]:
        return []
