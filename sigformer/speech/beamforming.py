"""Classical multichannel beamformers in their textbook forms (STFT domain).

Every beamformer maps a ``(n_mics, samples)`` array signal to the enhanced reference-microphone
signal ``(samples,)`` (numpy in, numpy out). The weights and the spatial statistics come from
torchaudio (``torchaudio.functional.psd``, ``mvdr_weights_souden``, ``rtf_evd``,
``rtf_power``, ``mvdr_weights_rtf``, ``apply_beamforming``) and the direction-of-arrival
estimators from pyroomacoustics (``pra.doa``: SRP-PHAT, MUSIC, ...); only the glue is here.

* :func:`souden_mvdr` - MVDR without a steering vector (Souden et al. 2010):
  ``w = (R_n^-1 R_s / tr(R_n^-1 R_s)) u_ref``.
* :func:`rtf_mvdr` - MVDR steered by the relative transfer function (RTF) taken from the
  speech covariance (principal eigenvector, or the power iteration of ``R_n^-1 R_s``):
  ``w = R_n^-1 h / (h^H R_n^-1 h)``, scaled to the reference microphone.
* :func:`doa_mvdr` - MVDR steered by a far-field plane wave from a direction of arrival (the
  true one, or the SRP-PHAT / MUSIC estimate of :func:`estimate_doa`).
* :func:`delay_and_sum` - phase-aligned average, steered by a DOA (true or estimated) when
  the array geometry is known, otherwise by GCC-PHAT delays to microphone 0.
* :func:`mvdr` - the former sigformer MVDR (steering vector = principal generalised
  eigenvector of the noisy and noise covariances), kept for comparison: in reverberant rooms
  that eigenvector includes the reverberation while the target is the direct path, so it
  trails the textbook oracle forms (measured in docs/speech.md).

Spatial statistics (:func:`spatial_covariances`) come from one of

* **oracle** signals: ``speech`` (the target image at every microphone, e.g. the direct path)
  and/or ``noise`` (everything else) as ``(n_mics, samples)`` arrays;
* a time-frequency **mask** ``(freq, frames)`` (or per microphone) for the speech, its
  complement for the noise (e.g. a network's mask, or an oracle ideal ratio mask);
* a frame **VAD** ``(frames,)``: the noise covariance from inactive frames, the speech
  covariance as the active frames' covariance minus it (projected onto the PSD cone);
  :func:`energy_vad` gives one when none is at hand.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch

N_FFT, HOP = 512, 128
SPEED_OF_SOUND = 343.0


# --- STFT helpers -------------------------------------------------------------------------

def _check_array(x, name: str = "x") -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be (n_mics, samples), got shape {x.shape}")
    if x.shape[0] > x.shape[1]:
        raise ValueError(f"{name} has shape {x.shape}: more microphones than samples - pass "
                         f"(n_mics, samples), e.g. x.T for a (samples, n_mics) array")
    if x.shape[0] < 2:
        raise ValueError(f"beamforming needs at least 2 microphones, got {x.shape[0]}")
    bad = ~np.isfinite(x)
    if bad.any():  # a NaN spreads through every covariance and weight: name it here
        mic, sample = np.argwhere(bad)[0]
        raise ValueError(f"{name} holds {int(bad.sum())} NaN/Inf value(s), the first at "
                         f"microphone {mic}, sample {sample}; expected finite audio")
    return x


def stft(x: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> torch.Tensor:
    """``(..., samples)`` real -> ``(..., freq, frames)`` complex128 (Hann window, centred)."""
    t = torch.as_tensor(np.ascontiguousarray(x, np.float64))
    if t.shape[-1] <= n_fft // 2:  # the centred STFT pads n_fft/2 each side by reflection
        raise ValueError(f"the signal has {t.shape[-1]} samples; a {n_fft}-point STFT needs "
                         f"more than {n_fft // 2}")
    flat = t.reshape(-1, t.shape[-1])
    spec = torch.stft(flat, n_fft, hop, window=torch.hann_window(n_fft, dtype=torch.float64),
                      return_complex=True)
    return spec.reshape(*t.shape[:-1], *spec.shape[-2:])


def istft(spec: torch.Tensor, length: int, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    out = torch.istft(spec, n_fft, hop, window=torch.hann_window(n_fft, dtype=torch.float64),
                      length=length)
    return out.numpy().astype(np.float32)


def _accepts_rate_keyword(fn):
    """``rate=`` was these functions' name for ``sample_rate`` (the name used everywhere else
    in sigformer); keep old keyword callers working, with a warning."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "rate" in kwargs:
            if "sample_rate" in kwargs:
                raise TypeError(f"{fn.__name__}() got both rate= and sample_rate=")
            warnings.warn(f"{fn.__name__}(rate=...) is renamed sample_rate=", FutureWarning,
                          stacklevel=2)
            kwargs["sample_rate"] = kwargs.pop("rate")
        return fn(*args, **kwargs)

    return wrapper


def _freqs(sample_rate: float, n_fft: int = N_FFT) -> np.ndarray:
    return np.fft.rfftfreq(n_fft, 1.0 / sample_rate)


# --- spatial statistics ---------------------------------------------------------------------

def energy_vad(x: np.ndarray, n_fft: int = N_FFT, hop: int = HOP, margin_db: float = 6.0,
               floor_quantile: float = 0.1) -> np.ndarray:
    """Frame speech activity ``(frames,)`` from the reference channel's energy: a frame is
    active when it is ``margin_db`` above the noise floor (the ``floor_quantile`` of the frame
    energies). Frames match :func:`stft`."""
    x = np.atleast_2d(np.asarray(x, np.float64))
    power = (stft(x[0], n_fft, hop).abs() ** 2).sum(0).numpy()
    level = 10 * np.log10(power + 1e-20)
    active = level > np.quantile(level, floor_quantile) + margin_db
    if active.all() or not active.any():  # no contrast: split at the median instead
        active = level > np.median(level)
    return active


def _psd_cone(r: torch.Tensor) -> torch.Tensor:
    """Nearest positive semi-definite matrices (negative eigenvalues clipped to zero)."""
    r = 0.5 * (r + r.conj().transpose(-1, -2))
    vals, vecs = torch.linalg.eigh(r)
    return (vecs * vals.clamp(min=0).to(vecs.dtype).unsqueeze(-2)) @ vecs.conj().transpose(-1, -2)


def spatial_covariances(x: np.ndarray, *, speech: np.ndarray | None = None,
                        noise: np.ndarray | None = None, mask: np.ndarray | None = None,
                        vad: np.ndarray | None = None, n_fft: int = N_FFT, hop: int = HOP
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Speech and noise covariance matrices ``(freq, n_mics, n_mics)`` (complex128) of the
    array signal ``x`` from oracle signals, a TF mask or a frame VAD (see the module doc).

    With oracle signals, a missing one is the rest of ``x`` (``noise = x - speech``). With
    nothing given, an :func:`energy_vad` of ``x`` is used.
    """
    from torchaudio.functional import psd

    x = _check_array(x)
    spec = stft(x, n_fft, hop)  # (M, F, T)
    if speech is not None or noise is not None:
        speech = x - _check_array(noise, "noise") if speech is None else _check_array(
            speech, "speech")
        noise = x - speech if noise is None else _check_array(noise, "noise")
        for name, sig in (("speech", speech), ("noise", noise)):
            if sig.shape != x.shape:
                raise ValueError(f"{name} has shape {sig.shape}; expected {x.shape} like x")
        return psd(stft(speech, n_fft, hop)), psd(stft(noise, n_fft, hop))
    if mask is not None:
        m = torch.as_tensor(np.asarray(mask, np.float64))
        if m.shape[-2:] != spec.shape[-2:]:
            raise ValueError(f"mask has shape {tuple(m.shape)}; expected (freq, frames) = "
                             f"{tuple(spec.shape[-2:])} (n_fft={n_fft}, hop={hop})")
        if not torch.isfinite(m).all():  # one NaN bin would make every output sample NaN
            raise ValueError(f"mask holds {int((~torch.isfinite(m)).sum())} NaN/Inf value(s); "
                             "expected values in [0, 1]")
        if m.ndim == 3 and m.shape[0] != x.shape[0]:
            raise ValueError(f"mask has {m.shape[0]} per-microphone masks for {x.shape[0]} "
                             "microphones; give one (freq, frames) mask or one per microphone")
        if m.ndim == 3:  # per-microphone masks: their mean, as torchaudio's PSD expects one
            m = m.mean(0)
        m = m.clamp(0, 1)
        return psd(spec, m), psd(spec, 1 - m)
    active = energy_vad(x, n_fft, hop) if vad is None else np.asarray(vad, bool)
    if active.shape != (spec.shape[-1],):
        raise ValueError(f"vad has shape {active.shape}; expected ({spec.shape[-1]},) frames")
    if active.all() or not active.any():
        raise ValueError("the VAD marks every frame the same; need speech and noise frames")
    on = torch.as_tensor(active.astype(np.float64)).expand(spec.shape[1], -1)
    psd_x, psd_n = psd(spec, on), psd(spec, 1 - on)
    return _psd_cone(psd_x - psd_n), psd_n


# --- geometry and DOA ---------------------------------------------------------------------

def _unit_vector(azimuth: float, colatitude: float = np.pi / 2) -> np.ndarray:
    return np.array([np.cos(azimuth) * np.sin(colatitude), np.sin(azimuth) * np.sin(colatitude),
                     np.cos(colatitude)])


def _check_positions(mic_positions, n_mics: int) -> np.ndarray:
    pos = np.asarray(mic_positions, np.float64)
    if pos.ndim != 2 or pos.shape[0] != n_mics or pos.shape[1] not in (2, 3):
        raise ValueError(f"mic_positions must be (n_mics={n_mics}, 2 or 3) metres, got shape "
                         f"{pos.shape}")
    if pos.shape[1] == 2:
        pos = np.c_[pos, np.zeros(n_mics)]
    return pos


@_accepts_rate_keyword
def steering_vector(sample_rate: float, mic_positions: np.ndarray, azimuth: float,
                    colatitude: float = np.pi / 2, reference: int = 0, n_fft: int = N_FFT,
                    c: float = SPEED_OF_SOUND) -> torch.Tensor:
    """Far-field plane-wave relative transfer function ``(freq, n_mics)`` for a source in
    direction (``azimuth``, ``colatitude``) (radians, seen from the array), normalised to 1 at
    the ``reference`` microphone."""
    pos = np.asarray(mic_positions, np.float64)
    pos = np.c_[pos, np.zeros(len(pos))] if pos.shape[1] == 2 else pos
    advance = (pos - pos[reference]) @ _unit_vector(azimuth, colatitude) / c  # seconds early
    return torch.as_tensor(np.exp(2j * np.pi * np.outer(_freqs(sample_rate, n_fft), advance)))


@_accepts_rate_keyword
def estimate_doa(x: np.ndarray, sample_rate: float, mic_positions: np.ndarray, method: str = "SRP",
                 freq_range: tuple[float, float] = (300.0, 3500.0), n_fft: int = N_FFT,
                 vad: np.ndarray | bool | None = True, c: float = SPEED_OF_SOUND) -> float:
    """Azimuth (radians) of the dominant source by pyroomacoustics' DOA ``method`` (``SRP``
    = SRP-PHAT, ``MUSIC``, ``NormMUSIC``, ``TOPS``, ...) on a 1-degree grid (far field,
    horizontal plane). ``vad``: frames to use (``(frames,)`` of an ``n_fft / 2`` hop STFT),
    ``True`` for the :func:`energy_vad` speech frames (so a steady noise source does not win),
    ``None``/``False`` for all frames."""
    import pyroomacoustics as pra

    x = _check_array(x)
    pos = _check_positions(mic_positions, x.shape[0])
    if method not in pra.doa.algorithms:
        raise ValueError(f"unknown DOA method {method!r}; pyroomacoustics has "
                         f"{sorted(pra.doa.algorithms)}")
    spec = stft(x, n_fft, n_fft // 2).numpy()  # (M, F, T), as pra.doa expects
    if vad is True:
        vad = energy_vad(x, n_fft, n_fft // 2)
    if vad is not None and vad is not False:
        vad = np.asarray(vad, bool)
        if vad.shape != (spec.shape[-1],):
            raise ValueError(f"vad has shape {vad.shape}; expected ({spec.shape[-1]},) frames "
                             f"of the n_fft / 2 = {n_fft // 2}-sample hop STFT")
        if not vad.any():
            raise ValueError("the vad marks no frame active: the direction needs at least one")
        spec = spec[:, :, vad]
    high = min(freq_range[1], 0.45 * sample_rate)
    doa = pra.doa.algorithms[method](pos.T, sample_rate, n_fft, c=c, num_src=1,
                                     azimuth=np.deg2rad(np.arange(360.0)))
    doa.locate_sources(spec, num_src=1, freq_range=[freq_range[0], high])
    return float(doa.azimuth_recon[0])


# --- beamformers ----------------------------------------------------------------------------
# Each ``*_weights`` function returns the per-frequency weights ``(freq, n_mics)``
# (``y = w^H x``); the wrapper of the same name applies them. Beamformers are linear, so the
# weights of the mixture can be applied to its components (how the closed-form tests measure
# array gains).

def apply_weights(weights: torch.Tensor, x: np.ndarray, n_fft: int = N_FFT, hop: int = HOP
                  ) -> np.ndarray:
    """Apply beamforming weights ``(freq, n_mics)`` to ``(n_mics, samples)`` audio."""
    from torchaudio.functional import apply_beamforming

    x = _check_array(x)
    if tuple(weights.shape) != (n_fft // 2 + 1, x.shape[0]):
        raise ValueError(f"weights have shape {tuple(weights.shape)}; expected "
                         f"({n_fft // 2 + 1}, {x.shape[0]}) for n_fft={n_fft}")
    return istft(apply_beamforming(weights, stft(x, n_fft, hop)), x.shape[1], n_fft, hop)


def souden_weights(x: np.ndarray, *, speech=None, noise=None, mask=None, vad=None,
                   reference: int = 0, n_fft: int = N_FFT, hop: int = HOP) -> torch.Tensor:
    from torchaudio.functional import mvdr_weights_souden

    _check_reference(reference, np.shape(x)[0])
    psd_s, psd_n = spatial_covariances(x, speech=speech, noise=noise, mask=mask, vad=vad,
                                       n_fft=n_fft, hop=hop)
    return mvdr_weights_souden(psd_s, psd_n, reference)


@_accepts_rate_keyword
def souden_mvdr(x: np.ndarray, sample_rate: float | None = None, *, speech=None, noise=None,
                mask=None, vad=None, reference: int = 0, n_fft: int = N_FFT, hop: int = HOP
                ) -> np.ndarray:
    """Souden MVDR (reference-channel form) from speech and noise covariances; the
    statistics come from ``speech``/``noise`` signals, a ``mask`` or a ``vad`` (see
    :func:`spatial_covariances`). ``sample_rate`` is accepted for a uniform signature."""
    weights = souden_weights(x, speech=speech, noise=noise, mask=mask, vad=vad,
                             reference=reference, n_fft=n_fft, hop=hop)
    return apply_weights(weights, x, n_fft, hop)


def _unit_trace(psd: torch.Tensor) -> torch.Tensor:
    """Each frequency's covariance scaled to trace = n_mics. The MVDR weights do not change
    with the scale of the noise covariance, but torchaudio's ``mvdr_weights_rtf`` adds an
    absolute 1e-8 to ``h^H R^-1 h``: raw sums of loud input (int16 ranges) drove the weights
    towards zero."""
    n_mics = psd.shape[-1]
    trace = torch.diagonal(psd, dim1=-2, dim2=-1).real.sum(-1)
    scale = (trace / n_mics).clamp_min(torch.finfo(trace.dtype).tiny)
    return psd / scale[..., None, None]


def _check_reference(reference: int, n_mics: int) -> None:
    if not -n_mics <= reference < n_mics:
        raise ValueError(f"reference microphone {reference} does not exist: the array has "
                         f"microphones 0..{n_mics - 1}")


def rtf_mvdr_weights(x: np.ndarray, *, speech=None, noise=None, mask=None, vad=None,
                     reference: int = 0, rtf: str = "evd", n_iter: int = 3, n_fft: int = N_FFT,
                     hop: int = HOP) -> torch.Tensor:
    from torchaudio.functional import mvdr_weights_rtf, rtf_evd, rtf_power

    _check_reference(reference, np.shape(x)[0])
    psd_s, psd_n = spatial_covariances(x, speech=speech, noise=noise, mask=mask, vad=vad,
                                       n_fft=n_fft, hop=hop)
    psd_n = _unit_trace(psd_n)
    if rtf == "evd":
        steer = rtf_evd(psd_s)
    elif rtf == "power":
        steer = rtf_power(psd_s, psd_n, reference, n_iter=n_iter)
    else:
        raise ValueError(f"rtf must be 'evd' or 'power', got {rtf!r}")
    # the power iteration's vector scales with the speech power to the n_iter: unit norm, so
    # that h^H R^-1 h (>= 1/M at unit-trace R) stays far above torchaudio's absolute eps
    steer = steer / torch.linalg.vector_norm(steer, dim=-1, keepdim=True).clamp_min(
        torch.finfo(psd_n.real.dtype).tiny)
    return mvdr_weights_rtf(steer, psd_n, reference)


@_accepts_rate_keyword
def rtf_mvdr(x: np.ndarray, sample_rate: float | None = None, *, speech=None, noise=None, mask=None,
             vad=None, reference: int = 0, rtf: str = "evd", n_iter: int = 3,
             n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """MVDR steered by the relative transfer function of the speech covariance: its
    principal eigenvector (``rtf="evd"``) or the power iteration on ``R_n^-1 R_s``
    (``rtf="power"``); the output is the speech image at the ``reference`` microphone."""
    weights = rtf_mvdr_weights(x, speech=speech, noise=noise, mask=mask, vad=vad,
                               reference=reference, rtf=rtf, n_iter=n_iter, n_fft=n_fft,
                               hop=hop)
    return apply_weights(weights, x, n_fft, hop)


def _steer_to(x: np.ndarray, sample_rate: float, mic_positions, azimuth, colatitude, doa_method,
              reference: int, n_fft: int) -> torch.Tensor:
    pos = _check_positions(mic_positions, x.shape[0])
    if azimuth is None:
        azimuth = estimate_doa(x, sample_rate, pos, doa_method, n_fft=n_fft)
    return steering_vector(sample_rate, pos, azimuth, colatitude, reference, n_fft)


@_accepts_rate_keyword
def doa_mvdr_weights(x: np.ndarray, sample_rate: float, mic_positions: np.ndarray, *,
                     azimuth: float | None = None, colatitude: float = np.pi / 2,
                     doa_method: str = "SRP", noise=None, mask=None, vad=None,
                     reference: int = 0, n_fft: int = N_FFT, hop: int = HOP) -> torch.Tensor:
    from torchaudio.functional import mvdr_weights_rtf, psd

    x = _check_array(x)
    _check_reference(reference, x.shape[0])
    steer = _steer_to(x, sample_rate, mic_positions, azimuth, colatitude, doa_method,
                      reference, n_fft)
    if noise is not None:
        noise = _check_array(noise, "noise")
        if noise.shape[0] != x.shape[0]:
            raise ValueError(f"noise has {noise.shape[0]} microphones, x {x.shape[0]}; the "
                             "noise covariance must come from the same array")
        psd_n = psd(stft(noise, n_fft, hop))
    elif mask is not None or vad is not None:
        psd_n = spatial_covariances(x, mask=mask, vad=vad, n_fft=n_fft, hop=hop)[1]
    else:
        psd_n = psd(stft(x, n_fft, hop))
    return mvdr_weights_rtf(steer, _unit_trace(psd_n), reference)


@_accepts_rate_keyword
def doa_mvdr(x: np.ndarray, sample_rate: float, mic_positions: np.ndarray, *,
             azimuth: float | None = None, colatitude: float = np.pi / 2,
             doa_method: str = "SRP", noise=None, mask=None, vad=None, reference: int = 0,
             n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """MVDR steered by a far-field plane wave from ``azimuth`` (estimated with
    :func:`estimate_doa` when not given). The noise covariance comes from ``noise`` /
    ``mask`` / ``vad``; with none of them, the noisy covariance is used (MPDR: the same
    filter as MVDR only with an exact steering vector and exact statistics; estimated from a
    short noisy recording it loses gain to target self-cancellation, e.g. 2.6 instead of 4 on
    4 mics from 1 s of speech at +7 dB)."""
    weights = doa_mvdr_weights(x, sample_rate, mic_positions, azimuth=azimuth,
                               colatitude=colatitude, doa_method=doa_method, noise=noise,
                               mask=mask, vad=vad, reference=reference, n_fft=n_fft, hop=hop)
    return apply_weights(weights, x, n_fft, hop)


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


@_accepts_rate_keyword
def delay_and_sum_weights(x: np.ndarray, sample_rate: float, max_delay: int | None = 32, *,
                          mic_positions: np.ndarray | None = None,
                          azimuth: float | None = None, colatitude: float = np.pi / 2,
                          doa_method: str = "SRP", n_fft: int = N_FFT) -> torch.Tensor:
    x = _check_array(x)
    if mic_positions is not None:
        steer = _steer_to(x, sample_rate, mic_positions, azimuth, colatitude, doa_method, 0, n_fft)
    else:
        if azimuth is not None:
            raise ValueError("a steering azimuth needs mic_positions (the array geometry)")
        delays = gcc_phat_delays(x, max_delay)  # channel m lags channel 0 by delays[m]
        steer = torch.as_tensor(np.exp(-2j * np.pi * np.outer(_freqs(sample_rate, n_fft), delays)
                                       / sample_rate))
    return steer / x.shape[0]


@_accepts_rate_keyword
def delay_and_sum(x: np.ndarray, sample_rate: float, max_delay: int | None = 32, *,
                  mic_positions: np.ndarray | None = None, azimuth: float | None = None,
                  colatitude: float = np.pi / 2, doa_method: str = "SRP",
                  n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Delay-and-sum: each channel phase-aligned to microphone 0, then averaged.

    With ``mic_positions`` the delays are those of a plane wave from ``azimuth`` (estimated
    by :func:`estimate_doa` with ``doa_method`` when not given); without them, GCC-PHAT
    delays to microphone 0 (within ``max_delay`` samples)."""
    weights = delay_and_sum_weights(x, sample_rate, max_delay, mic_positions=mic_positions,
                                    azimuth=azimuth, colatitude=colatitude,
                                    doa_method=doa_method, n_fft=n_fft)
    return apply_weights(weights, x, n_fft, hop)


@_accepts_rate_keyword
def mvdr(x: np.ndarray, sample_rate: int, noise: np.ndarray | None = None,
         noise_fraction: float = 0.2, diagonal_loading: float = 1e-3) -> np.ndarray:
    """The former sigformer MVDR: steering vector = principal generalised eigenvector of the
    noisy and noise covariances (reverberation included), noise covariance from ``noise`` or
    the quietest ``noise_fraction`` of frames. Kept for comparison; prefer
    :func:`souden_mvdr` / :func:`rtf_mvdr` / :func:`doa_mvdr`."""
    x = _check_array(x)
    spec = stft(x).numpy()  # (M, F, T)
    if noise is not None:
        noise = _check_array(noise, "noise")
        if noise.shape[0] != x.shape[0]:
            raise ValueError(f"noise has {noise.shape[0]} microphones, x {x.shape[0]}; the "
                             "noise covariance must come from the same array")
        noise_spec = stft(noise).numpy()
    else:  # the quietest frames stand in for noise-only frames
        power = (np.abs(spec) ** 2).sum(axis=(0, 1))
        noise_spec = spec[:, :, power <= np.quantile(power, noise_fraction)]
    m = x.shape[0]
    out = np.empty(spec.shape[1:], complex)
    eye = np.eye(m)
    for k in range(spec.shape[1]):
        xs, ns = spec[:, k, :], noise_spec[:, k, :]
        r_x = xs @ xs.conj().T / xs.shape[1]
        r_n = ns @ ns.conj().T / max(ns.shape[1], 1)
        r_n += diagonal_loading * np.trace(r_n).real / m * eye + 1e-12 * eye
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
            vals, vecs = np.linalg.eig(np.linalg.solve(r_n, r_x))
        d = r_n @ vecs[:, np.argmax(vals.real)]
        d = d / (d[0] if abs(d[0]) > 1e-12 else 1.0)
        w = np.linalg.solve(r_n, d)
        w = w / (d.conj() @ w)
        out[k] = w.conj() @ xs
    return istft(torch.as_tensor(out), x.shape[1])
