"""MossFormer: monaural speech separation with gated single-head transformers and
convolution-augmented joint self-attention.

Zhao & Ma, "MossFormer: Pushing the Performance Limit of Monaural Speech Separation using
Gated Single-Head Transformer with Convolution-Augmented Joint Self-Attentions", ICASSP 2023
(arXiv:2302.11824). Re-implemented from the paper and the layer specification in
``speech_models.md`` (official PyTorch code: modelscope ``models/audio/separation``).

Encoder / masker / decoder (asteroid's split):

* **encoder** ``Conv1d(1, N, K, stride K/2, bias=False)`` + ReLU (1 ms hop at 8 kHz);
* **masker** GroupNorm -> ``Conv1d(N, N, 1)`` -> + scaled sinusoidal position embedding ->
  ``depth`` MossFormer blocks + LayerNorm, GroupNorm and a skip around the stack -> PReLU ->
  ``Conv1d(N, N * n_src, 1)`` -> ``tanh(Conv1d) * sigmoid(Conv1d)`` -> ``Conv1d(N, N, 1)`` ->
  ReLU = one mask per source;
* **decoder** ``ConvTranspose1d(N, 1, K, stride K/2, bias=False)``, trimmed/padded to the
  input length.

Each block: token shift of half the channels; ``FFConvM`` (ScaleNorm, Linear, SiLU, a
depthwise ``Conv1d(k=17)`` with residual, dropout) to the hidden ``v, u`` and to a shared
``qk`` that ``OffsetScale`` splits into quadratic/linear queries and keys; rotary position
embedding (one instance shared by all blocks) on 32 of the 128 q/k features; local attention
``relu(q k^T / group)^2`` within groups of ``group_size`` frames plus global linear attention
``q (k^T v) / n``, both applied to ``v`` and ``u``; the gate
``(att_u * v) * sigmoid(att_v * u)``; ``x + FFConvM(out)``.

Defaults are MossFormer(L): N 512, K 16, 24 blocks, group 256, q/k 128, expansion 4:
**42,101,338 parameters** for 2 sources (42,364,506 for 3). Input ``(B, L)`` mono waveform at
8 kHz (or ``(B, 1, L)``); output ``(B, n_src, L)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...nn.blocks import current_fast_path
from ...nn.positional import RotaryEmbedding, ScaledSinusoidalEmbedding
from ..registry import register_model

RotaryTable = tuple[torch.Tensor, torch.Tensor]


class ScaleNorm(nn.Module):
    """``x / ||x|| * sqrt(d) * g`` with one learnable gain."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.scale, self.eps = dim ** -0.5, eps
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.norm(x, dim=-1, keepdim=True) * self.scale
        return x / norm.clamp(min=self.eps) * self.g


class ConvModule(nn.Module):
    """Depthwise ``Conv1d(k, 'same', no bias)`` over time with a residual, on ``(B, T, C)``."""

    def __init__(self, channels: int, kernel_size: int = 17):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2,
                              groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x.transpose(1, 2)).transpose(1, 2)


class FFConvM(nn.Sequential):
    def __init__(self, dim_in: int, dim_out: int, dropout: float = 0.1, kernel_size: int = 17):
        super().__init__(ScaleNorm(dim_in), nn.Linear(dim_in, dim_out), nn.SiLU(),
                         ConvModule(dim_out, kernel_size), nn.Dropout(dropout))


class OffsetScale(nn.Module):
    def __init__(self, dim: int, heads: int = 4):
        super().__init__()
        self.gamma = nn.Parameter(torch.empty(heads, dim).normal_(std=0.02))
        self.beta = nn.Parameter(torch.zeros(heads, dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = x.unsqueeze(-2) * self.gamma + self.beta
        return out.unbind(dim=-2)


class MossFormerBlock(nn.Module):
    """Gated single-head transformer block with convolution-augmented joint attention."""

    def __init__(self, dim: int, rotary: RotaryEmbedding, group_size: int = 256,
                 query_key_dim: int = 128, expansion_factor: float = 4.0,
                 dropout: float = 0.1, shift_tokens: bool = True):
        super().__init__()
        hidden = int(dim * expansion_factor)
        self.group_size, self.shift_tokens = group_size, shift_tokens
        self.rotary = [rotary]  # shared; kept out of this module's parameters
        self.dropout = nn.Dropout(dropout)
        self.to_hidden = FFConvM(dim, hidden, dropout)
        self.to_qk = FFConvM(dim, query_key_dim, dropout)
        self.qk_offset_scale = OffsetScale(query_key_dim, heads=4)
        self.to_out = FFConvM(hidden // 2, dim, dropout)

    def forward(self, x: torch.Tensor, rotary_table: RotaryTable | None = None) -> torch.Tensor:
        """``x``: ``(B, T, C)``; ``rotary_table``: the shared rotary cos/sin for ``T`` frames
        (computed here when not given)."""
        normed = x
        if self.shift_tokens:
            shift, keep = normed.chunk(2, dim=-1)
            normed = torch.cat([F.pad(shift, (0, 0, 1, -1)), keep], dim=-1)
        v, u = self.to_hidden(normed).chunk(2, dim=-1)
        qk = self.to_qk(normed)
        rotary = self.rotary[0]
        if rotary_table is None:
            rotary_table = rotary.table(qk.shape[1], qk.device, qk.dtype)
        rotary_table = tuple(t.to(qk.dtype) for t in rotary_table)  # autocast: bf16 q/k
        if current_fast_path().fused_projections:  # rotate the four q/k at once, same values
            offset = qk.unsqueeze(-2) * self.qk_offset_scale.gamma + self.qk_offset_scale.beta
            rotated = rotary.rotate(offset, rotary_table, seq_dim=-3).unbind(dim=-2)
        else:
            rotated = (rotary.rotate(t, rotary_table) for t in self.qk_offset_scale(qk))
        att_v, att_u = self._attention(*rotated, v, u)
        return x + self.to_out((att_u * v) * torch.sigmoid(att_v * u))

    def _attention(self, quad_q, lin_q, quad_k, lin_k, v, u):
        b, n, _ = v.shape
        g = self.group_size
        pad = (-n) % g
        if pad:  # zero q/k/v in the padding: they add nothing to either attention
            quad_q, lin_q, quad_k, lin_k, v, u = (
                F.pad(t, (0, 0, 0, pad)) for t in (quad_q, lin_q, quad_k, lin_k, v, u))
        grouped = [t.unflatten(1, (-1, g)) for t in (quad_q, lin_q, quad_k, lin_k, v, u)]
        quad_q, lin_q, quad_k, lin_k, v, u = grouped
        attn = self.dropout(F.relu(quad_q @ quad_k.transpose(-1, -2) / g) ** 2)
        quad_v, quad_u = attn @ v, attn @ u
        lin_kv = torch.einsum("bgnd,bgne->bde", lin_k, v) / n
        lin_ku = torch.einsum("bgnd,bgne->bde", lin_k, u) / n
        lin_v = torch.einsum("bgnd,bde->bgne", lin_q, lin_kv)
        lin_u = torch.einsum("bgnd,bde->bgne", lin_q, lin_ku)
        att_v = (quad_v + lin_v).flatten(1, 2)[:, :n]
        att_u = (quad_u + lin_u).flatten(1, 2)[:, :n]
        return att_v, att_u


ScaledSinuEmbedding = ScaledSinusoidalEmbedding  # the name used before nn.positional


class MossFormerMasker(nn.Module):
    """The mask network: ``(B, N, S)`` encoded mixture -> ``(B, n_src, N, S)`` masks."""

    def __init__(self, n_filters: int, n_src: int, depth: int, group_size: int,
                 query_key_dim: int, expansion_factor: float, dropout: float):
        super().__init__()
        self.n_src = n_src
        self.norm = nn.GroupNorm(1, n_filters, eps=1e-8)
        self.conv_in = nn.Conv1d(n_filters, n_filters, 1, bias=False)
        self.pos_enc = ScaledSinusoidalEmbedding(n_filters)
        self.rotary = RotaryEmbedding(min(32, query_key_dim))
        self.blocks = nn.ModuleList(
            MossFormerBlock(n_filters, self.rotary, group_size, query_key_dim, expansion_factor,
                            dropout) for _ in range(depth))
        self.blocks_norm = nn.LayerNorm(n_filters, eps=1e-6)
        self.stack_norm = nn.GroupNorm(1, n_filters, eps=1e-8)
        self.prelu = nn.PReLU()
        self.conv_out = nn.Conv1d(n_filters, n_filters * n_src, 1)
        self.output = nn.Conv1d(n_filters, n_filters, 1)
        self.output_gate = nn.Conv1d(n_filters, n_filters, 1)
        self.conv_mask = nn.Conv1d(n_filters, n_filters, 1, bias=False)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        b, n, s = w.shape
        x = self.conv_in(self.norm(w))
        x = x + self.pos_enc(s, x.device).T.to(x.dtype)
        skip = x
        h = x.transpose(1, 2)
        table = self.rotary.table(s, h.device, h.dtype)  # once for all blocks
        for block in self.blocks:
            h = block(h, table)
        x = self.stack_norm(self.blocks_norm(h).transpose(1, 2)) + skip
        x = self.conv_out(self.prelu(x)).view(b * self.n_src, n, s)
        x = torch.tanh(self.output(x)) * torch.sigmoid(self.output_gate(x))
        return F.relu(self.conv_mask(x)).view(b, self.n_src, n, s)


@register_model("mossformer", domain="speech", presets={
    "L": {}, "paper": {},
    "small": {"n_filters": 128, "depth": 4, "group_size": 64, "query_key_dim": 64},
    "tiny": {"n_filters": 64, "depth": 2, "group_size": 32, "query_key_dim": 32},
})
class MossFormer(nn.Module):
    """MossFormer separation: ``(B, L)`` mixture -> ``(B, n_src, L)`` sources.

    Parameters
    ----------
    n_src : number of speakers (2).
    n_filters, kernel_size : encoder width N and kernel K (512, 16; stride K / 2).
    depth, group_size, query_key_dim, expansion_factor, dropout : the block stack (24, 256,
        128, 4, 0.1).
    sample_rate : the rate the model was trained at (8000); :meth:`check_rate` names it.
    pad_end : False (the published behaviour): the encoder drops the last ``< K / 2`` samples
        that do not fill a hop and the output is zero there, as in the official module. True
        pads the mixture to whole hops first, so every sample is separated (same weights).
    """

    def __init__(self, n_src: int = 2, n_filters: int = 512, kernel_size: int = 16,
                 depth: int = 24, group_size: int = 256, query_key_dim: int = 128,
                 expansion_factor: float = 4.0, dropout: float = 0.1,
                 sample_rate: int = 8000, pad_end: bool = False):
        super().__init__()
        self.n_src, self.sample_rate, self.pad_end = n_src, sample_rate, pad_end
        self.kernel_size, self.stride = kernel_size, kernel_size // 2
        self.encoder = nn.Conv1d(1, n_filters, kernel_size, self.stride, bias=False)
        self.masker = MossFormerMasker(n_filters, n_src, depth, group_size, query_key_dim,
                                       expansion_factor, dropout)
        self.decoder = nn.ConvTranspose1d(n_filters, 1, kernel_size, self.stride, bias=False)

    def check_rate(self, sample_rate: float) -> None:
        if int(round(sample_rate)) != self.sample_rate:
            raise ValueError(f"MossFormer was built for {self.sample_rate} Hz audio, got "
                             f"{sample_rate:g} Hz: resample first (sigformer.speech.resample)")

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        if mixture.ndim == 3 and mixture.shape[1] == 1:
            mixture = mixture[:, 0]
        if mixture.ndim != 2:
            raise ValueError(f"MossFormer expects mono audio (batch, samples); got shape "
                             f"{tuple(mixture.shape)} - mix multichannel audio down or pick a "
                             f"channel")
        length = mixture.shape[-1]
        if length < self.kernel_size:
            raise ValueError(f"the mixture has {length} samples; MossFormer needs at least "
                             f"{self.kernel_size}")
        if self.pad_end:  # whole hops: the encoder then covers every input sample
            mixture = F.pad(mixture, (0, (-(length - self.kernel_size)) % self.stride))
        w = F.relu(self.encoder(mixture.unsqueeze(1)))
        masks = self.masker(w)  # (B, n_src, N, S)
        b, c, n, s = masks.shape
        est = self.decoder((w.unsqueeze(1) * masks).reshape(b * c, n, s)).view(b, c, -1)
        if est.shape[-1] < length:
            est = F.pad(est, (0, length - est.shape[-1]))
        return est[..., :length]
