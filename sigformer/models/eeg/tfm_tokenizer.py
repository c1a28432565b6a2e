"""TFM-Tokenizer: single-channel EEG tokens from time-frequency motifs.

Pradeepkumar et al., "Tokenizing Single-Channel EEG with Time-Frequency Motif Learning"
(arXiv 2502.16060). Re-implemented from the paper and ``shared/reference/eeg_models.md`` §2.

* :class:`TFMTokenizer` (the VQ-VAE "2x2x8"): frequency path (conv patches of each STFT
  frame, linear-attention transformer, gated aggregation) + temporal path (strided conv on
  the raw signal), fused by a linear-attention transformer, L2-normalised and quantised into
  an 8192 x 64 EMA codebook; a depth-8 decoder reconstructs the spectrogram. 1,166,100
  parameters.
* :class:`TFMEncoder` (the downstream "TFM-Encoder 64x4"): token-id embedding initialised
  from the codebook, channel embedding (16 channels), sinusoidal time encoding, CLS token,
  depth-4 linear-attention transformer. 725,014 parameters with 6 classes (TUEV).
* :class:`TFMClassifier`: frozen tokenizer + encoder, raw signals in, logits out, so the
  sklearn estimator can use it. ``amplitude_input=True`` (a sigformer extension, off by
  default) also gives the head the per-channel log scale that percentile scaling removes.

Signals are 200 Hz; each channel is scaled by the 95th percentile of its absolute value; the
STFT uses a 200-sample Hann window, hop 100, no centring, first 100 bins (0-99 Hz): one token
per 1 s window with 0.5 s hop (9 tokens for 5 s).

Training (tokenizer pretraining, masked-token prediction, fine-tuning) lives in
:mod:`sigformer.recipes.tfm` (this file holds no training code; ``sigformer.recipes.pretrain``
trains any model that has a recipe).
Every quirk of the release is a documented switch whose default is the release; see
``docs/tfm.md``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...nn import TransformerEncoder
from ...nn.blocks import fused_linear, merge_heads, split_heads
from ...nn.positional import sinusoidal_table
from ...nn.vq import VectorQuantizer, tracing
from ...tokenizers.base import Tokenizer, Tokens
from ...tokenizers.simple import stft_magnitude
from ...validation import SignalError
from ..registry import register_model

TFM_SFREQ = 200.0
N_FFT, HOP, N_BINS = 200, 100, 100
# fast path: spectrogram frames per chunk of the frequency path (256 frames x 20 patches: the
# feed-forward activations stay in cache; a training step measured 128-384 within noise, 64 and
# the whole batch 3-5% slower)
FREQ_CHUNK_FRAMES = 256


def lat(dim: int, depth: int, heads: int = 8, layer_dropout: float = 0.0,
        ff_dropout: float = 0.0) -> TransformerEncoder:
    """linear-attention-transformer's encoder (pre-LN, global linear-attention heads, no q/k/v
    bias, GELU feed-forward x4, dropout after the attention projection)."""
    return TransformerEncoder(depth, dim, heads, dropout=0.0, attn_dropout=0.0,
                              ffn_dropout=ff_dropout, attention="linear", qkv_bias=False,
                              out_dropout=layer_dropout, norm_first=True)


def _softmax_last(x: torch.Tensor) -> torch.Tensor:
    """Softmax over a short last axis (a head width of 8): a hand-written exp/sum is about 2-4x
    faster on CPU than ``Tensor.softmax`` there, and equal within float rounding."""
    e = (x - x.amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


def _softmax_(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax of ``x`` over ``dim`` into one new tensor (exp and division in place on it).
    No autograd: :class:`_LinearAttention` writes the backward by hand."""
    e = (x - x.amax(dim, keepdim=True)).exp_()
    return e.div_(e.sum(dim, keepdim=True))


class _LinearAttention(torch.autograd.Function):
    """Linear-attention core on packed projections: ``qkv (B, N, 3*H*d) -> (B, N, H*d)``,
    ``softmax_d(q) * scale @ (softmax_N(k)^T v)`` per head, with a hand-written backward.

    Why: autograd of the plain formulation costs about twice the forward in small kernels
    over ``(B, H, N, 8)`` tensors (strided copies at every head split and merge, the softmax
    backward, and a gradient through the ``amax`` shift that is zero in exact arithmetic). Here
    q/k/v are made head-first once (one copy), both softmaxes are exp/sum, the scale is
    folded into the small ``(d, d)`` context, and the gradient of ``qkv`` is assembled in one
    buffer. Same function: equal to the reference within float rounding (tested)."""

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, heads: int, scale: float) -> torch.Tensor:
        b, n, width = qkv.shape
        # (B, N, 3, H, d) -> (3, B, H, N, d): one copy instead of one per tensor
        q, k, v = qkv.view(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4).contiguous()
        q, k = _softmax_(q, -1), _softmax_(k, -2)
        context = (k.transpose(-1, -2) @ v).mul_(scale)  # (B, H, d, d), scale folded in
        ctx.save_for_backward(q, k, v, context)
        ctx.scale = scale
        return (q @ context).transpose(1, 2).reshape(b, n, width // 3)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        q, k, v, context = ctx.saved_tensors  # q, k: softmax outputs
        b, h, n, d = q.shape
        grad = grad.reshape(b, n, h, d).transpose(1, 2).contiguous()  # (B, H, N, d)
        out = torch.empty(3, b, h, n, d, dtype=grad.dtype, device=grad.device)
        g_q = grad @ context.transpose(-1, -2)
        g_context = (q.transpose(-1, -2) @ grad).mul_(ctx.scale)
        g_k = v @ g_context.transpose(-1, -2)
        torch.matmul(k, g_context, out=out[2])  # g_v
        # softmax backward: s * (g - sum(g * s)) over the softmax axis
        torch.mul(q, g_q.sub_((g_q * q).sum(-1, keepdim=True)), out=out[0])
        torch.mul(k, g_k.sub_((g_k * k).sum(-2, keepdim=True)), out=out[1])
        return out.permute(1, 3, 0, 2, 4).reshape(b, n, 3 * h * d), None, None


def _autocast(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        return (torch.is_autocast_cpu_enabled() if device_type == "cpu"
                else torch.is_autocast_enabled())


def _fast_linear_attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """:class:`~sigformer.nn.blocks.MultiHeadAttention` (``attention="linear"``) with one packed
    q/k/v projection and the hand-written core, *before* its output dropout (the caller
    applies it): the same function, fewer kernels."""
    if _autocast(x.device.type) or tracing():
        # mixed dtypes (autocast) or a tracer: plain operations, autograd differentiates them
        q, k, v = (split_heads(t, attn.num_heads)
                   for t in fused_linear(x, (attn.query, attn.key, attn.value)))
        q = _softmax_last(q) * attn.head_dim ** -0.5
        context = k.softmax(dim=-2).transpose(-1, -2) @ v  # (B, H, d, d)
        return attn.out(merge_heads(q @ context))
    layers = (attn.query, attn.key, attn.value)
    weight = torch.cat([layer.weight for layer in layers])
    bias = None if attn.query.bias is None else torch.cat([layer.bias for layer in layers])
    out = _LinearAttention.apply(F.linear(x, weight, bias), attn.num_heads,
                                 attn.head_dim ** -0.5)
    return attn.out(out)


def _run_blocks(encoder: TransformerEncoder, x: torch.Tensor,
                masks: list[torch.Tensor | None] | None = None) -> torch.Tensor:
    """The fast path of a :func:`lat` stack. ``masks`` (one per block): pre-drawn, already
    scaled attention-output dropout masks (see :func:`_attention_dropout_masks`) replacing
    the ``out_dropout`` modules; ``None``: call the modules."""
    for i, block in enumerate(encoder.blocks):
        attn = _fast_linear_attention(block.attn, block.norm1(x))
        if masks is None:
            attn = block.attn.out_dropout(attn)
        elif masks[i] is not None:
            attn = attn * masks[i]
        x = x + block.drop1(attn)
        x = x + block.drop2(block.ffn(block.norm2(x)))
    return x


def _active(module: nn.Module) -> bool:
    return isinstance(module, nn.Dropout) and module.training and module.p > 0


def _attention_dropout_masks(encoder: TransformerEncoder, shape: tuple[int, ...],
                             like: torch.Tensor) -> list[torch.Tensor | None] | None:
    """The attention-output dropout masks of every block, drawn up front for the whole batch
    exactly as ``F.dropout`` draws them on CPU (``empty.bernoulli_(1 - p).div_(1 - p)``, block
    after block: the same generator calls in the same order), so a batch run in chunks drops
    the same entries as the reference. ``None`` when this cannot be reproduced: another
    dropout of the stack is active, ``p >= 1``, autocast (the mask would follow the low
    precision dtype), a tracer, or a non-CPU device (CUDA's fused dropout draws differently).
    """
    if (like.device.type != "cpu" or _autocast("cpu") or tracing()
            or any(_active(m) for block in encoder.blocks
                   for m in (block.drop1, block.drop2, *block.ffn))):
        return None
    masks: list[torch.Tensor | None] = []
    for block in encoder.blocks:
        drop = block.attn.out_dropout
        if not _active(drop):
            masks.append(None)
        elif drop.p >= 1:
            return None
        else:
            mask = torch.empty(shape, dtype=like.dtype, device=like.device)
            masks.append(mask.bernoulli_(1 - drop.p).div_(1 - drop.p))
    return masks


def run_transformer(encoder: TransformerEncoder, x: torch.Tensor, fast: bool) -> torch.Tensor:
    """Run a :func:`lat` stack: the reference modules, or the fast path (same weights, same
    dropout modules, packed q/k/v and hand-written attention core; equal within 1e-5)."""
    return _run_blocks(encoder, x) if fast else encoder(x)


def channel_scale(x: torch.Tensor, q: float = 0.95, eps: float = 1e-8) -> torch.Tensor:
    """The ``q`` quantile of each channel's absolute value plus ``eps``, ``(..., 1)``: what
    :func:`percentile_normalize` divides by.

    ``eps`` is absolute, in the data's unit, as in the published TFM code (kept so tokens and
    the parity tests match it). It is negligible for EEG in uV and for normal EEG in V
    (1e-5 to 1e-4 V: 0.01 to 0.1 %), but not for a near-flat channel in V: at 1e-7 V (0.1 uV)
    the scale is 10 % larger, so the channel is tokenized about 9 % smaller and its log scale
    (``TFMClassifier(amplitude_input=True)``) is offset by about 0.095 from the same data in
    uV. Scaling is unit-free only where the quantile is much larger than ``eps``: feed uV (or
    pass a smaller ``eps``) for recordings with quiet channels."""
    return torch.quantile(x.abs().float(), q, dim=-1, keepdim=True) + eps


def percentile_normalize(x: torch.Tensor, q: float = 0.95, eps: float = 1e-8) -> torch.Tensor:
    """Scale each channel by the ``q`` quantile of its absolute value plus ``eps`` (TFM's
    loader; ``eps`` is absolute, in the data's unit, as published: see :func:`channel_scale`
    for when it matters)."""
    return x / channel_scale(x, q, eps)


def tfm_spectrogram(x: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` signals at 200 Hz -> ``(B, 100, T)`` STFT magnitudes."""
    return stft_magnitude(x, N_FFT, HOP, N_BINS, center=False)


MASK_ROUNDING = ("truncate", "round")


def masked_count(n: int, ratio: float, rounding: str = "truncate") -> int:
    """How many of ``n`` bands/frames to mask: ``int(n * ratio)`` as released ("truncate",
    19 frames -> 9) or Python's ``round`` ("round", 19 frames -> 10)."""
    if rounding not in MASK_ROUNDING:
        raise ValueError(f"mask rounding must be one of {MASK_ROUNDING}, got {rounding!r}")
    return int(n * ratio) if rounding == "truncate" else int(round(n * ratio))


def freq_time_mask(n_bins: int, n_frames: int, freq_ratio: float = 0.5, freq_bin_size: int = 5,
                   time_ratio: float = 0.5, generator: torch.Generator | None = None,
                   rounding: str = "truncate") -> torch.Tensor:
    """Visible-entry mask ``(F, T)`` of ``freq_bin_temporal_masking``: ``freq_ratio`` of the
    ``freq_bin_size``-wide bands and ``time_ratio`` of the frames are masked (counts by
    :func:`masked_count`); the visible region is their intersection (about 25%). The
    complementary view is ``~mask``."""
    n_bands = n_bins // freq_bin_size
    n_masked_bands = masked_count(n_bands, freq_ratio, rounding)
    bands = torch.randperm(n_bands, generator=generator)[:n_masked_bands]
    frames = torch.randperm(n_frames, generator=generator)[
        :masked_count(n_frames, time_ratio, rounding)]
    keep_f = torch.ones(n_bins, dtype=torch.bool)
    for b in bands.tolist():
        keep_f[b * freq_bin_size:(b + 1) * freq_bin_size] = False
    keep_t = torch.ones(n_frames, dtype=torch.bool)
    keep_t[frames] = False
    return keep_f[:, None] & keep_t[None, :]


def _conv_gn_stack(in_ch: int, kernel: int, stride: int, widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, width in enumerate(widths):
        layers += [nn.Conv1d(in_ch, width, kernel if i == 0 else 1, stride if i == 0 else 1),
                   nn.GELU(), nn.GroupNorm(math.gcd(16, width), width)]
        in_ch = width
    return nn.Sequential(*layers)


@register_model("tfm_tokenizer", domain="eeg", presets={
    "tiny": dict(emb_size=16, code_size=16, n_codes=64, freq_depth=1, temporal_depth=1,
                 decoder_depth=1, heads=2, dead_code_threshold=0.1),
})
class TFMTokenizer(Tokenizer):
    """TFM-Tokenizer VQ-VAE (``TFM_VQVAE2_deep``, "2x2x8").

    Parameters
    ----------
    emb_size : token width (64).
    code_size : width of the codebook vectors (64; equals ``emb_size`` in the reference).
    n_codes : codebook size (8192).
    freq_depth, temporal_depth, decoder_depth : transformer depths (2, 2, 8).
    heads : attention heads (8).
    dropout : attention-layer dropout of the transformers (0.2).
    codebook_loss_after_ste : the release's VQ loss, ``MSE(q_st, sg(z)) + beta * MSE(z, sg(q))``
        (True, default). With ``beta = 1`` its encoder gradients cancel exactly: the VQ loss
        only adds ``2 * MSE(z, q)`` to the logged value and the encoder learns from the
        reconstruction alone. False: commitment term only (the textbook EMA VQ-VAE, which pulls
        the encoder towards its codes). See :class:`~sigformer.nn.vq.VectorQuantizer`.
    dead_code_threshold : re-seed codes whose running usage falls below this from the
        current batch (0, as released; small codebooks trained briefly collapse without it).
    mask_temporal_branch : False (release): the temporal branch sees the full raw signal in
        both masked views, only the spectrogram is masked. True (sigformer's earlier
        behaviour): also zero the temporal-branch features of frames whose spectrogram is
        fully masked.
    mask_rounding : how many bands/frames the pretraining mask hides, ``"truncate"`` (release,
        ``int``: 19 frames -> 9) or ``"round"`` (19 frames -> 10).
    codebook_init : ``"uniform"`` (release, ``U(-1/K, 1/K)``) or ``"kmeans"`` (k-means on the
        first training batch; with ``dead_code_threshold > 0`` the usual cure for codebook
        collapse).
    fast : fast inference/training path: packed q/k/v and a linear-attention core with a
        hand-written backward, the frequency path in cache-sized chunks of frames (attention
        dropout masks drawn for the whole batch first, so the same entries drop), the gates as
        one linear layer, ``bincount`` code counting and blocked nearest-code search. Same ids
        and outputs within 1e-5, same training losses and gradients (tests/test_tfm.py,
        tests/test_tfm_fast_training.py); off by default because the reference path is what
        the parity fixtures pin.
    """

    discrete = True
    sfreq = TFM_SFREQ

    @staticmethod
    def prepare(X: np.ndarray, sfreq: float) -> np.ndarray:
        """Resample to 200 Hz and apply the 95th-percentile scaling (see :func:`tfm_prepare`)."""
        return tfm_prepare(X, sfreq)

    def __init__(self, emb_size: int = 64, code_size: int = 64, n_codes: int = 8192,
                 freq_depth: int = 2, temporal_depth: int = 2, decoder_depth: int = 8,
                 heads: int = 8, dropout: float = 0.2, codebook_loss_after_ste: bool = True,
                 dead_code_threshold: float = 0.0, mask_temporal_branch: bool = False,
                 mask_rounding: str = "truncate", codebook_init: str = "uniform",
                 fast: bool = False, n_chans=None, n_outputs=None, n_times=None, sfreq=None,
                 chs_info=None):
        super().__init__()
        if emb_size % 2 or (emb_size // 2) % 4:
            raise ValueError(f"emb_size must be a multiple of 8, got {emb_size}")
        if mask_rounding not in MASK_ROUNDING:
            raise ValueError(f"mask_rounding must be one of {MASK_ROUNDING}, got "
                             f"{mask_rounding!r}")
        if codebook_init not in ("uniform", "kmeans"):
            raise ValueError(f"codebook_init must be 'uniform' or 'kmeans', got "
                             f"{codebook_init!r}")
        half = emb_size // 2
        self.emb_size, self.code_size, self.n_codes = emb_size, code_size, n_codes
        self.freq_depth, self.temporal_depth = freq_depth, temporal_depth
        self.decoder_depth, self.heads, self.dropout = decoder_depth, heads, dropout
        self.codebook_loss_after_ste = codebook_loss_after_ste
        self.dead_code_threshold = dead_code_threshold
        self.mask_temporal_branch, self.mask_rounding = mask_temporal_branch, mask_rounding
        self.codebook_init, self.fast = codebook_init, fast
        # frequency path: 20 patches of 5 bins per frame
        self.freq_patch = _conv_gn_stack(1, 5, 5, [emb_size, emb_size, emb_size])
        self.freq_transformer = lat(emb_size, freq_depth, heads, dropout)
        gated = half // 4  # 8 gate channels x 4 positions = 32
        self.freq_gate = nn.Conv1d(emb_size, gated, 5, 5)
        self.freq_value = nn.Conv1d(emb_size, gated, 5, 5)
        # temporal path: 1 s windows with 0.5 s hop on the raw signal
        self.temporal_embed = _conv_gn_stack(1, N_FFT, HOP, [emb_size, emb_size, half])
        self.temporal_transformer = lat(emb_size, temporal_depth, heads, dropout)
        self.to_code = nn.Identity() if code_size == emb_size else nn.Linear(emb_size, code_size)
        self.quantizer = VectorQuantizer(n_codes, code_size, decay=0.99, eps=1e-5,
                                         init=codebook_init, ema="average", beta=1.0,
                                         codebook_loss_after_ste=codebook_loss_after_ste,
                                         dead_code_threshold=dead_code_threshold, fast=fast)
        self.decoder = lat(code_size, decoder_depth, heads, dropout)
        self.decoder_head = nn.Sequential(nn.Linear(code_size, code_size), nn.Tanh(),
                                          nn.Linear(code_size, N_BINS))

    def constructor_kwargs(self) -> dict:
        """The architecture and switch arguments, as stored (to rebuild or checkpoint it)."""
        names = ("emb_size", "code_size", "n_codes", "freq_depth", "temporal_depth",
                 "decoder_depth", "heads", "dropout", "codebook_loss_after_ste",
                 "dead_code_threshold", "mask_temporal_branch", "mask_rounding",
                 "codebook_init", "fast")
        return {name: getattr(self, name) for name in names}

    def set_fast(self, fast: bool = True) -> TFMTokenizer:
        """Switch between the reference and the fast path in place (weights unchanged)."""
        self.fast = self.quantizer.fast = bool(fast)
        return self

    # --- encoder ------------------------------------------------------------------------
    def embed(self, signal: torch.Tensor, spec: torch.Tensor,
              visible: torch.Tensor | None = None) -> torch.Tensor:
        """Continuous (L2-normalised) token vectors ``(B, T, code_size)`` of single-channel
        signals ``(B, N)`` and their spectrograms ``(B, 100, T)``. ``visible`` ``(100, T)``
        zeroes masked spectrogram entries; the temporal branch always sees the full signal
        unless ``mask_temporal_branch`` (then masked frames' temporal features are zeroed)."""
        b, n_bins, t = spec.shape
        if visible is not None:
            spec = spec * visible.to(spec.dtype)
        frames = spec.transpose(1, 2).reshape(b * t, 1, n_bins)
        if self.fast:
            freq = self._fast_freq_path(frames).reshape(b, t, -1)
        else:
            patches = self.freq_patch(frames).transpose(1, 2)  # (B*T, 20, D)
            patches = run_transformer(self.freq_transformer, patches, False).transpose(1, 2)
            freq = (torch.sigmoid(self.freq_gate(patches)) * self.freq_value(patches))
            freq = freq.reshape(b, t, -1)  # (B, T, D/2)
        temporal = self.temporal_embed(signal[:, None]).transpose(1, 2)  # (B, T, D/2)
        if visible is not None and self.mask_temporal_branch:
            frame_kept = visible.any(0).to(temporal.dtype)  # frames with any visible bin
            temporal = temporal * frame_kept[None, :, None]
        fused = run_transformer(self.temporal_transformer,
                                torch.cat([freq, temporal.to(freq.dtype)], dim=-1), self.fast)
        return F.normalize(self.to_code(fused), dim=-1)

    def _fast_freq_path(self, frames: torch.Tensor) -> torch.Tensor:
        """Frequency path of the fast path: ``(B*T, 1, 100)`` spectrogram frames ->
        ``(B*T, 8, 4)`` gated features, the same function as the reference, arranged for CPU
        caches:

        * frames go through patch stack, transformer and gates in chunks of
          ``FREQ_CHUNK_FRAMES`` (every frame is independent; whole-batch activations of
          ``(B*T*20, 256)`` do not fit in cache), with the attention dropout masks drawn for
          the whole batch first, so the same entries are dropped as in the reference;
        * the transformer input is made contiguous (a transposed one made every layer norm
          and residual copy);
        * the two strided ``Conv1d(D, 8, 5, 5)`` gates are one linear layer over groups of 5
          patches (the same weights, reordered).
        """
        conv = self.freq_patch[0]
        n_patches = (frames.shape[-1] - conv.kernel_size[0]) // conv.stride[0] + 1
        masks = _attention_dropout_masks(self.freq_transformer,
                                         (frames.shape[0], n_patches, self.emb_size), frames)
        if masks is None:  # dropout not reproducible in chunks: the whole batch at once
            patches = self.freq_patch(frames).transpose(1, 2).contiguous()
            return self._gates(_run_blocks(self.freq_transformer, patches))
        outs = []
        for start in range(0, frames.shape[0], FREQ_CHUNK_FRAMES):
            block = slice(start, start + FREQ_CHUNK_FRAMES)
            patches = self.freq_patch(frames[block]).transpose(1, 2).contiguous()
            chunk_masks = [None if m is None else m[block] for m in masks]
            outs.append(self._gates(_run_blocks(self.freq_transformer, patches, chunk_masks)))
        return torch.cat(outs)

    def _gates(self, x: torch.Tensor) -> torch.Tensor:
        """``sigmoid(freq_gate(x)) * freq_value(x)`` on token-major ``(B*T, 20, D)``: the two
        ``Conv1d(D, 8, 5, 5)`` as one linear layer over groups of 5 patches -> ``(B*T, 8, 4)``."""
        gate, value = self.freq_gate, self.freq_value
        kernel = gate.kernel_size[0]
        # conv weight (out, D, kernel) -> (out, kernel * D), matching 5 consecutive patches
        weight = torch.cat([gate.weight, value.weight]).transpose(1, 2).flatten(1)
        n = x.shape[1] // kernel  # a strided convolution drops an incomplete last group
        groups = x[:, :n * kernel].reshape(x.shape[0], n, kernel * x.shape[2])
        g, v = F.linear(groups, weight, torch.cat([gate.bias, value.bias])).chunk(2, dim=-1)
        return (torch.sigmoid(g) * v).transpose(1, 2)  # (B*T, 8, 4), as the convolutions

    def reconstruct(self, codes: torch.Tensor) -> torch.Tensor:
        """Decoder: code vectors ``(B, T, code_size)`` -> spectrogram ``(B, 100, T)``."""
        return self.decoder_head(run_transformer(self.decoder, codes, self.fast)).transpose(1, 2)

    def _prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.check_input(x)
        if x.shape[-1] < N_FFT:
            raise SignalError(f"TFM-Tokenizer needs at least {N_FFT} samples (1 s at 200 Hz), "
                              f"got {x.shape[-1]}")
        flat = x.reshape(-1, x.shape[-1])
        with torch.autocast(flat.device.type, enabled=False):  # the STFT stays float32
            spec = tfm_spectrogram(flat.float())
        return flat, spec

    def encode(self, x: torch.Tensor) -> Tokens:
        """``(B, C, N)`` normalised 200 Hz signals -> ids ``(B, C*T)``, channel-major."""
        b, c = (x.shape[0], 1) if x.dim() == 2 else x.shape[:2]
        flat, spec = self._prepare(x)
        out = self.quantizer(self.embed(flat, spec))
        t = spec.shape[-1]
        return Tokens(out.quantized.reshape(b, c * t, -1), out.indices.reshape(b, c * t),
                      time_index=torch.arange(t, device=x.device).repeat(c),
                      channel_index=torch.arange(c, device=x.device).repeat_interleave(t))

    def decode(self, tokens: Tokens) -> torch.Tensor:
        """Token ids (or quantised vectors) -> spectrogram ``(B, C, 100, T)``."""
        c = 1 if tokens.channel_index is None else int(tokens.channel_index.max()) + 1
        codes = tokens.embeddings if tokens.ids is None else self.quantizer.lookup(tokens.ids)
        b = codes.shape[0]
        spec = self.reconstruct(codes.reshape(b * c, -1, codes.shape[-1]))
        return spec.reshape(b, c, N_BINS, -1)

    # --- pretraining objective ----------------------------------------------------------
    def reconstruction_loss(self, x: torch.Tensor, generator: torch.Generator | None = None
                            ) -> dict[str, torch.Tensor]:
        """Masked-view + complementary-view reconstruction of the full spectrogram plus the VQ
        loss of both views (one random mask shared by the batch, as released)."""
        flat, spec = self._prepare(x)
        visible = freq_time_mask(spec.shape[1], spec.shape[2], generator=generator,
                                 rounding=self.mask_rounding).to(x.device)
        total, recon, vq_loss, perplexity = 0.0, 0.0, 0.0, 0.0
        for view in (visible, ~visible):
            out = self.quantizer(self.embed(flat, spec, view))
            r = F.mse_loss(self.reconstruct(out.quantized).float(), spec)
            total = total + r + out.loss
            recon, vq_loss = recon + r.detach(), vq_loss + out.loss.detach()
            perplexity = perplexity + out.perplexity.detach() / 2
        return {"loss": total, "reconstruction": recon, "vq": vq_loss, "perplexity": perplexity}


def tfm_prepare(x: np.ndarray, sfreq: float, resampler: str = "fft",
                scale: bool = True) -> np.ndarray:
    """Resample ``(..., N)`` to 200 Hz and scale each channel by its 95th-percentile absolute
    value. ``resampler="fft"`` (default) is ``scipy.signal.resample``, as the reference loader;
    ``"polyphase"`` is sigformer's one resampler (:func:`sigformer.stages.resample_array`, the
    filter that also streams), for data that must match a streamed chain.

    ``scale=False`` resamples only and keeps the amplitudes as recorded: the input of
    ``TFMClassifier(amplitude_input=True)``, which scales inside and keeps the scale it divided
    out. (Scaled data fed to that model cannot be detected reliably; it would see every
    window at amplitude ~1.)"""
    x = np.asarray(x, dtype=np.float64)
    if resampler not in ("fft", "polyphase"):
        raise ValueError(f"resampler must be 'fft' or 'polyphase', got {resampler!r}")
    if sfreq != TFM_SFREQ and resampler == "fft":
        from scipy.signal import resample

        x = resample(x, int(round(x.shape[-1] * TFM_SFREQ / sfreq)), axis=-1)
    elif sfreq != TFM_SFREQ:
        from ...stages import resample_array

        x = resample_array(x, sfreq, TFM_SFREQ)
    if not scale:
        return x.astype(np.float32)
    percentile = np.quantile(np.abs(x), 0.95, axis=-1, keepdims=True) + 1e-8
    return (x / percentile).astype(np.float32)


sinusoidal_encoding = sinusoidal_table  # the shared table (sigformer.nn.positional)


@register_model("tfm_encoder", domain="eeg", presets={
    "tuev": dict(n_outputs=6),
    "tuab": dict(n_outputs=1),
    "tiny": dict(emb_size=16, n_codes=64, depth=1, heads=2),
})
class TFMEncoder(nn.Module):
    """Downstream TFM-Encoder (``TFM_TOKEN_Classifier`` "64x4") on token ids ``(B, C, T)``.

    ``n_outputs=None`` gives the masked-token-prediction model (an ``n_codes``-way head on
    every token); ``n_outputs=1`` (preset ``tuab``) gives one logit for binary tasks, trained
    with BCE as released (:func:`sigformer.recipes.tfm.finetune`). ``max_channels`` is the
    reference's hard 16-channel limit of the channel embedding. The [MASK] id is ``n_codes``.
    ``dropout`` is the attention-layer dropout (0.2); ``ff_dropout`` the feed-forward dropout
    (0.0 as released: the release's transformer leaves it at its default; sigformer used 0.2).
    ``fast`` selects the fast transformer path (equal within 1e-5).
    """

    def __init__(self, n_outputs: int | None = 6, emb_size: int = 64, n_codes: int = 8192,
                 depth: int = 4, heads: int = 8, dropout: float = 0.2, ff_dropout: float = 0.0,
                 max_channels: int = 16, max_len: int = 1000, fast: bool = False,
                 n_chans=None, n_times=None, sfreq=None, chs_info=None):
        super().__init__()
        self.n_codes, self.mask_id, self.max_channels = n_codes, n_codes, max_channels
        self.n_outputs, self.emb_size, self.depth, self.heads = n_outputs, emb_size, depth, heads
        self.dropout, self.ff_dropout, self.max_len, self.fast = dropout, ff_dropout, max_len, fast
        self.token_embedding = nn.Embedding(n_codes + 1, emb_size)
        self.channel_embedding = nn.Embedding(max_channels, emb_size)
        self.channel_index = nn.Parameter(torch.arange(max_channels), requires_grad=False)
        self.register_buffer("time_encoding", sinusoidal_encoding(max_len, emb_size),
                             persistent=False)
        self.pos_dropout = nn.Dropout(0.1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, emb_size))
        self.transformer = lat(emb_size, depth, heads, dropout, ff_dropout=ff_dropout)
        self.head = nn.Linear(emb_size, n_codes if n_outputs is None else n_outputs)

    def constructor_kwargs(self) -> dict:
        """The architecture and switch arguments, as stored (to rebuild or checkpoint it)."""
        names = ("n_outputs", "emb_size", "n_codes", "depth", "heads", "dropout", "ff_dropout",
                 "max_channels", "max_len", "fast")
        return {name: getattr(self, name) for name in names}

    def set_fast(self, fast: bool = True) -> TFMEncoder:
        """Switch between the reference and the fast transformer path (weights unchanged)."""
        self.fast = bool(fast)
        return self

    @torch.no_grad()
    def init_from_codebook(self, codebook: torch.Tensor) -> None:
        """Token embeddings from the tokenizer's codebook; zero vector for [MASK]."""
        if codebook.shape != (self.n_codes, self.token_embedding.embedding_dim):
            raise ValueError(f"codebook of shape {tuple(codebook.shape)} does not fit "
                             f"{self.n_codes} codes x {self.token_embedding.embedding_dim}")
        self.token_embedding.weight[: self.n_codes] = codebook
        self.token_embedding.weight[self.n_codes] = 0.0

    def tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` ids -> ``(B, 1 + C*T, D)`` transformer outputs (CLS first)."""
        if ids.dim() != 3:
            raise ValueError(f"TFMEncoder expects token ids (batch, channels, frames), got "
                             f"{tuple(ids.shape)}")
        b, c, t = ids.shape
        if c > self.max_channels:
            raise ValueError(f"TFMEncoder takes at most {self.max_channels} channels "
                             f"(max_channels), got {c}")
        x = self.token_embedding(ids)
        x = x + self.channel_embedding(self.channel_index[:c])[None, :, None]
        x = self.pos_dropout(x + self.time_encoding[:t][None, None])
        x = torch.cat([self.cls_token.expand(b, -1, -1), x.reshape(b, c * t, -1)], dim=1)
        return run_transformer(self.transformer, x, self.fast)

    def forward_features(self, ids: torch.Tensor) -> torch.Tensor:
        """The pooled representation ``(B, D)`` the classification head reads (the CLS
        token's transformer output)."""
        return self.tokens(ids)[:, 0]

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The classification head on pooled features ``(B, D)``: ``(B, n_outputs)``, or
        ``(B,)`` for one output."""
        out = self.head(features)
        return out[:, 0] if self.n_outputs == 1 else out

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.n_outputs is None:  # masked-token prediction on every token
            return self.head(self.tokens(ids)[:, 1:])
        return self.logits(self.forward_features(ids))

    def mtp_loss(self, ids: torch.Tensor, generator: torch.Generator | None = None
                 ) -> dict[str, torch.Tensor]:
        """Masked-token prediction: Bernoulli(0.5) mask per token plus its complement; cross
        entropy over the codebook on the masked positions of each view."""
        if self.n_outputs is not None:
            raise ValueError("masked-token prediction needs the MTP model (n_outputs=None)")
        mask = torch.rand(ids.shape, generator=generator).to(ids.device) < 0.5
        total, correct, count = 0.0, 0.0, 0
        for view in (mask, ~mask):
            logits = self(torch.where(view, torch.full_like(ids, self.mask_id), ids))
            target = ids.reshape(ids.shape[0], -1)
            flat_view = view.reshape(ids.shape[0], -1)
            total = total + F.cross_entropy(logits[flat_view], target[flat_view])
            correct += float((logits[flat_view].argmax(-1) == target[flat_view]).sum())
            count += int(flat_view.sum())
        return {"loss": total, "token_accuracy": torch.tensor(correct / max(count, 1))}


def load_pretrained_tokenizer(source, tokenizer_params: dict | None = None
                              ) -> tuple[TFMTokenizer, int | None]:
    """A :class:`TFMTokenizer` from a sigformer bundle or catalogue name (e.g.
    ``"tfm-tokenizer-eeg-corpus"``), built with the architecture its config records and
    loaded strictly (checksums verified), plus the window length (samples at 200 Hz) it was
    trained on (None if the bundle does not say). ``tokenizer_params`` may set ``fast``;
    any other key must equal what the bundle records (the weights fix the architecture)."""
    from ...catalogue import resolve_bundle_path
    from ...checkpoint_io import read_config
    from ..registry import create_model

    path = resolve_bundle_path(source)
    config = read_config(path)
    if config["model"] != "tfm_tokenizer":
        raise ValueError(f"tokenizer_weights={str(source)!r} holds a {config['model']!r} "
                         "model; expected a tfm_tokenizer bundle (e.g. the catalogue's "
                         "'tfm-tokenizer-eeg-corpus')")
    spec = config.get("model_spec") or config.get("input_spec") or {}
    if spec.get("sfreq") is not None and float(spec["sfreq"]) != TFM_SFREQ:
        raise SignalError(f"tokenizer_weights={str(source)!r} was trained at "
                          f"{spec['sfreq']:g} Hz; TFM models take {TFM_SFREQ:g} Hz")
    params = dict(tokenizer_params or {})
    runtime = {"fast": params.pop("fast")} if "fast" in params else {}
    tokenizer = create_model("tfm_tokenizer", weights=path, **runtime)
    recorded = tokenizer.constructor_kwargs()
    conflicts = {k: v for k, v in params.items() if k not in recorded or recorded[k] != v}
    if conflicts:
        bundle_values = {k: recorded[k] for k in conflicts if k in recorded}
        raise ValueError(f"tokenizer_params {conflicts} conflict with tokenizer_weights="
                         f"{str(source)!r}: the architecture comes from the bundle "
                         f"({bundle_values}); only 'fast' may be set")
    window = spec.get("window")
    return tokenizer, None if window is None else int(window)


def _window_error(source, window: int, got: int) -> SignalError:
    seconds = window / TFM_SFREQ
    return SignalError(f"the pretrained tokenizer {str(source)!r} takes {window}-sample windows "
                       f"({seconds:g} s at {TFM_SFREQ:g} Hz), got {got} samples; resample to "
                       f"{TFM_SFREQ:g} Hz (tfm_prepare) and cut {seconds:g} s windows")


class LogScaleInput(nn.Module):
    """The per-channel scale that percentile scaling divides out, as a feature: ``s (B, C)``
    -> ``(B, D)``, added to the encoder's pooled features (``TFMClassifier(amplitude_input=
    True)``).

    ``log s`` is standardised, clipped to ``+-clip`` (a dead or saturated channel stays a
    bounded input) and projected by one weight column per channel position (up to
    ``max_channels``, as the encoder's channel embedding), so any channel count fits.

    Why frozen statistics of the first training values rather than BatchNorm: the data's unit
    is an additive offset of ``log s`` (volts vs microvolts: ``log 1e-6 = -13.8``), and one
    mean and standard deviation over all channels (a unit changes every channel alike) removes
    it. BatchNorm would feed the projection batch statistics in training and running ones in
    eval, its momentum average starts at 0 and trails the offset for many steps, and a last
    training batch of one single-channel window has no variance. Here the first
    ``calibration`` values seen in training mode set the statistics (merged exactly, batch by
    batch), which then stay fixed: the same function in training and eval, deterministic, and
    saved with the weights (buffers). ``min_std`` keeps a training set of near-equal amplitudes
    from blowing small differences up.

    The projection starts at zero: untrained, the amplitude path adds nothing, so the model
    starts as the published classifier and uses amplitude as far as training finds it useful.
    """

    def __init__(self, max_channels: int, dim: int, calibration: int = 256,
                 min_std: float = 0.1, clip: float = 5.0):
        super().__init__()
        self.calibration, self.min_std, self.clip = calibration, min_std, clip
        # a linear map: logits then depend linearly on the log scales (as log band power +
        # logistic regression), and adding it keeps the encoder's head as it is
        self.proj = nn.Linear(max_channels, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("var", torch.ones(()))

    @torch.no_grad()
    def _calibrate(self, values: torch.Tensor) -> None:
        """Merge ``values`` into the statistics (Chan et al.'s pairwise update: exact)."""
        n = float(values.numel())
        mean, var = values.mean(), values.var(unbiased=False)
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta * delta * self.count * n / total
        self.mean.add_(delta * n / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    @torch.no_grad()
    def calibrate_on(self, scale: torch.Tensor) -> None:
        """Set the statistics from all of ``scale`` ``(B, C)`` at once and fix them (a probe
        fitted on these standardised values must see the same ones in training)."""
        self.count.zero_()
        self.mean.zero_()
        self.var.fill_(1.0)
        self._calibrate(scale.float().log())
        self.count.clamp_(min=float(self.calibration))

    def normalized(self, scale: torch.Tensor) -> torch.Tensor:
        """Standardised, clipped ``log s`` ``(B, C)`` (calibrating first in training mode)."""
        log_scale = scale.float().log()
        if self.training and bool(self.count < self.calibration):
            self._calibrate(log_scale.detach())
        z = (log_scale - self.mean) / self.var.sqrt().clamp_min(self.min_std)
        return z.clamp(-self.clip, self.clip)

    def forward(self, scale: torch.Tensor) -> torch.Tensor:
        c = scale.shape[-1]
        if c > self.proj.in_features:
            raise ValueError(f"amplitude input takes at most {self.proj.in_features} channels, "
                             f"got {c}")
        return F.linear(self.normalized(scale), self.proj.weight[:, :c], self.proj.bias)


@register_model("tfm_classifier", domain="eeg", presets={
    "tiny": dict(tokenizer_params=dict(emb_size=16, code_size=16, n_codes=64, freq_depth=1,
                                       temporal_depth=1, decoder_depth=1, heads=2,
                                       dead_code_threshold=0.1),
                 encoder_params=dict(emb_size=16, n_codes=64, depth=1, heads=2)),
})
class TFMClassifier(nn.Module):
    """Raw 200 Hz signals ``(B, C, N)`` -> TFM tokens (frozen tokenizer) -> TFM-Encoder logits.

    Inputs are normalised per channel (95th percentile) inside the model, so the estimator can
    feed epochs directly; resample to 200 Hz beforehand (:func:`tfm_prepare`).

    Parameters
    ----------
    tokenizer_params, encoder_params : constructor arguments of the two parts. The encoder's
        ``n_codes`` and ``emb_size`` default to the tokenizer's ``n_codes`` and ``code_size``
        (its token embeddings start from the codebook).
    tokenizer_weights : a pretrained tokenizer, as a catalogue name (the shipped
        ``"tfm-tokenizer-eeg-corpus"``) or a bundle folder. Its architecture comes from the
        bundle's config (``tokenizer_params`` may only set ``fast``), its weights are loaded
        strictly, the token embeddings start from its codebook, and the input must be the
        window it was trained on (1000 samples, 5 s at 200 Hz for the shipped one; checked at
        construction when ``n_times`` is given and on every forward). Tokenizer pretraining is
        then skipped (``tokenizer_epochs`` must be 0); masked-token pretraining
        (``mtp_epochs``) and fine-tuning still run. Rebuilding the model (checkpoint, pickle)
        reads the bundle again before the saved weights are loaded.
    freeze_tokenizer : True (default): the tokenizer stays in eval mode and its weights,
        codebook included, never change. False lets the EMA codebook keep adapting while the
        classifier trains (no gradient reaches the tokenizer either way: the encoder sees
        discrete ids).
    tokenizer_epochs, mtp_epochs, pretrain_batch_size, pretrain_lr : the estimator's
        unsupervised stages (:func:`sigformer.recipes.tfm.pretrain_classifier_stages`).
    amplitude_input : False (default): the published model, amplitude-free (every window is
        scaled to a 95th percentile of 1 before tokenizing). True (a sigformer extension):
        the tokens are made from the same scaled signal, and the per-channel scale ``s``
        that was divided out goes to the head as well: standardised ``log s`` through a
        learned linear projection (:class:`LogScaleInput`), added to the encoder's pooled
        features. Absolute amplitude is a strong cue in clinical EEG (seizures); the
        tokenizer's codebook stays amplitude-free. The input must then be 200 Hz signals
        **not** scaled beforehand (``tfm_prepare(..., scale=False)``): scaled data cannot be
        told apart and would carry no amplitude. The log scale's unit offset (V vs uV) is
        removed by statistics of the first training batches, saved with the weights.
    amplitude_probe : with ``amplitude_input``, start supervised training from a linear probe
        (LP-FT, Kumar et al., ICLR 2022): before fine-tuning, the estimator fits a logistic
        regression of the labels on the standardised log scales of the training windows
        (:func:`sigformer.recipes.tfm.fit_amplitude_probe`) and sets the amplitude path so the
        untrained model's logits already contain it; fine-tuning then trains everything.
        Without it the amplitude path starts at zero and a token path that fits the training
        windows first leaves it little gradient. False (default): zero start. The probe runs
        in ``SignalClassifier.fit`` (on the training split, never the validation split);
        calling :func:`sigformer.recipes.tfm.finetune` directly does not run it (call
        ``fit_amplitude_probe`` first), and ``fine_tune(new_head=True)`` keeps the amplitude
        projection solved through the old head. Euclidean alignment whitens each subject's
        covariance and so removes the between-subject amplitude this path uses: leave it
        off with ``amplitude_input``.
    """

    def __init__(self, n_chans=None, n_outputs=2, n_times=None, sfreq=TFM_SFREQ, chs_info=None,
                 tokenizer_params: dict | None = None, encoder_params: dict | None = None,
                 freeze_tokenizer: bool = True, tokenizer_epochs: int = 0,
                 mtp_epochs: int = 0, pretrain_batch_size: int = 256, pretrain_lr: float = 1e-3,
                 tokenizer_weights: str | None = None, amplitude_input: bool = False,
                 amplitude_probe: bool = False):
        super().__init__()
        if amplitude_probe and not amplitude_input:
            raise ValueError("amplitude_probe=True needs amplitude_input=True (the probe sets "
                             "the amplitude path's weights)")
        self.amplitude_probe = bool(amplitude_probe)
        self.tokenizer_epochs, self.mtp_epochs = tokenizer_epochs, mtp_epochs
        self.pretrain_batch_size, self.pretrain_lr = pretrain_batch_size, pretrain_lr
        if sfreq is not None and float(sfreq) != TFM_SFREQ:
            raise SignalError(f"TFM models take 200 Hz signals, got sfreq={sfreq}; resample "
                              "with tfm_prepare()")
        self.tokenizer_weights = None if tokenizer_weights is None else str(tokenizer_weights)
        self.tokenizer_window: int | None = None
        if tokenizer_weights is None:
            self.tokenizer = TFMTokenizer(**(tokenizer_params or {}))
        else:
            if tokenizer_epochs:
                raise ValueError(f"tokenizer_weights={self.tokenizer_weights!r} is already "
                                 f"pretrained; got tokenizer_epochs={tokenizer_epochs}: use 0 "
                                 "(masked-token pretraining still runs with mtp_epochs), or "
                                 "tokenizer_weights=None to pretrain one on the training data")
            self.tokenizer, self.tokenizer_window = load_pretrained_tokenizer(
                tokenizer_weights, tokenizer_params)
            if n_times is not None and self.tokenizer_window not in (None, int(n_times)):
                raise _window_error(self.tokenizer_weights, self.tokenizer_window, int(n_times))
        enc = dict(encoder_params or {})
        enc.setdefault("n_codes", self.tokenizer.n_codes)
        enc.setdefault("emb_size", self.tokenizer.code_size)
        if tokenizer_weights is not None and enc["emb_size"] != self.tokenizer.code_size:
            raise ValueError(f"encoder_params emb_size={enc['emb_size']} must equal the "
                             f"pretrained tokenizer's code_size ({self.tokenizer.code_size}): "
                             "the token embeddings start from its codebook")
        self.encoder = TFMEncoder(n_outputs=n_outputs, **enc)
        if tokenizer_weights is not None:
            self.encoder.init_from_codebook(self.tokenizer.quantizer.codebook.detach())
        self.amplitude_input = bool(amplitude_input)
        if self.amplitude_input:  # no module otherwise: the published model's keys exactly
            self.amplitude = LogScaleInput(self.encoder.max_channels, self.encoder.emb_size)
        self.freeze_tokenizer = freeze_tokenizer
        if freeze_tokenizer:
            # eval from the start: Lightning keeps submodule modes, so a tokenizer left in
            # training mode here would update its EMA codebook during fine-tuning
            self.tokenizer.requires_grad_(False).eval()

    def set_fast(self, fast: bool = True) -> TFMClassifier:
        """Fast or reference path for both the tokenizer and the encoder (weights unchanged)."""
        self.tokenizer.set_fast(fast)
        self.encoder.set_fast(fast)
        return self

    def load_tokenizer(self, tokenizer: TFMTokenizer) -> None:
        """Use a pretrained tokenizer and initialise the token embeddings from its codebook."""
        self.tokenizer.load_state_dict(tokenizer.state_dict())
        self.encoder.init_from_codebook(self.tokenizer.quantizer.codebook.detach())

    def train(self, mode: bool = True) -> TFMClassifier:
        super().train(mode)
        if self.freeze_tokenizer:  # a frozen tokenizer never updates its codebook (EMA)
            self.tokenizer.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tokenizer_window is not None and x.shape[-1] != self.tokenizer_window:
            raise _window_error(self.tokenizer_weights, self.tokenizer_window, x.shape[-1])
        b, c = x.shape[:2]
        if not self.amplitude_input:
            with torch.set_grad_enabled(not self.freeze_tokenizer and torch.is_grad_enabled()):
                tok = self.tokenizer.encode(percentile_normalize(x))
            return self.encoder(tok.ids.reshape(b, c, -1))
        scale = channel_scale(x)  # (B, C, 1): tokens from x / scale, as percentile_normalize
        with torch.set_grad_enabled(not self.freeze_tokenizer and torch.is_grad_enabled()):
            tok = self.tokenizer.encode(x / scale)
        return self.classify_tokens(tok.ids.reshape(b, c, -1), scale[..., 0])

    def classify_tokens(self, ids: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``amplitude_input`` head: token ids ``(B, C, T)`` and the per-channel scales ``(B,
        C)`` divided out of the signal -> logits (shared with the export wrapper)."""
        if not self.amplitude_input:
            raise ValueError("classify_tokens needs TFMClassifier(amplitude_input=True); the "
                             "published model classifies token ids with self.encoder(ids)")
        features = self.encoder.forward_features(ids)
        return self.encoder.logits(features + self.amplitude(scale).to(features.dtype))
