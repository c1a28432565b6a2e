"""Speech separation and enhancement metrics (pure functions, torchaudio-style).

* :func:`si_sdr` - scale-invariant SDR with zero-mean signals (as separation papers and the
  SpeechBrain/asteroid SI-SNR; note torchmetrics defaults to ``zero_mean=False``).
* :func:`si_sdr_improvement` - SI-SDR of the estimate minus SI-SDR of the mixture.
* :func:`sdr` - BSS-eval SDR (512-tap distortion filter) through ``fast_bss_eval``.
* :func:`pesq_score` / :func:`stoi_score` - PESQ (ITU-T P.862 via ``pesq``; 8/16 kHz) and STOI
  (``pystoi``).
* :func:`pit_si_sdr` / :func:`best_permutation` - utterance-level permutation-invariant SI-SDR.
* :func:`pit_loss` - negative PIT SI-SNR, the MossFormer training loss.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

EPS = 1e-8


def _as_tensor(x) -> torch.Tensor:
    return x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x), dtype=torch.float64)


def si_sdr(estimate, reference, zero_mean: bool = True, eps: float = EPS) -> torch.Tensor:
    """SI-SDR (dB) over the last axis; broadcasts over leading axes."""
    est, ref = _as_tensor(estimate), _as_tensor(reference)
    if est.shape[-1] != ref.shape[-1]:
        raise ValueError(f"estimate has {est.shape[-1]} samples, reference {ref.shape[-1]}")
    if zero_mean:
        est = est - est.mean(-1, keepdim=True)
        ref = ref - ref.mean(-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / ((ref ** 2).sum(-1, keepdim=True) + eps)
    target = scale * ref
    noise = est - target
    return 10 * torch.log10(((target ** 2).sum(-1) + eps) / ((noise ** 2).sum(-1) + eps))


def si_sdr_improvement(estimate, reference, mixture, zero_mean: bool = True) -> torch.Tensor:
    """``SI-SDR(estimate, reference) - SI-SDR(mixture, reference)`` (dB)."""
    mix = _as_tensor(mixture)
    ref = _as_tensor(reference)
    if mix.ndim < ref.ndim:
        mix = mix.unsqueeze(-2).expand_as(ref)
    return si_sdr(estimate, ref, zero_mean) - si_sdr(mix, ref, zero_mean)


def pairwise_si_sdr(estimates: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """``(B, n_est, n_ref)`` SI-SDR of every estimate against every reference."""
    return si_sdr(estimates.unsqueeze(2), references.unsqueeze(1))


def best_permutation(estimates, references) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``(B, n_src, L)`` inputs: the PIT SI-SDR ``(B,)`` (mean over sources) and the
    permutation ``(B, n_src)`` that maps references to estimates (``est[perm[i]] ~ ref[i]``)."""
    est, ref = _as_tensor(estimates), _as_tensor(references)
    if est.shape != ref.shape or est.ndim != 3:
        raise ValueError(f"estimates and references must both be (batch, n_src, samples); got "
                         f"{tuple(est.shape)} and {tuple(ref.shape)}")
    pair = pairwise_si_sdr(est, ref)  # (B, est, ref)
    n = est.shape[1]
    perms = torch.tensor(list(itertools.permutations(range(n))), device=pair.device)
    # score[b, p] = mean_i pair[b, perms[p, i], i]
    idx = torch.arange(n, device=pair.device)
    scores = pair[:, perms, idx].mean(-1)  # (B, n_perm)
    best, which = scores.max(dim=1)
    return best, perms[which]


def pit_si_sdr(estimates, references) -> torch.Tensor:
    return best_permutation(estimates, references)[0]


def reorder(estimates: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Reorder ``(B, n_src, L)`` estimates so that source i matches reference i."""
    return torch.stack([e[p] for e, p in zip(estimates, permutation)])


def pit_loss(estimates: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Negative utterance-level PIT SI-SNR (zero-mean), averaged over the batch."""
    return -pit_si_sdr(estimates, references).mean()


def sdr(estimate, reference, filter_length: int = 512) -> np.ndarray:
    """BSS-eval SDR (dB) of ``(n_src, L)`` estimates against references (fast_bss_eval)."""
    import fast_bss_eval

    est = np.atleast_2d(np.asarray(estimate, np.float64))
    ref = np.atleast_2d(np.asarray(reference, np.float64))
    return np.asarray(fast_bss_eval.sdr(ref, est, filter_length=filter_length))


def pesq_score(reference: np.ndarray, estimate: np.ndarray, sample_rate: int,
               mode: str | None = None) -> float:
    """PESQ; wide-band at 16 kHz, narrow-band at 8 kHz (other rates: resample first)."""
    from pesq import pesq

    if sample_rate not in (8000, 16000):
        raise ValueError(f"PESQ needs 8000 or 16000 Hz audio, got {sample_rate} Hz")
    mode = mode or ("wb" if sample_rate == 16000 else "nb")
    return float(pesq(sample_rate, np.asarray(reference, np.float64),
                      np.asarray(estimate, np.float64), mode))


def stoi_score(reference: np.ndarray, estimate: np.ndarray, sample_rate: int,
               extended: bool = False) -> float:
    from pystoi import stoi

    return float(stoi(np.asarray(reference, np.float64), np.asarray(estimate, np.float64),
                      sample_rate, extended=extended))


def evaluate_separation(estimates: np.ndarray, references: np.ndarray, mixture: np.ndarray,
                        sample_rate: int, perceptual: bool = True) -> dict[str, float]:
    """PIT-aligned SI-SDR, SI-SDRi, SDR (and PESQ/STOI) for one ``(n_src, L)`` example."""
    est = torch.as_tensor(np.asarray(estimates, np.float64))[None]
    ref = torch.as_tensor(np.asarray(references, np.float64))[None]
    score, perm = best_permutation(est, ref)
    aligned = reorder(est, perm)[0].numpy()
    out = {"si_sdr": float(score),
           "si_sdri": float(si_sdr_improvement(aligned, references, mixture).mean()),
           "sdr": float(np.mean(sdr(aligned, references)))}
    if perceptual:
        out["pesq"] = float(np.mean([pesq_score(r, e, sample_rate)
                                     for r, e in zip(references, aligned)]))
        out["stoi"] = float(np.mean([stoi_score(r, e, sample_rate)
                                     for r, e in zip(references, aligned)]))
    return out


def _stft_ri(x: torch.Tensor, win: int, hop: int) -> torch.Tensor:
    spec = torch.stft(x.reshape(-1, x.shape[-1]), win, hop,
                      window=torch.hann_window(win, device=x.device, dtype=x.dtype),
                      return_complex=True)
    return torch.view_as_real(spec)


def pcm_loss(mixture: torch.Tensor, estimate: torch.Tensor, target: torch.Tensor,
             win: int = 512, hop: int = 256) -> torch.Tensor:
    """DeFTAN-II's PCM loss: ``0.5 L(s_hat, s) + 0.5 L(x - s_hat, x - s)`` with ``L`` the mean
    absolute error of the STFT real and imaginary parts (speech and noise terms). Inputs
    ``(B, 1, N)`` or ``(B, N)``; ``mixture`` is the reference-microphone signal."""
    def l1(a, b):
        return (_stft_ri(a, win, hop) - _stft_ri(b, win, hop)).abs().mean()

    return 0.5 * l1(estimate, target) + 0.5 * l1(mixture - estimate, mixture - target)
