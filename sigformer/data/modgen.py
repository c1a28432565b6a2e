"""A modulation generator that covers the real world: random rates, pulses, channels, hardware.

Every frame draws its own parameters; all of them are returned per frame (``params``), the
generator is vectorised numpy (no per-frame Python loop) and seeded. Signal chain, in order:

1. **Source / modulator** (stream ``"modulation"``). Digital classes are evaluated directly at
   the sample instants ``t_k = t0 + k (1 + sro) / sps`` (in symbols), so samples per symbol
   ``sps`` is any real number (drawn per frame, log-uniform in ``sps_range``) and the frame
   start ``t0`` is not symbol-aligned. Linear modulations (PSK, QAM, PAM, ASK/OOK) sum
   ``a_m p(t - m)`` with a root-raised-cosine or raised-cosine pulse ``p`` of random roll-off
   (ASK/OOK: a Gaussian-smoothed rectangle); FSK classes integrate the frequency pulse in
   closed form (CPFSK: rectangle; GFSK: Gaussian-filtered rectangle of random BT) with a
   random modulation index. Analog classes modulate speech-like sources (harmonics of a
   gliding pitch with formant weights and a syllabic envelope) or one or two tones: AM-DSB
   with carrier (modulation index), AM-SSB (upper or lower sideband, suppressed carrier),
   WBFM/NBFM (peak deviation in Hz at a per-frame sample rate).

   *ISM transmitter realism* (off by default; :func:`family_realistic` switches it on):
   **line codes** for OOK/ASK2 (stream ``"line_code"``; ``line_codes``, one drawn per frame,
   repeats weighting the draw): ``"iid"`` bits, ``"runs"`` (NRZ, geometric on/off run
   lengths with means drawn in ``run_mean_range``, so whole frames fall inside one long
   "on" or "off" run), ``"pwm"`` (each bit is 3 chips, ``110`` or ``100``: 2/3 or 1/3 duty)
   and ``"manchester"`` (``10``/``01``). Chips sit on the symbol grid, so ``sps`` counts
   chips, the keying unit a blind symbol-rate estimate finds. With
   ``preamble_probability`` a constant-carrier burst of ``preamble_symbols_range`` symbols
   overlaps the frame. An OOK frame without any "on" symbol (receiver noise, which a
   power gate drops) is inverted so that it lies inside an "on" run. **Edge overshoot**
   for OOK/ASK (stream ``"overshoot"``; ``overshoot_range``, 0 = none): after each edge a
   damped oscillation (time constant ``ring_decay_range`` symbols, ``ring_freq_range``
   cycles per symbol) whose first maximum overshoots the new level by ``overshoot`` times
   the step; the envelope is clipped at 0. **Keying chirp** for OOK/ASK2 (stream
   ``"chirp"``; ``chirp_probability``): at each key-on the carrier is pulled by ``chirp``
   cycles per symbol and relaxes as ``exp(-u / chirp_decay)``, so every "on" run sweeps in
   frequency, as cheap keyed oscillators do.
2. **Multipath** (``"multipath"``): 1..``max_paths`` paths with random fractional delays and
   an exponential power-delay profile of random spread; the first path is Rician (K drawn
   per frame) or Rayleigh, the others Rayleigh; tap gains vary in time with a random
   maximum Doppler (sum of sinusoids, Clarke's model; evaluated on :func:`doppler_grid`,
   linear in between).
3. **Carrier** (``"cfo"``): frequency offset (cycles/sample) and phase offset; with
   ``drift_max > 0`` a **carrier drift** (own stream ``"drift"``): the frequency ramps
   linearly across the frame, ``cfo + drift (k - (L - 1) / 2)`` at sample ``k``, so ``cfo``
   stays the frame's mean frequency (``drift`` in cycles/sample per sample, uniform in
   ``+-drift_max``: 2e-4 drifts 2.6 % of the sample rate over 128 samples);
   **phase noise** (``"phase_noise"``): a Wiener process of random per-sample step.
4. **AWGN** (``"awgn"``). *SNR definition*: the noise-free received frame (after steps 1-3,
   over the ``frame_length`` samples returned) is scaled to unit mean power ``mean |s|^2 = 1``
   and complex white Gaussian noise of power ``10 ** (-snr_db / 10)`` (``E|n|^2``, I and Q
   each half) is added. So ``snr_db`` is the per-frame, in-band-to-the-sample-rate SNR
   ``P_s / P_n`` (not Es/N0: Es/N0 = SNR + 10 log10(sps)).
5. **Receiver hardware**, after the noise: IQ gain/phase imbalance (``"iq_imbalance"``:
   ``y = mu r + nu conj(r)``) and a complex DC offset (``"dc_offset"``, magnitude relative to
   the unit signal amplitude).
6. Timing (``"timing"``): the fractional frame start and the sample-rate offset (ppm); off
   means symbol-aligned frames at exactly ``sps``. ``timing_offset`` records the fractional
   symbol time of the frame's first sample (before the fourteenth session it recorded a
   draw at an earlier point of the grid, and "off" frames were not aligned).

Impairment families are switched with ``ModGenConfig(impairments=...)``; each family draws
from its own random stream, so switching one family off leaves every other draw (symbols,
rates, channel, noise) unchanged for the same seed. The realism options draw from their
own streams too: with them off the frames are exactly those of earlier versions, and with
them on every other draw (rates, pulses, channel, noise, the i.i.d. data bits a line code
encodes) is unchanged. New per-frame parameters: ``line_code`` (index into
:data:`LINE_CODES`), ``run_mean_on``/``run_mean_off``, ``preamble_symbols`` (0: none),
``preamble_start`` (symbols from the first sample), ``overshoot``, ``ring_decay``,
``ring_freq``, ``drift``, ``chirp`` (cycles/symbol, 0: none) and ``chirp_decay``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.special import erfc

RML2016_CLASSES = ("8PSK", "AM-DSB", "AM-SSB", "BPSK", "CPFSK", "GFSK", "PAM4", "QAM16",
                   "QAM64", "QPSK", "WBFM")
IMPAIRMENTS = ("timing", "cfo", "phase_noise", "multipath", "awgn", "iq_imbalance",
               "dc_offset")
# Modulation families for real captures (RF users' vocabulary); each label draws its members.
FAMILIES: dict[str, tuple[str, ...]] = {
    "ASK": ("OOK", "ASK2", "ASK4", "PAM4"),
    "FSK": ("FSK2", "FSK4", "GFSK", "CPFSK"),
    "PSK": ("BPSK", "QPSK", "8PSK"),
    "QAM": ("QAM16", "QAM64"),
    "analog": ("AM-DSB", "AM-SSB", "WBFM", "NBFM"),
}
FAMILY_CLASSES = tuple(FAMILIES)
LINEAR = {"BPSK", "QPSK", "8PSK", "PAM4", "QAM16", "QAM64", "OOK", "ASK2", "ASK4"}
FREQUENCY = {"CPFSK", "GFSK", "FSK2", "FSK4"}
ANALOG = {"AM-DSB", "AM-SSB", "WBFM", "NBFM"}
MODULATIONS = tuple(sorted(LINEAR | FREQUENCY | ANALOG))
PULSES = ("rrc", "rc", "gauss_rect")
KEYED = {"OOK", "ASK2", "ASK4"}  # amplitude keying: Gaussian-smoothed edges, may ring
BINARY_KEYED = {"OOK", "ASK2"}  # the line codes apply to these
LINE_CODES = ("iid", "runs", "pwm", "manchester")
CHIPS = {"pwm": 3, "manchester": 2}  # chips per bit of the sub-symbol line codes
SOURCES = ("speech", "tone")
# symbols each side of a linear pulse: the RRC/RC tails cut beyond hold < 1 % of the pulse
# energy (0.7 % at roll-off 0.1, 0.01 % at 0.5) but reach 5.7 % of the peak amplitude at
# roll-off 0.1 (1 % at 0.5); kept at 4 as a wider span changes every frame of a seed
SPAN = 4
MARGIN = 24  # samples generated before the frame, room for multipath delays
TAIL = 3  # samples after it, for the interpolator
# new streams go at the end: SeedSequence children do not depend on how many are spawned,
# so the existing streams (and the frames they draw) stay the same
STREAMS = ("modulation", "timing", "multipath", "cfo", "phase_noise", "snr", "awgn",
           "iq_imbalance", "dc_offset", "labels", "line_code", "overshoot", "drift", "chirp")


@dataclass(frozen=True)
class ModGenConfig:
    """Parameter ranges (uniform unless stated) and the impairment families switched on.

    Frequencies are in cycles per sample unless they carry ``_hz``.
    """

    sps_range: tuple[float, float] = (2.0, 16.0)  # log-uniform
    rolloff_range: tuple[float, float] = (0.1, 0.5)
    pulses: tuple[str, ...] = ("rrc", "rc")
    gfsk_bt_range: tuple[float, float] = (0.3, 0.5)
    gfsk_index_range: tuple[float, float] = (0.25, 0.6)
    cpfsk_index_range: tuple[float, float] = (0.5, 1.0)
    fsk_index_range: tuple[float, float] = (0.5, 4.0)  # FSK2/FSK4 of ISM remotes
    ask_depth_range: tuple[float, float] = (0.5, 0.9)  # ASK2: 1 - low/high amplitude
    edge_bt_range: tuple[float, float] = (0.5, 3.0)  # OOK/ASK rise time (Gaussian BT)
    sro_ppm_max: float = 100.0
    cfo_max: float = 0.02
    phase_noise_std_range: tuple[float, float] = (1e-4, 2e-2)  # rad per sample, log-uniform
    max_paths: int = 4
    # samples: the decay constant of the exponential power profile (recorded per frame as
    # pdp_decay; delay_spread records the realised rms spread of the drawn paths)
    delay_spread_range: tuple[float, float] = (0.1, 3.0)
    max_delay: float = 8.0  # samples
    rician_probability: float = 0.5
    rician_k_db_range: tuple[float, float] = (0.0, 10.0)
    doppler_max: float = 2e-3  # cycles per sample
    snr_range: tuple[float, float] = (-20.0, 30.0)
    iq_gain_db_max: float = 1.0
    iq_phase_deg_max: float = 5.0
    dc_max: float = 0.1
    analog_rate_hz_range: tuple[float, float] = (16e3, 256e3)  # AM, NBFM; log-uniform
    wbfm_rate_hz_range: tuple[float, float] = (200e3, 500e3)
    wbfm_deviation_hz_range: tuple[float, float] = (50e3, 75e3)
    nbfm_deviation_hz_range: tuple[float, float] = (2e3, 5e3)
    am_index_range: tuple[float, float] = (0.3, 1.0)
    # ISM transmitter realism (all off by default; family_realistic() switches them on)
    line_codes: tuple[str, ...] = ("iid",)  # OOK/ASK2; drawn uniformly, repeats weight
    run_mean_range: tuple[float, float] = (1.0, 12.0)  # "runs": mean on/off run, symbols
    preamble_probability: float = 0.0  # OOK/ASK2 frames with a constant-carrier burst
    preamble_symbols_range: tuple[int, int] = (8, 32)
    overshoot_range: tuple[float, float] = (0.0, 0.0)  # OOK/ASK edge overshoot (fraction)
    ring_decay_range: tuple[float, float] = (0.1, 1.0)  # ringing time constant, symbols
    ring_freq_range: tuple[float, float] = (0.5, 3.0)  # ringing, cycles per symbol
    drift_max: float = 0.0  # carrier drift, cycles/sample per sample (inside "cfo")
    chirp_probability: float = 0.0  # OOK/ASK2 frames whose carrier is pulled at key-on
    chirp_range: tuple[float, float] = (0.0, 1.5)  # pull at the rising edge, cycles/symbol
    chirp_decay_range: tuple[float, float] = (0.3, 4.0)  # its time constant, symbols
    impairments: tuple[str, ...] = IMPAIRMENTS

    def __post_init__(self):
        unknown = set(self.impairments) - set(IMPAIRMENTS)
        if unknown:
            raise ValueError(f"unknown impairment families {sorted(unknown)}; known: "
                             f"{list(IMPAIRMENTS)}")
        bad = set(self.pulses) - set(PULSES)
        if bad or not self.pulses:
            raise ValueError(f"pulses must be a non-empty subset of {PULSES}, got "
                             f"{self.pulses}")
        for name in ("sps_range", "rolloff_range", "snr_range", "delay_spread_range",
                     "phase_noise_std_range", "analog_rate_hz_range", "wbfm_rate_hz_range"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name} must be (low, high) with low <= high, got "
                                 f"{(low, high)}")
        if self.sps_range[0] < 1.0:
            raise ValueError(f"sps_range must start at >= 1 sample per symbol, got "
                             f"{self.sps_range}")
        if not 0 < self.rolloff_range[0] <= self.rolloff_range[1] <= 1:
            raise ValueError(f"rolloff_range must be (low, high) with 0 < low <= high <= 1, "
                             f"got {self.rolloff_range}")
        if not 1 <= self.max_paths <= 16 or self.max_delay > MARGIN - 3:
            raise ValueError(f"max_paths must be 1..16 and max_delay <= {MARGIN - 3} samples")
        self._check_realism()

    def _check_realism(self) -> None:
        bad = set(self.line_codes) - set(LINE_CODES)
        if bad or not self.line_codes:
            raise ValueError(f"line_codes must be a non-empty tuple of {LINE_CODES}, got "
                             f"{self.line_codes}")
        for name, low_bound in (("run_mean_range", 1.0), ("preamble_symbols_range", 1),
                                ("overshoot_range", 0.0), ("ring_decay_range", 1e-3),
                                ("ring_freq_range", 1e-3)):
            low, high = getattr(self, name)
            if not low_bound <= low <= high:
                raise ValueError(f"{name} must be (low, high) with {low_bound} <= low <= "
                                 f"high, got {(low, high)}")
        if not 0.0 <= self.chirp_probability <= 1.0:
            raise ValueError(f"chirp_probability must lie in [0, 1], got "
                             f"{self.chirp_probability}")
        for name in ("chirp_range", "chirp_decay_range"):
            low, high = getattr(self, name)
            if not 0.0 <= low <= high or (name == "chirp_decay_range" and low <= 0):
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high (decay > "
                                 f"0), got {(low, high)}")
        if not 0.0 <= self.preamble_probability <= 1.0:
            raise ValueError(f"preamble_probability must lie in [0, 1], got "
                             f"{self.preamble_probability}")
        if not 0.0 <= self.drift_max <= 1e-2:
            raise ValueError(f"drift_max is a frequency ramp in cycles/sample per sample and "
                             f"must lie in [0, 1e-2], got {self.drift_max}")

    @property
    def line_coding(self) -> bool:
        """Whether OOK/ASK2 symbols leave the i.i.d. draw (line codes or preambles)."""
        return self.line_codes != ("iid",) or self.preamble_probability > 0

    def without(self, *families: str) -> ModGenConfig:
        """The same ranges with impairment ``families`` switched off."""
        return replace(self, impairments=tuple(f for f in self.impairments
                                               if f not in families))

    def only(self, *families: str) -> ModGenConfig:
        return replace(self, impairments=tuple(families))

    def with_ranges(self, **ranges) -> ModGenConfig:
        return replace(self, **ranges)


CLEAN = ModGenConfig(impairments=())
# line codes of ISM remotes: i.i.d. bits, NRZ runs (twice as likely), PWM, Manchester
ISM_LINE_CODES = ("iid", "runs", "runs", "pwm", "manchester")


def family_realistic(base: ModGenConfig | None = None) -> ModGenConfig:
    """``base`` (default: ``ModGenConfig()``) with the ISM transmitter realism switched on:
    OOK/ASK2 line codes (:data:`ISM_LINE_CODES`), a constant-carrier preamble in 20 % of
    the keyed frames, edge overshoot 0..30 % with ringing, a carrier drift of up to
    +-2e-4 cycles/sample per sample (2.6 % of the sample rate over a 128-sample frame), and
    a keying chirp (frequency pulling at key-on) in half of the OOK/ASK2 frames."""
    return replace(base or ModGenConfig(), line_codes=ISM_LINE_CODES,
                   preamble_probability=0.2, overshoot_range=(0.0, 0.3), drift_max=2e-4,
                   chirp_probability=0.5)


def family_mode_config(target_sps: float = 8.0) -> ModGenConfig:
    """The family model's training frames (``scripts/train_amr.py --mode family``): frames
    as they look after :func:`sigformer.rf.amr.condition_capture` - around ``target_sps``
    samples per symbol (the blind estimate may be off by a few per cent, or by a factor for
    odd line codes), centred carriers (``cfo_max`` 0.01), SNR -5..30 dB, and the ISM
    transmitter realism of :func:`family_realistic`."""
    return family_realistic(ModGenConfig(sps_range=(target_sps / 2, target_sps * 2),
                                         cfo_max=0.01, snr_range=(-5.0, 30.0)))


@dataclass
class Frames:
    """Generated complex frames ``iq (n, L)``, labels indexing ``classes`` and the per-frame
    parameters (one array of length ``n`` per name; NaN where a parameter does not apply)."""

    iq: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    params: dict[str, np.ndarray] = field(default_factory=dict)

    def as_iq_rows(self) -> np.ndarray:
        return np.stack([self.iq.real, self.iq.imag], axis=1).astype(np.float32)


# --- helpers ---------------------------------------------------------------------------------

def _uniform(rng, low_high, n) -> np.ndarray:
    return rng.uniform(low_high[0], low_high[1], n)


def _log_uniform(rng, low_high, n) -> np.ndarray:
    low, high = low_high
    return np.exp(rng.uniform(np.log(low), np.log(high), n))


def _q(x: np.ndarray) -> np.ndarray:
    return 0.5 * erfc(x / math.sqrt(2))


def _phi(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def gauss_rect(tau: np.ndarray, bt: np.ndarray) -> np.ndarray:
    """Unit-width rectangle smoothed by a Gaussian of bandwidth-time ``bt`` (GFSK frequency
    pulse, integral 1)."""
    a = 2 * np.pi * bt / math.sqrt(math.log(2))
    return _q(a * (tau - 0.5)) - _q(a * (tau + 0.5))


def gauss_rect_integral(tau: np.ndarray, bt: np.ndarray) -> np.ndarray:
    """``int_{-inf}^{tau}`` of :func:`gauss_rect` (0 -> 1): the GFSK phase pulse, closed form
    from ``int Q(a x) dx = x Q(a x) - phi(a x) / a``."""
    a = 2 * np.pi * bt / math.sqrt(math.log(2))

    def antiderivative(x):
        return x * _q(a * x) - _phi(a * x) / a

    return antiderivative(tau - 0.5) - antiderivative(tau + 0.5) + 1.0


def rrc_pulse(tau: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Root-raised-cosine impulse response at ``tau`` symbols (peak ``1 + beta (4/pi - 1)``);
    the removable singularities are evaluated a hair away (the pulse is continuous there)."""
    tau = np.where(np.abs(tau) < 1e-7, 1e-7, tau)
    tau = np.where(np.abs(np.abs(4 * beta * tau) - 1) < 1e-7, tau + 1e-6, tau)
    pt = np.pi * tau
    return (np.sin(pt * (1 - beta)) + 4 * beta * tau * np.cos(pt * (1 + beta))) / (
        pt * (1 - (4 * beta * tau) ** 2))


def rc_pulse(tau: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Raised-cosine (Nyquist) pulse at ``tau`` symbols, value 1 at 0."""
    tau = np.where(np.abs(np.abs(2 * beta * tau) - 1) < 1e-7, tau + 1e-6, tau)
    return np.sinc(tau) * np.cos(np.pi * beta * tau) / (1 - (2 * beta * tau) ** 2)


def constellation(name: str) -> np.ndarray:
    """Unit-mean-power points (OOK/ASK: non-negative amplitudes, mean power 1)."""
    if name == "BPSK":
        points = np.array([-1, 1], complex)
    elif name == "QPSK":
        points = np.exp(1j * (np.pi / 4 + np.pi / 2 * np.arange(4)))
    elif name == "8PSK":
        points = np.exp(2j * np.pi * np.arange(8) / 8)
    elif name == "PAM4":
        points = np.array([-3, -1, 1, 3], complex)
    elif name in ("QAM16", "QAM64"):
        m = 4 if name == "QAM16" else 8
        axis = np.arange(m) * 2 - (m - 1)
        points = (axis[:, None] + 1j * axis[None, :]).ravel()
    elif name == "OOK":
        points = np.array([0, 1], complex)
    elif name == "ASK4":
        points = np.array([0, 1, 2, 3], complex)
    else:
        raise ValueError(f"no constellation for {name!r}")
    return points / np.sqrt(np.mean(np.abs(points) ** 2))


# --- modulators ------------------------------------------------------------------------------

def _symbol_grid(rng_mod, rng_timing, cfg: ModGenConfig, n: int, length: int,
                 params: dict) -> tuple[np.ndarray, int]:
    """Sample instants in symbols ``(n, length)`` and the symbols needed to cover them."""
    sps = _log_uniform(rng_mod, cfg.sps_range, n)
    if "timing" in cfg.impairments:
        sro = rng_timing.uniform(-1, 1, n) * cfg.sro_ppm_max * 1e-6
        start = rng_timing.uniform(0, 1, n)
    else:  # symbol-aligned at the first *returned* sample, MARGIN samples into the grid
        sro = np.zeros(n)
        start = np.mod(-MARGIN / sps, 1.0)
    # the fractional symbol time of the first returned sample (the frame starts MARGIN
    # samples into this grid): what "timing offset" means to a user of the frame
    first = np.mod(start + MARGIN * (1 + sro) / sps, 1.0)
    params.update(sps=sps, sro_ppm=sro * 1e6, timing_offset=np.where(first > 1 - 1e-9, 0.0,
                                                                     first))
    k = np.arange(length)
    t = (SPAN + 2 + start)[:, None] + k[None, :] * ((1 + sro) / sps)[:, None]
    n_symbols = int(math.ceil(length * (1 + cfg.sro_ppm_max * 1e-6) / cfg.sps_range[0])) + (
        2 * SPAN + 6)
    return t, n_symbols


def _line_code(rng, index: np.ndarray, t: np.ndarray, on_off: bool, cfg: ModGenConfig,
               params: dict) -> np.ndarray:
    """Binary symbols ``index (n, n_symbols)`` (0 off/low, 1 on/high) re-coded per frame
    with a line code drawn from ``cfg.line_codes``; the i.i.d. draw supplies the data bits.

    ``"runs"``: NRZ with geometric run lengths (on and off means drawn in
    ``run_mean_range``); ``"pwm"``: each bit is 3 chips ``110`` (1) or ``100`` (0), i.e.
    2/3 or 1/3 duty; ``"manchester"``: ``10`` / ``01``. Chips sit on the symbol grid, so
    ``sps`` counts chips (the keying unit a symbol-rate estimate finds). Every array is
    drawn for every frame, so the draws do not depend on which code a frame gets."""
    n, n_symbols = index.shape
    code = np.array([LINE_CODES.index(c) for c in cfg.line_codes])[
        rng.integers(0, len(cfg.line_codes), n)]
    out = index.copy()
    # runs: run r has level (first + r) % 2 and a geometric length of that level's mean
    mean_on, mean_off = (_uniform(rng, cfg.run_mean_range, n) for _ in range(2))
    first = rng.integers(0, 2, n)
    level_of_run = (first[:, None] + np.arange(n_symbols)) % 2
    p = np.where(level_of_run == 1, 1 / mean_on[:, None], 1 / mean_off[:, None])
    ends = np.cumsum(rng.geometric(p), axis=1)  # run r covers [ends[r-1], ends[r])
    marks = np.zeros((n, n_symbols + 1), np.int64)
    rows, cols = np.nonzero(ends < n_symbols)
    marks[rows, ends[rows, cols]] = 1
    runs = (first[:, None] + np.cumsum(marks[:, :n_symbols], axis=1)) % 2
    chip_offset = rng.integers(0, 6, n)  # a random chip phase within the first bit
    rows = code == LINE_CODES.index("runs")
    out[rows] = runs[rows]
    for name, patterns in (("pwm", ((1, 0, 0), (1, 1, 0))), ("manchester", ((0, 1), (1, 0)))):
        rows = code == LINE_CODES.index(name)
        if rows.any():
            c = CHIPS[name]
            bits = index[rows, : n_symbols // c + 2]
            chips = np.asarray(patterns)[bits].reshape(len(bits), -1)
            shift = (chip_offset[rows] % c)[:, None] + np.arange(n_symbols)
            out[rows] = np.take_along_axis(chips, shift, axis=1)
    # a constant-carrier preamble that overlaps the frame
    visible = t[:, MARGIN:len(t[0]) - TAIL]
    first_symbol, last_symbol = np.floor(visible[:, 0]), np.ceil(visible[:, -1])
    has_preamble = rng.random(n) < cfg.preamble_probability
    length = rng.integers(cfg.preamble_symbols_range[0], cfg.preamble_symbols_range[1] + 1, n)
    # start in [first - length + 1, last]: at least one preamble symbol inside the frame
    start = np.floor(first_symbol - length + 1 + rng.random(n) * (last_symbol - first_symbol
                                                                  + length))
    j = np.arange(n_symbols)
    inside = (j >= start[:, None]) & (j < (start + length)[:, None]) & has_preamble[:, None]
    out[inside] = 1
    if on_off:  # a frame with no "on" symbol is receiver noise, which a power gate drops:
        seen = ((j >= np.ceil(visible[:, :1] - 0.5)) & (j <= np.floor(visible[:, -1:] + 0.5)))
        dark = ~np.any((out == 1) & seen, axis=1)  # keep it, inside an "on" run instead
        out[dark] = 1 - out[dark]
    coded_runs = code == LINE_CODES.index("runs")
    params.update(line_code=code.astype(float),
                  run_mean_on=np.where(coded_runs, mean_on, np.nan),
                  run_mean_off=np.where(coded_runs, mean_off, np.nan),
                  preamble_symbols=np.where(has_preamble, length, 0).astype(float),
                  preamble_start=np.where(has_preamble, start - visible[:, 0], np.nan))
    return out


def _ringing(rng, symbols: np.ndarray, tau: np.ndarray, index: np.ndarray, bt: np.ndarray,
             cfg: ModGenConfig, params: dict) -> np.ndarray:
    """Edge overshoot of keyed amplitudes: after each edge (step ``d``, at ``m - 1/2``) a
    damped oscillation ``overshoot d e^{-u/decay} sin(2 pi f u) / peak`` starts once the
    Gaussian edge has risen (two of its widths after the edge's centre); ``peak``
    normalises its first maximum to 1, so an isolated edge overshoots its new level by
    ``overshoot`` (relative to the step). ``tau (n, L, K)`` and ``index`` as in
    :func:`_linear`; returns the ``(n, L)`` term to add."""
    n = len(symbols)
    overshoot = _uniform(rng, cfg.overshoot_range, n)
    decay = _uniform(rng, cfg.ring_decay_range, n)
    freq = _uniform(rng, cfg.ring_freq_range, n)
    params.update(overshoot=overshoot, ring_decay=decay, ring_freq=freq)
    past = slice(0, SPAN + 2)  # offsets -SPAN..1: later edges have not started ringing
    tau, index = tau[..., past], index[..., past]
    step = np.diff(symbols.real, axis=1, prepend=symbols.real[:, :1])
    taken = np.take_along_axis(step, index.reshape(n, -1), axis=1).reshape(tau.shape)
    w = 2 * np.pi * freq
    u_peak = np.arctan(w * decay) / w  # first maximum of e^{-u/decay} sin(w u)
    peak = np.exp(-u_peak / decay) * np.sin(w * u_peak)
    width = 2 * math.sqrt(math.log(2)) / (2 * np.pi * bt)  # two Gaussian sigmas, symbols
    u = np.maximum(tau + (0.5 - width)[:, None, None], 0.0)  # sin(0) = 0 before the ring
    ring = np.exp(u * (-1 / decay)[:, None, None]) * np.sin(u * w[:, None, None])
    return (overshoot / peak)[:, None] * np.einsum("nlk,nlk->nl", taken, ring)


def _keying_chirp(rng, on: np.ndarray, t: np.ndarray, cfg: ModGenConfig, params: dict
                  ) -> np.ndarray:
    """Frequency pulling of a keyed oscillator: at each rising edge the carrier jumps by
    ``chirp`` cycles per symbol and relaxes back as ``exp(-u / decay)`` (``u`` symbols since
    the edge), so each "on" run sweeps in frequency. ``on (n, n_symbols)`` are the keyed
    levels (1 = on), ``t (n, L)`` the sample instants in symbols; returns the ``(n, L)`` unit
    phasor to multiply the envelope by (1 where a frame has no chirp)."""
    n, n_symbols = on.shape
    active = rng.random(n) < cfg.chirp_probability
    pull = _uniform(rng, cfg.chirp_range, n) * np.where(rng.random(n) < 0.5, -1.0, 1.0)
    decay = _uniform(rng, cfg.chirp_decay_range, n)
    params.update(chirp=np.where(active, pull, 0.0), chirp_decay=np.where(active, decay,
                                                                          np.nan))
    rising = (on == 1) & (np.diff(on, axis=1, prepend=0) == 1)
    last_rise = np.maximum.accumulate(np.where(rising, np.arange(n_symbols), -10 ** 6), axis=1)
    symbol = np.clip(np.floor(t + 0.5).astype(np.int64), 0, n_symbols - 1)
    since = t - (np.take_along_axis(last_rise, symbol, axis=1) - 0.5)  # symbols
    step = np.diff(t, axis=1, append=t[:, -1:] * 2 - t[:, -2:-1])  # symbols per sample
    freq = (pull * active)[:, None] * np.exp(-since / decay[:, None]) * step
    return np.exp(2j * np.pi * np.cumsum(freq, axis=1))


def _linear(name: str, rng_mod, t: np.ndarray, n_symbols: int, cfg: ModGenConfig,
            params: dict, streams: dict[str, np.random.Generator]) -> np.ndarray:
    n = len(t)
    points = constellation("OOK" if name == "ASK2" else name)
    index = rng_mod.integers(0, len(points), (n, n_symbols))
    if name in BINARY_KEYED and cfg.line_coding:  # its own stream: other draws unchanged
        index = _line_code(streams["line_code"], index, t, name == "OOK", cfg, params)
    symbols = points[index]
    if name == "ASK2":  # two non-zero levels: 1 - depth and 1
        depth = _uniform(rng_mod, cfg.ask_depth_range, n)
        symbols = np.where(index == 1, 1.0, 1 - depth[:, None]).astype(complex)
        params["ask_depth"] = depth
    pulse_names = ("gauss_rect",) if name in ("OOK", "ASK2", "ASK4") else cfg.pulses
    pulse = rng_mod.integers(0, len(pulse_names), n)
    rolloff = _uniform(rng_mod, cfg.rolloff_range, n)
    bt = _uniform(rng_mod, cfg.edge_bt_range, n)
    base = np.floor(t).astype(np.int64)
    offsets = np.arange(-SPAN, SPAN + 1)
    tau = t[..., None] - (base[..., None] + offsets)  # (n, L, 2 SPAN + 1)
    shape = np.empty_like(tau)
    for code, kind in enumerate(pulse_names):
        rows = pulse == code
        if not rows.any():
            continue
        if kind == "rrc":
            shape[rows] = rrc_pulse(tau[rows], rolloff[rows, None, None])
        elif kind == "rc":
            shape[rows] = rc_pulse(tau[rows], rolloff[rows, None, None])
        else:
            shape[rows] = gauss_rect(tau[rows], bt[rows, None, None])
    taken = np.take_along_axis(symbols, (base[..., None] + offsets).reshape(n, -1), axis=1)
    x = np.einsum("nlk,nlk->nl", taken.reshape(tau.shape), shape)
    if name in KEYED and cfg.overshoot_range[1] > 0:
        x = x + _ringing(streams["overshoot"], symbols, tau, base[..., None] + offsets, bt,
                         cfg, params)
        x = np.maximum(x.real, 0.0).astype(complex)  # an amplitude envelope is >= 0
    if name in BINARY_KEYED and cfg.chirp_probability > 0:
        x = x * _keying_chirp(streams["chirp"], index, t, cfg, params)
    params["pulse"] = np.array([PULSES.index(pulse_names[p]) for p in pulse], float)
    params["rolloff"] = np.where(np.isin(params["pulse"], (0, 1)), rolloff, np.nan)
    params["edge_bt"] = np.where(params["pulse"] == 2, bt, np.nan)
    return x


def _frequency(name: str, rng_mod, t: np.ndarray, n_symbols: int, cfg: ModGenConfig,
               params: dict) -> np.ndarray:
    """Continuous-phase FSK: phase ``pi h sum_m a_m q(t - m)``, ``q`` the phase pulse."""
    n = len(t)
    levels = np.array([-3, -1, 1, 3.0]) if name == "FSK4" else np.array([-1, 1.0])
    a = levels[rng_mod.integers(0, len(levels), (n, n_symbols))]
    if name == "GFSK":
        h, bt = (_uniform(rng_mod, cfg.gfsk_index_range, n),
                 _uniform(rng_mod, cfg.gfsk_bt_range, n))
    else:
        h = _uniform(rng_mod, cfg.cpfsk_index_range if name == "CPFSK" else
                     cfg.fsk_index_range, n)
        bt = np.full(n, np.inf)
    if name == "FSK4":
        h = h / 3  # outer tones at the drawn deviation
    base = np.floor(t).astype(np.int64)
    offsets = np.arange(-SPAN, SPAN + 1)
    tau = t[..., None] - (base[..., None] + offsets)
    if name == "GFSK":
        q = gauss_rect_integral(tau, bt[:, None, None])
    else:
        q = np.clip(tau + 0.5, 0.0, 1.0)
    before = np.concatenate([np.zeros((n, 1)), np.cumsum(a, axis=1)], axis=1)
    settled = np.take_along_axis(before, base - SPAN, axis=1)  # symbols fully passed
    taken = np.take_along_axis(a, (base[..., None] + offsets).reshape(n, -1), axis=1)
    phase = np.pi * h[:, None] * (settled + np.einsum("nlk,nlk->nl", taken.reshape(tau.shape),
                                                      q))
    phase += rng_mod.uniform(-np.pi, np.pi, (n, 1))
    params["mod_index"] = h * (3 if name == "FSK4" else 1)
    params["gfsk_bt"] = np.where(np.isfinite(bt), bt, np.nan)
    return np.exp(1j * phase)


def _audio_components(rng, n: int, cfg: ModGenConfig, params: dict
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sinusoidal components ``(freq_hz, amp, phase)`` each ``(n, K)`` and a syllabic envelope
    rate; speech-like (pitch harmonics weighted by two formants) or one/two tones."""
    k = 12
    source = rng.integers(0, len(SOURCES), n)
    pitch = _uniform(rng, (85.0, 255.0), n)
    harmonics = pitch[:, None] * np.arange(1, k + 1)
    f1, f2 = _uniform(rng, (300, 900), n), _uniform(rng, (900, 2500), n)
    weight = (np.exp(-0.5 * ((harmonics - f1[:, None]) / 150) ** 2)
              + 0.6 * np.exp(-0.5 * ((harmonics - f2[:, None]) / 250) ** 2) + 0.05)
    tones = _uniform(rng, (300.0, 3000.0), (n, k))
    tone_amp = np.zeros((n, k))
    tone_amp[:, 0] = 1.0
    tone_amp[:, 1] = rng.integers(0, 2, n) * rng.uniform(0.3, 1.0, n)
    speech = source == 0
    freq = np.where(speech[:, None], harmonics, tones)
    amp = np.where(speech[:, None], weight * rng.uniform(0.5, 1.0, (n, k)), tone_amp)
    amp /= amp.sum(axis=1, keepdims=True)  # peak of the sum <= 1
    phase = rng.uniform(-np.pi, np.pi, (n, k))
    syllable = np.where(speech, _uniform(rng, (2.0, 8.0), n), 0.0)
    params.update(source=source.astype(float), pitch_hz=np.where(speech, pitch, np.nan))
    return freq, amp, phase, syllable


def _analog(name: str, rng_mod, length: int, cfg: ModGenConfig, params: dict
            ) -> np.ndarray:
    n = params["n"]
    rates = cfg.wbfm_rate_hz_range if name == "WBFM" else cfg.analog_rate_hz_range
    fs = _log_uniform(rng_mod, rates, n)
    freq, amp, phase, syllable = _audio_components(rng_mod, n, cfg, params)
    t = (rng_mod.uniform(0, 1.0, n)[:, None] + np.arange(length)[None, :] / fs[:, None])
    env_phase = rng_mod.uniform(0, 2 * np.pi, n)[:, None]
    envelope = np.where(syllable[:, None] > 0, 0.55 + 0.45 * np.sin(
        2 * np.pi * syllable[:, None] * t + env_phase), 1.0)
    arg = 2 * np.pi * freq[:, :, None] * t[:, None, :] + phase[:, :, None]  # (n, K, L)
    params["sample_rate_hz"] = fs
    if name in ("WBFM", "NBFM"):
        span = cfg.wbfm_deviation_hz_range if name == "WBFM" else cfg.nbfm_deviation_hz_range
        deviation = _uniform(rng_mod, span, n)
        # exact FM of a sum of sinusoids: phase = 2 pi fd sum A_k sin(w_k t + p_k) / w_k
        integral = np.einsum("nk,nkl->nl", amp / (2 * np.pi * freq), np.sin(arg))
        params["deviation_hz"] = deviation
        return np.exp(1j * (2 * np.pi * deviation[:, None] * integral * envelope
                            + rng_mod.uniform(-np.pi, np.pi, (n, 1))))
    if name == "AM-DSB":
        index = _uniform(rng_mod, cfg.am_index_range, n)
        audio = envelope * np.einsum("nk,nkl->nl", amp, np.cos(arg))
        params["am_index"] = index
        return (1 + index[:, None] * audio).astype(complex)
    # AM-SSB: the analytic signal of a sum of sinusoids is exact (no Hilbert filter)
    upper = rng_mod.integers(0, 2, n).astype(bool)
    analytic = envelope * np.einsum("nk,nkl->nl", amp, np.exp(1j * arg))
    params["sideband"] = np.where(upper, 1.0, -1.0)
    return np.where(upper[:, None], analytic, np.conj(analytic))


# --- channel and receiver ------------------------------------------------------------------

DOPPLER_POINTS = 9  # the fewest tap-gain evaluations per frame (the grid of earlier versions)


def doppler_grid(length: int, doppler_max: float, cycles_per_step: float = 0.05
                 ) -> np.ndarray:
    """Sample instants at which the multipath tap gains are evaluated (linear interpolation
    in between): :data:`DOPPLER_POINTS` evenly spaced over the frame, more where the fastest
    Doppler would turn a gain by more than ``cycles_per_step`` cycles between two points
    (linear interpolation of a rotating phasor dips to ``cos(pi * cycles_per_step)`` of
    its magnitude midway: 0.988; a fixed 9-point grid over 1024 samples dipped to 0.69,
    periodic fades with Doppler replicas). At 128 samples the 9 points meet the rule up
    to 3.1e-3 cycles/sample (the default is 2e-3), so those frames are unchanged."""
    steps = math.ceil((length - 1) * doppler_max / cycles_per_step - 1e-9)
    return np.linspace(0, length - 1, max(DOPPLER_POINTS, steps + 1))


def _interpolate(values: np.ndarray, grid: np.ndarray, length: int) -> np.ndarray:
    """Linear interpolation of ``values (..., len(grid))`` to the samples ``0..length-1``."""
    if len(grid) == DOPPLER_POINTS:
        # the short grid as it has always been computed (an interpolation matrix): other
        # arithmetic differs in the last bit, and the frames of a seed must not change
        interp = np.stack([np.interp(np.arange(length), grid, row)
                           for row in np.eye(DOPPLER_POINTS)])
        return (values.reshape(-1, DOPPLER_POINTS) @ interp).reshape(*values.shape[:-1],
                                                                     length)
    k = np.arange(length)
    left = np.clip(np.searchsorted(grid, k, side="right") - 1, 0, len(grid) - 2)
    right = (k - grid[left]) / (grid[left + 1] - grid[left])
    return values[..., left] * (1 - right) + values[..., left + 1] * right


def _multipath(rng, x: np.ndarray, length: int, cfg: ModGenConfig, params: dict
               ) -> np.ndarray:
    """Time-varying multipath on ``x (n, MARGIN + length + TAIL)``; returns ``(n, length)``."""
    n = len(x)
    paths = rng.integers(1, cfg.max_paths + 1, n)
    delays = np.sort(rng.uniform(0, cfg.max_delay, (n, cfg.max_paths)), axis=1)
    delays[:, 0] = 0.0
    spread = _uniform(rng, cfg.delay_spread_range, n)
    power = np.exp(-delays / spread[:, None]) * (np.arange(cfg.max_paths) < paths[:, None])
    power /= power.sum(axis=1, keepdims=True)
    rician = rng.random(n) < cfg.rician_probability
    k_factor = np.where(rician, 10 ** (_uniform(rng, cfg.rician_k_db_range, n) / 10), 0.0)
    doppler = rng.uniform(0, cfg.doppler_max, n)
    # Clarke's model as a sum of 8 sinusoids per path, on a coarse grid, then interpolated
    grid = doppler_grid(length, cfg.doppler_max)
    arrivals = rng.uniform(-np.pi, np.pi, (n, cfg.max_paths, 8))
    phases = rng.uniform(-np.pi, np.pi, (n, cfg.max_paths, 8))
    scatter = np.exp(1j * (2 * np.pi * doppler[:, None, None, None] * np.cos(arrivals)[..., None]
                           * grid + phases[..., None])).sum(axis=2) / math.sqrt(8)
    los_angle = rng.uniform(-np.pi, np.pi, n)
    los = np.exp(1j * (2 * np.pi * doppler[:, None] * np.cos(los_angle)[:, None] * grid
                       + rng.uniform(-np.pi, np.pi, (n, 1))))
    kk = k_factor[:, None]
    scatter[:, 0] = np.sqrt(kk / (kk + 1)) * los + np.sqrt(1 / (kk + 1)) * scatter[:, 0]
    gains = _interpolate(scatter * np.sqrt(power)[..., None], grid, length)  # (n, P, L)
    out = np.zeros((n, length), complex)
    for p in range(cfg.max_paths):
        active = power[:, p] > 0
        if active.any():
            out[active] += gains[active, p] * _delayed(x[active], delays[active, p], length)
    # the realised rms delay spread of the drawn profile (1-4 paths at random delays), and
    # the exponential decay constant it was drawn with (recorded as delay_spread until the
    # fourteenth session, which is not the spread a frame has)
    mean_delay = (power * delays).sum(axis=1)
    rms = np.sqrt(np.maximum((power * delays ** 2).sum(axis=1) - mean_delay ** 2, 0.0))
    params.update(n_paths=paths.astype(float), delay_spread=rms, pdp_decay=spread,
                  rician_k=k_factor, doppler=doppler,
                  max_path_delay=np.max(np.where(power > 0, delays, 0), 1))
    return out


def _delayed(x: np.ndarray, delay: np.ndarray, length: int) -> np.ndarray:
    """``x`` delayed by fractional ``delay`` samples (cubic Lagrange), the last ``length``."""
    position = MARGIN + np.arange(length)[None, :] - delay[:, None]
    base = np.floor(position).astype(np.int64)
    f = (position - base)[..., None]
    offsets = np.arange(-1, 3)
    weights = np.concatenate([-f * (f - 1) * (f - 2) / 6, (f + 1) * (f - 1) * (f - 2) / 2,
                              -(f + 1) * f * (f - 2) / 2, (f + 1) * f * (f - 1) / 6], axis=-1)
    index = (base[..., None] + offsets).reshape(len(x), -1)
    taken = np.take_along_axis(x, index, axis=1).reshape(weights.shape)
    return np.einsum("nlk,nlk->nl", taken, weights)


def _carrier(rng_cfo, rng_pn, x: np.ndarray, cfg: ModGenConfig, params: dict,
             rng_drift=None) -> np.ndarray:
    n, length = x.shape
    k = np.arange(length)
    phase = np.zeros((n, length))
    if "cfo" in cfg.impairments:
        cfo = rng_cfo.uniform(-cfg.cfo_max, cfg.cfo_max, n)
        offset = rng_cfo.uniform(-np.pi, np.pi, n)
        phase += 2 * np.pi * cfo[:, None] * k + offset[:, None]
        params.update(cfo=cfo, phase_offset=offset)
        if cfg.drift_max > 0:  # frequency cfo + drift (k - centre): cfo stays the mean
            drift = rng_drift.uniform(-cfg.drift_max, cfg.drift_max, n)
            centred = k - (length - 1) / 2
            phase += np.pi * drift[:, None] * centred ** 2
            params["drift"] = drift
    if "phase_noise" in cfg.impairments:
        step = _log_uniform(rng_pn, cfg.phase_noise_std_range, n)
        phase += np.cumsum(rng_pn.standard_normal((n, length)) * step[:, None], axis=1)
        params["phase_noise_std"] = step
    return x * np.exp(1j * phase) if phase.any() else x


def _receiver(rng_iq, rng_dc, x: np.ndarray, cfg: ModGenConfig, params: dict) -> np.ndarray:
    n = len(x)
    if "iq_imbalance" in cfg.impairments:
        gain_db = rng_iq.uniform(-cfg.iq_gain_db_max, cfg.iq_gain_db_max, n)
        phase_deg = rng_iq.uniform(-cfg.iq_phase_deg_max, cfg.iq_phase_deg_max, n)
        g = 10 ** (gain_db / 20)
        phi = np.deg2rad(phase_deg)
        mu = (1 + g * np.exp(-1j * phi)) / 2
        nu = (1 - g * np.exp(1j * phi)) / 2
        x = mu[:, None] * x + nu[:, None] * np.conj(x)
        params.update(iq_gain_db=gain_db, iq_phase_deg=phase_deg)
    if "dc_offset" in cfg.impairments:
        dc = rng_dc.uniform(0, cfg.dc_max, n) * np.exp(1j * rng_dc.uniform(-np.pi, np.pi, n))
        x = x + dc[:, None]
        params.update(dc_i=dc.real, dc_q=dc.imag)
    return x


# --- the generator ---------------------------------------------------------------------------

def resolve_classes(classes: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each label -> the modulations it draws: a modulation name stands for itself, a family
    name (``FAMILIES``) for its members."""
    out = {}
    for label in classes:
        if label in FAMILIES:
            out[label] = FAMILIES[label]
        elif label in MODULATIONS:
            out[label] = (label,)
        else:
            raise ValueError(f"unknown class {label!r}; the generator knows the modulations "
                             f"{list(MODULATIONS)} and the families {list(FAMILIES)}")
    return out


def _streams(seed) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(STREAMS, children)}


def modulate_batch(name: str, n: int, length: int, cfg: ModGenConfig,
                   streams: dict[str, np.random.Generator]) -> tuple[np.ndarray, dict]:
    """``n`` frames of modulation ``name`` through the whole chain except the AWGN and the
    receiver: ``(n, length)`` complex, unit mean power, and their parameters."""
    params: dict[str, Any] = {"n": n}
    total = MARGIN + length + TAIL
    rng_mod = streams["modulation"]
    if name in ANALOG:
        x = _analog(name, rng_mod, total, cfg, params)
    else:
        t, n_symbols = _symbol_grid(rng_mod, streams["timing"], cfg, n, total, params)
        if name in LINEAR:
            x = _linear(name, rng_mod, t, n_symbols, cfg, params, streams)
        else:
            x = _frequency(name, rng_mod, t, n_symbols, cfg, params)
    if "multipath" in cfg.impairments:
        x = _multipath(streams["multipath"], x, length, cfg, params)
    else:
        x = x[:, MARGIN:MARGIN + length]
    x = _carrier(streams["cfo"], streams["phase_noise"], x, cfg, params, streams["drift"])
    power = np.mean(np.abs(x) ** 2, axis=1, keepdims=True)
    x = x / np.sqrt(np.maximum(power, 1e-20))
    params.pop("n")
    return x, params


def generate_frames(n: int, *, classes: Sequence[str] = RML2016_CLASSES,
                    config: ModGenConfig | None = None, frame_length: int = 128,
                    snr_db: float | Sequence[float] | np.ndarray | None = None,
                    labels: np.ndarray | None = None, seed=0) -> Frames:
    """``n`` frames with labels drawn uniformly over ``classes`` (or given as ``labels``) and
    SNRs drawn uniformly in ``config.snr_range`` (or the given value / per-frame values).

    Families (``classes=FAMILY_CLASSES``) draw one member modulation per frame, uniformly.
    """
    cfg = config or ModGenConfig()
    if frame_length < 16:
        raise ValueError(f"frame_length must be at least 16, got {frame_length}")
    members = resolve_classes(classes)
    streams = _streams(seed)
    if labels is None:
        labels = streams["labels"].integers(0, len(classes), n)
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    if snr_db is None:
        snr = streams["snr"].uniform(*cfg.snr_range, n)
    else:
        snr = np.broadcast_to(np.asarray(snr_db, float), (n,)).copy()
    modulation = np.empty(n, object)
    for c, label in enumerate(classes):
        rows = np.flatnonzero(labels == c)
        pick = streams["labels"].integers(0, len(members[label]), len(rows))
        for m, name in enumerate(members[label]):
            modulation[rows[pick == m]] = name
    iq = np.empty((n, frame_length), complex)
    params: dict[str, np.ndarray] = {}
    for name in MODULATIONS:
        rows = np.flatnonzero(modulation == name)
        if len(rows) == 0:
            continue
        x, p = modulate_batch(name, len(rows), frame_length, cfg, streams)
        iq[rows] = x
        for key, value in p.items():
            params.setdefault(key, np.full(n, np.nan))[rows] = value
    if "awgn" in cfg.impairments:
        noise_power = 10 ** (-snr / 10)
        noise = (streams["awgn"].standard_normal((n, frame_length))
                 + 1j * streams["awgn"].standard_normal((n, frame_length)))
        iq = iq + noise * np.sqrt(noise_power / 2)[:, None]
    else:
        snr = np.full(n, np.inf)
    iq = _receiver(streams["iq_imbalance"], streams["dc_offset"], iq, cfg, params)
    params["snr_db"] = snr
    params["modulation"] = np.array([MODULATIONS.index(m) for m in modulation], float)
    return Frames(iq.astype(np.complex64), labels, tuple(classes), params)


def condition_grid(n_per_condition: int, n_classes: int, snrs: Iterable[float]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Labels and SNRs for ``n_per_condition`` frames per (class, SNR), class-major (the
    RML2016.10a layout)."""
    snrs = np.asarray(list(snrs), float)
    labels = np.repeat(np.arange(n_classes), len(snrs) * n_per_condition)
    snr = np.tile(np.repeat(snrs, n_per_condition), n_classes)
    return labels, snr


# --- transfer protocols ----------------------------------------------------------------------

NARROW = ModGenConfig(sps_range=(7.5, 8.5), rolloff_range=(0.3, 0.4), pulses=("rrc",),
                      cfo_max=0.002, max_paths=2, max_delay=2.0,
                      delay_spread_range=(0.1, 1.0), doppler_max=2e-4,
                      phase_noise_std_range=(1e-4, 1e-3))


def transfer_protocols(wide: ModGenConfig | None = None, narrow: ModGenConfig = NARROW
                       ) -> dict[str, tuple[ModGenConfig, ModGenConfig]]:
    """Named ``(train_config, test_config)`` pairs that measure transfer: narrow -> wide and
    wide -> narrow parameter ranges, and each impairment family held out of training (train
    without it, test with everything)."""
    wide = wide or ModGenConfig()
    out = {"narrow_to_wide": (narrow, wide), "wide_to_narrow": (wide, narrow)}
    for family in IMPAIRMENTS:
        if family != "awgn" and family in wide.impairments:
            out[f"holdout_{family}"] = (wide.without(family), wide)
    return out


def in_range(params: dict[str, np.ndarray], name: str, low: float, high: float) -> np.ndarray:
    """Boolean mask of the frames whose recorded ``name`` lies in ``[low, high]`` (for
    train-on-a-range / test-outside-it splits of one generated set)."""
    if name not in params:
        raise KeyError(f"no recorded parameter {name!r}; recorded: {sorted(params)}")
    value = params[name]
    return (value >= low) & (value <= high)
