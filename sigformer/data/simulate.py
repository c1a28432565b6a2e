"""Motor-imagery EEG simulator: lateralised mu/beta desynchronisation on a 1/f background.

Two rhythmic sources sit under C3 and C4 (left and right sensorimotor cortex) and project to
the electrodes with a Gaussian fall-off over scalp distance. During imagery of one hand the
contralateral source desynchronises (event-related desynchronisation, ERD): its amplitude drops
by ``erd`` over a short ramp. The background is spatially smooth 1/f^alpha noise. Labels are
annotations on a continuous :class:`~sigformer.Recording`, so the simulator exercises the same
load -> preprocess -> epoch path as real recordings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import signal

from ..channels import ChannelSet
from ..recording import Annotation, Recording
from ..validation import SignalError

BNCI2014001_CHANNELS = (
    "Fz", "FC3", "FC1", "FCz", "FC2", "FC4", "C5", "C3", "C1", "Cz", "C2", "C4", "C6",
    "CP3", "CP1", "CPz", "CP2", "CP4", "P1", "Pz", "P2", "POz",
)
CLASSES = ("left_hand", "right_hand")


def _pink_noise(rng: np.random.Generator, shape: tuple[int, int], alpha: float) -> np.ndarray:
    white = rng.standard_normal(shape)
    spectrum = np.fft.rfft(white, axis=-1)
    freqs = np.fft.rfftfreq(shape[-1])
    freqs[0] = freqs[1]
    noise = np.fft.irfft(spectrum / freqs ** (alpha / 2), n=shape[-1], axis=-1)
    return noise / noise.std(axis=-1, keepdims=True)


def _narrowband(rng: np.random.Generator, n: int, sfreq: float, center: float,
                width: float) -> np.ndarray:
    sos = signal.butter(4, [center - width / 2, center + width / 2], "bandpass", fs=sfreq,
                        output="sos")
    x = signal.sosfiltfilt(sos, rng.standard_normal(n))
    return x / x.std()


def simulate_motor_imagery(n_trials: int = 120, *, channels: Sequence[str] = BNCI2014001_CHANNELS,
                           sfreq: float = 250.0, trial_duration: float = 4.0,
                           rest_duration: tuple[float, float] = (1.5, 2.5), snr_db: float = 0.0,
                           erd: float = 0.6, mu_freq: float = 11.0, beta_freq: float = 22.0,
                           alpha: float = 1.0, amplitude: float = 10e-6,
                           seed: int | None = 0) -> Recording:
    """Continuous recording with ``n_trials`` cues alternating randomly between the classes.

    Parameters
    ----------
    n_trials : number of imagery cues (balanced between ``left_hand`` and ``right_hand``).
    channels : electrode names with 10-05 positions; must include C3 and C4.
    sfreq, trial_duration : sampling rate (Hz) and imagery length (s); rest between cues is
        drawn uniformly from ``rest_duration``.
    snr_db : power of the sensorimotor rhythms relative to the background at C3/C4 (dB).
    erd : fractional amplitude drop of the contralateral rhythm during imagery (0-1).
    mu_freq, beta_freq : centre frequencies of the two rhythms (Hz).
    alpha : background spectral exponent (1/f^alpha).
    amplitude : background standard deviation in volts (EEG is stored in volts, as in MNE).
    seed : random seed (None for a fresh draw).
    """
    if n_trials < 2:
        raise SignalError(f"n_trials must be at least 2, got {n_trials}")
    if not 0 <= erd <= 1:
        raise SignalError(f"erd is a fractional amplitude drop in [0, 1], got {erd}")
    chans = ChannelSet.from_names(channels).with_montage()
    for needed in ("C3", "C4"):
        if needed not in chans.names:
            raise SignalError(f"the motor-imagery simulator needs channel {needed}; got "
                              f"{list(chans.names)}")
    if np.isnan(chans.positions).any():
        missing = [n for n, p in zip(chans.names, chans.positions) if np.isnan(p).any()]
        raise SignalError(f"no 10-05 position for channel(s) {missing}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n_trials) % 2)
    rests = rng.uniform(*rest_duration, size=n_trials + 1)
    onsets = np.cumsum(rests[:-1] + np.r_[0, np.full(n_trials - 1, trial_duration)])
    n_times = int(np.ceil((onsets[-1] + trial_duration + rests[-1]) * sfreq))

    pos = chans.positions
    # background: 1/f noise, spatially smoothed so neighbouring electrodes correlate
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    mixing = np.exp(-(dist / 0.04) ** 2)
    background = mixing @ _pink_noise(rng, (len(chans), n_times), alpha)
    background *= amplitude / background.std(axis=1, keepdims=True)

    # ERD envelopes of the left (C3) and right (C4) sources
    ramp = int(0.3 * sfreq)
    envelopes = np.ones((2, n_times))
    window = np.r_[np.linspace(0, 1, ramp), np.ones(int(trial_duration * sfreq) - 2 * ramp),
                   np.linspace(1, 0, ramp)]
    for onset, label in zip(onsets, labels):
        start = int(round(onset * sfreq))
        source = 1 - label  # left-hand imagery -> right-hemisphere (C4) desynchronises
        envelopes[source, start:start + len(window)] -= erd * window
    rhythm_amp = amplitude * 10 ** (snr_db / 20)
    data = background
    for s, name in enumerate(("C3", "C4")):
        rhythm = (_narrowband(rng, n_times, sfreq, mu_freq, 2.0)
                  + 0.5 * _narrowband(rng, n_times, sfreq, beta_freq, 4.0)) / np.sqrt(1.25)
        gain = np.exp(-(np.linalg.norm(pos - pos[chans.index(name)], axis=1) / 0.03) ** 2)
        data = data + rhythm_amp * gain[:, None] * (envelopes[s] * rhythm)[None]
    annotations = [Annotation(float(o), trial_duration, CLASSES[lab])
                   for o, lab in zip(onsets, labels)]
    return Recording(data, sfreq, chans, annotations)
