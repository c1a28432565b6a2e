"""AdaFortiTran and FortiTran: transformer OFDM channel estimators.

Guler & Jafarkhani, "AdaFortiTran: An Adaptive Transformer Model for Robust OFDM Channel
Estimation", IEEE ICC 2025 (arXiv:2505.09076). Re-implemented from the paper and the layer
specification in ``rf_models.md`` (official release BerkIGuler/AdaFortiTran b55e57de).

Input: LS estimates at the pilots, complex ``(B, Np_sc, Np_sym)`` (or real
``(B, Np_sc, Np_sym, 2)`` with ``[real, imag]`` last), and for AdaFortiTran the channel
statistics ``(B, 3)`` = SNR (dB), delay spread (ns), Doppler (Hz). Output: the channel on the
whole grid, complex ``(B, n_subcarriers, n_symbols)``. Real and imaginary parts run through the
same network separately (stacked on the batch axis) and are recombined at the end.

Pipeline: ``Linear(P, K*L)`` upsampler -> ConvEnhancer -> ``Unfold`` into ``patch_size``
patches (a view/permute equal to ``nn.Unfold``) -> [AdaFortiTran: concatenate per-patch tokens from three statistic MLPs] ->
``Linear(., d_model)`` + learnable positional encoding -> post-LN transformer encoder ->
``Linear(d_model, patch)`` -> ``Fold`` -> residual with the enhanced grid -> ConvEnhancer.

Defaults (official config): patches 3x2, 6 layers, d_model 128, 4 heads, FFN 256, GELU,
dropout 0.1, 512 positions, statistic MLPs ``1 -> 7 -> 42 -> n_patches * 2``. Parameters:
1,081,826 with the 40 x 2 pilot grid (987,746 with 12 x 2); FortiTran 1,007,768.

Documented switches: ``normalize_statistics`` (default False: the official code feeds SNR in
dB, delay spread in ns and Doppler in Hz raw) scales each statistic by its trained range;
``statistics_range`` is the range the model was trained for - inputs outside it give a warning.
``attention_init`` (default ``"release"``): the release builds its encoder from
``nn.TransformerEncoderLayer``, whose ``nn.MultiheadAttention`` draws the packed q/k/v weight
Xavier-uniform (fan ``d_model + 3 d_model``) and zeroes the q/k/v and output biases, and
``nn.TransformerEncoder`` deep-copies that one layer, so all layers start equal; ``"release"``
does both after construction, ``"default"`` keeps the shared block's ``nn.Linear`` defaults
(independent layers), as sigformer did before.

The training recipe (Adam, ``ExponentialLR(0.995)`` per epoch, early stopping, best-epoch
restore) lives in :mod:`sigformer.recipes.ofdm`.

Fast inference path (on by default; ``set_fast(False)`` for the reference path): in eval mode
the batch runs in chunks of
``fast_chunk_slots`` slots. Every sample is independent in eval, so the outputs are those of the
whole batch (bitwise in the tests), but the activations of a chunk stay in cache: at batch 256
the whole-batch intermediates are ~110 MB per 32-channel convolution output and memory traffic,
not arithmetic, dominated (measured in ``docs/performance.md``: 2.0x at batch 256 on 2 idle
threads, never slower at batch 1 or 64). It is the default because it computes the same
function bit for bit; training mode always takes the reference path. Chunking is a CPU cache
measure and applies to CPU tensors only: on a GPU it serialises the batch into small launches
(measured 0.28x the whole batch at batch 256 on an H200, ``docs/performance.md``), so a
batch on any other device runs whole.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from ...nn.blocks import (
    MultiHeadAttention,
    TransformerEncoder,
    patchify_2d,
    tracing,
    unpatchify_2d,
)
from ..registry import register_model

REFERENCE_STATISTICS_RANGE = ((0.0, 25.0), (25.0, 300.0), (50.0, 1000.0))
STATISTIC_NAMES = ("SNR (dB)", "delay spread (ns)", "Doppler (Hz)")
ATTENTION_INITS = ("release", "default")


def _attention_projections(attn: nn.Module) -> tuple[list[nn.Linear], nn.Linear | None]:
    """The q/k/v projections (separate or one fused ``qkv``) and the output projection."""
    fused = getattr(attn, "qkv", None)
    qkv = [fused] if isinstance(fused, nn.Linear) else [
        getattr(attn, name) for name in ("query", "key", "value")]
    out = getattr(attn, "out", None)
    return qkv, out if isinstance(out, nn.Linear) else None


@torch.no_grad()
def init_attention_like_multihead(model: nn.Module) -> int:
    """Initialise every :class:`~sigformer.nn.blocks.MultiHeadAttention` in ``model`` as
    ``nn.MultiheadAttention._reset_parameters`` does: Xavier-uniform over the packed
    ``(3 * inner, embed)`` q/k/v weight, zero q/k/v biases, zero output bias (the output
    weight keeps ``nn.Linear``'s default). Returns the number of attention modules touched."""
    count = 0
    for attn in model.modules():
        if not isinstance(attn, MultiHeadAttention):
            continue
        qkv, out = _attention_projections(attn)
        fan_in = qkv[0].in_features
        fan_out = sum(p.out_features for p in qkv)
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        for proj in qkv:
            proj.weight.uniform_(-bound, bound)
            if proj.bias is not None:
                proj.bias.zero_()
        if out is not None and out.bias is not None:
            out.bias.zero_()
        count += 1
    return count


def as_complex_pilots(pilots: torch.Tensor, pilot_shape: tuple[int, int]) -> torch.Tensor:
    """Accept complex ``(B, Np_sc, Np_sym)`` or real ``(B, Np_sc, Np_sym, 2)``; name the layout
    expected otherwise."""
    expected = (f"complex pilots of shape (B, {pilot_shape[0]}, {pilot_shape[1]}) or real "
                f"(B, {pilot_shape[0]}, {pilot_shape[1]}, 2) with [real, imag] last")
    if not torch.is_tensor(pilots):
        raise TypeError(f"expected a torch tensor of {expected}, got {type(pilots).__name__}")
    if not pilots.is_complex():
        if pilots.ndim == 4 and pilots.shape[-1] == 2:
            pilots = torch.view_as_complex(pilots.float().contiguous())
        else:
            raise ValueError(f"expected {expected}; got a real tensor of shape "
                             f"{tuple(pilots.shape)}")
    if pilots.ndim != 3 or tuple(pilots.shape[1:]) != tuple(pilot_shape):
        raise ValueError(f"expected {expected}; got shape {tuple(pilots.shape)} - the pilot "
                         f"pattern differs from the one this model was built for")
    if not torch.isfinite(torch.view_as_real(pilots)).all():
        raise ValueError("pilots contain NaN or Inf values")
    return pilots


class ConvEnhancer(nn.Sequential):
    """``Conv2d 1->8->32->8->1`` (3x3, padding 1), ReLU between, none after the last."""

    def __init__(self, channels: tuple[int, ...] = (1, 8, 32, 8, 1), kernel_size: int = 3):
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
            layers.append(nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2))
            if i < len(channels) - 2:
                layers.append(nn.ReLU())
        super().__init__(*layers)


class StatisticAdapter(nn.Module):
    """One MLP per channel statistic, ``Linear(1,h1)-ReLU-Linear(h1,h2)-ReLU-Linear(h2, n*t)``;
    each gives ``t`` values per patch, concatenated over the statistics."""

    def __init__(self, n_patches: int, tokens_per_statistic: int,
                 hidden: tuple[int, int] = (7, 42), n_statistics: int = 3):
        super().__init__()
        self.n_patches, self.tokens = n_patches, tokens_per_statistic
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(1, hidden[0]), nn.ReLU(), nn.Linear(hidden[0], hidden[1]),
                          nn.ReLU(), nn.Linear(hidden[1], n_patches * tokens_per_statistic))
            for _ in range(n_statistics))

    def forward(self, statistics: torch.Tensor) -> torch.Tensor:
        parts = [mlp(statistics[:, i:i + 1]).view(-1, self.n_patches, self.tokens)
                 for i, mlp in enumerate(self.mlps)]
        return torch.cat(parts, dim=-1)


@register_model("adafortitran", domain="rf", presets={
    "paper": {},
    "repo_default": {"pilot_shape": (12, 2)},
    "small": {"num_layers": 2, "d_model": 64, "ffn_dim": 128},
    "tiny": {"num_layers": 1, "d_model": 32, "num_heads": 2, "ffn_dim": 64},
})
class AdaFortiTran(nn.Module):
    """AdaFortiTran (``adaptive=True``, default) or FortiTran (``adaptive=False``).

    Parameters
    ----------
    n_subcarriers, n_symbols : the resource grid (120 x 14).
    pilot_shape : pilot subcarriers x pilot symbols (40 x 2 for every 3rd subcarrier).
    patch_size : patch of the grid per token (3 x 2 -> 280 tokens of 6).
    d_model, num_layers, num_heads, ffn_dim, dropout : the encoder (128, 6, 4, 256, 0.1).
    max_seq_len : learnable positional-encoding length (512).
    adaptive : feed the channel statistics through the adapter MLPs (AdaFortiTran).
    adaptive_token_length : adapter values per patch, split over the 3 statistics (6).
    adapter_hidden : hidden sizes of each statistic MLP ((7, 42)).
    normalize_statistics : scale statistics to [0, 1] over ``statistics_range`` (default off,
        as published).
    statistics_range : ``((lo, hi),) * 3`` trained range of SNR, delay spread, Doppler.
    attention_init : ``"release"`` (``nn.MultiheadAttention`` init, all encoder layers
        starting from the same weights as ``nn.TransformerEncoder``'s copies) or ``"default"``.
    """

    def __init__(self, n_subcarriers: int = 120, n_symbols: int = 14,
                 pilot_shape: tuple[int, int] = (40, 2), patch_size: tuple[int, int] = (3, 2),
                 d_model: int = 128, num_layers: int = 6, num_heads: int = 4,
                 ffn_dim: int = 256, dropout: float = 0.1, max_seq_len: int = 512,
                 adaptive: bool = True, adaptive_token_length: int = 6,
                 adapter_hidden: tuple[int, int] = (7, 42),
                 normalize_statistics: bool = False,
                 statistics_range: tuple = REFERENCE_STATISTICS_RANGE,
                 attention_init: str = "release"):
        super().__init__()
        if attention_init not in ATTENTION_INITS:
            raise ValueError(f"attention_init must be one of {ATTENTION_INITS}, got "
                             f"{attention_init!r}")
        self.attention_init = attention_init
        self.grid = (int(n_subcarriers), int(n_symbols))
        self.pilot_shape = (int(pilot_shape[0]), int(pilot_shape[1]))
        self.patch_size = (int(patch_size[0]), int(patch_size[1]))
        if n_subcarriers % patch_size[0] or n_symbols % patch_size[1]:
            raise ValueError(f"the grid {self.grid} must be divisible by patch_size "
                             f"{self.patch_size}")
        self.n_patches = (n_subcarriers // patch_size[0]) * (n_symbols // patch_size[1])
        if self.n_patches > max_seq_len:
            raise ValueError(f"{self.n_patches} patches exceed max_seq_len={max_seq_len}")
        patch_dim = patch_size[0] * patch_size[1]
        self.adaptive = adaptive
        self.normalize_statistics = normalize_statistics
        self.statistics_range = tuple(tuple(float(v) for v in r) for r in statistics_range)
        self.upsampler = nn.Linear(self.pilot_shape[0] * self.pilot_shape[1],
                                   n_subcarriers * n_symbols)
        self.initial_enhancer = ConvEnhancer()
        token_dim = patch_dim
        if adaptive:
            if adaptive_token_length % 3:
                raise ValueError("adaptive_token_length must split evenly over 3 statistics")
            self.adapter = StatisticAdapter(self.n_patches, adaptive_token_length // 3,
                                            tuple(adapter_hidden))
            token_dim += adaptive_token_length
        self.input_projection = nn.Linear(token_dim, d_model)
        self.positional_encoding = nn.Parameter(torch.zeros(1, max_seq_len, d_model))
        nn.init.trunc_normal_(self.positional_encoding, std=0.02)
        self.encoder = TransformerEncoder(num_layers, d_model, num_heads, dropout=dropout,
                                          norm_first=False, activation=nn.GELU,
                                          ffn_hidden=ffn_dim)
        self.output_projection = nn.Linear(d_model, patch_dim)
        self.refiner = ConvEnhancer()
        self._warned_range = False
        self.fast = True  # bitwise equal to the reference path in eval (see module doc)
        if attention_init == "release":
            self._init_encoder_as_released()

    def _init_encoder_as_released(self) -> None:
        """``nn.TransformerEncoder(layer, n)`` deep-copies one freshly built layer."""
        blocks = self.encoder.blocks
        init_attention_like_multihead(blocks[0])
        for block in blocks[1:]:
            block.load_state_dict(blocks[0].state_dict())

    #: slots per chunk on the fast path (32 real grids: ~7 MB per conv activation, in L3)
    fast_chunk_slots: int = 16

    def set_fast(self, fast: bool = True) -> AdaFortiTran:
        """Switch between the reference path and the fast inference path (chunked eval
        batches; same outputs, weights unchanged). Training mode always takes the reference
        path: chunking would change the order of the dropout draws."""
        self.fast = bool(fast)
        return self

    def _check_statistics(self, statistics: torch.Tensor | None, batch: int) -> torch.Tensor:
        if statistics is None:
            raise ValueError("AdaFortiTran needs the channel statistics (B, 3): SNR (dB), "
                             "delay spread (ns), Doppler (Hz)")
        statistics = torch.as_tensor(statistics, dtype=torch.float32)
        if statistics.shape != (batch, 3):
            raise ValueError(f"statistics must have shape ({batch}, 3) = SNR (dB), delay spread "
                             f"(ns), Doppler (Hz); got {tuple(statistics.shape)}")
        if not torch.isfinite(statistics).all():
            raise ValueError("statistics contain NaN or Inf values")
        lo = statistics.new_tensor([r[0] for r in self.statistics_range])
        hi = statistics.new_tensor([r[1] for r in self.statistics_range])
        outside = ((statistics < lo) | (statistics > hi)).any(0)
        if outside.any() and not self._warned_range:
            names = [STATISTIC_NAMES[i] for i in torch.nonzero(outside).flatten().tolist()]
            warnings.warn(f"channel statistics outside the trained range "
                          f"{dict(zip(STATISTIC_NAMES, self.statistics_range))}: {names}; "
                          f"estimates there are extrapolations", stacklevel=3)
            self._warned_range = True
        if self.normalize_statistics:
            statistics = (statistics - lo) / (hi - lo)
        return statistics

    def _estimate_real(self, pilots: torch.Tensor, statistics: torch.Tensor | None):
        b = pilots.shape[0]
        grid = self.upsampler(pilots.reshape(b, -1)).view(b, 1, *self.grid)
        enhanced = self.initial_enhancer(grid)
        # view-based patches, identical to nn.Unfold/nn.Fold (whose im2col stalls under load)
        tokens = patchify_2d(enhanced, self.patch_size).transpose(1, 2)  # (B, n_patches, 6)
        if self.adaptive:
            tokens = torch.cat([tokens, self.adapter(statistics)], dim=-1)
        x = self.input_projection(tokens) + self.positional_encoding[:, :self.n_patches]
        x = self.output_projection(self.encoder(x))
        reconstructed = unpatchify_2d(x.transpose(1, 2), self.grid, self.patch_size)
        return self.refiner(enhanced + reconstructed).squeeze(1)

    def forward(self, pilots: torch.Tensor, statistics: torch.Tensor | None = None):
        pilots = as_complex_pilots(pilots, self.pilot_shape)
        b = pilots.shape[0]
        stats = self._check_statistics(statistics, b) if self.adaptive else None
        chunk = self.fast_chunk_slots
        if not self._runs_in_chunks(pilots):
            return self._estimate_complex(pilots, stats)
        return torch.cat([self._estimate_complex(pilots[i:i + chunk],
                                                 None if stats is None else stats[i:i + chunk])
                          for i in range(0, b, chunk)])

    def _runs_in_chunks(self, pilots: torch.Tensor) -> bool:
        """Whether this batch takes the chunked fast path. Not in training, not under tracers
        and exporters (a loop over the batch would be baked into the graph at the example's
        batch size), and not off the CPU: chunking only keeps activations in a CPU cache, on a
        GPU it serialises the batch into small launches."""
        return (self.fast and not self.training and pilots.shape[0] > self.fast_chunk_slots
                and pilots.device.type == "cpu" and not tracing())

    def _estimate_complex(self, pilots: torch.Tensor, stats: torch.Tensor | None
                          ) -> torch.Tensor:
        """Real and imaginary parts through the network as one batch of ``2B`` grids."""
        b = pilots.shape[0]
        if stats is not None:
            stats = stats.to(pilots.real.device).repeat(2, 1)
        both = torch.cat([pilots.real, pilots.imag], dim=0).float()
        # float32 before building the complex output: bf16/fp16 autocast outputs are not
        # accepted by torch.complex
        out = self._estimate_real(both, stats).float()
        return torch.complex(out[:b], out[b:])


@register_model("fortitran", domain="rf", presets={
    "paper": {}, "repo_default": {"pilot_shape": (12, 2)},
    "small": {"num_layers": 2, "d_model": 64, "ffn_dim": 128},
    "tiny": {"num_layers": 1, "d_model": 32, "num_heads": 2, "ffn_dim": 64},
})
class FortiTran(AdaFortiTran):
    """FortiTran: AdaFortiTran without the channel-statistics adapter (1,007,768 parameters
    with 40 x 2 pilots). Statistics passed to ``forward`` are ignored."""

    def __init__(self, **kwargs):
        kwargs.pop("adaptive", None)
        super().__init__(adaptive=False, **kwargs)
