"""Multichannel reverberant scenes with pyroomacoustics, following the DeFTAN-II recipe.

``generate_rir/pyroom_rir.cfg`` of the DeFTAN-II release: 16 kHz; RT60 uniform in 0.2-1.2 s
(absorption from ``inverse_sabine``); room 5-10 x 5-10 x 3-4 m; a circular array in the
horizontal plane (4 mics, radius 0.1 m), its centre within +-0.5 m of the room centre at 1-2 m
height, rotated by 0..pi/4; the talker 0.75-2.0 m from the array and at least 0.5 m from the
walls; one noise source anywhere. Three simulations per scene: reverberant speech, the
**direct path** (``max_order=0``, the training target; kept at every microphone in
``Scene.direct`` for oracle beamformers) and reverberant noise. ``Scene.info`` records the
array geometry (``mic_positions`` relative to the array centre) and the talker's direction
(``source_azimuth``/``source_colatitude``) for steered beamformers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .mixtures import DrawnExamples


@dataclass
class SceneConfig:
    sample_rate: int = 16000
    n_mics: int = 4
    radius: float | tuple[float, float] = 0.1  # a (low, high) range draws one per scene
    rt60: tuple[float, float] = (0.2, 1.2)
    room_xy: tuple[float, float] = (5.0, 10.0)
    room_z: tuple[float, float] = (3.0, 4.0)
    source_distance: tuple[float, float] = (0.75, 2.0)
    wall_margin: float = 0.5
    snr_db: tuple[float, float] = (0.0, 15.0)
    max_order: int | None = None  # None: from inverse_sabine (capped at 20 for speed)


    def array(self) -> dict:
        """The microphone array this family draws, as an enhancement bundle records it (so a
        user can tell whether their array is one the model was trained for)."""
        radius = (list(map(float, self.radius)) if np.ndim(self.radius)
                  else float(self.radius))
        return {"geometry": "uniform circular, horizontal", "n_mics": int(self.n_mics),
                "radius_m": radius, "reference_mic": 0,
                "order": "counter-clockwise from microphone 0 (the reference)"}


# scripts/train_speech.py --task enhance: the array radius range of the training rooms
ENHANCE_TRAINING_RADIUS = (0.05, 0.1)


@dataclass
class Scene:
    mixture: np.ndarray  # (n_mics, L): reverberant speech + reverberant noise
    target: np.ndarray  # (1, L): direct-path speech at the reference microphone (mic 0)
    reverberant: np.ndarray  # (n_mics, L) reverberant speech alone
    info: dict = field(default_factory=dict)
    direct: np.ndarray | None = None  # (n_mics, L) direct-path speech at every microphone

    @property
    def noise(self) -> np.ndarray:
        """``(n_mics, L)`` reverberant noise alone (the mixture minus the speech)."""
        return self.mixture - self.reverberant


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
    radius = float(rng.uniform(*c.radius)) if np.ndim(c.radius) else float(c.radius)
    mics = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles),
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
    direct = render(speech, source, 0)
    noisy = render(noise, noise_pos, order)
    snr = rng.uniform(*c.snr_db)
    gain = np.sqrt(np.mean(reverberant[0] ** 2) / (np.mean(noisy[0] ** 2) + 1e-12)) * 10 ** (
        -snr / 20)
    mixture = reverberant + gain * noisy
    peak = np.abs(mixture).max() / 0.9
    scale = 1 / peak if peak > 1 else 1.0
    info = {"rt60": float(rt60), "room": dims.tolist(), "snr_db": float(snr),
            "distance": float(np.linalg.norm(source - centre)), "max_order": int(order),
            # geometry relative to the array centre, for steered beamformers and DOA checks
            "mic_positions": (mics.T - centre).tolist(),
            "source_azimuth": float(np.arctan2(*(source - centre)[1::-1])),
            "source_colatitude": float(np.arccos((source - centre)[2]
                                                 / np.linalg.norm(source - centre)))}
    direct = (direct * scale).astype(np.float32)
    return Scene((mixture * scale).astype(np.float32), direct[:1].copy(),
                 (reverberant * scale).astype(np.float32), info, direct)


class EnhancementScenes(DrawnExamples):
    """``torch.utils.data.IterableDataset`` of array scenes simulated on the fly: every item
    a new random room, RT60, array radius / rotation / position, talker and noise positions
    and SNR (:func:`simulate_scene` with ``config``), speech from ``utterances`` (e.g. one
    speaker split of :func:`~sigformer.data.mixtures.speaker_splits`) and noise from
    ``noises``. Yields ``(mixture (n_mics, L), direct-path target (1, L))`` float32 tensors.

    The microphone count is fixed per dataset (a model's input width); the geometry varies
    within the family (``config.radius`` may be a range). ``n_items``/``fixed`` as in
    :class:`~sigformer.data.mixtures.DynamicMixtures`."""

    def __init__(self, utterances: list, noises: list | None = None,
                 config: SceneConfig | None = None, seconds: float = 2.0,
                 n_items: int | None = None, seed: int = 0, fixed: bool = False):
        from .mixtures import AudioPool

        self.utterances, self.noises, self.config = utterances, noises, config
        self.seconds, self.n_items, self.seed, self.fixed = seconds, n_items, seed, fixed
        rate = (config or SceneConfig()).sample_rate
        self._speech, self._noise = AudioPool(utterances, rate), AudioPool(noises or [], rate)
        self._epoch = 0

    def pair(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        scene = self.draw(rng)
        return scene.mixture, scene.target

    def draw(self, rng: np.random.Generator) -> Scene:
        from .mixtures import segment_of

        c = self.config or SceneConfig()
        length = int(self.seconds * c.sample_rate)
        speech = segment_of(self._speech.get(int(rng.integers(len(self._speech)))), length, rng)
        if len(self._noise):
            noise = segment_of(self._noise.get(int(rng.integers(len(self._noise)))), length, rng)
        else:
            noise = rng.standard_normal(length).astype(np.float32)
        return simulate_scene(speech, noise, c, seed=int(rng.integers(2 ** 31)))
