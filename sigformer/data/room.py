"""Multichannel reverberant scenes with pyroomacoustics, following the DeFTAN-II recipe.

``generate_rir/pyroom_rir.cfg`` of the DeFTAN-II release: 16 kHz; RT60 uniform in 0.2-1.2 s
(absorption from ``inverse_sabine``); room 5-10 x 5-10 x 3-4 m; a circular array in the
horizontal plane (4 mics, radius 0.1 m), its centre within +-0.5 m of the room centre at 1-2 m
height, rotated by 0..pi/4; the talker 0.75-2.0 m from the array and at least 0.5 m from the
walls; one noise source anywhere. Three simulations per scene: reverberant speech, the
**direct path** (``max_order=0``, the training target) and reverberant noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SceneConfig:
    sample_rate: int = 16000
    n_mics: int = 4
    radius: float = 0.1
    rt60: tuple[float, float] = (0.2, 1.2)
    room_xy: tuple[float, float] = (5.0, 10.0)
    room_z: tuple[float, float] = (3.0, 4.0)
    source_distance: tuple[float, float] = (0.75, 2.0)
    wall_margin: float = 0.5
    snr_db: tuple[float, float] = (0.0, 15.0)
    max_order: int | None = None  # None: from inverse_sabine (capped at 20 for speed)


@dataclass
class Scene:
    mixture: np.ndarray  # (n_mics, L): reverberant speech + reverberant noise
    target: np.ndarray  # (1, L): direct-path speech at the reference microphone (mic 0)
    reverberant: np.ndarray  # (n_mics, L) reverberant speech alone
    info: dict = field(default_factory=dict)


def _room(pra, dims, fs, absorption, max_order):
    return pra.ShoeBox(dims, fs=fs, materials=pra.Material(absorption), max_order=max_order,
                       air_absorption=False)


def simulate_scene(speech: np.ndarray, noise: np.ndarray, config: SceneConfig | None = None,
                   seed: int | None = 0) -> Scene:
    """One scene: mono ``speech`` and ``noise`` at ``config.sample_rate`` placed in a random
    shoebox room; returns the array mixture and the direct-path target."""
    import pyroomacoustics as pra

    c = config or SceneConfig()
    rng = np.random.default_rng(seed)
    rt60 = rng.uniform(*c.rt60)
    dims = np.array([rng.uniform(*c.room_xy), rng.uniform(*c.room_xy), rng.uniform(*c.room_z)])
    absorption, order = pra.inverse_sabine(rt60, dims)
    order = min(order, 20) if c.max_order is None else c.max_order
    centre = np.array([dims[0] / 2 + rng.uniform(-0.5, 0.5), dims[1] / 2 + rng.uniform(-0.5, 0.5),
                       rng.uniform(1.0, 2.0)])
    rotation = rng.uniform(0, np.pi / 4)
    angles = rotation + 2 * np.pi * np.arange(c.n_mics) / c.n_mics
    mics = np.stack([centre[0] + c.radius * np.cos(angles), centre[1] + c.radius * np.sin(angles),
                     np.full(c.n_mics, centre[2])])
    source = None
    for _ in range(1000):
        azimuth = rng.uniform(0, 2 * np.pi)
        distance = rng.uniform(*c.source_distance)
        candidate = centre + np.array([distance * np.cos(azimuth), distance * np.sin(azimuth),
                                       rng.uniform(-0.3, 0.3)])
        if np.all(candidate > c.wall_margin) and np.all(candidate < dims - c.wall_margin):
            source = candidate
            break
    if source is None:
        raise RuntimeError("could not place the talker inside the room with the wall margin")
    noise_pos = np.array([rng.uniform(0.3, d - 0.3) for d in dims])
    length = len(speech)
    noise = np.resize(noise, length)

    def render(signal, position, max_order):
        room = _room(pra, dims, c.sample_rate, absorption, max_order)
        room.add_source(position, signal=signal)
        room.add_microphone_array(mics)
        room.simulate()
        return room.mic_array.signals[:, :length]

    reverberant = render(speech, source, order)
    direct = render(speech, source, 0)[:1]
    noisy = render(noise, noise_pos, order)
    snr = rng.uniform(*c.snr_db)
    gain = np.sqrt(np.mean(reverberant[0] ** 2) / (np.mean(noisy[0] ** 2) + 1e-12)) * 10 ** (
        -snr / 20)
    mixture = reverberant + gain * noisy
    peak = np.abs(mixture).max() / 0.9
    scale = 1 / peak if peak > 1 else 1.0
    info = {"rt60": float(rt60), "room": dims.tolist(), "snr_db": float(snr),
            "distance": float(np.linalg.norm(source - centre)), "max_order": int(order)}
    return Scene((mixture * scale).astype(np.float32), (direct * scale).astype(np.float32),
                 (reverberant * scale).astype(np.float32), info)
