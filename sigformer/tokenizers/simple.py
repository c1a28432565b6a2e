"""Fixed and lightly learned tokenizers: convolutional patches, STFT frames, VQ codes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..nn.vq import VectorQuantizer
from ..validation import SignalError, check_array
from .base import Tokenizer, Tokens


def stft_magnitude(x: torch.Tensor, n_fft: int, hop: int, n_bins: int | None = None,
                   center: bool = False) -> torch.Tensor:
    """Magnitude STFT of ``(B, T)`` -> ``(B, F, frames)`` with a Hann window (torch.stft)."""
    if x.shape[-1] < n_fft and not center:
        raise SignalError(f"signals of {x.shape[-1]} samples are shorter than one STFT window "
                          f"({n_fft} samples)")
    spec = torch.stft(x, n_fft=n_fft, hop_length=hop, win_length=n_fft,
                      window=torch.hann_window(n_fft, device=x.device, dtype=x.dtype),
                      center=center, onesided=True, return_complex=True).abs()
    return spec[:, :n_bins] if n_bins is not None else spec


class PatchTokenizer(Tokenizer):
    """Channel-wise convolutional patches: each ``patch_size`` window of each channel becomes a
    ``embed_dim`` token (a shared ``Conv1d(1, D, patch, stride)``), channel-major."""

    def __init__(self, patch_size: int, embed_dim: int, stride: int | None = None):
        super().__init__()
        self.patch_size, self.stride = patch_size, stride or patch_size
        self.proj = nn.Conv1d(1, embed_dim, patch_size, self.stride)

    def encode(self, x: torch.Tensor) -> Tokens:
        x = self.check_input(x)
        b, c, t = x.shape
        if t < self.patch_size:
            raise SignalError(f"signals of {t} samples are shorter than one patch "
                              f"({self.patch_size})")
        emb = self.proj(x.reshape(b * c, 1, t)).transpose(1, 2)  # (B*C, P, D)
        p = emb.shape[1]
        return Tokens(emb.reshape(b, c * p, -1), None,
                      time_index=torch.arange(p, device=x.device).repeat(c),
                      channel_index=torch.arange(c, device=x.device).repeat_interleave(p))


class STFTTokenizer(Tokenizer):
    """One token per STFT frame and channel: the magnitude spectrum (first ``n_bins`` bins).

    With ``magnitude=False`` the tokens are real/imaginary pairs and :meth:`decode` inverts
    them with the inverse STFT: exact with ``center=True``; with ``center=False`` exact except
    the first sample (where the Hann window is 0) and any samples after the last frame.
    """

    def __init__(self, n_fft: int = 200, hop: int = 100, n_bins: int | None = None,
                 center: bool = False, magnitude: bool = True, sfreq: float | None = None):
        super().__init__()
        self.n_fft, self.hop, self.n_bins = n_fft, hop, n_bins
        self.center, self.magnitude, self.sfreq = center, magnitude, sfreq
        self._length: int | None = None

    def encode(self, x: torch.Tensor) -> Tokens:
        x = self.check_input(x)
        b, c, t = x.shape
        self._length = t
        flat = x.reshape(b * c, t)
        if self.magnitude:
            spec = stft_magnitude(flat, self.n_fft, self.hop, self.n_bins, self.center)
        else:
            z = torch.stft(flat, self.n_fft, self.hop, window=torch.hann_window(
                self.n_fft, device=x.device, dtype=x.dtype), center=self.center,
                return_complex=True)
            spec = torch.cat([z.real, z.imag], dim=1)
        frames = spec.shape[-1]
        emb = spec.transpose(1, 2).reshape(b, c * frames, -1)
        return Tokens(emb, None, time_index=torch.arange(frames, device=x.device).repeat(c),
                      channel_index=torch.arange(c, device=x.device).repeat_interleave(frames),
                      length=t)

    def decode(self, tokens: Tokens) -> torch.Tensor:
        """The signal of ``tokens``, as long as the one they were encoded from (their
        ``length``; tokens made elsewhere fall back to the last ``encode``'s length)."""
        length = tokens.length if tokens.length is not None else self._length
        if self.magnitude:
            raise NotImplementedError("magnitude STFT tokens discard phase; use magnitude=False "
                                      "to decode")
        c = int(tokens.channel_index.max()) + 1
        b = tokens.batch_size
        emb = tokens.embeddings.reshape(b * c, -1, tokens.embeddings.shape[-1]).transpose(1, 2)
        half = emb.shape[1] // 2
        if emb.dtype in (torch.bfloat16, torch.float16):
            # embeddings made under autocast: torch.complex and istft take float32/64 only
            emb = emb.float()
        z = torch.complex(emb[:, :half], emb[:, half:])
        window = torch.hann_window(self.n_fft, device=emb.device, dtype=emb.dtype)
        if self.center:
            out = torch.istft(z, self.n_fft, self.hop, window=window, center=True,
                              length=length)
        else:  # torch.istft refuses: the Hann window is 0 at the first sample
            out = _istft_uncentred(z, self.n_fft, self.hop, window, length)
        return out.reshape(b, c, -1)


def _istft_uncentred(z: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor,
                     length: int | None) -> torch.Tensor:
    """Least-squares inverse of an uncentred STFT ``(batch, bins, frames)``: weighted overlap-
    add divided by the summed squared window. Exact wherever the window covers a sample; the
    first sample (window 0) and samples after the last frame come back as 0."""
    frames = torch.fft.irfft(z, n=n_fft, dim=1) * window[:, None]
    n_frames = z.shape[-1]
    total = (n_frames - 1) * hop + n_fft
    fold = torch.nn.Fold((1, total), (1, n_fft), stride=(1, hop))
    signal = fold(frames)[:, 0, 0]
    norm = fold((window ** 2)[None, :, None].expand(1, n_fft, n_frames))[:, 0, 0]
    out = signal / norm.clamp_min(torch.finfo(norm.dtype).tiny)
    length = total if length is None else length
    return torch.nn.functional.pad(out, (0, max(length - total, 0)))[:, :length]


class VQTokenizer(Tokenizer):
    """Discrete tokens from any continuous tokenizer through a :class:`VectorQuantizer`.

    ``fit(X)`` learns the codebook (k-means initialisation, then EMA passes over the data);
    ``encode`` returns ids and the quantised embeddings; ``decode`` maps ids back to code
    vectors and through the base tokenizer's decode when it has one.
    """

    discrete = True

    def __init__(self, base: Tokenizer, num_codes: int = 512, dim: int | None = None,
                 l2_normalize: bool = True, dead_code_threshold: float = 1e-3,
                 decay: float = 0.9):
        super().__init__()
        self.base = base
        self.sfreq = base.sfreq
        self.num_codes, self.l2_normalize = num_codes, l2_normalize
        self._dim = dim
        self.quantizer: VectorQuantizer | None = None
        self.dead_code_threshold, self.decay = dead_code_threshold, decay

    def _ensure_quantizer(self, dim: int) -> VectorQuantizer:
        if self.quantizer is None:
            self.quantizer = VectorQuantizer(
                self.num_codes, dim, init="kmeans", ema="normalized_mean" if self.l2_normalize
                else "average", l2_normalize=self.l2_normalize, decay=self.decay,
                dead_code_threshold=self.dead_code_threshold)
        return self.quantizer

    def fit(self, X, y=None, epochs: int = 5, batch_size: int = 256, seed: int = 0, **kwargs):
        X = check_array(X, ndim=(2, 3), name="X")
        torch.manual_seed(seed)
        with torch.no_grad():
            parts = [self.base.encode(torch.as_tensor(np.asarray(X[i:i + batch_size],
                                                                 np.float32))).embeddings
                     for i in range(0, len(X), batch_size)]
            emb = torch.cat([p.reshape(-1, p.shape[-1]) for p in parts])
        vq = self._ensure_quantizer(emb.shape[-1])
        vq.train()
        with torch.no_grad():
            vq(emb)  # k-means initialisation on all embeddings
            for _ in range(epochs):
                for part in emb[torch.randperm(len(emb))].split(batch_size * 16):
                    vq(part)
        vq.eval()
        return self

    def encode(self, x: torch.Tensor) -> Tokens:
        if self.quantizer is None:
            raise RuntimeError("VQTokenizer has no codebook yet: call fit(X) first")
        tok = self.base.encode(x)
        out = self.quantizer(tok.embeddings)
        return Tokens(out.quantized, out.indices, tok.time_index, tok.channel_index,
                      tok.freq_index, length=tok.length)

    def decode(self, tokens: Tokens) -> torch.Tensor:
        if self.l2_normalize:
            raise NotImplementedError(
                "this VQ tokenizer's codes are unit-norm (l2_normalize=True, the default for "
                "matching token shapes): decoding cannot restore the signal's amplitude; build "
                "it with l2_normalize=False to decode")
        emb = self.quantizer.lookup(tokens.ids)
        return self.base.decode(Tokens(emb, None, tokens.time_index, tokens.channel_index,
                                       tokens.freq_index, length=tokens.length))


def codebook_report(quantizer: VectorQuantizer) -> dict[str, float]:
    """Codebook health since the last ``reset_usage``: size, usage (fraction of codes used),
    used and dead (never assigned) code counts, and perplexity (exp of the entropy of the code
    distribution; equal to the number of codes when all are used equally)."""
    dead = quantizer.dead_codes()
    return {"codebook_size": quantizer.num_codes, "usage": quantizer.codebook_usage(),
            "used_codes": quantizer.num_codes - dead, "dead_codes": dead,
            "perplexity": quantizer.usage_perplexity()}


__all__ = ["PatchTokenizer", "STFTTokenizer", "VQTokenizer", "codebook_report",
           "stft_magnitude"]
