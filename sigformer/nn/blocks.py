"""Attention and transformer blocks shared by the models.

The variants the reference models need are switches of one implementation rather than copies:
attention scaling by head dimension or (EEG-Conformer lineage) by embedding dimension, pre- or
post-LayerNorm residual blocks, optional QK-LayerNorm, convolutional projections (ClST's CTP)
and DeFTAN-II's convolutional efficient attention.

Reference path vs fast path: every module computes the published function by default. The
switches in :class:`FastPath` (set with :func:`fast_path` or :func:`set_fast_path`) select
faster code that computes the same function (``fused_projections``), or, explicitly, a
cheaper training regime (``attention_dropout=False``; see ``docs/performance.md``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass(frozen=True)
class FastPath:
    """Process-wide switches between reference and fast code paths.

    fused_projections : one GEMM for the q/k/v (or q/k) projections, weights concatenated at
        forward time, so the state-dict keys (``query``/``key``/``value``...) do not change.
        Same function (float rounding only).
    attention_dropout : apply dropout to the attention weights in training (reference). On CPU
        PyTorch's fused attention kernels do not take dropout, so ``p > 0`` falls back to the
        math path that builds the whole score tensor; ``False`` skips that dropout (other
        dropouts stay): faster, but a different regulariser - measured in
        ``docs/performance.md``. Eval mode is unaffected.
    """

    fused_projections: bool = False
    attention_dropout: bool = True


REFERENCE = FastPath()
FAST = FastPath(fused_projections=True)
_current: FastPath = REFERENCE


def current_fast_path() -> FastPath:
    """The switches in force now."""
    return _current


def set_fast_path(config: FastPath) -> None:
    """Set the switches process-wide (``REFERENCE`` restores the reference path)."""
    global _current
    if not isinstance(config, FastPath):
        raise TypeError(f"expected a FastPath, got {type(config).__name__}")
    _current = config


@contextlib.contextmanager
def fast_path(fused_projections: bool = True, attention_dropout: bool = True
              ) -> Iterator[FastPath]:
    """Run a block of code with the fast switches; by default only those that compute the
    same function (``attention_dropout=False`` must be asked for)."""
    previous = _current
    set_fast_path(FastPath(fused_projections, attention_dropout))
    try:
        yield _current
    finally:
        set_fast_path(previous)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(B, N, H*d) -> (B, H, N, d)``."""
    return x.unflatten(-1, (num_heads, -1)).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, N, d) -> (B, N, H*d)``."""
    return x.transpose(1, 2).flatten(2)


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, dropout: float,
                      training: bool, scale: float | None = None,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scaled dot-product attention on ``(B, H, N, d)`` with dropout on the weights in
    training, unless the fast path turned attention dropout off."""
    p = dropout if training and _current.attention_dropout else 0.0
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, scale=scale)


def _concatenated(layers: tuple[nn.Linear, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
    weight = torch.cat([layer.weight for layer in layers])
    biases = [layer.bias for layer in layers]
    return weight, None if biases[0] is None else torch.cat(biases)


def fused_linear(x: torch.Tensor, layers: tuple[nn.Linear, ...], cache: dict | None = None
                 ) -> tuple[torch.Tensor, ...]:
    """Apply several ``nn.Linear`` of one input as one GEMM (same function as applying each).

    ``cache`` (a dict the caller keeps): outside autograd the concatenated weights are kept
    there and reused while every weight keeps its storage and version (an optimizer step,
    ``load_state_dict`` or ``.to()`` makes them stale), so inference does not copy the
    weights at every call - for wide projections (Du-IN: 3 x 4096 x 160) that copy cost more
    than the fusion saved."""
    params = [t for layer in layers for t in (layer.weight, layer.bias) if t is not None]
    if cache is None or tracing() or (torch.is_grad_enabled()
                                      and any(p.requires_grad for p in params)):
        weight, bias = _concatenated(layers)
    else:
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
        if cache.get("key") != key:
            cache["key"], cache["value"] = key, _concatenated(layers)
        weight, bias = cache["value"]
    sizes = [layer.out_features for layer in layers]
    return F.linear(x, weight, bias).split(sizes, dim=-1)


def patchify_1d(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """``(B, C, L) -> (B, C*kernel, L')``, identical to ``F.unfold(x[..., None], (kernel, 1),
    stride=(stride, 1))`` but a strided view and one copy instead of im2col."""
    patches = x.unfold(-1, kernel, stride)  # (B, C, L', kernel)
    return patches.transpose(-1, -2).flatten(1, 2)


def patchify_2d(x: torch.Tensor, patch: tuple[int, int]) -> torch.Tensor:
    """Non-overlapping patches ``(B, C, H, W) -> (B, C*ph*pw, n_patches)``, identical to
    ``nn.Unfold(patch, stride=patch)``."""
    b, c, h, w = x.shape
    ph, pw = patch
    grid = x.view(b, c, h // ph, ph, w // pw, pw)
    return grid.permute(0, 1, 3, 5, 2, 4).reshape(b, c * ph * pw, (h // ph) * (w // pw))


def unpatchify_2d(patches: torch.Tensor, size: tuple[int, int], patch: tuple[int, int]
                  ) -> torch.Tensor:
    """Inverse of :func:`patchify_2d`, identical to ``nn.Fold(size, patch, stride=patch)``."""
    b, cpp, _ = patches.shape
    ph, pw = patch
    c, nh, nw = cpp // (ph * pw), size[0] // ph, size[1] // pw
    grid = patches.view(b, c, ph, pw, nh, nw).permute(0, 1, 4, 2, 5, 3)
    return grid.reshape(b, c, size[0], size[1])


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
    fuse_projections : take part in the fast path's fused q/k/v projection (False: this
        module keeps three GEMMs even on the fast path, where fusing measured slower).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0,
                 scale: str = "head", qk_norm: bool = False, bias: bool = True,
                 head_dim: int | None = None, qkv_bias: bool | None = None,
                 attention: str = "softmax", out_dropout: float = 0.0,
                 scale_parameter: bool = False, fuse_projections: bool = True):
        super().__init__()
        self.fuse_projections = fuse_projections
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
        self._fused_cache: dict = {}  # fast path: q/k/v weights concatenated for inference
        inner = num_heads * head_dim
        qkv_bias = bias if qkv_bias is None else qkv_bias
        self.query = nn.Linear(embed_dim, inner, bias=qkv_bias)
        self.key = nn.Linear(embed_dim, inner, bias=qkv_bias)
        self.value = nn.Linear(embed_dim, inner, bias=qkv_bias)
        self.out = nn.Linear(inner, embed_dim, bias=bias)
        self.out_dropout = nn.Dropout(out_dropout)
        self.q_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if _current.fused_projections and self.fuse_projections:
            return fused_linear(x, (self.query, self.key, self.value), self._fused_cache)
        return self.query(x), self.key(x), self.value(x)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (B, N, D); ``key_padding_mask``: (B, N), True where a token is padding."""
        q, k, v = self._project(x)
        q = self.q_norm(split_heads(q, self.num_heads))
        k = self.k_norm(split_heads(k, self.num_heads))
        v = split_heads(v, self.num_heads)
        if self.attention == "linear":
            if key_padding_mask is not None:
                k = k.masked_fill(key_padding_mask[:, None, :, None], torch.finfo(k.dtype).min)
                v = v.masked_fill(key_padding_mask[:, None, :, None], 0.0)
            out = linear_attention(q, k, v)
        else:
            mask = None
            if key_padding_mask is not None:
                mask = ~key_padding_mask[:, None, None, :]
            out = softmax_attention(q, k, v, dropout=self.dropout, training=self.training,
                                    scale=float(self.scale), mask=mask)
        return self.out_dropout(self.out(merge_heads(out)))


class ConvProjection(nn.Module):
    """Convolutional projection (CvT / ClST's CTP): depthwise ``Conv1d + BatchNorm`` over the
    tokens, then ``Linear``; ``stride`` shortens the sequence."""

    def __init__(self, dim: int, stride: int = 1, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel_size, stride, kernel_size // 2, groups=dim,
                              bias=False)
        self.norm = nn.BatchNorm1d(dim)
        self.linear = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T', D)
        x = self.norm(self.conv(tokens.transpose(1, 2)))
        return self.linear(x.transpose(1, 2))


class ConvProjectionAttention(nn.Module):
    """Multi-head softmax attention whose q/k/v come from :class:`ConvProjection` (keys and
    values with stride ``kv_stride``): the CTP attention of ClST. Submodules ``q``, ``k``,
    ``v``, ``out``; attention dropout follows :class:`FastPath`."""

    def __init__(self, dim: int, heads: int, kv_stride: int = 2, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.q, self.k = ConvProjection(dim), ConvProjection(dim, kv_stride)
        self.v = ConvProjection(dim, kv_stride)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(proj(x), self.heads) for proj in (self.q, self.k, self.v))
        out = softmax_attention(q, k, v, dropout=self.dropout, training=self.training)
        return self.out(merge_heads(out))


class ConvEfficientAttention(nn.Module):
    """DeFTAN-II's convolutional efficient attention (CEA): queries and keys from a gated
    ``Conv1d(k=3)`` of the input, values from the input, and efficient attention
    ``softmax_features(q) @ Drop(softmax_sequence(k)^T v / sqrt(d))``. Submodules
    ``qk_conv``, ``to_q``, ``to_k``, ``to_v``, ``to_out``; the fast path fuses ``to_q`` and
    ``to_k`` into one GEMM."""

    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.scale = heads, head_dim ** -0.5
        self.qk_conv = nn.Conv1d(dim, 2 * dim, 3, padding=1, bias=False)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.context_dropout = nn.Dropout(dropout)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))
        self._fused_cache: dict = {}  # fast path: q/k weights concatenated for inference

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, D)
        qk = F.glu(self.qk_conv(x.transpose(1, 2)), dim=1).transpose(1, 2)
        if _current.fused_projections:
            q, k = fused_linear(qk, (self.to_q, self.to_k), self._fused_cache)
        else:
            q, k = self.to_q(qk), self.to_k(qk)
        q, k, v = (split_heads(t, self.heads) for t in (q, k, self.to_v(x)))
        context = k.softmax(dim=2).transpose(-1, -2) @ v * self.scale  # (B, h, d, d)
        out = q.softmax(dim=3) @ self.context_dropout(context)
        return self.to_out(merge_heads(out))


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


def tracing() -> bool:
    """Under a tracer or compiler (export, ONNX, torch.compile): no Python loops whose
    length depends on the batch, so the fast path keeps the one-matrix form there."""
    checks = (torch.jit.is_tracing, getattr(torch.compiler, "is_compiling", None),
              getattr(torch.compiler, "is_exporting", None))  # is_exporting: torch >= 2.5
    return any(check() for check in checks if check is not None)
