"""Audio I/O (soundfile), resampling (torchaudio) and input checks for the speech models.

Audio arrays are ``(channels, samples)`` float32; :func:`check_audio` transposes a 2-D array
that looks like ``(samples, channels)`` (more rows than columns, at most 64 columns) with an
:class:`AudioWarning`. Writes are atomic (temporary file, then rename). Silence and clipping give warnings (the models still run); NaN/Inf, a wrong rate or a
wrong channel count give errors that name what was expected.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ..data.io import DataError

SILENCE_RMS = 1e-5
CLIP_LEVEL = 0.999
CLIP_FRACTION = 1e-3
MAX_CHANNELS = 64  # a 2-D array with more rows than columns and at most this many columns
# is taken as (samples, channels) and transposed with a warning


class AudioWarning(UserWarning):
    """Silent or clipped audio: processed, but results will suffer."""


def read_audio(path: str | os.PathLike, sample_rate: int | None = None,
               channels: list[int] | None = None, nan_policy: str = "raise"
               ) -> tuple[np.ndarray, int]:
    """Read any format soundfile knows as ``(channels, samples)`` float32; resample to
    ``sample_rate`` if given. A WAV file shorter than its header declares is an error;
    NaN/Inf samples follow ``nan_policy`` (``"raise"`` or ``"interpolate"``)."""
    import soundfile as sf

    if nan_policy not in AUDIO_NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {AUDIO_NAN_POLICIES}, got {nan_policy!r}")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"audio file {path} does not exist")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, ValueError) as err:
        raise DataError(f"{path} is not readable audio: {err}") from None
    check_wav_length(path, data.shape[0])
    audio = _apply_nan_policy(np.ascontiguousarray(data.T), nan_policy, path)
    if channels is not None:
        bad = [c for c in channels if not 0 <= c < audio.shape[0]]
        if bad:
            raise DataError(f"{path} has {audio.shape[0]} channels; channels {bad} do not exist")
        audio = audio[channels]
    if audio.shape[1] == 0:
        raise DataError(f"{path} holds no samples")
    if sample_rate is not None and sample_rate != rate:
        audio, rate = resample(audio, rate, sample_rate), sample_rate
    return audio, int(rate)


def _wav_data_chunk(path: Path) -> tuple[int, int, int] | None:
    """``(declared data bytes, bytes present, bytes per frame)`` of a RIFF/WAVE file; None
    for other formats or headers this reader does not follow."""
    import struct

    size = path.stat().st_size
    with open(path, "rb") as fh:
        if fh.read(4) != b"RIFF" or fh.read(8)[4:] != b"WAVE":
            return None
        frame_bytes = None
        while True:
            head = fh.read(8)
            if len(head) < 8:
                return None
            chunk, length = head[:4], struct.unpack("<I", head[4:])[0]
            if chunk == b"fmt ":
                fmt = fh.read(length + (length & 1))
                frame_bytes = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
            elif chunk == b"data":
                if not frame_bytes or length == 0xFFFFFFFF:  # streaming writers: unknown size
                    return None
                return length, size - fh.tell(), frame_bytes
            else:
                fh.seek(length + (length & 1), 1)


def check_wav_length(path: Path, n_read: int) -> None:
    """A WAV file whose data chunk is shorter than its header says is truncated (soundfile
    returns what is there without a word)."""
    chunk = _wav_data_chunk(path)
    if chunk is None:
        return
    declared, present, frame_bytes = chunk
    if present < declared:
        raise DataError(f"{path} is truncated: its header declares {declared // frame_bytes} "
                        f"samples per channel but the file holds {present // frame_bytes} "
                        f"(an interrupted copy or recording?)")


AUDIO_NAN_POLICIES = ("raise", "interpolate")


def _apply_nan_policy(audio: np.ndarray, nan_policy: str, path: Path) -> np.ndarray:
    bad = ~np.isfinite(audio)
    if not bad.any():
        return audio
    if nan_policy == "raise":
        channel, sample = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{path}: {int(bad.sum())} NaN/Inf sample value(s), the first at "
                        f"channel {channel}, sample {sample}; expected finite audio (pass "
                        f"nan_policy='interpolate' to fill them linearly)")
    from ..data.sigmf_io import _interpolate_nonfinite

    return _interpolate_nonfinite(audio.T).T.astype(np.float32)


def resample(audio: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling along the last axis with sigformer's one resampler (the
    polyphase Kaiser FIR of :class:`~sigformer.stages.Resample`, zero phase), the same filter
    that streams audio, IQ and EEG."""
    from ..stages import resample_array

    if orig_rate == new_rate:
        return audio
    return resample_array(np.asarray(audio, np.float32), orig_rate, new_rate).astype(np.float32)


def _channels_first(audio: np.ndarray, name: str, stacklevel: int) -> np.ndarray:
    """``(channels, samples)``: a 2-D array with more rows than columns and at most
    :data:`MAX_CHANNELS` columns is read as soundfile's, scipy's and most audio tools'
    ``(samples, channels)`` and transposed, with a warning."""
    if audio.shape[0] > audio.shape[1] and audio.shape[1] <= MAX_CHANNELS:
        warnings.warn(f"{name} has shape {audio.shape}, which looks like (samples, channels); "
                      f"transposing to (channels, samples) - pass (channels, samples) to "
                      f"silence this", AudioWarning, stacklevel=stacklevel + 1)
        return audio.T
    return audio


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int,
                subtype: str = "FLOAT") -> Path:
    """Write ``(channels, samples)`` (or mono ``(samples,)``) atomically."""
    import soundfile as sf

    audio = np.atleast_2d(np.asarray(audio, np.float32))
    if audio.ndim != 2:
        raise DataError(f"audio to write must be (channels, samples), got shape {audio.shape}")
    # soundfile's own (samples, channels) written as given became thousands of channels
    audio = _channels_first(audio, "audio to write", stacklevel=2)
    if not np.isfinite(audio).all():
        raise DataError("refusing to write audio that contains NaN or Inf")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".audio.", suffix=path.suffix or ".wav")
    os.close(fd)
    try:
        sf.write(tmp, audio.T, int(sample_rate), subtype=subtype,
                 format=(path.suffix.lstrip(".") or "wav").upper())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_audio(audio: np.ndarray, sample_rate: float, *, expected_rate: int | None = None,
                n_channels: int | None = None, name: str = "audio") -> np.ndarray:
    """Validate ``(channels, samples)`` input for a model; warn on silence and clipping."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2:
        raise DataError(f"{name} must be (channels, samples), got shape {audio.shape}")
    audio = _channels_first(audio, name, stacklevel=2)
    if expected_rate is not None and int(round(sample_rate)) != expected_rate:
        raise DataError(f"{name} is sampled at {sample_rate:g} Hz but the model expects "
                        f"{expected_rate} Hz; resample it first (--resample on the CLI)")
    if n_channels is not None and audio.shape[0] != n_channels:
        kind = "mono" if audio.shape[0] == 1 else f"{audio.shape[0]}-channel"
        raise DataError(f"{name} is {kind} but the model expects {n_channels} microphone "
                        f"channel(s)")
    if not np.isfinite(audio).all():
        bad = np.argwhere(~np.isfinite(audio))[0]
        raise DataError(f"{name} contains NaN or Inf (first at channel {bad[0]}, sample "
                        f"{bad[1]})")
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    if rms < SILENCE_RMS:
        warnings.warn(f"{name} is silent (RMS {rms:.1e}); the output will be silence too",
                      AudioWarning, stacklevel=2)
    clipped = float(np.mean(np.abs(audio) >= CLIP_LEVEL))
    if clipped > CLIP_FRACTION:
        warnings.warn(f"{name} looks clipped ({clipped:.2%} of samples at full scale); "
                      f"separation and enhancement quality will drop", AudioWarning,
                      stacklevel=2)
    return audio


def read_audio_recording(path: str | os.PathLike, sample_rate: int | None = None,
                         positions: np.ndarray | None = None):
    """An audio file as a :class:`~sigformer.recording.Recording` whose channels are
    microphones (``mic0``, ``mic1``, ...), with the array geometry ``(n_mics, 3)`` in metres
    when known - the same channel layer the EEG side uses (``max_delay_samples`` etc.)."""
    from ..channels import mic_array
    from ..recording import Recording

    audio, rate = read_audio(path, sample_rate)
    if positions is None:
        positions = np.full((audio.shape[0], 3), np.nan)
    channels = mic_array(positions)
    if len(channels) != audio.shape[0]:
        raise DataError(f"{path} has {audio.shape[0]} channels but {len(channels)} microphone "
                        f"positions were given")
    return Recording(audio, rate, channels)
