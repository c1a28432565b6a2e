"""OFDM channel simulator: 3GPP TDL channels on a resource grid, pilots, AWGN and LS estimates.

The whole chain of the AdaFortiTran data generator (MATLAB 5G Toolbox in the official release)
in numpy:

* **Grid** (:class:`OFDMConfig`): 120 subcarriers x 14 symbols, 15 kHz spacing, 3.84 MHz
  sampling (FFT 256, normal CP of 18 samples), QPSK pilots on every 3rd subcarrier of OFDM
  symbols 3 and 12 (1-based; ``pilot_symbols=(2, 11)`` here, 0-based) = 40 x 2 pilots. All
  of it is configurable.
* **Channel**: TR 38.901 TDL-A..E power-delay profiles, delays scaled by the RMS delay spread,
  powers normalised so ``E|H|^2 = 1``. Each Rayleigh tap fades by the Zheng-Xiao
  sum-of-sinusoids Clarke/Jakes model, whose ensemble autocorrelation is exactly
  ``J0(2 pi f_D tau)``; the LOS tap of TDL-D/E rotates at ``f_D cos(pi/4)`` with a random phase.
  The true channel of a resource element is the tap gains averaged over the symbol's useful
  part (what a perfect channel estimator returns).
* **ICI** (``ici=True``): the received pilots are computed from the time-varying channel
  within each symbol (the full subcarrier-coupling matrix, from the DFT of every tap's gain
  over the symbol), so the LS estimates carry inter-carrier interference as in the MATLAB
  data. Off by default: the frequency-domain model keeps LMMSE with the true correlation the
  exact linear-MMSE bound.
* **Noise** (``snr_definition``): ``"pilot"`` (default) sets the noise variance per resource
  element to ``10**(-SNR/10)``, i.e. SNR is the mean pilot SNR (unit-power pilots, unit-power
  channel). ``"measured_grid"`` mimics MATLAB's ``awgn(rx_grid, SNR, 'measured')`` on the
  mostly empty grid: the signal power is measured over all 1680 REs of each received grid, so
  the pilot SNR is about ``SNR + 10 log10(1680/80) = SNR + 13.2 dB``.

Every sample keeps its channel statistics (SNR, delay spread, Doppler) and noise variance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .io import DataError, load_npz, save_npz

_OFDM_ARRAYS = ("channels", "ls", "snr_db", "delay_spread_ns", "doppler_hz", "noise_var")

# TR 38.901 Tables 7.7.2-1..5: normalised delays and powers (dB). For TDL-D/E the first entry
# is the LOS (specular) part of the first tap.
TDL_PROFILES: dict[str, dict[str, Any]] = {
    "A": {"los": False, "delays": [
        0.0000, 0.3819, 0.4025, 0.5868, 0.4610, 0.5375, 0.6708, 0.5750, 0.7618, 1.5375, 1.8978,
        2.2242, 2.1718, 2.4942, 2.5119, 3.0582, 4.0810, 4.4579, 4.5695, 4.7966, 5.0066, 5.3043,
        9.6586], "powers_db": [
        -13.4, 0, -2.2, -4, -6, -8.2, -9.9, -10.5, -7.5, -15.9, -6.6, -16.7, -12.4, -15.2, -10.8,
        -11.3, -12.7, -16.2, -18.3, -18.9, -16.6, -19.9, -29.7]},
    "B": {"los": False, "delays": [
        0, 0.1072, 0.2155, 0.2095, 0.2870, 0.2986, 0.3752, 0.5055, 0.3681, 0.3697, 0.5700,
        0.5283, 1.1021, 1.2756, 1.5474, 1.7842, 2.0169, 2.8294, 3.0219, 3.6187, 4.1067, 4.2790,
        4.7834], "powers_db": [
        0, -2.2, -4, -3.2, -9.8, -1.2, -3.4, -5.2, -7.6, -3, -8.9, -9, -4.8, -5.7, -7.5, -1.9,
        -7.6, -12.2, -9.8, -11.4, -14.9, -9.2, -11.3]},
    "C": {"los": False, "delays": [
        0, 0.2099, 0.2219, 0.2329, 0.2176, 0.6366, 0.6448, 0.6560, 0.6584, 0.7935, 0.8213,
        0.9336, 1.2285, 1.3083, 2.1704, 2.7105, 4.2589, 4.6003, 5.4902, 5.6077, 6.3065, 6.6374,
        7.0427, 8.6523], "powers_db": [
        -4.4, -1.2, -3.5, -5.2, -2.5, 0, -2.2, -3.9, -7.4, -7.1, -10.7, -11.1, -5.1, -6.8, -8.7,
        -13.2, -13.9, -13.9, -15.8, -17.1, -16, -15.7, -21.6, -22.8]},
    "D": {"los": True, "delays": [
        0, 0, 0.035, 0.612, 1.363, 1.405, 1.804, 2.596, 1.775, 4.042, 7.937, 9.424, 9.708,
        12.525], "powers_db": [
        -0.2, -13.5, -18.8, -21, -22.8, -17.9, -20.1, -21.9, -22.9, -27.8, -23.6, -24.8, -30,
        -27.7]},
    "E": {"los": True, "delays": [
        0, 0, 0.5133, 0.5440, 0.5630, 0.5440, 0.7112, 1.9092, 1.9293, 1.9589, 2.6426, 3.7136,
        5.4524, 12.0034, 20.6519], "powers_db": [
        -0.03, -22.03, -15.8, -18.1, -19.8, -22.9, -22.4, -18.6, -20.8, -22.6, -22.3, -25.6,
        -20.2, -29.8, -29.2]},
}

SNR_DEFINITIONS = ("pilot", "measured_grid")
LOS_ARRIVAL_ANGLE = np.pi / 4  # Doppler of the LOS tap: f_D cos(pi/4) (our documented choice)

# The reference's training draws and test sweeps (OFDMChannelGenerator, see rf_models.md 1.3)
REFERENCE_TRAIN = {"snr_db": list(range(0, 26, 5)), "delay_spread_ns": list(range(25, 301, 25)),
                   "doppler_hz": list(range(50, 1001, 50))}
REFERENCE_SWEEPS = {
    "snr": {"vary": "snr_db", "values": [0, 5, 10, 15, 20, 25],
            "fixed": {"delay_spread_ns": 200, "doppler_hz": 500}},
    "delay_spread": {"vary": "delay_spread_ns", "values": [50, 100, 150, 200, 250, 300],
                     "fixed": {"snr_db": 10, "doppler_hz": 600}},
    "doppler": {"vary": "doppler_hz", "values": [200, 400, 600, 800, 1000],
                "fixed": {"snr_db": 10, "delay_spread_ns": 100}},
}


@dataclass(frozen=True)
class OFDMConfig:
    """Resource grid and pilot pattern (defaults: the AdaFortiTran paper's dataset)."""

    n_subcarriers: int = 120
    n_symbols: int = 14
    subcarrier_spacing: float = 15e3
    sample_rate: float = 3.84e6
    cp_length: int = 18
    pilot_subcarrier_step: int = 3
    pilot_subcarrier_offset: int = 0
    pilot_symbols: tuple[int, ...] = (2, 11)

    def __post_init__(self):
        object.__setattr__(self, "pilot_symbols", tuple(int(s) for s in self.pilot_symbols))
        problems = []
        if self.n_subcarriers < 2 or self.n_symbols < 1:
            problems.append("the grid needs at least 2 subcarriers and 1 symbol")
        if not 1 <= self.pilot_subcarrier_step <= self.n_subcarriers:
            problems.append(f"pilot_subcarrier_step must be in 1..{self.n_subcarriers}")
        if not 0 <= self.pilot_subcarrier_offset < self.pilot_subcarrier_step:
            problems.append("pilot_subcarrier_offset must be in 0..pilot_subcarrier_step-1")
        if not self.pilot_symbols or any(not 0 <= s < self.n_symbols
                                         for s in self.pilot_symbols):
            problems.append(f"pilot_symbols must be 0-based indices in 0..{self.n_symbols - 1}, "
                            f"got {self.pilot_symbols}")
        if len(set(self.pilot_symbols)) != len(self.pilot_symbols):
            problems.append("pilot_symbols must not repeat")
        if self.fft_size < self.n_subcarriers:
            problems.append(f"sample_rate / subcarrier_spacing = {self.fft_size} is smaller "
                            f"than n_subcarriers = {self.n_subcarriers}")
        if problems:
            raise ValueError("invalid OFDM configuration: " + "; ".join(problems))

    @property
    def fft_size(self) -> int:
        return int(round(self.sample_rate / self.subcarrier_spacing))

    @property
    def symbol_duration(self) -> float:
        return (self.fft_size + self.cp_length) / self.sample_rate

    @property
    def pilot_subcarriers(self) -> np.ndarray:
        return np.arange(self.pilot_subcarrier_offset, self.n_subcarriers,
                         self.pilot_subcarrier_step)

    @property
    def pilot_shape(self) -> tuple[int, int]:
        return len(self.pilot_subcarriers), len(self.pilot_symbols)

    @property
    def grid_shape(self) -> tuple[int, int]:
        return self.n_subcarriers, self.n_symbols

    @property
    def subcarrier_frequencies(self) -> np.ndarray:
        """Baseband frequency of every subcarrier (Hz), centred on DC."""
        return (np.arange(self.n_subcarriers) - self.n_subcarriers // 2) * self.subcarrier_spacing

    def pilot_mask(self) -> np.ndarray:
        mask = np.zeros(self.grid_shape, dtype=bool)
        mask[np.ix_(self.pilot_subcarriers, list(self.pilot_symbols))] = True
        return mask

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pilot_symbols"] = list(self.pilot_symbols)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OFDMConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown OFDM configuration keys {sorted(unknown)}")
        return cls(**d)


# --- fading -------------------------------------------------------------------------------

def tdl_profile(name: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(normalised delays, linear powers summing to 1, has_los)`` of TDL-``name``."""
    key = name.upper().removeprefix("TDL-")
    if key not in TDL_PROFILES:
        raise ValueError(f"unknown TDL profile {name!r}; expected one of "
                         f"{['TDL-' + k for k in TDL_PROFILES]}")
    p = TDL_PROFILES[key]
    powers = 10 ** (np.asarray(p["powers_db"]) / 10)
    return np.asarray(p["delays"], dtype=float), powers / powers.sum(), bool(p["los"])


def _sinc(x: np.ndarray) -> np.ndarray:
    return np.sinc(x / np.pi)  # sin(x)/x


class _SumOfSinusoids:
    """Zheng-Xiao fading for ``(n, taps)`` independent processes, evaluated at any times."""

    def __init__(self, rng: np.random.Generator, n: int, taps: int, doppler_hz: np.ndarray,
                 n_sinusoids: int, los_tap: bool):
        m = n_sinusoids
        theta = rng.uniform(-np.pi, np.pi, (n, taps, 1))
        self.phi = rng.uniform(-np.pi, np.pi, (n, taps, m))
        self.weight = np.exp(1j * rng.uniform(-np.pi, np.pi, (n, taps, m))) * np.sqrt(2 / m)
        alpha = (2 * np.pi * np.arange(1, m + 1) - np.pi + theta) / (4 * m)
        self.omega = 2 * np.pi * doppler_hz[:, None, None] * np.cos(alpha)
        self.los_tap = los_tap
        if los_tap:  # the specular tap: one rotating phasor of unit power
            self.omega[:, 0, :] = 2 * np.pi * doppler_hz[:, None] * np.cos(LOS_ARRIVAL_ANGLE)
            self.phi[:, 0, :] = 0
            self.los_phase = rng.uniform(-np.pi, np.pi, n)

    def averaged(self, t_start: np.ndarray, duration: float) -> np.ndarray:
        """Gains averaged over ``[t, t + duration)`` for each start time: ``(n, taps, T)``."""
        t_mid = t_start + duration / 2
        phase = self.omega[..., None] * t_mid + self.phi[..., None]
        shrink = _sinc(self.omega * duration / 2)[..., None]
        out = (self.weight[..., None] * np.cos(phase) * shrink).sum(axis=2)
        if not self.los_tap:
            return out
        los = np.exp(1j * (phase[:, 0, 0] + self.los_phase[:, None])) * shrink[:, 0, 0]
        out[:, 0] = los
        return out

    def sampled(self, times: np.ndarray) -> np.ndarray:
        """Instantaneous gains at ``times`` (T,): ``(n, taps, T)``."""
        phase = self.omega[..., None] * times + self.phi[..., None]
        out = (self.weight[..., None] * np.cos(phase)).sum(axis=2)
        if self.los_tap:
            out[:, 0] = np.exp(1j * (phase[:, 0, 0] + self.los_phase[:, None]))
        return out


# --- dataset ------------------------------------------------------------------------------

@dataclass
class OFDMDataset:
    """True channels, LS pilot estimates and the channel statistics of every sample.

    ``channels``: ``(n, n_subcarriers, n_symbols)`` complex64; ``ls``: LS estimates at the
    pilots ``(n, n_pilot_subcarriers, n_pilot_symbols)`` complex64 (subcarrier-major, as the
    reference loader orders them); ``snr_db``, ``delay_spread_ns``, ``doppler_hz``,
    ``noise_var``: ``(n,)``.
    """

    channels: np.ndarray
    ls: np.ndarray
    snr_db: np.ndarray
    delay_spread_ns: np.ndarray
    doppler_hz: np.ndarray
    noise_var: np.ndarray
    config: OFDMConfig = field(default_factory=OFDMConfig)
    profile: str = "TDL-A"
    snr_definition: str = "pilot"

    def __post_init__(self):
        n = len(self.channels)
        if self.channels.shape[1:] != self.config.grid_shape:
            raise DataError(f"channels have grid {self.channels.shape[1:]}, the OFDM config "
                            f"expects {self.config.grid_shape}")
        if self.ls.shape != (n, *self.config.pilot_shape):
            raise DataError(f"LS pilots have shape {self.ls.shape}, expected "
                            f"{(n, *self.config.pilot_shape)} for this pilot pattern")
        for name in ("snr_db", "delay_spread_ns", "doppler_hz", "noise_var"):
            value = np.asarray(getattr(self, name), dtype=np.float32).reshape(-1)
            if len(value) != n:
                raise DataError(f"{name} has {len(value)} entries for {n} samples")
            setattr(self, name, value)
        for name in ("channels", "ls"):
            arr = getattr(self, name)
            if not np.iscomplexobj(arr):
                raise DataError(f"{name} must be complex, got {arr.dtype}")
            if not np.isfinite(arr).all():
                raise DataError(f"{name} holds NaN or Inf values "
                                f"({int((~np.isfinite(arr)).sum())} entries)")

    def __len__(self) -> int:
        return len(self.channels)

    def statistics(self) -> np.ndarray:
        """``(n, 3)`` float32: SNR (dB), delay spread (ns), Doppler (Hz) - the model priors."""
        return np.stack([self.snr_db, self.delay_spread_ns, self.doppler_hz], 1).astype(np.float32)

    def subset(self, index) -> OFDMDataset:
        return OFDMDataset(self.channels[index], self.ls[index], self.snr_db[index],
                           self.delay_spread_ns[index], self.doppler_hz[index],
                           self.noise_var[index], self.config, self.profile,
                           self.snr_definition)

    @staticmethod
    def concatenate(parts: list[OFDMDataset]) -> OFDMDataset:
        first = parts[0]
        if any(p.config != first.config for p in parts):
            raise DataError("cannot concatenate OFDM datasets with different grids or pilots")
        cat = [np.concatenate([getattr(p, k) for p in parts]) for k in
               ("channels", "ls", "snr_db", "delay_spread_ns", "doppler_hz", "noise_var")]
        profiles = {p.profile for p in parts}
        return OFDMDataset(*cat, config=first.config, profile="+".join(sorted(profiles)),
                           snr_definition=first.snr_definition)

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` (no pickle): arrays plus the grid/pilot config as JSON."""
        meta = {"config": self.config.to_dict(), "profile": self.profile,
                "snr_definition": self.snr_definition}
        return save_npz(path, {k: getattr(self, k) for k in _OFDM_ARRAYS}, meta)

    @classmethod
    def load(cls, path: str | Path) -> OFDMDataset:
        arrays, meta = load_npz(path, set(_OFDM_ARRAYS), "OFDM dataset")
        return cls(**arrays, config=OFDMConfig.from_dict(meta["config"]),
                   profile=meta["profile"], snr_definition=meta["snr_definition"])


def _draw(rng: np.random.Generator, value, n: int, name: str) -> np.ndarray:
    """A scalar, or a list of values to draw from uniformly (the reference's discrete sets)."""
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    if arr.ndim != 1 or len(arr) == 0 or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be a finite number or a list of numbers, got {value!r}")
    return np.full(n, arr[0]) if len(arr) == 1 else rng.choice(arr, n)


def qpsk(rng: np.random.Generator, shape) -> np.ndarray:
    """Unit-power QPSK symbols (``pskmod(., 4, pi/4)``)."""
    return np.exp(1j * (np.pi / 4 + np.pi / 2 * rng.integers(0, 4, shape)))


def simulate_ofdm(n: int, *, snr_db=REFERENCE_TRAIN["snr_db"],
                  delay_spread_ns=REFERENCE_TRAIN["delay_spread_ns"],
                  doppler_hz=REFERENCE_TRAIN["doppler_hz"], profile: str = "A",
                  config: OFDMConfig | None = None, seed: int | np.random.SeedSequence | None = 0,
                  ici: bool = False,
                  snr_definition: str = "pilot", n_sinusoids: int = 16,
                  data_symbols: bool = False, chunk: int = 512,
                  engine: str = "fast") -> OFDMDataset:
    """Simulate ``n`` slots: true channels, noisy LS pilot estimates and their statistics.

    ``snr_db``, ``delay_spread_ns`` and ``doppler_hz`` are each a number or a list to draw
    from uniformly and independently per sample (default: the reference's training sets).
    ``data_symbols=True`` fills the non-pilot REs with random QPSK (it only matters with
    ``ici=True``, where data REs leak into the pilots; the reference leaves them empty).
    ``engine``: ``"fast"`` (default; float32/complex64 matmul kernels, the ICI coupling from a
    Taylor expansion of every tap's gain over the symbol) or ``"reference"`` (the direct
    float64 formulas). Both draw the same random numbers in the same order, so a seed gives
    the same slots within float32 rounding. ``chunk`` (slots simulated at once: memory) is
    part of the draw order: the same seed with another ``chunk`` gives other slots of the
    same statistics, so keep it (the default) when a set must be reproduced.
    """
    config = config or OFDMConfig()
    if engine not in SIMULATION_ENGINES:
        raise ValueError(f"engine must be one of {tuple(SIMULATION_ENGINES)}, got {engine!r}")
    simulate_chunk = SIMULATION_ENGINES[engine]
    if snr_definition not in SNR_DEFINITIONS:
        raise ValueError(f"snr_definition must be one of {SNR_DEFINITIONS}, got "
                         f"{snr_definition!r}")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    rng = np.random.default_rng(seed)
    snr = _draw(rng, snr_db, n, "snr_db")
    ds = _draw(rng, delay_spread_ns, n, "delay_spread_ns")
    fd = _draw(rng, doppler_hz, n, "doppler_hz")
    if (ds < 0).any() or (fd < 0).any():
        raise ValueError("delay spread and Doppler must be non-negative")
    delays, powers, los = tdl_profile(profile)
    channels = np.empty((n, *config.grid_shape), np.complex64)
    ls = np.empty((n, *config.pilot_shape), np.complex64)
    noise_var = np.empty(n, np.float64)
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        h, y_pilots, x_pilots, rx_power = simulate_chunk(
            rng, config, ds[sl], fd[sl], delays, powers, los, n_sinusoids, ici, data_symbols)
        if snr_definition == "pilot":
            var = 10 ** (-snr[sl] / 10)
        else:
            var = rx_power / 10 ** (snr[sl] / 10)
        noise = (rng.standard_normal(y_pilots.shape) + 1j * rng.standard_normal(
            y_pilots.shape)) * np.sqrt(var / 2)[:, None, None]
        channels[sl] = h
        ls[sl] = (y_pilots + noise) / x_pilots
        noise_var[sl] = var
    return OFDMDataset(channels, ls, snr, ds, fd, noise_var, config,
                       f"TDL-{profile.upper().removeprefix('TDL-')}", snr_definition)


def _simulate_chunk(rng, config: OFDMConfig, ds_ns, fd, delays, powers, los, n_sinusoids, ici,
                    data_symbols):
    n, taps = len(ds_ns), len(delays)
    tau = delays[None, :] * ds_ns[:, None] * 1e-9  # (n, taps) seconds
    fading = _SumOfSinusoids(rng, n, taps, fd, n_sinusoids, los)
    t_sym = config.symbol_duration
    useful = config.fft_size / config.sample_rate
    starts = np.arange(config.n_symbols) * t_sym + config.cp_length / config.sample_rate
    gains = fading.averaged(starts, useful) * np.sqrt(powers)[None, :, None]  # (n, taps, L)
    steer = np.exp(-2j * np.pi * tau[:, :, None] * config.subcarrier_frequencies)  # (n,taps,K)
    h = np.einsum("npk,npl->nkl", steer, gains)
    pk, ps = config.pilot_subcarriers, list(config.pilot_symbols)
    x_grid = qpsk(rng, (n, *config.grid_shape)) if data_symbols else None
    x_pilots = qpsk(rng, (n, *config.pilot_shape))
    if x_grid is not None:
        x_grid[:, pk[:, None], ps] = x_pilots
    if ici:
        y_pilots = _received_with_ici(config, fading, powers, steer, starts, x_pilots, x_grid)
    else:
        y_pilots = h[:, pk[:, None], ps] * x_pilots
    return h, y_pilots, x_pilots, _received_power(h, y_pilots, x_grid)


def _received_with_ici(config: OFDMConfig, fading: _SumOfSinusoids, powers, steer, starts,
                       x_pilots, x_grid):
    """Pilot observations from the channel that varies within each symbol.

    ``Y[k] = sum_p sqrt(P_p) sum_m G_p[k-m] e^{-j2pi f_m tau_p} X[m]`` with ``G_p`` the DFT of
    tap p's gain over the symbol's useful samples (``G_p[0]`` is the symbol average).
    """
    n_fft = config.fft_size
    pk = config.pilot_subcarriers
    sample_times = np.arange(n_fft) / config.sample_rate
    out = np.empty(x_pilots.shape, np.complex128)
    for j, sym in enumerate(config.pilot_symbols):
        g = fading.sampled(starts[sym] + sample_times) * np.sqrt(powers)[None, :, None]
        spectrum = np.fft.fft(g, axis=-1) / n_fft  # (n, taps, N): G_p[q]
        if x_grid is None:
            cols, x = pk, x_pilots[:, :, j]
        else:
            cols, x = np.arange(config.n_subcarriers), x_grid[:, :, sym]
        coupling = spectrum[:, :, (pk[:, None] - cols[None, :]) % n_fft]  # (n, taps, Kp, M)
        weighted = steer[:, :, cols] * x[:, None, :]  # (n, taps, M)
        out[:, :, j] = np.einsum("npkm,npm->nk", coupling, weighted)
    return out


# --- fast engine: the same slots from float32/complex64 matmul kernels ------------------------

TAYLOR_TOLERANCE = 1e-9  # truncation error of the within-symbol gain expansion
MAX_TAYLOR_ARGUMENT = 4.0  # beyond this (f_D ~ 19 kHz at 15 kHz spacing) the direct path runs


def _fast_averaged_gains(fading: _SumOfSinusoids, t_start: np.ndarray, duration: float
                         ) -> np.ndarray:
    """:meth:`_SumOfSinusoids.averaged` in float32: ``(n, taps, T)`` complex64."""
    t_mid = (t_start + duration / 2).astype(np.float32)
    omega = fading.omega.astype(np.float32)
    phase = omega[..., None] * t_mid + fading.phi.astype(np.float32)[..., None]  # (n,p,M,T)
    amplitude = fading.weight * _sinc(fading.omega * duration / 2)  # (n, p, M)
    cosine = np.cos(phase)
    out = np.empty(phase.shape[:2] + phase.shape[3:], np.complex64)
    out.real = np.einsum("npm,npmt->npt", amplitude.real.astype(np.float32), cosine)
    out.imag = np.einsum("npm,npmt->npt", amplitude.imag.astype(np.float32), cosine)
    if fading.los_tap:
        shrink = _sinc(fading.omega[:, 0, 0] * duration / 2)
        los_phase = (fading.omega[:, 0, 0, None] * (t_start + duration / 2)
                     + fading.los_phase[:, None])
        out[:, 0] = np.exp(1j * los_phase) * shrink[:, None]
    return out


def _received_power(h: np.ndarray, y_pilots: np.ndarray, x_grid: np.ndarray | None
                    ) -> np.ndarray:
    """Received-grid power for the 'measured' SNR definition (empty REs count as zeros)."""
    if x_grid is None:
        return (np.abs(y_pilots) ** 2).sum(axis=(1, 2)) / h[0].size
    return (np.abs(h * x_grid) ** 2).mean(axis=(1, 2))


def _phasors(angle: np.ndarray) -> np.ndarray:
    """``exp(1j * angle)`` as complex64 from float32 cos/sin (faster than a complex exp)."""
    angle = angle.astype(np.float32, copy=False)
    out = np.empty(angle.shape, np.complex64)
    out.real = np.cos(angle)
    out.imag = np.sin(angle)
    return out


def _simulate_chunk_fast(rng, config: OFDMConfig, ds_ns, fd, delays, powers, los, n_sinusoids,
                         ici, data_symbols):
    """:func:`_simulate_chunk` with complex64 matmuls (same random draws, same order)."""
    n, taps = len(ds_ns), len(delays)
    tau = delays[None, :] * ds_ns[:, None] * 1e-9
    fading = _SumOfSinusoids(rng, n, taps, fd, n_sinusoids, los)
    useful = config.fft_size / config.sample_rate
    starts = np.arange(config.n_symbols) * config.symbol_duration + (
        config.cp_length / config.sample_rate)
    gains = _fast_averaged_gains(fading, starts, useful)
    gains *= np.sqrt(powers).astype(np.float32)[None, :, None]
    steer = _phasors(-2 * np.pi * tau.astype(np.float32)[:, :, None]
                     * config.subcarrier_frequencies.astype(np.float32))  # (n, taps, K)
    h = np.matmul(steer.transpose(0, 2, 1), gains)  # (n, K, L)
    pk, ps = config.pilot_subcarriers, list(config.pilot_symbols)
    x_grid = qpsk(rng, (n, *config.grid_shape)) if data_symbols else None
    x_pilots = qpsk(rng, (n, *config.pilot_shape))
    if x_grid is not None:
        x_grid[:, pk[:, None], ps] = x_pilots
    if ici and fading.omega.max() * useful / 2 > MAX_TAYLOR_ARGUMENT:
        y_pilots = _received_with_ici(config, fading, powers, steer.astype(np.complex128),
                                      starts, x_pilots, x_grid)
    elif ici:
        y_pilots = _fast_received_with_ici(config, fading, powers, steer, starts, x_pilots,
                                           x_grid)
    else:
        y_pilots = h[:, pk[:, None], ps] * x_pilots
    return h, y_pilots, x_pilots, _received_power(h, y_pilots, x_grid)


def _taylor_order(max_argument: float) -> int:
    """Terms of ``exp(i x u)``, ``|u| <= 1``, needed for a truncation error below tolerance."""
    order, term = 1, max_argument
    while term > TAYLOR_TOLERANCE:
        order += 1
        term *= max_argument / order
    return order


def _taylor_coupling(n_fft: int, order: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(order, len(cols), len(rows))``: ``W_j[(k - m) mod N]``, the DFT (over the symbol's
    N samples, divided by N) of ``u^j`` with ``u`` the sample time scaled to [-1, 1]."""
    u = np.linspace(-1.0, 1.0, n_fft)
    spectra = np.fft.fft(u[None, :] ** np.arange(order)[:, None], axis=1) / n_fft
    return spectra[:, (rows[None, :] - cols[:, None]) % n_fft].astype(np.complex64)


def _fast_received_with_ici(config: OFDMConfig, fading: _SumOfSinusoids, powers, steer, starts,
                            x_pilots, x_grid):
    """:func:`_received_with_ici` without sampling the gains: over one symbol each tap's gain
    is a short Taylor series in time, ``g_p(t_mid + u T/2) = sum_j C_pj u^j``, so its DFT is
    ``sum_j C_pj W_j`` and the pilots are ``Y[k] = sum_j sum_m (sum_p C_pj s_pm) X_m W_j[k-m]``.
    """
    n_fft = config.fft_size
    half = (n_fft - 1) / (2 * config.sample_rate)  # half the span of the sample times
    arguments = fading.omega * half  # (n, p, M): phase change from the symbol centre to its end
    order = _taylor_order(float(arguments.max()))
    j = np.arange(order)
    factorial = np.cumprod(np.maximum(j, 1)).astype(float)
    pk = config.pilot_subcarriers
    out = np.empty(x_pilots.shape, np.complex64)
    for i, sym in enumerate(config.pilot_symbols):
        centre = fading.omega * (starts[sym] + half) + fading.phi  # (n, p, M)
        # d^j/dx^j cos(a + x) = cos(a + j pi / 2)
        series = np.cos(centre[..., None] + j * np.pi / 2) * arguments[..., None] ** j / factorial
        coeffs = np.einsum("npm,npmj->npj", fading.weight, series)
        if fading.los_tap:
            los_centre = centre[:, 0, 0] + fading.los_phase
            coeffs[:, 0] = (np.exp(1j * los_centre)[:, None]
                            * (1j * arguments[:, 0, 0, None]) ** j / factorial)
        coeffs *= np.sqrt(powers)[None, :, None]
        if x_grid is None:
            cols, x = pk, x_pilots[:, :, i]
        else:
            cols, x = np.arange(config.n_subcarriers), x_grid[:, :, sym]
        mixed = np.matmul(coeffs.astype(np.complex64).transpose(0, 2, 1), steer[:, :, cols])
        mixed *= x.astype(np.complex64)[:, None, :]  # (n, order, M)
        coupling = _taylor_coupling(n_fft, order, pk, cols)  # (order, M, Kp)
        out[:, :, i] = mixed.reshape(len(x), -1) @ coupling.reshape(-1, len(pk))
    return out


SIMULATION_ENGINES = {"fast": _simulate_chunk_fast, "reference": _simulate_chunk}


def simulate_sweeps(n_per_point: int, *, sweeps: dict | None = None, seed: int = 1,
                    **kwargs) -> dict[str, list[tuple[float, OFDMDataset]]]:
    """Test sets that vary one statistic at a time (default: the reference's three sweeps)."""
    sweeps = sweeps or REFERENCE_SWEEPS
    out: dict[str, list[tuple[float, OFDMDataset]]] = {}
    for i, (name, spec) in enumerate(sweeps.items()):
        out[name] = []
        for j, value in enumerate(spec["values"]):
            params = dict(spec["fixed"], **{spec["vary"]: value})
            out[name].append((float(value), simulate_ofdm(
                n_per_point, seed=seed * 1_000_003 + 1000 * i + j, **params, **kwargs)))
    return out


def rms_delay_spread(delays_s: np.ndarray, powers: np.ndarray) -> float:
    """RMS delay spread of a power-delay profile (seconds)."""
    p = np.asarray(powers, float) / np.sum(powers)
    mean = np.sum(p * delays_s)
    return float(np.sqrt(np.sum(p * (np.asarray(delays_s) - mean) ** 2)))


# --- on-the-fly training data ---------------------------------------------------------------

class OFDMSlotStream(IterableDataset):
    """Fresh simulated slots for every training step, one batch per item.

    Batch ``s`` of epoch ``e`` is ``simulate_ofdm(batch_size, seed=(seed, e, s), **kwargs)``:
    the data depend only on the seed, the epoch and the step, never on how many DataLoader
    workers simulate them (worker ``w`` of ``W`` makes steps ``w, w + W, ...``, which the
    DataLoader returns in step order). Items are ``(ls, channels, statistics)`` with complex
    arrays as real ``(..., 2)`` float32 tensors (``torch.view_as_complex`` restores them).

    Use with ``DataLoader(stream, batch_size=None, num_workers=k)``; call
    :meth:`set_epoch` before each epoch for new slots.
    """

    def __init__(self, batch_size: int = 64, steps_per_epoch: int = 1000, *, seed: int = 0,
                 **simulate_kwargs):
        super().__init__()
        if batch_size < 1 or steps_per_epoch < 1:
            raise ValueError(f"batch_size and steps_per_epoch must be positive, got "
                             f"{batch_size} and {steps_per_epoch}")
        if "n" in simulate_kwargs:
            raise ValueError("the stream sets n itself (batch_size slots per step)")
        self.batch_size, self.steps_per_epoch, self.seed = batch_size, steps_per_epoch, seed
        self.simulate_kwargs = simulate_kwargs
        self.epoch = 0
        probe = simulate_ofdm(1, seed=0, **simulate_kwargs)  # bad arguments fail here
        self.config = probe.config

    def __len__(self) -> int:
        return self.steps_per_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def batch(self, step: int, epoch: int | None = None) -> OFDMDataset:
        """The slots of one step, as a dataset (what the iterator yields as tensors)."""
        epoch = self.epoch if epoch is None else epoch
        seed = np.random.SeedSequence([self.seed, epoch, step])
        return simulate_ofdm(self.batch_size, seed=seed, **self.simulate_kwargs)

    def fixed_set(self, n: int, stream: int = 1) -> OFDMDataset:
        """``n`` slots of the same mixture from an independent seed (validation, baselines)."""
        seed = np.random.SeedSequence([self.seed, 2**31 - stream])
        return simulate_ofdm(n, seed=seed, **self.simulate_kwargs)

    def __iter__(self):
        return self.iter_steps(0)

    def iter_steps(self, first_step: int = 0):
        """The current epoch's batches from ``first_step`` on, as tensors; worker ``w`` of
        ``W`` makes ``first_step + w, first_step + w + W, ...``."""
        info = get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(first_step + worker, self.steps_per_epoch, n_workers):
            data = self.batch(step)
            yield (torch.view_as_real(torch.from_numpy(data.ls)),
                   torch.view_as_real(torch.from_numpy(data.channels)),
                   torch.from_numpy(data.statistics()))

    def starting_at(self, first_step: int) -> IterableDataset:
        """A view of the current epoch from batch ``first_step`` on (a resumed epoch starts
        there instead of simulating the batches it already trained)."""
        if not 0 <= first_step <= self.steps_per_epoch:
            raise ValueError(f"first_step must be within 0..{self.steps_per_epoch}, "
                             f"got {first_step}")
        return _StreamFrom(self, first_step)


class _StreamFrom(IterableDataset):
    """:meth:`OFDMSlotStream.starting_at`: the stream's epoch from one batch on."""

    def __init__(self, stream: OFDMSlotStream, first_step: int):
        super().__init__()
        self.stream, self.first_step = stream, first_step

    def __iter__(self):
        return self.stream.iter_steps(self.first_step)
