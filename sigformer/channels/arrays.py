"""IQ samples as two real channels, and microphone arrays with geometry."""

from __future__ import annotations

import numpy as np

from ..validation import SignalError
from .core import ChannelSet

SPEED_OF_SOUND = 343.0  # m/s at 20 °C


def iq_to_channels(x: np.ndarray) -> np.ndarray:
    """Complex ``(..., n)`` -> real ``(..., 2, n)`` (I then Q)."""
    x = np.asarray(x)
    if not np.iscomplexobj(x):
        raise SignalError(f"IQ samples must be complex, got dtype {x.dtype}")
    return np.stack([x.real, x.imag], axis=-2)


def channels_to_iq(x: np.ndarray) -> np.ndarray:
    """Real ``(..., 2, n)`` (I, Q) -> complex ``(..., n)``."""
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[-2] != 2:
        raise SignalError(f"expected (..., 2, n_samples) with I and Q rows, got {x.shape}")
    return x[..., 0, :] + 1j * x[..., 1, :]


def iq_channel_set(n_antennas: int = 1) -> ChannelSet:
    """Channel names ``I0, Q0, I1, Q1, ...`` of type ``iq``."""
    names = tuple(f"{c}{a}" for a in range(n_antennas) for c in ("I", "Q"))
    return ChannelSet(names, ("iq",) * len(names))


def mic_array(positions, names=None) -> ChannelSet:
    """A microphone array: positions ``(n_mics, 3)`` in metres."""
    pos = np.asarray(positions, dtype=float)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise SignalError(f"microphone positions must be (n_mics, 3) in metres, got {pos.shape}")
    names = tuple(names) if names is not None else tuple(f"mic{i}" for i in range(len(pos)))
    return ChannelSet(names, ("mic",) * len(names), pos)


def circular_array(n_mics: int, radius: float, center=(0.0, 0.0, 0.0)) -> ChannelSet:
    """Uniform circular array in the horizontal plane (e.g. DeFTAN-II's 4 mics, r = 0.1 m)."""
    angles = 2 * np.pi * np.arange(n_mics) / n_mics
    pos = np.stack([radius * np.cos(angles), radius * np.sin(angles), np.zeros(n_mics)], 1)
    return mic_array(pos + np.asarray(center))


def max_delay_samples(array: ChannelSet, sfreq: float, c: float = SPEED_OF_SOUND) -> float:
    """Largest inter-microphone propagation delay, in samples (aperture / c * sfreq)."""
    if array.positions is None:
        raise SignalError("the array has no microphone positions")
    d = np.linalg.norm(array.positions[:, None] - array.positions[None], axis=-1)
    return float(d.max() / c * sfreq)
