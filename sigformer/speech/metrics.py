"""Speech separation and enhancement metrics (pure functions, torchaudio-style).

Conventions (the same in every function here, as in torchmetrics and asteroid):

* **argument order ``(estimate, reference)``** (then ``mixture`` / ``sample_rate``);
* **numpy in -> numpy out, torch in -> torch out** (a mix of both follows the estimate);
* audio is ``(..., samples)`` with samples on the last axis; a 2-D array that looks like
  ``(samples, channels)`` (more rows than columns, at most 64 columns) is transposed with a
  :class:`AudioLayoutWarning`;
* PESQ's "no utterances detected" becomes a :class:`SpeechMetricError` naming the cause;
* NaN/Inf input is refused (``ValueError`` naming the argument) instead of giving a NaN score;
  estimate and reference must have the same number of samples.

Functions:

* :func:`si_sdr` - scale-invariant SDR with zero-mean signals (as separation papers and the
  SpeechBrain/asteroid SI-SNR), computed by torchmetrics (``zero_mean=True``; torchmetrics'
  own default is ``False``).
* :func:`si_sdr_improvement` - SI-SDR of the estimate minus SI-SDR of the mixture.
* :func:`sdr` - BSS-eval SDR (512-tap distortion filter) through ``fast_bss_eval``.
* :func:`pesq_score` / :func:`stoi_score` - PESQ (ITU-T P.862 via ``pesq``; 8/16 kHz) and STOI
  (``pystoi``), ``(estimate, reference, sample_rate)`` like the rest (their order was
  ``(reference, estimate)`` in early versions; keyword calls read the same in both).
* :func:`pit_si_sdr` / :func:`best_permutation` - utterance-level permutation-invariant SI-SDR.
* :func:`pit_loss` - negative PIT SI-SNR, the MossFormer training loss.
* :func:`pcm_loss` - DeFTAN-II's loss; it keeps the published ``(mixture, estimate, target)``
  order of ``PCM_Loss.forward`` (it is a loss, not a metric, and is symmetric in
  estimate/target).
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import torch

EPS = 1e-8
MAX_CHANNELS = 64


class SpeechMetricError(ValueError):
    """A metric cannot be computed for this input (e.g. PESQ finds no speech)."""


class AudioLayoutWarning(UserWarning):
    """An array looked like ``(samples, channels)`` and was transposed."""


def _channels_first(x, name: str):
    """Transpose a 2-D ``(samples, channels)`` array (with a warning); else unchanged."""
    if x.ndim == 2 and x.shape[0] > x.shape[1] and x.shape[1] <= MAX_CHANNELS:
        warnings.warn(f"{name} has shape {tuple(x.shape)}, which looks like (samples, "
                      f"channels); transposing to (channels, samples) - pass "
                      f"(channels, samples) to silence this", AudioLayoutWarning, stacklevel=3)
        return x.T
    return x


def _as_tensor(x, name: str = "input") -> torch.Tensor:
    t = x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x), dtype=torch.float64)
    if not (t.is_floating_point() or t.is_complex()):  # int16 audio tensors, e.g.
        t = t.to(torch.float64)
    return _channels_first(t, name)


def _as_numpy(x, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    return _channels_first(arr.astype(np.float64), name)


def _check_finite(x, name: str) -> None:
    """A NaN score says nothing about where the NaN came from: name the input instead."""
    finite = torch.isfinite(x).all() if torch.is_tensor(x) else np.isfinite(x).all()
    if not bool(finite):
        n_bad = int((~torch.isfinite(x)).sum()) if torch.is_tensor(x) else \
            int((~np.isfinite(x)).sum())
        raise ValueError(f"{name} holds {n_bad} NaN/Inf value(s); expected finite audio "
                         f"(metrics of NaN are NaN)")


def _check_not_silent(x, name: str, zero_mean: bool = True) -> None:
    """SI-SDR / SDR of a silent signal (all zeros, or constant once its mean is removed) is
    undefined: torchmetrics' guard made a silent estimate 0 dB (so a model that outputs
    nothing scored an SI-SDR improvement) and a silent reference about -196 dB."""
    t = torch.as_tensor(np.asarray(x)) if not torch.is_tensor(x) else x.detach()
    t = t.to(torch.float64)
    before = (t ** 2).sum(-1)
    if zero_mean:  # a constant is silent too: rounding leaves ~1e-30 of it, not exactly 0
        t = t - t.mean(-1, keepdim=True)
    silent = (t ** 2).sum(-1) <= 1e-12 * before
    if bool(silent.any()):
        where = [list(i) if len(i) > 1 else int(i[0]) for i in
                 torch.nonzero(silent).tolist()] if silent.ndim else []
        verb = "are" if name.endswith("s") else "is"
        raise SpeechMetricError(
            f"the {name} {verb} silent{f' at {where}' if where else ''} (all zeros"
            f"{', or constant once its mean is removed' if zero_mean else ''}): SI-SDR and "
            f"SDR are undefined for it")


def _check_broadcast(est: torch.Tensor, ref: torch.Tensor, what: str = "estimate and "
                     "reference") -> None:
    """Name both shapes (e.g. 3 estimated sources against 2 references), not torch's bare
    broadcast error; the sample counts are checked separately."""
    try:
        torch.broadcast_shapes(est.shape[:-1], ref.shape[:-1])
    except RuntimeError:
        raise ValueError(f"{what} shapes {tuple(est.shape)} and {tuple(ref.shape)} do not match "
                         f"(nor broadcast) before the samples axis: give one estimate per "
                         f"reference source") from None


def _like(value: torch.Tensor, template):
    """Return ``value`` as numpy when the template (the estimate) was not a tensor."""
    return value if torch.is_tensor(template) else value.detach().cpu().numpy()


def _si_sdr(est: torch.Tensor, ref: torch.Tensor, zero_mean: bool, eps: float | None
            ) -> torch.Tensor:
    if est.shape[-1] != ref.shape[-1]:
        raise ValueError(f"estimate has {est.shape[-1]} samples, reference {ref.shape[-1]}")
    est, ref = torch.broadcast_tensors(est, ref.to(est.dtype))
    if eps is None:
        from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

        return scale_invariant_signal_distortion_ratio(est, ref, zero_mean=zero_mean)
    if zero_mean:
        est = est - est.mean(-1, keepdim=True)
        ref = ref - ref.mean(-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / ((ref ** 2).sum(-1, keepdim=True) + eps)
    target = scale * ref
    noise = est - target
    return 10 * torch.log10(((target ** 2).sum(-1) + eps) / ((noise ** 2).sum(-1) + eps))


def si_sdr(estimate, reference, zero_mean: bool = True, eps: float | None = None, *,
           check_silence: bool = True):
    """SI-SDR (dB) over the last axis; broadcasts over leading axes.

    ``eps=None`` uses torchmetrics (its machine-epsilon guard); a float uses the same formula
    here with that guard. A silent estimate or reference is refused
    (:class:`SpeechMetricError`: the score is undefined); training losses and validation
    inside a training loop pass ``check_silence=False`` and get the guard's value instead
    (0 dB for a silent estimate)."""
    est, ref = _as_tensor(estimate, "estimate"), _as_tensor(reference, "reference")
    _check_finite(est, "estimate")
    _check_finite(ref, "reference")
    _check_broadcast(est, ref)
    if check_silence:
        _check_not_silent(ref, "reference", zero_mean)
        _check_not_silent(est, "estimate", zero_mean)
    return _like(_si_sdr(est, ref, zero_mean, eps), estimate)


def si_sdr_improvement(estimate, reference, mixture, zero_mean: bool = True):
    """``SI-SDR(estimate, reference) - SI-SDR(mixture, reference)`` (dB)."""
    est = _as_tensor(estimate, "estimate")
    ref = _as_tensor(reference, "reference")
    mix = _as_tensor(mixture, "mixture")
    for name, value in (("estimate", est), ("reference", ref), ("mixture", mix)):
        _check_finite(value, name)
        _check_not_silent(value, name, zero_mean)
    _check_broadcast(est, ref)
    _check_broadcast(mix, ref, "mixture and reference")
    if mix.ndim < ref.ndim:
        mix = mix.unsqueeze(-2).expand_as(ref)
    out = _si_sdr(est, ref, zero_mean, None) - _si_sdr(mix.to(est.dtype), ref, zero_mean, None)
    return _like(out, estimate)


def pairwise_si_sdr(estimates, references):
    """``(B, n_est, n_ref)`` SI-SDR of every estimate against every reference."""
    est, ref = _as_tensor(estimates, "estimates"), _as_tensor(references, "references")
    _check_finite(est, "estimates")
    _check_finite(ref, "references")
    if est.ndim != 3 or ref.ndim != 3:
        raise ValueError(f"estimates and references must be (batch, n_src, samples); got "
                         f"{tuple(est.shape)} and {tuple(ref.shape)}")
    _check_broadcast(est[:, :1], ref[:, :1], "estimates and references (batch axis)")
    return _like(_si_sdr(est.unsqueeze(2), ref.unsqueeze(1), True, None), estimates)


def best_permutation(estimates, references, *, check_silence: bool = True):
    """For ``(B, n_src, L)`` inputs: the PIT SI-SDR ``(B,)`` (mean over sources) and the
    permutation ``(B, n_src)`` that maps references to estimates (``est[perm[i]] ~ ref[i]``).
    Numpy inputs give numpy outputs. ``check_silence`` as in :func:`si_sdr`."""
    est, ref = _as_tensor(estimates, "estimates"), _as_tensor(references, "references")
    _check_finite(est, "estimates")  # a NaN score would not say which input held the NaN
    _check_finite(ref, "references")
    if check_silence:
        _check_not_silent(ref, "references")
        _check_not_silent(est, "estimates")
    best, perm = _best_permutation(est, ref)
    return _like(best, estimates), _like(perm, estimates)


def _best_permutation(est: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if est.shape != ref.shape or est.ndim != 3:
        raise ValueError(f"estimates and references must both be (batch, n_src, samples); got "
                         f"{tuple(est.shape)} and {tuple(ref.shape)}")
    pair = _si_sdr(est.unsqueeze(2), ref.unsqueeze(1), True, None)  # (B, est, ref)
    n = est.shape[1]
    perms = torch.tensor(list(itertools.permutations(range(n))), device=pair.device)
    # score[b, p] = mean_i pair[b, perms[p, i], i]
    idx = torch.arange(n, device=pair.device)
    scores = pair[:, perms, idx].mean(-1)  # (B, n_perm)
    best, which = scores.max(dim=1)
    return best, perms[which]


def pit_si_sdr(estimates, references):
    """PIT SI-SDR ``(B,)`` of ``(B, n_src, L)`` estimates (mean over sources)."""
    return best_permutation(estimates, references)[0]


def reorder(estimates, permutation):
    """Reorder ``(B, n_src, L)`` estimates so that source i matches reference i."""
    if torch.is_tensor(estimates):
        return torch.stack([e[p] for e, p in zip(estimates, torch.as_tensor(permutation))])
    return np.stack([e[np.asarray(p)] for e, p in zip(np.asarray(estimates), permutation)])


def pit_loss(estimates: torch.Tensor, references: torch.Tensor,
             threshold: float | None = None) -> torch.Tensor:
    """Negative utterance-level PIT SI-SNR (zero-mean), averaged over the batch.

    ``threshold`` (a loss in dB, e.g. -30): examples whose loss is already below it are left
    out of the mean (SpeechBrain's ``threshold_byloss``, used by the MossFormer recipes); when
    every example is below it, all are kept."""
    losses = -_best_permutation(_as_tensor(estimates), _as_tensor(references))[0]
    if threshold is not None:
        keep = losses > threshold
        if keep.any():
            losses = losses[keep]
    return losses.mean()


def sdr(estimate, reference, filter_length: int = 512):
    """BSS-eval SDR (dB) of ``(n_src, L)`` estimates against references (fast_bss_eval)."""
    import fast_bss_eval

    est = np.atleast_2d(_as_numpy(estimate, "estimate"))
    ref = np.atleast_2d(_as_numpy(reference, "reference"))
    if est.shape[-1] != ref.shape[-1]:  # fast_bss_eval would cut the longer one silently
        raise ValueError(f"estimate has {est.shape[-1]} samples, reference {ref.shape[-1]}")
    _check_finite(est, "estimate")
    _check_finite(ref, "reference")
    _check_not_silent(ref, "reference", zero_mean=False)
    _check_not_silent(est, "estimate", zero_mean=False)
    if est.shape != ref.shape:
        raise ValueError(f"estimate {est.shape} and reference {ref.shape} must have the same "
                         f"shape (n_src, samples)")
    # source i against reference i, as si_sdr scores them: given all sources at once,
    # fast_bss_eval solves the best permutation itself, so swapped estimates scored as well
    # as aligned ones. When its best permutation is not the given order, each pair is scored
    # alone (the SDR of a pair does not depend on the other sources; fast_bss_eval's
    # one-source path fails on a perfect estimate, which is always in order)
    try:
        values, perm = fast_bss_eval.sdr(ref, est, filter_length=filter_length,
                                         return_perm=True)
        in_order = np.array_equal(np.asarray(perm), np.arange(len(ref)))
    except ValueError:  # an exact estimate (infinite SDR) breaks its permutation solver
        in_order = False
    if in_order:
        out = np.asarray(values, dtype=float)
    else:
        out = np.array([_pair_sdr(e, r, filter_length) for e, r in zip(est, ref)])
    return torch.as_tensor(out) if torch.is_tensor(estimate) else out


def _pair_sdr(estimate: np.ndarray, reference: np.ndarray, filter_length: int) -> float:
    """SDR of one estimate against one reference; inf for a scaled copy of the reference
    (fast_bss_eval fails on it: the distortion it would divide by is zero)."""
    import fast_bss_eval

    try:
        return float(np.asarray(fast_bss_eval.sdr(reference[None], estimate[None],
                                                  filter_length=filter_length))[0])
    except ValueError:
        e, r = estimate.astype(np.float64), reference.astype(np.float64)
        residual = e - (e @ r) / (r @ r) * r
        if residual @ residual <= 1e-12 * (e @ e):
            return float("inf")
        raise


def _mono_pair(estimate, reference) -> tuple[np.ndarray, np.ndarray]:
    est, ref = _as_numpy(estimate, "estimate"), _as_numpy(reference, "reference")
    est, ref = np.squeeze(est), np.squeeze(ref)
    if est.ndim != 1 or ref.ndim != 1:
        raise ValueError(f"PESQ/STOI take one mono signal each; got estimate {est.shape} and "
                         f"reference {ref.shape} (loop over channels)")
    if len(est) != len(ref):
        raise ValueError(f"estimate has {len(est)} samples, reference {len(ref)}")
    _check_finite(est, "estimate")
    _check_finite(ref, "reference")
    return est, ref


# PESQ and STOI are plain functions of (estimate, reference, sample_rate), positional or by
# keyword. They used to take *args and warn on every positional call while their order moved
# from (reference, estimate): the warning could not tell old callers from new ones, so it
# fired on the documented call.
def pesq_score(estimate, reference, sample_rate: int, mode: str | None = None) -> float:
    """PESQ of ``estimate`` against ``reference``; wide-band at 16 kHz, narrow-band at 8 kHz
    (other rates: resample first). Call as ``pesq_score(estimate, reference, sample_rate)``
    or with keywords."""
    from pesq import NoUtterancesError, PesqError, pesq

    sample_rate = int(sample_rate)
    if sample_rate not in (8000, 16000):
        raise ValueError(f"PESQ needs 8000 or 16000 Hz audio, got {sample_rate} Hz")
    est, ref = _mono_pair(estimate, reference)
    mode = mode or ("wb" if sample_rate == 16000 else "nb")
    for name, sig in (("reference", ref), ("estimate", est)):
        if not np.any(sig):
            raise SpeechMetricError(f"PESQ found no utterance: the {name} is all zeros")
    try:
        return float(pesq(sample_rate, ref, est, mode))
    except NoUtterancesError:
        raise SpeechMetricError(
            "PESQ found no utterance in the reference or the estimate (silent or too quiet, "
            "or shorter than about 0.25 s of speech); PESQ is undefined for this pair"
        ) from None
    except PesqError as err:
        raise SpeechMetricError(f"PESQ failed: {type(err).__name__}: {err}") from None


def stoi_score(estimate, reference, sample_rate: int, extended: bool = False) -> float:
    """STOI (or ESTOI with ``extended=True``) of ``estimate`` against ``reference``. Call as
    ``stoi_score(estimate, reference, sample_rate)`` or with keywords."""
    from pystoi import stoi

    sample_rate = int(sample_rate)
    est, ref = _mono_pair(estimate, reference)
    if not np.any(ref):
        raise SpeechMetricError("STOI is undefined for a silent reference (all zeros)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(stoi(ref, est, sample_rate, extended=extended))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        # pystoi returns 1e-5 with a warning: a number that looks like a score
        raise SpeechMetricError(f"STOI needs more speech: {len(ref) / sample_rate:.2f} s leave "
                                f"too few frames once silent ones are removed (give >= ~0.4 s "
                                f"of speech)")
    return value


def evaluate_separation(estimates: np.ndarray, references: np.ndarray, mixture: np.ndarray,
                        sample_rate: int, perceptual: bool = True,
                        skip_undefined: bool = False) -> dict[str, float]:
    """PIT-aligned SI-SDR, SI-SDRi, SDR (and PESQ/STOI) for one ``(n_src, L)`` example.
    ``skip_undefined``: a perceptual metric undefined for a source (PESQ finding no
    utterance) is left out of the result instead of raising, so the other scores stand."""
    est = torch.as_tensor(_as_numpy(estimates, "estimates"))[None]
    ref = torch.as_tensor(_as_numpy(references, "references"))[None]
    references = ref[0].numpy()
    score, perm = best_permutation(est, ref)
    aligned = reorder(est, perm)[0].numpy()
    out = {"si_sdr": float(score),
           "si_sdri": float(si_sdr_improvement(aligned, references, mixture).mean()),
           "sdr": float(np.mean(sdr(aligned, references)))}
    if perceptual:
        for name, score in (("pesq", pesq_score), ("stoi", stoi_score)):
            try:
                out[name] = float(np.mean([score(estimate=e, reference=r,
                                                 sample_rate=sample_rate)
                                           for r, e in zip(references, aligned)]))
            except SpeechMetricError:
                if not skip_undefined:
                    raise
    return out


def oracle_masks(mixture: np.ndarray, references: np.ndarray, binary: bool = False,
                 n_fft: int = 256, hop: int = 64) -> np.ndarray:
    """Sources ``(n_src, L)`` from the ideal ratio mask (or ideal binary mask, ``binary=True``)
    of the reference magnitudes applied to the mixture STFT: the ceilings of mask-based
    separation that benchmarks report next to trained models."""
    from scipy.signal import istft, stft

    mix = _as_numpy(mixture, "mixture").astype(np.float64)
    refs = _as_numpy(references, "references").astype(np.float64)
    overlap = n_fft - hop
    spec = stft(mix, nperseg=n_fft, noverlap=overlap)[2]
    mags = np.stack([np.abs(stft(r, nperseg=n_fft, noverlap=overlap)[2]) for r in refs])
    masks = (mags == mags.max(0, keepdims=True)).astype(float) if binary else (
        mags / (mags.sum(0, keepdims=True) + 1e-8))
    out = [istft(m * spec, nperseg=n_fft, noverlap=overlap)[1][:len(mix)] for m in masks]
    return np.stack([np.pad(o, (0, len(mix) - len(o))) for o in out])


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
