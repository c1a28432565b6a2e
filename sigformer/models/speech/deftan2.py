"""DeFTAN-II: multichannel speech enhancement with subgroup processing in frequency and time.

Lee & Choi, "DeFTAN-II: Efficient Multichannel Speech Enhancement with Subgroup Processing",
IEEE/ACM TASLP 32:4850-4866, 2024 (arXiv:2308.15777). Re-implemented from the paper and the
layer specification in ``speech_models.md``.

Pipeline (input ``(B, n_mics, samples)`` at 16 kHz, output ``(B, n_srcs, samples)``):

1. pad (a hop on both sides, then to a multiple of the window) and divide by the standard
   deviation over all microphones and samples (undone at the output);
2. STFT per microphone (window 512, hop 256, Hann; 257 bins), real and imaginary parts of
   every microphone stacked as ``2 * n_mics`` feature maps over (time, frequency);
3. encoder ``Conv2d(2M, emb_dim * n_head, 3x3)`` + GroupNorm + a 2-D split dense block down to
   ``emb_dim`` channels;
4. ``n_layers`` DeFTAN-II blocks, each an F-transformer then a T-transformer: channel
   LayerNorm, unfold ``emb_ks`` neighbours along the axis, a 1-D split dense block back to
   ``emb_dim``, pre-LN convolutional efficient attention (CEA) and pre-LN dual-path
   feed-forward network (DPFN, its dilated convolution growing as ``2**block_index``) with
   residuals, ``ConvTranspose1d`` back to the axis length, and a residual over the transformer;
5. decoder ``Conv2d(emb_dim, 2 * n_srcs * n_head, 3x3)`` + split dense block to the real and
   imaginary spectrum of each output (direct complex mapping), inverse STFT, unpadding.

A split dense block splits its input channels into ``groups`` interleaved groups; unit ``i``
convolves the previous unit's output concatenated with group ``i`` (GroupNorm, per-channel
PReLU) and the last unit's output is kept.

Defaults are DeFTAN-II (base): **3,997,988 parameters** (reference 3,998 k); ``n_layers=12``
(large) gives 7,712,804 (7.71 M). Any number of microphones (``n_mics``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...nn.blocks import ConvEfficientAttention, patchify_1d
from ..registry import register_model

__all__ = ["AxisTransformer", "ChannelLayerNorm", "ConvEfficientAttention", "DeFTAN2",
           "DeFTAN2Block", "DualPathFeedForward", "SplitDenseBlock", "circular_subarray",
           "load_subarray_weights"]


class SplitDenseBlock(nn.Module):
    """Split dense block over ``dims``-D feature maps (1: ``(B, C, L)``, 2: ``(B, C, T, F)``)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, dims: int = 1):
        super().__init__()
        if in_channels != out_channels * groups:
            raise ValueError(f"in_channels ({in_channels}) must be out_channels "
                             f"({out_channels}) x groups ({groups})")
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.groups = groups
        self.units = nn.ModuleList(
            nn.Sequential(conv(out_channels * (2 if i else 1), out_channels, 3, padding=1),
                          nn.GroupNorm(1, out_channels, eps=1e-5), nn.PReLU(out_channels))
            for i in range(groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.groups
        out = self.units[0](x[:, 0::g])
        for i in range(1, g):
            out = self.units[i](torch.cat([out, x[:, i::g]], dim=1))
        return out


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of ``(B, C, T, F)`` maps, per (t, f) position."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.gamma + self.beta


class DualPathFeedForward(nn.Module):
    """DPFN: a pointwise path and a pointwise + dilated-conv path, concatenated, projected."""

    def __init__(self, dim: int, hidden: int, dilation: int, dropout: float):
        super().__init__()
        half = hidden // 2
        self.pointwise = nn.Sequential(nn.Linear(dim, half), nn.GELU(), nn.Dropout(dropout))
        self.to_conv = nn.Sequential(nn.Linear(dim, half), nn.GELU(), nn.Dropout(dropout))
        self.dilated = nn.Sequential(
            nn.Conv1d(half, half, 5, dilation=dilation, padding="same"),
            nn.GroupNorm(1, half, eps=1e-5), nn.PReLU(half))
        self.project = nn.Sequential(nn.Linear(2 * half, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.dilated(self.to_conv(x).transpose(1, 2)).transpose(1, 2)
        return self.project(torch.cat([self.pointwise(x), conv], dim=-1))


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(dim), fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class AxisTransformer(nn.Module):
    """The F- or T-transformer of a DeFTAN-II block on ``(B, C, T, F)`` maps."""

    def __init__(self, axis: str, emb_dim: int, emb_ks: int, emb_hs: int, att_dim: int,
                 hidden_dim: int, n_head: int, dropout: float, eps: float, block_index: int):
        super().__init__()
        self.axis, self.emb_ks, self.emb_hs = axis, emb_ks, emb_hs
        self.norm = ChannelLayerNorm(emb_dim, eps)
        self.subgroups = SplitDenseBlock(emb_dim * emb_ks, emb_dim, emb_ks, dims=1)
        self.attention = PreNorm(emb_dim, ConvEfficientAttention(emb_dim, n_head, att_dim,
                                                                 dropout))
        self.feed_forward = PreNorm(emb_dim, DualPathFeedForward(emb_dim, hidden_dim,
                                                                 2 ** block_index, dropout))
        self.restore = nn.ConvTranspose1d(emb_dim, emb_dim, emb_ks, stride=emb_hs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, f = x.shape
        h = self.norm(x)
        if self.axis == "freq":  # sequences along frequency, one per (batch, frame)
            seq = h.transpose(1, 2).reshape(b * t, c, f)
        else:  # sequences along time, one per (batch, bin)
            seq = h.permute(0, 3, 1, 2).reshape(b * f, c, t)
        seq = patchify_1d(seq, self.emb_ks, self.emb_hs)  # = F.unfold, without im2col
        tokens = self.subgroups(seq).transpose(1, 2)  # (B', L', C)
        tokens = tokens + self.attention(tokens)
        tokens = tokens + self.feed_forward(tokens)
        seq = self.restore(tokens.transpose(1, 2))  # (B', C, L)
        if self.axis == "freq":
            out = seq.view(b, t, c, f).transpose(1, 2)
        else:
            out = seq.view(b, f, c, t).permute(0, 2, 3, 1)
        return out + x


class DeFTAN2Block(nn.Module):
    def __init__(self, block_index: int, emb_dim: int, emb_ks: int, emb_hs: int, att_dim: int,
                 hidden_dim: int, n_head: int, dropout: float, eps: float):
        super().__init__()
        args = (emb_dim, emb_ks, emb_hs, att_dim, hidden_dim, n_head, dropout, eps, block_index)
        self.emb_ks, self.emb_hs = emb_ks, emb_hs
        self.freq = AxisTransformer("freq", *args)
        self.time = AxisTransformer("time", *args)

    def _fit(self, n: int) -> int:  # the length that unfold/ConvTranspose1d reproduce exactly
        return math.ceil((n - self.emb_ks) / self.emb_hs) * self.emb_hs + self.emb_ks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, t, f = x.shape
        x = F.pad(x, (0, self._fit(f) - f, 0, self._fit(t) - t))
        return self.time(self.freq(x))


@register_model("deftan2", domain="speech", presets={
    "base": {}, "paper": {}, "large": {"n_layers": 12},
    "small": {"n_layers": 2, "emb_dim": 32, "att_dim": 32, "hidden_dim": 96},
    "tiny": {"n_layers": 1, "emb_dim": 16, "att_dim": 16, "hidden_dim": 32, "n_head": 2,
             "emb_ks": 2},
})
class DeFTAN2(nn.Module):
    """DeFTAN-II: ``(B, n_mics, samples)`` noisy reverberant array signal ->
    ``(B, n_srcs, samples)`` enhanced speech (the direct path at the reference microphone).

    Parameters
    ----------
    n_srcs : outputs (1).  n_mics : microphones (4).
    win : STFT window and FFT size (512; hop = win / 2).
    n_layers : DeFTAN-II blocks (6 base, 12 large).
    att_dim, n_head : attention head size and heads (64, 4).
    hidden_dim : DPFN width (256).  emb_dim : feature channels (64).
    emb_ks, emb_hs : unfold kernel and hop along each axis (4, 1).
    dropout, eps : 0.1, 1e-5.  sample_rate : 16000 (checked by :meth:`check_rate`).
    """

    def __init__(self, n_srcs: int = 1, win: int = 512, n_mics: int = 4, n_layers: int = 6,
                 att_dim: int = 64, hidden_dim: int = 256, n_head: int = 4, emb_dim: int = 64,
                 emb_ks: int = 4, emb_hs: int = 1, dropout: float = 0.1, eps: float = 1e-5,
                 sample_rate: int = 16000):
        super().__init__()
        if win % 2:
            raise ValueError(f"win must be even, got {win}")
        self.n_srcs, self.n_mics, self.win, self.hop = n_srcs, n_mics, win, win // 2
        self.sample_rate = sample_rate
        self.encoder = nn.Sequential(
            nn.Conv2d(2 * n_mics, emb_dim * n_head, 3, padding=1),
            nn.GroupNorm(1, emb_dim * n_head, eps=eps),
            SplitDenseBlock(emb_dim * n_head, emb_dim, n_head, dims=2))
        self.blocks = nn.ModuleList(
            DeFTAN2Block(i, emb_dim, emb_ks, emb_hs, att_dim, hidden_dim, n_head, dropout, eps)
            for i in range(n_layers))
        self.decoder = nn.Sequential(
            nn.Conv2d(emb_dim, 2 * n_srcs * n_head, 3, padding=1),
            SplitDenseBlock(2 * n_srcs * n_head, 2 * n_srcs, n_head, dims=2))
        self.register_buffer("window", torch.hann_window(win), persistent=False)

    def check_rate(self, sample_rate: float) -> None:
        if int(round(sample_rate)) != self.sample_rate:
            raise ValueError(f"DeFTAN-II was built for {self.sample_rate} Hz audio, got "
                             f"{sample_rate:g} Hz: resample first")

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        rest = self.win - (self.hop + x.shape[-1] % self.win) % self.win
        return F.pad(x, (self.hop, rest + self.hop)), rest

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2 and self.n_mics == 1:
            x = x.unsqueeze(1)
        if x.ndim != 3 or x.shape[1] != self.n_mics:
            got = "mono" if x.ndim == 2 or (x.ndim == 3 and x.shape[1] == 1) else (
                f"{x.shape[1]}-microphone" if x.ndim == 3 else f"shape {tuple(x.shape)}")
            raise ValueError(f"DeFTAN-II expects (batch, {self.n_mics} microphones, samples); "
                             f"got {got} input {tuple(x.shape)}")
        b, m, n = x.shape
        padded, rest = self._pad(x)
        std = padded.std(dim=(1, 2), keepdim=True).clamp_min(1e-8)
        padded = padded / std
        spec = torch.stft(padded.reshape(b * m, -1), self.win, self.hop, window=self.window,
                          return_complex=True)  # (B*M, F, T)
        f, t = spec.shape[-2:]
        feats = torch.view_as_real(spec).view(b, m, f, t, 2).permute(0, 1, 4, 3, 2)
        h = self.encoder(feats.reshape(b, 2 * m, t, f))
        for block in self.blocks:
            h = block(h)
        h = h[..., :t, :f]
        # float32 before the complex ops: under bf16 autocast the decoder returns bf16, which
        # torch.complex and istft do not take
        out = self.decoder(h).float().view(b * self.n_srcs, 2, t, f).permute(0, 3, 2, 1)
        wave = torch.istft(torch.complex(out[..., 0].contiguous(), out[..., 1].contiguous()),
                           self.win, self.hop, window=self.window)
        wave = wave[:, self.hop:self.hop + n].reshape(b, self.n_srcs, n)
        return wave * std


ENCODER_WEIGHT = "encoder.0.weight"  # Conv2d(2 * n_mics, ...): the only per-microphone weight


def circular_subarray(n_trained: int, n_mics: int) -> list[int]:
    """Where the microphones of an ``n_trained`` uniform circular array sit in an ``n_mics``
    one of the same radius, both counted from microphone 0 (every ``n_mics // n_trained``-th):
    4 in 8 -> ``[0, 2, 4, 6]``."""
    if n_trained < 1 or n_mics < n_trained:
        raise ValueError(f"a uniform circular array of {n_trained} microphones is never a "
                         f"sub-array of one of {n_mics}")
    if n_mics % n_trained:
        raise ValueError(f"a uniform circular array of {n_trained} microphones is a sub-array "
                         f"of one of {n_mics} only when {n_mics} is a multiple of {n_trained}")
    return list(range(0, n_mics, n_mics // n_trained))


def load_subarray_weights(model: DeFTAN2, state: dict, positions: list[int]) -> DeFTAN2:
    """Load weights trained on a smaller array into ``model``, whose array contains it:
    trained microphone ``i`` sits at ``positions[i]`` of the new array. The new microphones
    start with zero encoder weights, so the widened model begins as the trained one applied
    to the sub-array (up to the input normalisation, whose standard deviation is taken over
    every microphone), and fine-tuning teaches it to use them. Every other weight must match
    in shape."""
    if ENCODER_WEIGHT not in state:
        raise ValueError(f"not DeFTAN-II weights: no {ENCODER_WEIGHT!r}")
    trained = state[ENCODER_WEIGHT]
    n_trained = trained.shape[1] // 2
    if len(positions) != n_trained:
        raise ValueError(f"{len(positions)} positions given for weights trained on "
                         f"{n_trained} microphones")
    if len(set(positions)) != n_trained or not all(0 <= p < model.n_mics for p in positions):
        raise ValueError(f"positions {positions} must be {n_trained} distinct microphones of "
                         f"the {model.n_mics}-microphone array (0..{model.n_mics - 1})")
    widened = torch.zeros_like(model.encoder[0].weight)
    for i, p in enumerate(positions):  # channels are (mic 0 re, mic 0 im, mic 1 re, ...)
        widened[:, 2 * p:2 * p + 2] = trained[:, 2 * i:2 * i + 2]
    model.load_state_dict({**state, ENCODER_WEIGHT: widened})
    return model
