"""Attention and transformer blocks shared by the models.

The variants the reference models need are switches of one implementation rather than copies:
attention scaling by head dimension or (EEG-Conformer lineage) by embedding dimension, pre- or
post-LayerNorm residual blocks, optional QK-LayerNorm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections and an output projection.

    Parameters
    ----------
    embed_dim, num_heads : model width and number of heads (``embed_dim % num_heads == 0``).
    dropout : dropout on the attention weights.
    scale : ``"head"`` divides logits by ``sqrt(embed_dim / num_heads)`` (standard);
        ``"embed"`` divides by ``sqrt(embed_dim)``, as EEG Conformer and DBConformer release it.
    qk_norm : LayerNorm on queries and keys per head (used by Du-IN).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0,
                 scale: str = "head", qk_norm: bool = False, bias: bool = True):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if scale not in ("head", "embed"):
            raise ValueError(f"scale must be 'head' or 'embed', got {scale!r}")
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.scale_mode = scale
        self.scale = 1 / math.sqrt(embed_dim if scale == "embed" else self.head_dim)
        self.dropout = dropout
        self.query = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.key = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.value = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (B, N, D); ``key_padding_mask``: (B, N), True where a token is padding."""
        q = self.q_norm(self._heads(self.query(x)))
        k = self.k_norm(self._heads(self.key(x)))
        v = self._heads(self.value(x))
        mask = None
        if key_padding_mask is not None:
            mask = ~key_padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
            scale=self.scale,
        )
        b, _, n, _ = out.shape
        return self.out(out.transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Sequential):
    """``Linear(D, expansion*D) -> activation -> Dropout -> Linear(expansion*D, D)``."""

    def __init__(self, embed_dim: int, expansion: int = 4, dropout: float = 0.0,
                 activation: type[nn.Module] = nn.GELU):
        super().__init__(
            nn.Linear(embed_dim, expansion * embed_dim), activation(), nn.Dropout(dropout),
            nn.Linear(expansion * embed_dim, embed_dim),
        )


class TransformerEncoderBlock(nn.Module):
    """Residual attention + feed-forward block.

    ``norm_first=True`` (pre-LN): ``x + Drop(MHA(LN(x)))`` then ``x + Drop(FFN(LN(x)))``.
    ``norm_first=False`` (post-LN): ``LN(x + Drop(MHA(x)))`` then ``LN(x + Drop(FFN(x)))``.
    """

    def __init__(self, embed_dim: int, num_heads: int, *, dropout: float = 0.0,
                 attn_dropout: float | None = None, ffn_dropout: float | None = None,
                 expansion: int = 4, attn_scale: str = "head", qk_norm: bool = False,
                 norm_first: bool = True, activation: type[nn.Module] = nn.GELU):
        super().__init__()
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(embed_dim)
        self.attn = MultiHeadAttention(
            embed_dim, num_heads, dropout if attn_dropout is None else attn_dropout,
            scale=attn_scale, qk_norm=qk_norm,
        )
        self.drop1 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.ffn = FeedForward(embed_dim, expansion,
                               dropout if ffn_dropout is None else ffn_dropout, activation)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        if self.norm_first:
            x = x + self.drop1(self.attn(self.norm1(x), key_padding_mask))
            return x + self.drop2(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.drop1(self.attn(x, key_padding_mask)))
        return self.norm2(x + self.drop2(self.ffn(x)))


class TransformerEncoder(nn.Module):
    """A stack of :class:`TransformerEncoderBlock` (keyword arguments go to every block)."""

    def __init__(self, depth: int, embed_dim: int, num_heads: int, **block_kwargs):
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerEncoderBlock(embed_dim, num_heads, **block_kwargs) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        for block in self.blocks:
            x = block(x, key_padding_mask)
        return x
