"""ClST: a convolution-linked signal transformer for automatic modulation recognition.

Hou, Li, Lin, Liang, Han, "ClST: A Convolutional Transformer Framework for Automatic
Modulation Recognition by Knowledge Distillation", IEEE Trans. Wireless Commun. 23(7),
2024 (arXiv:2312.17446). **No official code exists**; the paper describes a hierarchy of
transformer stages that contain convolution, a parallel spatial-channel attention (PSCA) and a
convolution-transformer projection (CTP). The design decisions made here from that
description (see also the README's design note):

* **Hierarchy** (after CvT): ``len(dims)`` stages; each starts with a convolutional token
  embedding ``Conv1d(C_in, D, k, stride) + LayerNorm`` that halves the sequence, so the
  tokens go 128 -> 64 -> 32 -> 16 for a 2 x 128 frame while the width grows 32 -> 64 -> 128.
* **PSCA** on each stage's embedded feature map ``(B, D, T)``: a channel branch
  (average- and max-pooled descriptors through a shared ``D -> D/r -> D`` MLP, sigmoid) and a
  spatial branch (channel-wise mean and max, ``Conv1d(2, 1, 7)``, sigmoid) computed **in
  parallel** on the same input and fused by addition: ``x * a_c + x * a_s``.
* **CTP**: queries, keys and values are projected by a depthwise ``Conv1d(k=3) + BatchNorm``
  (keys/values with stride ``kv_stride`` to shorten the attended sequence) followed by a
  linear map, then standard multi-head attention; blocks are pre-LN with an MLP of ratio
  ``mlp_ratio`` (GELU).
* **Head**: LayerNorm, mean over tokens, ``Linear(dims[-1], n_outputs)``.

Input ``(B, 2, n_times)`` I/Q rows (``n_chans=2``; more channels work, e.g. several
antennas' I/Q); output logits ``(B, n_outputs)``. Defaults give 391,280 parameters for 11
classes. Presets: ``small`` (dims 16/32/64) and ``tiny`` (2 stages).
"""

from __future__ import annotations

import torch
from torch import nn

from ...nn.blocks import ConvProjection, ConvProjectionAttention
from ..registry import register_model

__all__ = ["PSCA", "ClST", "ClSTStage", "ConvAttention", "ConvProjection",
           "ConvTransformerBlock", "check_iq_input"]


class PSCA(nn.Module):
    """Parallel spatial-channel attention on ``(B, C, T)`` feature maps."""

    def __init__(self, channels: int, reduction: int = 4, kernel_size: int = 7):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.channel_mlp = nn.Sequential(nn.Conv1d(channels, hidden, 1), nn.ReLU(),
                                         nn.Conv1d(hidden, channels, 1))
        self.spatial = nn.Conv1d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = torch.sigmoid(self.channel_mlp(x.mean(-1, keepdim=True))
                                + self.channel_mlp(x.amax(-1, keepdim=True)))
        spatial = torch.sigmoid(self.spatial(torch.cat(
            [x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)))
        return x * channel + x * spatial


# The CTP attention is one of the shared attention variants of ``sigformer.nn.blocks``.
ConvAttention = ConvProjectionAttention


class ConvTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, kv_stride: int = 2,
                 dropout: float = 0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ConvAttention(dim, heads, kv_stride, dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ClSTStage(nn.Module):
    """Convolutional token embedding -> PSCA -> ``depth`` conv-transformer blocks."""

    def __init__(self, in_dim: int, dim: int, depth: int, heads: int, kernel_size: int,
                 stride: int, mlp_ratio: float, kv_stride: int, dropout: float,
                 psca_reduction: int):
        super().__init__()
        self.embed = nn.Conv1d(in_dim, dim, kernel_size, stride, kernel_size // 2)
        self.embed_norm = nn.LayerNorm(dim)
        self.psca = PSCA(dim, psca_reduction)
        self.blocks = nn.ModuleList(ConvTransformerBlock(dim, heads, mlp_ratio, kv_stride,
                                                         dropout) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, D, T')
        x = self.psca(self.embed(x))
        tokens = self.embed_norm(x.transpose(1, 2))
        for block in self.blocks:
            tokens = block(tokens)
        return tokens.transpose(1, 2)


@register_model("clst", domain="rf", presets={
    "paper": {},
    "small": {"dims": (16, 32, 64), "heads": (1, 2, 4)},
    "tiny": {"dims": (16, 32), "depths": (1, 1), "heads": (1, 2), "kernel_sizes": (7, 3),
             "strides": (2, 2)},
})
class ClST(nn.Module):
    """ClST for I/Q frames ``(B, n_chans, n_times)`` -> logits ``(B, n_outputs)``.

    Parameters
    ----------
    n_chans, n_outputs, n_times : input rows (2 = I, Q), classes, frame length.
    sfreq, chs_info : accepted for the uniform constructor; unused.
    dims, depths, heads, kernel_sizes, strides : per stage ((32, 64, 128), (1, 2, 2),
        (1, 2, 4), (7, 3, 3), (2, 2, 2)).
    mlp_ratio : MLP width over the embedding (2).
    kv_stride : stride of the key/value convolutional projections (2).
    dropout : in attention and MLPs (0.1).
    psca_reduction : channel-branch reduction of PSCA (4).
    """

    def __init__(self, n_chans: int = 2, n_outputs: int = 11, n_times: int = 128,
                 sfreq: float | None = None, chs_info=None,
                 dims: tuple[int, ...] = (32, 64, 128), depths: tuple[int, ...] = (1, 2, 2),
                 heads: tuple[int, ...] = (1, 2, 4), kernel_sizes: tuple[int, ...] = (7, 3, 3),
                 strides: tuple[int, ...] = (2, 2, 2), mlp_ratio: float = 2.0,
                 kv_stride: int = 2, dropout: float = 0.1, psca_reduction: int = 4):
        super().__init__()
        lengths = {len(dims), len(depths), len(heads), len(kernel_sizes), len(strides)}
        if len(lengths) != 1:
            raise ValueError("dims, depths, heads, kernel_sizes and strides need one entry per "
                             "stage")
        self.n_chans, self.n_outputs, self.n_times = n_chans, n_outputs, n_times
        in_dims = (n_chans, *dims[:-1])
        self.stages = nn.ModuleList(
            ClSTStage(i, d, n, h, k, s, mlp_ratio, kv_stride, dropout, psca_reduction)
            for i, d, n, h, k, s in zip(in_dims, dims, depths, heads, kernel_sizes, strides))
        self.norm = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_iq_input(x, self.n_chans, self.n_times, type(self).__name__)
        for stage in self.stages:
            x = stage(x)
        return self.head(self.norm(x.transpose(1, 2)).mean(1))


def check_iq_input(x: torch.Tensor, n_chans: int, n_times: int, model: str) -> None:
    """Frames must be ``(B, n_chans, n_times)``; name the expected layout otherwise."""
    if x.ndim != 3 or x.shape[1] != n_chans or x.shape[2] != n_times:
        raise ValueError(f"{model} expects I/Q frames of shape (batch, {n_chans}, {n_times}); "
                         f"got {tuple(x.shape)} - frame the signal to {n_times} samples")
