"""Stream sources: in-memory arrays, file replay, LSL inlets, WAV and SigMF files.

A source yields ``(chunk (n_channels, n_samples), timestamps (n_samples,))`` and knows its
``sfreq`` and ``channels``. ``read()`` returns ``None`` when no data is available yet and
raises :class:`EndOfStream` when a finite source is exhausted.
"""

from __future__ import annotations

import time

import numpy as np

from ..channels import ChannelSet
from ..validation import SignalError, check_sfreq


class EndOfStream(Exception):
    """A finite source has no more data."""


class ArraySource:
    """Chunks of an in-memory ``(n_channels, n_times)`` array; ``realtime=True`` paces them at
    the sampling rate (as a file replay would), otherwise as fast as they are read."""

    def __init__(self, data: np.ndarray, sfreq: float, channels, chunk_size: int = 32,
                 realtime: bool = False, t0: float = 0.0):
        self.data = np.asarray(data)
        if self.data.ndim != 2:
            raise SignalError(f"array sources take (n_channels, n_times), got {self.data.shape}")
        self.sfreq = check_sfreq(sfreq)
        self.channels = channels if isinstance(channels, ChannelSet) else ChannelSet(tuple(channels))
        if len(self.channels) != self.data.shape[0]:
            raise SignalError(f"{self.data.shape[0]} rows but {len(self.channels)} channel names")
        self.chunk_size, self.realtime, self.t0 = chunk_size, realtime, t0
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
    """Replay an EEG file (EDF/BDF/GDF/FIF) chunk by chunk, in real time or as fast as
    possible."""

    def __init__(self, path, chunk_size: int = 32, realtime: bool = True,
                 normalize_names: bool = True):
        from ..data import read_recording

        rec = read_recording(path, normalize_names=normalize_names)
        super().__init__(rec.data, rec.sfreq, rec.channels, chunk_size, realtime)
        self.annotations = rec.annotations


class WAVSource(ArraySource):
    """Multichannel audio from a WAV/FLAC file (soundfile), channels ``mic0..``."""

    def __init__(self, path, chunk_size: int = 512, realtime: bool = False):
        try:
            import soundfile as sf
        except ImportError:
            raise ImportError("WAV sources need soundfile: pip install 'sigformer[speech]'"
                              ) from None
        try:
            audio, sfreq = sf.read(str(path), always_2d=True, dtype="float32")
        except Exception as err:
            raise SignalError(f"{path} could not be read as audio: {err}") from err
        names = tuple(f"mic{i}" for i in range(audio.shape[1]))
        super().__init__(audio.T, sfreq, ChannelSet(names, ("mic",) * len(names)), chunk_size,
                         realtime)


class SigMFSource(ArraySource):
    """Complex IQ from a SigMF recording (``.sigmf-meta`` + ``.sigmf-data``) as two real
    channels (I, Q) per capture channel."""

    def __init__(self, path, chunk_size: int = 1024, realtime: bool = False):
        from ..channels import iq_channel_set, iq_to_channels
        from ..data.io import DataError
        from ..data.sigmf_io import read_sigmf

        try:
            recording = read_sigmf(path)
        except DataError as err:
            raise SignalError(f"{path} could not be read as SigMF: {err}") from err
        if recording.sample_rate is None:
            raise SignalError(f"{path} has no core:sample_rate")
        if not recording.is_complex:
            raise SignalError(f"{path} holds real samples; a SigMF IQ source needs complex data")
        samples = recording.samples.T if recording.samples.ndim == 2 else recording.samples[None]
        data = iq_to_channels(samples).reshape(-1, samples.shape[-1])
        super().__init__(data, recording.sample_rate, iq_channel_set(samples.shape[0]),
                         chunk_size, realtime)


class LSLSource:
    """An LSL inlet (mne-lsl), found by name, type or source id on the loopback config.

    The inlet is opened with ``recover=True``: when the stream disappears (the player is
    killed) reads return nothing, the gap shows in the timestamps, and the inlet reconnects
    by itself when a stream with the same identity returns.
    """

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
        try:
            self.inlet.close_stream()
        except Exception:
            pass
