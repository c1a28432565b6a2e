"""Classical OFDM channel estimators and the error measures they are judged by.

* :func:`ls_interpolate` - LS at the pilots, linear interpolation with extrapolation first
  along time then along frequency (the authors' ``bilinear_interp.m`` with ``interp1``).
* :class:`GenieLMMSE` - LMMSE with the true correlation of each sample's condition
  (profile, delay spread, Doppler, noise variance). For Gaussian (Rayleigh) channels it is the
  MMSE estimator, so it bounds every estimator on average.
* :class:`SampleLMMSE` - data-driven LMMSE from sample correlations of (true channel, noisy LS)
  over a training set, as in the authors' ``lmmse.m``.

All estimators take an :class:`~sigformer.data.ofdm.OFDMDataset` and return ``(n, K, L)``
complex estimates.
"""

from __future__ import annotations

import numpy as np
from scipy.special import j0

from ..data.ofdm import (
    LOS_ARRIVAL_ANGLE,
    TDL_PROFILES,
    OFDMConfig,
    OFDMDataset,
    tdl_profile,
)


def _estimate_and_truth(estimate, truth) -> tuple[np.ndarray, np.ndarray]:
    """Both as numpy (torch tensors too), the same shape and finite: broadcasting an
    ``(n, 1, K, L)`` estimate against ``(n, K, L)`` truth compared every slot with every
    other slot and gave a plausible, wrong number."""
    est, ref = (np.asarray(x.detach().cpu()) if hasattr(x, "detach") else np.asarray(x)
                for x in (estimate, truth))
    if est.shape != ref.shape:
        raise ValueError(f"estimate {est.shape} and truth {ref.shape} must have the same shape "
                         f"(slots, subcarriers, symbols)")
    for name, x in (("estimate", est), ("truth", ref)):
        if not np.isfinite(x).all():
            raise ValueError(f"the {name} holds NaN/Inf values")
    return est, ref


def nmse_db(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Normalised MSE in dB over a set: ``10 log10(sum|H_hat - H|^2 / sum|H|^2)``."""
    est, ref = _estimate_and_truth(estimate, truth)
    power = np.sum(np.abs(ref) ** 2)
    if power == 0:
        raise ValueError("the true channel is all zeros: its normalised MSE is undefined")
    return float(10 * np.log10(np.sum(np.abs(est - ref) ** 2) / power))


def mse_db(estimate: np.ndarray, truth: np.ndarray) -> float:
    """The reference's metric: ``10 log10(mean |H_hat - H|^2)`` per complex resource element."""
    est, ref = _estimate_and_truth(estimate, truth)
    return float(10 * np.log10(np.mean(np.abs(est - ref) ** 2)))


def linear_interp_matrix(known: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(len(targets), len(known))`` weights of linear interpolation with linear extrapolation
    beyond the ends (``interp1(..., 'linear', 'extrap')``); one known point gives a constant."""
    known = np.asarray(known, float)
    targets = np.asarray(targets, float)
    w = np.zeros((len(targets), len(known)))
    if len(known) == 1:
        w[:, 0] = 1.0
        return w
    right = np.clip(np.searchsorted(known, targets, side="right"), 1, len(known) - 1)
    left = right - 1
    frac = (targets - known[left]) / (known[right] - known[left])
    rows = np.arange(len(targets))
    w[rows, left] = 1 - frac
    w[rows, right] += frac
    return w


def ls_interpolate(ls: np.ndarray, config: OFDMConfig) -> np.ndarray:
    """LS pilots ``(n, Np_sc, Np_sym)`` -> full grid ``(n, K, L)`` by linear interpolation in
    time then frequency (separable, so the order does not change the result)."""
    w_f = linear_interp_matrix(config.pilot_subcarriers, np.arange(config.n_subcarriers))
    w_t = linear_interp_matrix(config.pilot_symbols, np.arange(config.n_symbols))
    return np.einsum("kp,npq,lq->nkl", w_f, ls, w_t).astype(np.complex64)


class LSInterpolation:
    """LS + bilinear interpolation as an estimator object (no training)."""

    name = "LS"

    def fit(self, dataset: OFDMDataset | None = None) -> LSInterpolation:
        return self

    def predict(self, dataset: OFDMDataset) -> np.ndarray:
        return ls_interpolate(dataset.ls, dataset.config)


def _pilot_index(config: OFDMConfig) -> np.ndarray:
    """Flat (subcarrier-major) grid indices of the pilots, in the order of ``dataset.ls``."""
    k, s = np.meshgrid(config.pilot_subcarriers, config.pilot_symbols, indexing="ij")
    return (k * config.n_symbols + s).ravel()


def time_correlation(config: OFDMConfig, doppler_hz: float, los: bool = False,
                     n_points: int = 32) -> np.ndarray:
    """``(L, L)`` correlation of symbol-averaged fading gains (Jakes ``J0``; a pure phase
    rotation for the LOS tap), by midpoint quadrature over each symbol's useful part."""
    useful = config.fft_size / config.sample_rate
    starts = np.arange(config.n_symbols) * config.symbol_duration + (
        config.cp_length / config.sample_rate)
    offsets = (np.arange(n_points) + 0.5) / n_points * useful
    t = starts[:, None] + offsets[None, :]  # (L, Q)
    lag = t[:, None, :, None] - t[None, :, None, :]  # (L, L, Q, Q)
    if los:
        kernel = np.exp(2j * np.pi * doppler_hz * np.cos(LOS_ARRIVAL_ANGLE) * lag)
    else:
        kernel = j0(2 * np.pi * doppler_hz * lag)
    return kernel.mean(axis=(2, 3))


def channel_correlation(config: OFDMConfig, profile: str, delay_spread_ns: float,
                        doppler_hz: float) -> np.ndarray:
    """True ``(K*L, K*L)`` correlation ``E[h h^H]`` of the vectorised (subcarrier-major) grid
    under the simulator's TDL model: ``sum_p P_p r_f,p (x) r_t,p``."""
    delays, powers, los = tdl_profile(profile)
    tau = delays * delay_spread_ns * 1e-9
    df = config.subcarrier_frequencies[:, None] - config.subcarrier_frequencies[None, :]
    steer = np.exp(-2j * np.pi * df[None] * tau[:, None, None])  # (P, K, K)
    rayleigh = np.arange(len(powers)) >= (1 if los else 0)
    r_f = np.einsum("p,pkm->km", powers * rayleigh, steer)
    r = np.kron(r_f, time_correlation(config, doppler_hz))
    if los:
        r += np.kron(powers[0] * steer[0], time_correlation(config, doppler_hz, los=True))
    return r


def _tdl_name(profile: str) -> str:
    """``"TDL-D"`` for ``"D"``, ``"tdl-d"`` or ``"TDL-D"``; other names as they are."""
    key = profile.upper().removeprefix("TDL-")
    return f"TDL-{key}" if key in TDL_PROFILES else profile


class GenieLMMSE:
    """LMMSE with the true channel correlation and noise variance of every sample's condition.

    ``W = R_hp (R_pp + sigma^2 I)^-1`` applied to the LS pilots (unit-modulus pilots), with
    ``R`` from :func:`channel_correlation` for ``profile``. Per channel condition (delay
    spread, Doppler) the eigendecomposition ``R_pp = U diag(lam) U^H`` is cached, so that
    ``W = (R_hp U) diag(1 / (lam + sigma^2)) U^H`` costs little for each noise variance: under
    the ``measured_grid`` SNR definition every slot has its own (a filter cached per slot took
    2 MB each, ~7 GB for a default sweep).
    :meth:`predict` refuses a dataset simulated with another profile: the filter would
    be another channel's, and the "bound" several dB off (TDL-A's filter on TDL-D slots at
    10 dB: -16.0 dB instead of -19.3 dB).
    """

    name = "LMMSE (genie)"

    def __init__(self, profile: str = "TDL-A"):
        tdl_profile(profile)  # an unknown name fails here, not at the first prediction
        self.profile = profile
        self._cache: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def check_profile(self, dataset: OFDMDataset) -> None:
        """Raise ``ValueError`` unless ``dataset`` was simulated with this genie's profile."""
        if _tdl_name(dataset.profile) != _tdl_name(self.profile):
            raise ValueError(
                f"GenieLMMSE({self.profile!r}) cannot bound data of channel profile "
                f"{dataset.profile!r}: it filters with another channel's correlation; use "
                f"GenieLMMSE(dataset.profile) (the genie needs the one TDL profile the data "
                f"was simulated with)")

    def fit(self, dataset: OFDMDataset | None = None) -> GenieLMMSE:
        return self

    def _decomposition(self, config: OFDMConfig, delay_spread_ns: float, doppler_hz: float
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(R_hp U, lam, U)`` with ``R_pp = U diag(lam) U^H``, cached per condition."""
        key = (config, round(float(delay_spread_ns), 6), round(float(doppler_hz), 6))
        if key not in self._cache:
            r = channel_correlation(config, self.profile, delay_spread_ns, doppler_hz)
            idx = _pilot_index(config)
            lam, u = np.linalg.eigh(r[np.ix_(idx, idx)])
            self._cache[key] = (r[:, idx] @ u, np.clip(lam, 0.0, None), u)
        return self._cache[key]

    def filter(self, config: OFDMConfig, delay_spread_ns: float, doppler_hz: float,
               noise_var: float) -> np.ndarray:
        """The ``(K*L, P)`` LMMSE filter of one condition and noise variance."""
        r_hp_u, lam, u = self._decomposition(config, delay_spread_ns, doppler_hz)
        return (r_hp_u / (lam + float(noise_var))) @ u.conj().T

    def predict(self, dataset: OFDMDataset) -> np.ndarray:
        self.check_profile(dataset)
        cfg = dataset.config
        out = np.empty((len(dataset), cfg.n_subcarriers * cfg.n_symbols), np.complex64)
        conditions = np.stack([dataset.delay_spread_ns, dataset.doppler_hz], 1)
        unique, inverse = np.unique(conditions, axis=0, return_inverse=True)
        pilots = dataset.ls.reshape(len(dataset), -1)
        noise_var = dataset.noise_var.astype(np.float32).astype(np.float64)
        for u_index, (ds, fd) in enumerate(unique):
            rows = np.flatnonzero(inverse.ravel() == u_index)
            r_hp_u, lam, u = self._decomposition(cfg, ds, fd)
            # W p = (R_hp U) [(U^H p) / (lam + sigma^2)], each row with its own sigma^2
            projected = (pilots[rows] @ u.conj()) / (lam[None, :] + noise_var[rows, None])
            out[rows] = projected @ r_hp_u.T
        return out.reshape(len(dataset), *cfg.grid_shape)


SAMPLE_LMMSE_SLOTS_PER_PILOT_SQUARED = 10  # a fair fit: >= 10 P^2 slots (P pilots)


def fair_sample_lmmse_slots(config: OFDMConfig) -> int:
    """Slots a mixed-condition sample LMMSE is fitted on to be a fair baseline: ten times the
    squared number of pilots (64,000 for 40 x 2), so its ``P x P`` correlation is well
    estimated."""
    n_pilots = config.pilot_shape[0] * config.pilot_shape[1]
    return SAMPLE_LMMSE_SLOTS_PER_PILOT_SQUARED * n_pilots ** 2


class SampleLMMSE:
    """Data-driven LMMSE: ``W = R_hp R_pp^-1`` from sample correlations of true channels and
    noisy LS pilots over a training set (the noise is inside ``R_pp``).

    ``add_noise_term=True`` reproduces the authors' ``lmmse.m``, which adds the mean noise
    variance to the diagonal once more (``W = R_hp (R_pp + sigma^2 I)^-1``).
    :meth:`partial_fit` accumulates the correlations chunk by chunk (fit on many slots without
    holding them); ``n_fitted_`` counts the slots seen.
    """

    name = "LMMSE (sample)"

    def __init__(self, add_noise_term: bool = False, ridge: float = 1e-6):
        self.add_noise_term = add_noise_term
        self.ridge = ridge

    def fit(self, dataset: OFDMDataset) -> SampleLMMSE:
        for attr in ("r_hp_", "r_pp_", "noise_sum_", "n_fitted_"):
            self.__dict__.pop(attr, None)
        return self.partial_fit(dataset)

    def partial_fit(self, dataset: OFDMDataset, chunk: int = 4096) -> SampleLMMSE:
        """Add ``dataset``'s slots to the correlation sums and refresh the filter."""
        if getattr(self, "n_fitted_", 0) and dataset.config != self.config_:
            raise ValueError("SampleLMMSE was fitted on a different grid or pilot pattern")
        n_grid = dataset.config.n_subcarriers * dataset.config.n_symbols
        n_pilots = dataset.config.pilot_shape[0] * dataset.config.pilot_shape[1]
        if not getattr(self, "n_fitted_", 0):
            self.r_hp_ = np.zeros((n_grid, n_pilots), np.complex128)
            self.r_pp_ = np.zeros((n_pilots, n_pilots), np.complex128)
            self.noise_sum_, self.n_fitted_ = 0.0, 0
        for i in range(0, len(dataset), chunk):
            # complex128 products: R_pp is inverted, float32 sums would leak into the filter
            h = dataset.channels[i:i + chunk].reshape(-1, n_grid).astype(np.complex128)
            p = dataset.ls[i:i + chunk].reshape(-1, n_pilots).astype(np.complex128)
            self.r_hp_ += h.T @ p.conj()
            self.r_pp_ += p.T @ p.conj()
        self.noise_sum_ += float(np.sum(dataset.noise_var, dtype=np.float64))
        self.n_fitted_ += len(dataset)
        self.config_ = dataset.config
        self._solve()
        return self

    def _solve(self) -> None:
        r_hp = self.r_hp_ / self.n_fitted_
        r_pp = self.r_pp_ / self.n_fitted_
        r_pp = r_pp + (self.ridge * np.trace(r_pp).real / len(r_pp)) * np.eye(len(r_pp))
        if self.add_noise_term:
            r_pp += self.noise_sum_ / self.n_fitted_ * np.eye(len(r_pp))
        self.filter_ = np.linalg.solve(r_pp.T, r_hp.T).T

    def predict(self, dataset: OFDMDataset) -> np.ndarray:
        if not hasattr(self, "filter_"):
            raise ValueError("SampleLMMSE is not fitted: call fit() or partial_fit() first")
        if dataset.config != self.config_:
            raise ValueError("SampleLMMSE was fitted on a different grid or pilot pattern")
        p = dataset.ls.reshape(len(dataset), -1)
        return (p @ self.filter_.T).astype(np.complex64).reshape(len(dataset),
                                                                 *dataset.config.grid_shape)


def fit_sample_lmmse_on_mixture(n_slots: int, *, train: OFDMDataset | None = None,
                                seed: int = 0, chunk: int = 8192,
                                **simulate_kwargs) -> SampleLMMSE:
    """A fair mixed-condition sample LMMSE: fitted on ``train`` (if given) plus freshly
    simulated slots of the same mixture (``simulate_kwargs`` as for
    :func:`~sigformer.data.ofdm.simulate_ofdm`) up to ``n_slots`` in all, chunk by chunk."""
    from ..data.ofdm import simulate_ofdm

    estimator = SampleLMMSE()
    if train is not None:
        estimator.fit(train)
    done, part = estimator.__dict__.get("n_fitted_", 0), 0
    while done < n_slots:
        n = min(chunk, n_slots - done)
        data = simulate_ofdm(n, seed=np.random.SeedSequence([seed, 7919, part]),
                             **simulate_kwargs)
        estimator.partial_fit(data)
        done, part = done + n, part + 1
    return estimator
