"""Positional encodings shared by the models, written once.

* :func:`sinusoidal_table`: the fixed interleaved sin/cos table of "Attention is all you need"
  (``table[:, 0::2] = sin``, ``table[:, 1::2] = cos``), as TFM-Tokenizer and Du-IN use it;
* :class:`ScaledSinusoidalEmbedding`: concatenated ``[sin, cos]`` times one learnable scale
  (MossFormer's masker);
* :func:`learnable_positions`: a learnable ``(1, length, dim)`` table as a bare
  ``nn.Parameter``, so the owning model keeps its state-dict key (AdaFortiTran, DBConformer);
* :class:`RotaryEmbedding`: rotary embedding on the first ``dim`` features in interleaved pairs
  with frozen frequencies (MossFormer); :meth:`RotaryEmbedding.table` lets a caller compute
  the cos/sin table once per forward and share it between blocks and tensors.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(length: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """``(length, dim)`` table, ``sin`` on even and ``cos`` on odd features."""
    if dim % 2:
        raise ValueError(f"a sinusoidal table needs an even dim, got {dim}")
    position = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(base) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)
    return table


def learnable_positions(length: int, dim: int, init: str = "normal",
                        std: float = 0.02) -> nn.Parameter:
    """A learnable ``(1, length, dim)`` positional table.

    ``init="normal"`` draws ``torch.randn`` (standard normal, DBConformer's release);
    ``"trunc_normal"`` draws a truncated normal of ``std`` (AdaFortiTran's release).
    """
    if init == "normal":
        return nn.Parameter(torch.randn(1, length, dim))
    if init == "trunc_normal":
        table = nn.Parameter(torch.zeros(1, length, dim))
        nn.init.trunc_normal_(table, std=std)
        return table
    raise ValueError(f"init must be 'normal' or 'trunc_normal', got {init!r}")


class ScaledSinusoidalEmbedding(nn.Module):
    """``[sin(t f), cos(t f)] * scale`` over ``dim`` features, one learnable ``scale``;
    the frequencies are a non-persistent buffer (recomputed, never stored)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, dim, 2).float() / dim),
                             persistent=False)

    def forward(self, n: int, device=None) -> torch.Tensor:
        t = torch.arange(n, device=device, dtype=self.inv_freq.dtype)
        sinu = t[:, None] * self.inv_freq
        return torch.cat([sinu.sin(), sinu.cos()], dim=-1) * self.scale  # (n, dim)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding on the first ``dim`` features (interleaved pairs); the
    frequencies are a frozen parameter (counted in parameter totals, as in the reference)."""

    def __init__(self, dim: int, theta: float = 10000.0):
        super().__init__()
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2).float() / dim)
        self.freqs = nn.Parameter(freqs, requires_grad=False)
        self.dim = dim

    def table(self, n: int, device=None, dtype: torch.dtype | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos`` and ``sin`` of the angles, each ``(n, dim)``."""
        angles = torch.arange(n, device=device, dtype=self.freqs.dtype)[:, None] * self.freqs
        angles = angles.repeat_interleave(2, dim=-1).to(dtype or self.freqs.dtype)
        return angles.cos(), angles.sin()

    def rotate(self, x: torch.Tensor, table: tuple[torch.Tensor, torch.Tensor] | None = None,
               seq_dim: int = -2) -> torch.Tensor:
        """Rotate ``x`` whose sequence axis is ``seq_dim`` (features last); ``table`` from
        :meth:`table` skips recomputing the angles."""
        if seq_dim >= -1:
            raise ValueError(f"seq_dim must be a negative axis before the features, got {seq_dim}")
        n = x.shape[seq_dim]
        cos, sin = table if table is not None else self.table(n, x.device, x.dtype)
        extra = -seq_dim - 2  # axes between the sequence and the features
        cos, sin = (t.view(n, *([1] * extra), self.dim) for t in (cos, sin))
        rot, rest = x[..., :self.dim], x[..., self.dim:]
        pairs = rot.unflatten(-1, (-1, 2))
        rotated_half = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
        rot = rot * cos + rotated_half * sin
        return torch.cat([rot, rest], dim=-1)
