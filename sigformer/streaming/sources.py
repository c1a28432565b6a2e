"""Stream sources: in-memory arrays, file replay, LSL inlets, WAV and SigMF files.

A source yields ``(chunk (n_channels, n_samples), timestamps (n_samples,))`` and knows its
``sfreq`` and ``channels``. ``read()`` returns ``None`` when no data is available yet and
raises :class:`EndOfStream` when a finite source is exhausted.

``live`` says what the runner does when the consumer falls behind (:func:`is_live`):

* ``live = True`` (LSL, ZeroMQ, sound card): the data arrive in real time whatever the
  reader does, so waiting would only fall further behind; the runner drops the oldest chunks
  and counts them (``queue_drops``);
* ``live = False`` (files, in-memory arrays, paced or not): the source can wait, so the runner
  blocks its reader until there is room (backpressure) and nothing is dropped.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..channels import ChannelSet
from ..validation import SignalError, check_sfreq


class EndOfStream(Exception):
    """A finite source has no more data."""


def is_live(source) -> bool:
    """Whether ``source`` delivers in real time and cannot wait (see the module docstring).
    A source that does not say is taken as live: stalling a real-time feed would be worse
    than dropping (counted) chunks of it."""
    return bool(getattr(source, "live", True))


def check_chunk_size(chunk_size) -> int:
    """``chunk_size`` as a whole number of samples >= 1: 0 never ends a read loop and a
    negative one moved an array source backwards (a stream that never ends)."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) \
            or chunk_size < 1:
        raise ValueError(f"chunk_size must be a whole number of samples >= 1, got "
                         f"{chunk_size!r}")
    return int(chunk_size)


def missing_rate_error(path) -> SignalError:
    """The refusal for a SigMF capture without ``core:sample_rate`` where a real rate is
    needed (paced in real time, or a bundle trained at a sample rate)."""
    return SignalError(f"{path} has no core:sample_rate; give the capture's rate with "
                       f"--source-rate HZ (sample_rate= in Python): pacing it in real "
                       f"time (--realtime) and bundles trained at a sample rate need "
                       f"it (a rate-agnostic IQ bundle read unpaced does not)")


class ArraySource:
    """Chunks of an in-memory ``(n_channels, n_times)`` array; ``realtime=True`` paces them at
    the sampling rate (as a file replay would), otherwise as fast as they are read.

    ``live=False`` (default): the array can wait, so a slow consumer holds the reader back and
    every sample is processed. ``live=True`` stands in for an amplifier (tests, benchmarks):
    a consumer that falls behind loses the oldest chunks, counted, as with LSL."""

    def __init__(self, data: np.ndarray, sfreq: float, channels, chunk_size: int = 32,
                 realtime: bool = False, t0: float = 0.0, live: bool = False):
        self.data = np.asarray(data)
        if self.data.ndim != 2:
            raise SignalError(f"array sources take (n_channels, n_times), got {self.data.shape}")
        self.sfreq = check_sfreq(sfreq)
        self.channels = channels if isinstance(channels, ChannelSet) else ChannelSet(tuple(channels))
        if len(self.channels) != self.data.shape[0]:
            raise SignalError(f"{self.data.shape[0]} rows but {len(self.channels)} channel names")
        self.chunk_size, self.realtime, self.t0 = check_chunk_size(chunk_size), realtime, t0
        self.live = bool(live)
        self._pos = 0
        self._start: float | None = None

    def read(self, timeout: float = 0.0):
        if self._pos >= self.data.shape[1]:
            raise EndOfStream
        stop = min(self._pos + self.chunk_size, self.data.shape[1])
        if self.realtime:
            if self._start is None:
                self._start = time.perf_counter()
            due = self._start + stop / self.sfreq
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        idx = np.arange(self._pos, stop)
        self._pos = stop
        return self.data[:, idx], self.t0 + idx / self.sfreq

    def close(self) -> None:
        pass


class FileReplaySource(ArraySource):
    """Replay an EEG file (EDF/BDF/GDF/FIF) chunk by chunk: as fast as the pipeline takes it
    (default, as ``sigformer stream --source file:...``), or paced at the sampling rate with
    ``realtime=True`` (``--realtime``). Either way a slow pipeline holds the replay back
    rather than losing samples."""

    def __init__(self, path, chunk_size: int = 32, realtime: bool = False,
                 normalize_names: bool = True):
        from ..data import read_recording

        rec = read_recording(path, normalize_names=normalize_names)
        super().__init__(rec.data, rec.sfreq, rec.channels, chunk_size, realtime)
        self.annotations = rec.annotations


class WAVSource:
    """Multichannel audio from a WAV/FLAC file (soundfile), channels ``mic0..``, read block by
    block (memory stays flat for any file length); ``realtime=True`` paces the blocks at the
    sample rate as a live sound card would deliver them. A file can wait: a slow pipeline holds
    the reader back and nothing is dropped."""

    live = False

    def __init__(self, path, chunk_size: int = 512, realtime: bool = False):
        chunk_size = check_chunk_size(chunk_size)  # before the file is opened
        try:
            import soundfile as sf
        except ImportError:
            raise ImportError("WAV sources need soundfile: pip install 'sigformer[speech]'"
                              ) from None
        try:
            self._file = sf.SoundFile(str(path))
        except Exception as err:
            raise SignalError(f"{path} could not be read as audio: {err}") from err
        self.path = Path(path)  # outputs are named after it (<stem>_<label>.wav)
        self.sfreq = check_sfreq(self._file.samplerate)
        names = tuple(f"mic{i}" for i in range(self._file.channels))
        self.channels = ChannelSet(names, ("mic",) * len(names))
        self.chunk_size, self.realtime = chunk_size, realtime
        self._pos = 0
        self._start: float | None = None

    def read(self, timeout: float = 0.0):
        block = self._file.read(self.chunk_size, dtype="float32", always_2d=True)
        if len(block) == 0:
            raise EndOfStream
        if self.realtime:
            if self._start is None:
                self._start = time.perf_counter()
            delay = self._start + (self._pos + len(block)) / self.sfreq - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        stamps = (self._pos + np.arange(len(block))) / self.sfreq
        self._pos += len(block)
        return block.T.astype(np.float64), stamps

    def close(self) -> None:
        self._file.close()


class SigMFSource(ArraySource):
    """Complex IQ from a SigMF recording (``.sigmf-meta`` + ``.sigmf-data``) as two real
    channels (I, Q) per capture channel.

    The rate is ``core:sample_rate``, else ``sample_rate``. A capture with neither, read
    unpaced, streams at a nominal rate with ``rate_is_nominal`` set, so that nothing written
    claims it as the capture's rate: ``nominal_rate`` when given, else a placeholder 1 Hz
    (timestamps count samples) that :func:`~sigformer.streaming.app.stream_bundle` replaces
    with the bundle's nominal rate, as ``sigformer stream`` does
    (:func:`~sigformer.streaming.app.nominal_rate`); a bundle trained at a sample rate refuses
    such a stream. Pacing in real time (``realtime=True``) needs a rate: without one it is
    refused here. NaN/Inf samples are passed on: the stream's ``nan_policy`` decides about
    them, chunk by chunk."""

    PLACEHOLDER_RATE = 1.0

    def __init__(self, path, chunk_size: int = 1024, realtime: bool = False,
                 sample_rate: float | None = None, nominal_rate: float | None = None):
        from ..channels import iq_channel_set, iq_to_channels
        from ..data.io import DataError
        from ..data.sigmf_io import read_sigmf

        try:
            recording = read_sigmf(path, nan_policy="skip")  # kept: the runtime's policy
        except DataError as err:
            raise SignalError(f"{path} could not be read as SigMF: {err}") from err
        self.path = Path(path)
        rate = recording.sample_rate if recording.sample_rate is not None else sample_rate
        self.rate_is_nominal = rate is None
        # a placeholder may be replaced by the bundle's nominal rate; a given one is kept
        self.nominal_is_placeholder = self.rate_is_nominal and nominal_rate is None
        if self.rate_is_nominal:
            if realtime and nominal_rate is None:
                raise missing_rate_error(path)
            rate = nominal_rate if nominal_rate is not None else self.PLACEHOLDER_RATE
        if not recording.is_complex:
            raise SignalError(f"{path} holds real samples; a SigMF IQ source needs complex data")
        samples = recording.samples.T if recording.samples.ndim == 2 else recording.samples[None]
        data = iq_to_channels(samples).reshape(-1, samples.shape[-1])
        super().__init__(data, rate, iq_channel_set(samples.shape[0]), chunk_size, realtime)

    def use_nominal_rate(self, rate: float) -> None:
        """Stream at ``rate`` instead of the placeholder (before the first read: the
        timestamps count from it)."""
        if not self.nominal_is_placeholder:
            raise SignalError(f"{self.path}: only a placeholder nominal rate can be replaced "
                              f"(this source streams at {self.sfreq:g} Hz, "
                              f"{'its nominal_rate' if self.rate_is_nominal else 'its rate'})")
        if self._pos:
            raise SignalError(f"{self.path}: the nominal rate must be set before the first "
                              f"read ({self._pos} samples were read already)")
        self.sfreq = check_sfreq(rate)
        self.nominal_is_placeholder = False


class LSLSource:
    """An LSL inlet (mne-lsl), found by name, type or source id on the loopback config.

    The inlet is opened with ``recover=True``: when the stream disappears (the player is
    killed) reads return nothing, the gap shows in the timestamps, and the inlet reconnects
    by itself when a stream with the same identity returns.
    """

    live = True

    def __init__(self, name: str | None = None, stype: str | None = None,
                 source_id: str | None = None, timeout: float = 10.0,
                 max_samples: int = 1024):
        from .lsl import lsl

        self._lsl = lsl()
        infos = self._lsl.resolve_streams(timeout=timeout, name=name, stype=stype,
                                          source_id=source_id)
        if not infos:
            what = {k: v for k, v in dict(name=name, stype=stype, source_id=source_id).items()
                    if v}
            raise SignalError(f"no LSL stream matching {what} found within {timeout} s (on "
                              "the loopback-only config: is the player running on this machine?)")
        self.inlet = self._lsl.StreamInlet(infos[0], recover=True,
                                           processing_flags=["clocksync"])
        self.inlet.open_stream(timeout=timeout)
        # the resolved info lacks the description; the full one carries the channel names
        info = self.inlet.get_sinfo(timeout=timeout)
        self.info = info
        self.sfreq = check_sfreq(info.sfreq)
        names = info.get_channel_names() or [f"ch{i}" for i in range(info.n_channels)]
        self.channels = ChannelSet(tuple(n or f"ch{i}" for i, n in enumerate(names)))
        self.max_samples = max_samples

    def read(self, timeout: float = 0.05):
        # timeout=0: return what is there now. A positive pull timeout makes liblsl wait to
        # fill max_samples, which would add up to that much latency to every chunk.
        data, ts = self.inlet.pull_chunk(timeout=0.0, max_samples=self.max_samples)
        data = np.asarray(data)
        if data.size == 0:
            time.sleep(min(timeout, 0.0005))
            return None
        return data.T.astype(np.float64), np.asarray(ts, dtype=float)

    def close(self) -> None:
        """Destroy the inlet without ``close_stream()``: liblsl logs "Stream transmission broke
        off" when close_stream cancels a transfer still running (the sender is alive), while
        destroying the inlet shuts its connection down first, which it does not log."""
        inlet, self.inlet = self.inlet, None
        if inlet is None:
            return
        try:
            if hasattr(inlet, "_del"):  # mne-lsl: its destructor calls close_stream first
                inlet._stream_is_open = False
                inlet._del()
            else:  # another binding: its own close (liblsl may print the line)
                inlet.close_stream()
        except Exception:
            pass


class ZMQSource:
    """Complex IQ published over ZeroMQ by SDR software (e.g. GNU Radio's "ZMQ PUB Sink" with
    ``gr_complex`` items, no tags): raw interleaved float32 I/Q per message, as two real
    channels ``I0, Q0``. ``pattern`` is ``"sub"`` (PUB sink) or ``"pull"`` (PUSH sink).
    Needs pyzmq (``pip install 'sigformer[sdr]'``); test it on 127.0.0.1 only."""

    live = True

    def __init__(self, address: str, sample_rate: float, *, pattern: str = "sub",
                 dtype: str = "complex64", timeout: float = 10.0):
        try:
            import zmq
        except ImportError:
            raise ImportError("ZeroMQ IQ sources need pyzmq: pip install 'sigformer[sdr]'"
                              ) from None
        from ..channels import iq_channel_set

        if pattern not in ("sub", "pull"):
            raise SignalError(f"pattern must be 'sub' or 'pull', got {pattern!r}")
        if dtype not in ("complex64", "int16"):
            raise SignalError(f"dtype must be 'complex64' (gr_complex) or 'int16' (sc16), got "
                              f"{dtype!r}")
        self._zmq = zmq
        self._context = zmq.Context.instance()
        self._socket = self._context.socket(zmq.SUB if pattern == "sub" else zmq.PULL)
        if pattern == "sub":
            self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.setsockopt(zmq.RCVHWM, 1000)
        self._socket.connect(address)
        self.address, self.dtype = address, dtype
        self.sfreq = check_sfreq(sample_rate)
        self.channels = iq_channel_set(1)
        self._count = 0
        self.bad_messages = 0

    def _decode(self, message: bytes) -> np.ndarray | None:
        if self.dtype == "complex64":
            if len(message) % 8:
                self.bad_messages += 1
                return None
            return np.frombuffer(message, np.complex64)
        if len(message) % 4:
            self.bad_messages += 1
            return None
        raw = np.frombuffer(message, np.int16).astype(np.float32) / 32768.0
        return raw[0::2] + 1j * raw[1::2]

    def read(self, timeout: float = 0.05):
        if not self._socket.poll(int(timeout * 1000)):
            return None
        iq = self._decode(self._socket.recv())
        if iq is None or iq.size == 0:
            return None
        stamps = (self._count + np.arange(len(iq))) / self.sfreq
        self._count += len(iq)
        return np.stack([iq.real, iq.imag]).astype(np.float64), stamps

    def close(self) -> None:
        self._socket.close(linger=0)


class SoundCardSource:
    """A live sound card input (``sounddevice``; ``pip install 'sigformer[audio-live]'``):
    ``channels`` microphones at ``sample_rate``, delivered in blocks of ``chunk_size``."""

    live = True

    def __init__(self, sample_rate: float = 16000, channels: int = 1, *, device=None,
                 chunk_size: int = 512):
        chunk_size = check_chunk_size(chunk_size)
        try:
            import sounddevice as sd
        except (ImportError, OSError) as err:
            raise ImportError("live sound-card input needs sounddevice and PortAudio: pip "
                              f"install 'sigformer[audio-live]' ({err})") from None
        import queue
        import threading

        self.sfreq = check_sfreq(sample_rate)
        names = tuple(f"mic{i}" for i in range(channels))
        self.channels = ChannelSet(names, ("mic",) * channels)
        self._queue: queue.Queue = queue.Queue(maxsize=256)
        self._count = 0
        # overflows: PortAudio's input-overflow flags plus blocks this side dropped;
        # dropped_frames: the samples of those blocks, which the timestamps skip over so
        # the quality monitor reports the gap (the audio is not silently spliced)
        self.overflows = 0
        self.dropped_frames = 0
        self._unstamped_gap = 0
        self._lock = threading.Lock()

        def callback(data, frames, time_info, status):
            with self._lock:
                if status:
                    self.overflows += 1
                try:
                    self._queue.put_nowait((data.copy(), self._unstamped_gap))
                    self._unstamped_gap = 0
                except queue.Full:
                    self.overflows += 1
                    self.dropped_frames += frames
                    self._unstamped_gap += frames

        self._stream = sd.InputStream(samplerate=self.sfreq, channels=channels, device=device,
                                      blocksize=chunk_size, dtype="float32", callback=callback)
        self._stream.start()

    def read(self, timeout: float = 0.05):
        import queue

        try:
            block, gap = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        self._count += gap  # samples dropped before this block: a gap the monitor sees
        stamps = (self._count + np.arange(len(block))) / self.sfreq
        self._count += len(block)
        return block.T.astype(np.float64), stamps

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()


class SlotSource(ArraySource):
    """OFDM slots from a sigformer OFDM dataset (``.npz``), one slot per stream sample at
    ``slot_rate`` slots per second (see :func:`~sigformer.streaming.processors.slots_to_stream`)."""

    def __init__(self, path, chunk_size: int = 8, realtime: bool = False,
                 slot_rate: float = 1000.0):
        from ..data.ofdm import OFDMDataset
        from .processors import slot_channels, slots_to_stream

        dataset = OFDMDataset.load(path)
        self.dataset = dataset
        data = slots_to_stream(dataset.ls, dataset.statistics())
        super().__init__(data, slot_rate, slot_channels(int(np.prod(dataset.ls.shape[1:]))),
                         chunk_size, realtime)
