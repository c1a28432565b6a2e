"""torchaudio-style ``nn.Module`` front-ends and losses for the functions of
:mod:`sigformer.speech.beamforming` and :mod:`sigformer.speech.metrics`.

The beamformer modules take ``(n_mics, samples)`` or ``(batch, n_mics, samples)`` audio and
return ``(samples,)`` / ``(batch, samples)``, numpy in -> numpy out, torch in -> torch out
(the beamformers have no learnable state; they run in float64 on the CPU and are not
differentiable). Constructor arguments are stored untouched, as in torchaudio.transforms.

* :class:`DelayAndSum`, :class:`SoudenMVDR`, :class:`RTFMVDR`, :class:`SteeredMVDR`;
  statistics per call: ``forward(x, speech=..., noise=..., mask=..., vad=...)``.
* :class:`PITSISNRLoss` (MossFormer's loss, with the optional threshold of the recipe) and
  :class:`PCMLoss` (DeFTAN-II's loss), differentiable.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from . import beamforming as bf
from .metrics import pcm_loss, pit_loss


def _per_item(fn: Callable[..., np.ndarray], x, stats: dict):
    """Run a numpy beamformer over ``(M, L)`` or ``(B, M, L)``; keep the input's type."""
    is_torch = torch.is_tensor(x)
    arr = x.detach().cpu().numpy() if is_torch else np.asarray(x)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected (n_mics, samples) or (batch, n_mics, samples), got shape "
                         f"{arr.shape}")
    if arr.ndim == 2:
        out = fn(arr, **stats)
    else:
        out = np.stack([fn(a, **{k: (None if v is None else np.asarray(v)[i])
                                  for k, v in stats.items()}) for i, a in enumerate(arr)])
    return torch.as_tensor(out, dtype=x.dtype, device=x.device) if is_torch else out


class DelayAndSum(nn.Module):
    """:func:`~sigformer.speech.beamforming.delay_and_sum` as a module."""

    def __init__(self, sample_rate: float, mic_positions=None, azimuth: float | None = None,
                 doa_method: str = "SRP", max_delay: int | None = 32):
        super().__init__()
        self.sample_rate, self.mic_positions, self.azimuth = sample_rate, mic_positions, azimuth
        self.doa_method, self.max_delay = doa_method, max_delay

    def forward(self, x):
        def run(a):
            return bf.delay_and_sum(a, self.sample_rate, self.max_delay,
                                    mic_positions=self.mic_positions, azimuth=self.azimuth,
                                    doa_method=self.doa_method)
        return _per_item(run, x, {})


class _StatisticsMVDR(nn.Module):
    _function: Callable[..., np.ndarray]

    def forward(self, x, speech=None, noise=None, mask=None, vad=None):
        return _per_item(self._run, x, {"speech": speech, "noise": noise, "mask": mask,
                                        "vad": vad})

    def _run(self, a, **stats):
        raise NotImplementedError


class SoudenMVDR(_StatisticsMVDR):
    """:func:`~sigformer.speech.beamforming.souden_mvdr` as a module (cf.
    ``torchaudio.transforms.SoudenMVDR``, which takes precomputed covariances)."""

    def __init__(self, reference: int = 0, n_fft: int = bf.N_FFT, hop: int = bf.HOP):
        super().__init__()
        self.reference, self.n_fft, self.hop = reference, n_fft, hop

    def _run(self, a, **stats):
        return bf.souden_mvdr(a, reference=self.reference, n_fft=self.n_fft, hop=self.hop,
                              **stats)


class RTFMVDR(_StatisticsMVDR):
    """:func:`~sigformer.speech.beamforming.rtf_mvdr` as a module."""

    def __init__(self, reference: int = 0, rtf: str = "evd", n_iter: int = 3,
                 n_fft: int = bf.N_FFT, hop: int = bf.HOP):
        super().__init__()
        self.reference, self.rtf, self.n_iter, self.n_fft, self.hop = (reference, rtf, n_iter,
                                                                       n_fft, hop)

    def _run(self, a, **stats):
        return bf.rtf_mvdr(a, reference=self.reference, rtf=self.rtf, n_iter=self.n_iter,
                           n_fft=self.n_fft, hop=self.hop, **stats)


class SteeredMVDR(nn.Module):
    """:func:`~sigformer.speech.beamforming.doa_mvdr` (plane-wave steering from a true or
    estimated DOA) as a module."""

    def __init__(self, sample_rate: float, mic_positions, azimuth: float | None = None,
                 doa_method: str = "SRP", reference: int = 0):
        super().__init__()
        self.sample_rate, self.mic_positions, self.azimuth = sample_rate, mic_positions, azimuth
        self.doa_method, self.reference = doa_method, reference

    def forward(self, x, noise=None, mask=None, vad=None):
        def run(a, **stats):
            return bf.doa_mvdr(a, self.sample_rate, self.mic_positions, azimuth=self.azimuth,
                               doa_method=self.doa_method, reference=self.reference, **stats)
        return _per_item(run, x, {"noise": noise, "mask": mask, "vad": vad})


class PITSISNRLoss(nn.Module):
    """Negative utterance-level PIT SI-SNR (zero-mean) over ``(B, n_src, L)``.

    ``threshold`` (dB of loss, e.g. -30): examples whose loss is already below it are left
    out of the batch mean (SpeechBrain's ``threshold_byloss``, used by the MossFormer
    recipes); ``None`` averages every example."""

    def __init__(self, threshold: float | None = None):
        super().__init__()
        self.threshold = threshold

    def forward(self, estimates: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        return pit_loss(estimates, references, self.threshold)


class PCMLoss(nn.Module):
    """DeFTAN-II's PCM loss (see :func:`~sigformer.speech.metrics.pcm_loss`):
    ``forward(mixture, estimate, target)`` with the reference-microphone mixture."""

    def __init__(self, win: int = 512, hop: int = 256):
        super().__init__()
        self.win, self.hop = win, hop

    def forward(self, mixture: torch.Tensor, estimate: torch.Tensor, target: torch.Tensor
                ) -> torch.Tensor:
        return pcm_loss(mixture, estimate, target, self.win, self.hop)
