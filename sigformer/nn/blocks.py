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


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Efficient (linear) attention of Shen et al. 2021, as in linear-attention-transformer:
    softmax over the feature axis of queries and the sequence axis of keys, O(N d^2)."""
    q = q.softmax(dim=-1) * q.shape[-1] ** -0.5
    k = k.softmax(dim=-2)
    context = torch.einsum("bhnd,bhne->bhde", k, v)
    return torch.einsum("bhnd,bhde->bhne", q, context)


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections and an output projection.

    Parameters
    ----------
    embed_dim, num_heads : model width and number of heads.
    dropout : dropout on the attention weights (softmax attention only).
    scale : ``"head"`` divides logits by ``sqrt(head_dim)`` (standard); ``"embed"`` divides by
        ``sqrt(embed_dim)``, as EEG Conformer and DBConformer release it.
    qk_norm : LayerNorm on queries and keys per head (Du-IN).
    head_dim : per-head width (default ``embed_dim // num_heads``; Du-IN uses 64 heads of
        width 64 on a 160-wide model, i.e. an inner width larger than the model).
    qkv_bias, bias : biases of the q/k/v projections and of the output projection.
    attention : ``"softmax"`` or ``"linear"`` (linear-attention-transformer's global heads,
        used by TFM-Tokenizer).
    out_dropout : dropout after the output projection.
    scale_parameter : keep the scale as a frozen ``nn.Parameter`` (Du-IN's release does, so
        it appears in parameter totals) instead of a Python float.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0,
                 scale: str = "head", qk_norm: bool = False, bias: bool = True,
                 head_dim: int | None = None, qkv_bias: bool | None = None,
                 attention: str = "softmax", out_dropout: float = 0.0,
                 scale_parameter: bool = False):
        super().__init__()
        if head_dim is None:
            if embed_dim % num_heads:
                raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads "
                                 f"({num_heads})")
            head_dim = embed_dim // num_heads
        if scale not in ("head", "embed"):
            raise ValueError(f"scale must be 'head' or 'embed', got {scale!r}")
        if attention not in ("softmax", "linear"):
            raise ValueError(f"attention must be 'softmax' or 'linear', got {attention!r}")
        self.num_heads, self.head_dim, self.attention = num_heads, head_dim, attention
        self.scale_mode = scale
        scale_value = 1 / math.sqrt(embed_dim if scale == "embed" else head_dim)
        if scale_parameter:
            self.scale = nn.Parameter(torch.tensor(scale_value), requires_grad=False)
        else:
            self.scale = scale_value
        self.dropout = dropout
        inner = num_heads * head_dim
        qkv_bias = bias if qkv_bias is None else qkv_bias
        self.query = nn.Linear(embed_dim, inner, bias=qkv_bias)
        self.key = nn.Linear(embed_dim, inner, bias=qkv_bias)
        self.value = nn.Linear(embed_dim, inner, bias=qkv_bias)
        self.out = nn.Linear(inner, embed_dim, bias=bias)
        self.out_dropout = nn.Dropout(out_dropout)
        self.q_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (B, N, D); ``key_padding_mask``: (B, N), True where a token is padding."""
        q = self.q_norm(self._heads(self.query(x)))
        k = self.k_norm(self._heads(self.key(x)))
        v = self._heads(self.value(x))
        if self.attention == "linear":
            if key_padding_mask is not None:
                k = k.masked_fill(key_padding_mask[:, None, :, None], torch.finfo(k.dtype).min)
                v = v.masked_fill(key_padding_mask[:, None, :, None], 0.0)
            out = linear_attention(q, k, v)
        else:
            mask = None
            if key_padding_mask is not None:
                mask = ~key_padding_mask[:, None, None, :]
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
                scale=float(self.scale),
            )
        b, _, n, _ = out.shape
        return self.out_dropout(self.out(out.transpose(1, 2).reshape(b, n, -1)))


class FeedForward(nn.Sequential):
    """``Linear(D, H) -> activation -> Dropout -> Linear(H, D) [-> Dropout]``, ``H = expansion*D``
    unless ``hidden_dim`` is given."""

    def __init__(self, embed_dim: int, expansion: int = 4, dropout: float = 0.0,
                 activation: type[nn.Module] = nn.GELU, hidden_dim: int | None = None,
                 out_dropout: float = 0.0):
        hidden = hidden_dim or expansion * embed_dim
        layers = [nn.Linear(embed_dim, hidden), activation(), nn.Dropout(dropout),
                  nn.Linear(hidden, embed_dim)]
        if out_dropout:
            layers.append(nn.Dropout(out_dropout))
        super().__init__(*layers)


class TransformerEncoderBlock(nn.Module):
    """Residual attention + feed-forward block.

    ``norm_first=True`` (pre-LN): ``x + Drop(MHA(LN(x)))`` then ``x + Drop(FFN(LN(x)))``.
    ``norm_first=False`` (post-LN): ``LN(x + Drop(MHA(x)))`` then ``LN(x + Drop(FFN(x)))``.
    Extra keyword arguments go to :class:`MultiHeadAttention` (``head_dim``, ``attention``...).
    """

    def __init__(self, embed_dim: int, num_heads: int, *, dropout: float = 0.0,
                 attn_dropout: float | None = None, ffn_dropout: float | None = None,
                 expansion: int = 4, attn_scale: str = "head", qk_norm: bool = False,
                 norm_first: bool = True, activation: type[nn.Module] = nn.GELU,
                 ffn_hidden: int | None = None, **attention_kwargs):
        super().__init__()
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(embed_dim)
        self.attn = MultiHeadAttention(
            embed_dim, num_heads, dropout if attn_dropout is None else attn_dropout,
            scale=attn_scale, qk_norm=qk_norm, **attention_kwargs,
        )
        self.drop1 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.ffn = FeedForward(embed_dim, expansion,
                               dropout if ffn_dropout is None else ffn_dropout, activation,
                               hidden_dim=ffn_hidden)
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
