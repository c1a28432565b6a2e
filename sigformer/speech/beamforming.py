"""Classical multichannel baselines: delay-and-sum and MVDR beamformers (STFT domain).

Both return the enhanced reference-microphone signal ``(samples,)`` from ``(n_mics, samples)``.

* :func:`delay_and_sum` - time differences of arrival to microphone 0 from GCC-PHAT, each
  channel phase-aligned to it per frequency, then averaged.
* :func:`mvdr` - minimum-variance distortionless response per frequency,
  ``w = R_n^-1 d / (d^H R_n^-1 d)``, with the steering vector ``d`` the relative transfer
  function to microphone 0, taken as the principal generalised eigenvector of the noisy and
  noise covariances; the noise covariance comes from a noise-only signal (oracle in
  simulations) or from the quietest frames.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import istft, stft

NPERSEG, NOVERLAP = 512, 384


def _stft(x: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    f, _, spec = stft(x, fs=rate, nperseg=NPERSEG, noverlap=NOVERLAP)
    return f, spec  # (M, F, T)


def _istft(spec: np.ndarray, rate: int, n: int) -> np.ndarray:
    _, x = istft(spec, fs=rate, nperseg=NPERSEG, noverlap=NOVERLAP)
    return np.pad(x, (0, max(0, n - len(x))))[:n].astype(np.float32)


def gcc_phat_delays(x: np.ndarray, max_delay: int | None = None) -> np.ndarray:
    """Delay (samples) of each channel relative to channel 0 by GCC-PHAT."""
    n = x.shape[1]
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    spectra = np.fft.rfft(x, nfft)
    delays = np.zeros(x.shape[0])
    for m in range(1, x.shape[0]):
        cross = spectra[m] * np.conj(spectra[0])
        cc = np.fft.irfft(cross / (np.abs(cross) + 1e-12), nfft)
        cc = np.concatenate([cc[-nfft // 2:], cc[:nfft // 2]])
        lags = np.arange(-nfft // 2, nfft // 2)
        if max_delay is not None:
            keep = np.abs(lags) <= max_delay
            cc, lags = cc[keep], lags[keep]
        delays[m] = lags[np.argmax(cc)]
    return delays


def delay_and_sum(x: np.ndarray, rate: int, max_delay: int | None = 32) -> np.ndarray:
    x = np.asarray(x, np.float64)
    delays = gcc_phat_delays(x, max_delay)
    f, spec = _stft(x, rate)
    align = np.exp(2j * np.pi * f[None, :] * delays[:, None] / rate)[:, :, None]
    return _istft((spec * align).mean(axis=0), rate, x.shape[1])


def mvdr(x: np.ndarray, rate: int, noise: np.ndarray | None = None,
         noise_fraction: float = 0.2, diagonal_loading: float = 1e-3) -> np.ndarray:
    x = np.asarray(x, np.float64)
    _, spec = _stft(x, rate)  # (M, F, T)
    if noise is not None:
        _, noise_spec = _stft(np.asarray(noise, np.float64), rate)
    else:  # the quietest frames stand in for noise-only frames
        power = (np.abs(spec) ** 2).sum(axis=(0, 1))
        quiet = power <= np.quantile(power, noise_fraction)
        noise_spec = spec[:, :, quiet]
    m = x.shape[0]
    out = np.empty(spec.shape[1:], complex)
    eye = np.eye(m)
    for k in range(spec.shape[1]):
        xs, ns = spec[:, k, :], noise_spec[:, k, :]
        r_x = xs @ xs.conj().T / xs.shape[1]
        r_n = ns @ ns.conj().T / max(ns.shape[1], 1)
        r_n += diagonal_loading * np.trace(r_n).real / m * eye + 1e-12 * eye
        # relative transfer function: principal eigenvector of R_n^-1 R_x, mapped back
        vals, vecs = np.linalg.eig(np.linalg.solve(r_n, r_x))
        d = r_n @ vecs[:, np.argmax(vals.real)]
        d = d / (d[0] if abs(d[0]) > 1e-12 else 1.0)
        w = np.linalg.solve(r_n, d)
        w = w / (d.conj() @ w)
        out[k] = w.conj() @ xs
    return _istft(out, rate, x.shape[1])
