"""Du-IN: discrete-units-guided masked modelling for speech decoding from sEEG.

Zheng et al., NeurIPS 2024 (arXiv 2405.11459). Re-implemented from the paper and
``shared/reference/eeg_models.md`` §3 (the released code's structure is followed where it
differs from the paper, and the difference is noted):

* a per-subject linear **subject layer** fuses the C selected contacts into 16 virtual channels
  (the paper says "1D depthwise convolution"; the release uses this linear map),
* a **region tokenizer** turns each 100 ms segment into one 160-d token (three convolutions
  with batch norm and, as released, no nonlinearity between them),
* a post-LN transformer (8 heads of width 64, QK-LayerNorm) encodes the 30 tokens of a 3 s
  window,
* :class:`DuINVQVAE` learns a 2048 x 64 cosine codebook (LaBraM-style EMA, k-means init) by
  reconstructing the signal; :class:`DuINMAE` predicts the frozen VQ-VAE's codes of masked
  tokens; :class:`DuINClassifier` decodes 61 words from the encoder's tokens.

Parameter counts (10 channels, 3000 samples, 1 subject): classifier 4,377,639, VQ-VAE
5,939,319, MAE 3,895,112 — these totals include the frozen parameters of the release (time
encodings, codebook statistics, attention scales), which are kept as frozen parameters here.
Inputs follow sigformer's ``(batch, channels, times)`` layout (the release is time-major).

Training follows the release by default; each difference is a constructor switch:

* ``DuINVQVAE(decoder_time_embedding=True)``: the decoder adds the sinusoidal time encoding to
  the quantised tokens before its transformer, as the release's ``Sequential(emb_time, ...)``
  does (``False`` is sigformer's earlier behaviour, which changed reconstructions by ~80 % of
  the signal scale).
* ``DuINMAE(init_from_vqvae=False)``: the release trains the masked model from scratch; only
  the VQ-VAE's codes are used, as targets. ``True`` makes :func:`sigformer.recipes.duin.pretrain_mae` start the MAE's
  subject layer, tokenizer and encoder from the VQ-VAE's.
* ``DuINMAE(mae_loss="single_ce")``: one cross-entropy over every token, each predicted from
  the view in which it is masked (the release). ``"sum_of_views"`` sums the two views'
  masked-token means (twice the release's value for a 50 % mask).
* ``head_init="trunc_normal"`` (all three models): heads (classifier MLP, contrastive
  projections, MAE token head, VQ-VAE output projection) start from truncated normal
  (std 0.02) weights and zero biases, as released; ``"default"`` keeps PyTorch's init.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...nn import TransformerEncoder
from ...nn.positional import sinusoidal_table
from ...nn.vq import VectorQuantizer
from ...tokenizers.base import Tokenizer, Tokens
from ...validation import SignalError
from ..registry import register_model

D_NEURAL = 16  # virtual channels after the subject layer
SEG_LEN = 100  # samples per token (100 ms at 1000 Hz)
DUIN_SFREQ = 1000.0


def check_duin_sfreq(sfreq) -> float:
    """Du-IN's tokens are :data:`SEG_LEN` samples, which are 100 ms only at 1000 Hz: refuse
    another rate (None means 1000 Hz) instead of silently changing what a token spans."""
    if sfreq is None:
        return DUIN_SFREQ
    if float(sfreq) != DUIN_SFREQ:
        raise SignalError(f"Du-IN takes {DUIN_SFREQ:g} Hz sEEG ({SEG_LEN}-sample tokens = "
                          f"100 ms), got sfreq={sfreq}; resample first with "
                          f"Resample({DUIN_SFREQ:g})")
    return DUIN_SFREQ


class SubjectLayer(nn.Module):
    """Per-subject linear map ``(B, T, d_in) -> (B, T, d_out)``: weights and bias generated from
    the one-hot subject id (``Linear(n_subjects -> d_in*d_out)``, no bias)."""

    def __init__(self, d_in: int, d_out: int, n_subjects: int = 1, bias: bool = True):
        super().__init__()
        self.d_in, self.d_out, self.n_subjects = d_in, d_out, n_subjects
        self.weight = nn.Linear(n_subjects, d_in * d_out, bias=False)
        self.bias = nn.Linear(n_subjects, d_out, bias=False) if bias else None
        nn.init.trunc_normal_(self.weight.weight, std=0.02)
        if self.bias is not None:
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, subject: torch.Tensor) -> torch.Tensor:
        w = self.weight(subject).view(-1, self.d_in, self.d_out)
        out = torch.bmm(x, w)
        if self.bias is not None:
            out = out + self.bias(subject)[:, None]
        return out


class RegionTokenizer(nn.Module):
    """``(B, T, 16)`` -> ``(B, T/100, 160)``: each 100-sample segment through
    Conv(16->128, k19, s10) BN, Conv(128->128, k3) BN, Conv(128->16, k3) BN (no activations,
    as released), flattened to 10 x 16 = 160."""

    def __init__(self, d_neural: int = D_NEURAL, seg_len: int = SEG_LEN, width: int = 128):
        super().__init__()
        self.seg_len = seg_len
        self.convs = nn.Sequential(
            nn.Conv1d(d_neural, width, 19, stride=10, padding=9), nn.BatchNorm1d(width),
            nn.Conv1d(width, width, 3, padding=1), nn.BatchNorm1d(width),
            nn.Conv1d(width, d_neural, 3, padding=1), nn.BatchNorm1d(d_neural),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        if t % self.seg_len:
            raise SignalError(f"Du-IN needs a length divisible by {self.seg_len} samples, got {t}")
        segs = x.reshape(b * (t // self.seg_len), self.seg_len, d).transpose(1, 2)
        out = self.convs(segs).transpose(1, 2)  # (B*S, 10, 16)
        return out.reshape(b, t // self.seg_len, -1)


sincos_table = sinusoidal_table  # the shared table (sigformer.nn.positional); earlier name


def duin_transformer(depth: int, d_model: int = 160, heads: int = 8, d_head: int = 64,
                     d_ff: int = 320, attn_dropout: float = 0.2,
                     ff_dropout: float = 0.2) -> TransformerEncoder:
    """Post-LN blocks with QK-LayerNorm, a frozen attention-scale parameter and ReLU FFN;
    truncated-normal(0.02) init with each block's linear weights divided by sqrt(2 (i+1)).

    The q/k/v projections stay unfused on the fast path: each already maps 160 to
    heads x 64 features (a GEMM wide enough that fusing saves nothing), and the fused
    output's strided views made inference 0.84-0.98x the reference in two benchmark runs
    (``benchmarks/inference.py``, docs/performance.md)."""
    stack = TransformerEncoder(depth, d_model, heads, dropout=0.0, attn_dropout=attn_dropout,
                               ffn_dropout=ff_dropout, qk_norm=True, norm_first=False,
                               activation=nn.ReLU, ffn_hidden=d_ff, head_dim=d_head,
                               scale_parameter=True, fuse_projections=False)
    for i, block in enumerate(stack.blocks):
        for module in block.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
                module.weight.data.div_(math.sqrt(2.0 * (i + 1)))
    return stack


class DuINBackbone(nn.Module):
    """Subject layer + region tokenizer + sinusoidal time encoding + 8-block encoder."""

    def __init__(self, n_chans: int, n_times: int, n_subjects: int = 1, d_model: int = 160,
                 depth: int = 8, heads: int = 8, d_head: int = 64, d_ff: int = 320):
        super().__init__()
        if n_times % SEG_LEN:
            raise ValueError(f"n_times must be a multiple of {SEG_LEN} samples, got {n_times}")
        self.n_chans, self.n_times, self.n_subjects = n_chans, n_times, n_subjects
        self.n_tokens = n_times // SEG_LEN
        self.subject_layer = SubjectLayer(n_chans, D_NEURAL, n_subjects)
        self.tokenizer = RegionTokenizer()
        # frozen parameter, as released (it counts in the parameter totals)
        self.time_encoding = nn.Parameter(sincos_table(self.n_tokens, d_model),
                                          requires_grad=False)
        self.encoder = duin_transformer(depth, d_model, heads, d_head, d_ff)

    def subject_onehot(self, subject, batch: int, device) -> torch.Tensor:
        if subject is None:
            subject = torch.zeros(batch, dtype=torch.long, device=device)
        subject = torch.as_tensor(subject, device=device)
        if subject.dim() == 1:
            if int(subject.max()) >= self.n_subjects:
                raise ValueError(f"subject index {int(subject.max())} out of range for "
                                 f"{self.n_subjects} subject(s)")
            subject = F.one_hot(subject.long(), self.n_subjects)
        return subject.float()

    def region_tokens(self, x: torch.Tensor, subject=None) -> torch.Tensor:
        """``(B, C, T)`` -> tokenizer output ``(B, T/100, 160)`` (before time encoding)."""
        if x.dim() != 3 or x.shape[1] != self.n_chans or x.shape[2] != self.n_times:
            raise ValueError(f"Du-IN expects (batch, {self.n_chans} channels, {self.n_times} "
                             f"samples), got {tuple(x.shape)}")
        h = self.subject_layer(x.transpose(1, 2), self.subject_onehot(subject, len(x), x.device))
        return self.tokenizer(h)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encoder(tokens + self.time_encoding[None])

    def forward(self, x: torch.Tensor, subject=None) -> torch.Tensor:
        return self.encode(self.region_tokens(x, subject))


class LaBraMQuantizer(nn.Module):
    """``Linear-Tanh-Linear`` to 64-d, L2-normalise, 2048-code cosine codebook (EMA, k-means
    initialisation), then ``LayerNorm`` and ``Linear`` back to the model width."""

    def __init__(self, d_model: int = 160, n_codes: int = 2048, d_code: int = 64,
                 beta: float = 1.0, decay: float = 0.99):
        super().__init__()
        self.pre_proj = nn.Sequential(nn.Linear(d_model, d_model), nn.Tanh(),
                                      nn.Linear(d_model, d_code))
        self.quantizer = VectorQuantizer(n_codes, d_code, decay=decay, ema="normalized_mean",
                                         l2_normalize=True, init="kmeans", beta=beta,
                                         stats_as_parameters=True)
        self.post_norm = nn.LayerNorm(d_code)
        self.post_proj = nn.Linear(d_code, d_model)
        for m in (*self.pre_proj, self.post_proj):
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, h: torch.Tensor):
        out = self.quantizer(self.pre_proj(h))
        return self.post_proj(self.post_norm(out.quantized)), out


class ContrastiveBlock(nn.Module):
    """Contrastive projection heads of the release; its loss weight is 0 in the released
    classifier, so it exists for weight and count parity and is not run by the forward.

    Tokens ``(B, *, d_model)`` are projected one by one to ``d_contra`` and flattened, as
    released, then L2-normalised; ``logits = e_z @ e_y.T / tau``. ``tau`` is a CLIP
    temperature (0.25, frozen). The release's classifier instead stores a UniCL log-scale
    ``t`` (logits ``* exp(t)``, t = 2.0): the same scaling is ``tau = exp(-t)``, so ``t`` is
    never copied into ``tau``. With ``labels`` (one-hot or multi-hot ``(B, n_labels)``),
    samples sharing a label are all positives (UniCL targets); without, the diagonal is.
    (The release projects ``Y`` with ``proj_z`` as well; here each side has its own head.)
    """

    def __init__(self, d_model: int = 160, d_contra: int = 32):
        super().__init__()
        self.tau = nn.Parameter(torch.tensor(0.25), requires_grad=False)
        self.proj_z = nn.Linear(d_model, d_contra)
        self.proj_y = nn.Linear(d_model, d_contra)

    def forward(self, z: torch.Tensor, y: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        d_model = self.proj_z.in_features
        if z.shape[-1] != d_model or y.shape[-1] != d_model:
            raise ValueError(f"ContrastiveBlock expects (batch, ..., {d_model}) inputs, got "
                             f"{tuple(z.shape)} and {tuple(y.shape)}")
        ez = F.normalize(self.proj_z(z).flatten(1), dim=-1)
        ey = F.normalize(self.proj_y(y).flatten(1), dim=-1)
        logits = ez @ ey.T / self.tau
        if labels is None:
            target = torch.eye(len(ez), device=ez.device, dtype=logits.dtype)
        else:
            same = labels.to(logits.dtype) @ labels.to(logits.dtype).T
            target = same / same.sum(-1, keepdim=True).clamp(min=1e-12)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target.T)) / 2


HEAD_INITS = ("trunc_normal", "default")


def init_heads(head_init: str, *modules: nn.Module) -> None:
    """The release's head init (truncated normal std 0.02, zero bias) for every Linear in
    ``modules``; ``"default"`` leaves PyTorch's init."""
    if head_init not in HEAD_INITS:
        raise ValueError(f"head_init must be one of {HEAD_INITS}, got {head_init!r}")
    if head_init == "default":
        return
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)


_DUIN_PRESET = {"he2023": dict(n_chans=10, n_times=3000, n_outputs=61, n_subjects=1, sfreq=1000)}


@register_model("duin", domain="seeg", presets={
    **_DUIN_PRESET, "tiny": dict(depth=1, heads=2, d_head=16, d_ff=64, head_hidden=16)})
class DuINClassifier(nn.Module):
    """Du-IN word classifier (``duin_cls``): backbone -> flatten -> Linear(4800, 128) -> ReLU
    -> Linear(128, n_outputs).

    ``sigmoid_head=True`` reproduces the release, which applies a sigmoid to the outputs and
    then feeds them to cross-entropy as if they were logits (the returned values are then the
    sigmoid outputs; their argmax is unchanged). Default: plain logits, as in the paper.
    ``with_unused_blocks`` keeps the release's VQ and contrastive blocks, whose losses it
    weights 0, so parameter totals and weight files match (4,377,639); they are not run.
    ``head_init="trunc_normal"`` initialises the head and the contrastive projections as
    released (std 0.02, zero bias); ``"default"`` keeps PyTorch's init.
    """

    def __init__(self, n_chans=10, n_outputs=61, n_times=3000, sfreq=1000.0, chs_info=None,
                 n_subjects: int = 1, depth: int = 8, heads: int = 8, d_head: int = 64,
                 d_ff: int = 320, head_hidden: int = 128, sigmoid_head: bool = False,
                 with_unused_blocks: bool = True, head_init: str = "trunc_normal"):
        super().__init__()
        sfreq = check_duin_sfreq(sfreq)
        self.n_chans, self.n_outputs, self.n_times, self.sfreq = n_chans, n_outputs, n_times, sfreq
        self.sigmoid_head, self.head_init = sigmoid_head, head_init
        self.backbone = DuINBackbone(n_chans, n_times, n_subjects, 160, depth, heads, d_head, d_ff)
        if with_unused_blocks:
            self.vq_block = LaBraMQuantizer()
            self.contra_block = ContrastiveBlock()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(self.backbone.n_tokens * 160,
                                                          head_hidden),
                                  nn.ReLU(), nn.Linear(head_hidden, n_outputs))
        init_heads(head_init, self.head, *([self.contra_block] if with_unused_blocks else []))

    def forward(self, x: torch.Tensor, subject=None) -> torch.Tensor:
        out = self.head(self.backbone(x, subject))
        return torch.sigmoid(out) if self.sigmoid_head else out

    def load_pretrained(self, model: DuINVQVAE | DuINMAE) -> None:
        """Transfer subject layer, tokenizer and encoder from a pretrained VQ-VAE or MAE."""
        self.backbone.load_state_dict(model.backbone.state_dict())


@register_model("duin_vqvae", domain="seeg", presets={
    **_DUIN_PRESET, "tiny": dict(depth=1, decoder_depth=1, heads=2, d_head=16, d_ff=64,
                                 n_codes=64)})
class DuINVQVAE(nn.Module):
    """Du-IN VQ-VAE (``duin_vqvae``): backbone -> LaBraM quantiser -> (+ time encoding) ->
    4-block decoder -> transposed-convolution head -> inverse subject layer, reconstructing
    ``(B, C, T)``.

    ``decoder_time_embedding=True`` adds the backbone's sinusoidal time encoding to the
    quantised tokens before the decoder, as released (``False``: sigformer's earlier decoder,
    kept to reproduce old results). ``head_init`` as in :class:`DuINClassifier` (applies to
    the output projection; the transposed convolutions keep PyTorch's init, as released).
    """

    def __init__(self, n_chans=10, n_times=3000, n_subjects: int = 1, depth: int = 8,
                 decoder_depth: int = 4, heads: int = 8, d_head: int = 64, d_ff: int = 320,
                 n_codes: int = 2048, n_outputs=None, sfreq=1000.0, chs_info=None,
                 decoder_time_embedding: bool = True, head_init: str = "trunc_normal"):
        super().__init__()
        check_duin_sfreq(sfreq)
        self.n_chans, self.n_times = n_chans, n_times
        self.decoder_time_embedding, self.head_init = decoder_time_embedding, head_init
        self.backbone = DuINBackbone(n_chans, n_times, n_subjects, 160, depth, heads, d_head, d_ff)
        self.vq = LaBraMQuantizer(n_codes=n_codes)
        self.decoder = duin_transformer(decoder_depth, 160, heads, d_head, d_ff)
        # lengths: 30 -> 30 -> 30 -> 300 -> 300 -> 3000 (per 3 s window)
        self.regression_head = nn.Sequential(
            nn.ConvTranspose1d(160, 128, 3, 1, padding=1),
            nn.ConvTranspose1d(128, 128, 3, 1, padding=1),
            nn.ConvTranspose1d(128, 128, 10, 10),
            nn.ConvTranspose1d(128, 128, 9, 1, padding=4),
            nn.ConvTranspose1d(128, D_NEURAL, 19, 10, padding=5, output_padding=1),
        )
        self.out_proj = nn.Linear(D_NEURAL, D_NEURAL)
        self.desubject = SubjectLayer(D_NEURAL, n_chans, n_subjects)
        init_heads(head_init, self.out_proj)

    def encode(self, x: torch.Tensor, subject=None):
        return self.vq(self.backbone(x, subject))

    def code_indices(self, x: torch.Tensor, subject=None) -> torch.Tensor:
        """The discrete region tokens ``(B, n_tokens)`` (targets of the MAE)."""
        h = self.backbone(x, subject)
        return self.vq.quantizer.nearest(self.vq.pre_proj(h))

    def forward(self, x: torch.Tensor, subject=None):
        z, vq_out = self.encode(x, subject)
        if self.decoder_time_embedding:
            z = z + self.backbone.time_encoding[None]
        h = self.decoder(z).transpose(1, 2)  # (B, 160, n_tokens)
        h = self.out_proj(self.regression_head(h).transpose(1, 2))  # (B, T, 16)
        onehot = self.backbone.subject_onehot(subject, len(x), x.device)
        return self.desubject(h, onehot).transpose(1, 2), vq_out

    def loss(self, x: torch.Tensor, subject=None, channel_mask: torch.Tensor | None = None
             ) -> dict[str, torch.Tensor]:
        """Channel-mask-weighted MSE reconstruction + VQ commitment (both weight 1)."""
        recon, vq_out = self(x, subject)
        per_channel = ((recon - x) ** 2).mean(-1)  # (B, C)
        if channel_mask is None:
            channel_mask = torch.ones_like(per_channel)
        rec = (per_channel * channel_mask).sum() / channel_mask.sum().clamp(min=1)
        return {"loss": rec + vq_out.loss, "reconstruction": rec.detach(),
                "vq": vq_out.loss.detach(), "perplexity": vq_out.perplexity.detach()}


MAE_LOSSES = ("single_ce", "sum_of_views")


@register_model("duin_mae", domain="seeg", presets={
    **_DUIN_PRESET, "tiny": dict(depth=1, heads=2, d_head=16, d_ff=64, n_codes=64)})
class DuINMAE(nn.Module):
    """Du-IN masked model (``duin_mae``): masked tokens replaced by a learned embedding, the
    encoder predicts the frozen VQ-VAE's code of every masked token (2048-way).

    Each step draws one mask and runs two views, the mask and its complement, so every token
    is predicted once, from the view in which it is hidden (:meth:`predict_codes`).

    * ``mae_loss="single_ce"`` (release): one cross-entropy over all tokens of those
      predictions. ``"sum_of_views"``: the sum of each view's mean over its masked tokens
      (sigformer's earlier loss, twice the release's at ``mask_ratio=0.5``).
    * ``init_from_vqvae=False`` (release): :func:`sigformer.recipes.duin.pretrain_mae` trains the MAE from scratch and
      uses the VQ-VAE only for its codes; ``True`` first copies the VQ-VAE's subject layer,
      tokenizer and encoder into the MAE's backbone.
    * ``head_init``: the token head's init, as in :class:`DuINClassifier`.
    """

    def __init__(self, n_chans=10, n_times=3000, n_subjects: int = 1, depth: int = 8,
                 heads: int = 8, d_head: int = 64, d_ff: int = 320, n_codes: int = 2048,
                 mask_ratio: float = 0.5, n_outputs=None, sfreq=1000.0, chs_info=None,
                 mae_loss: str = "single_ce", init_from_vqvae: bool = False,
                 head_init: str = "trunc_normal"):
        super().__init__()
        check_duin_sfreq(sfreq)
        if mae_loss not in MAE_LOSSES:
            raise ValueError(f"mae_loss must be one of {MAE_LOSSES}, got {mae_loss!r}")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.mask_ratio, self.mae_loss, self.init_from_vqvae = mask_ratio, mae_loss, init_from_vqvae
        self.head_init = head_init
        self.backbone = DuINBackbone(n_chans, n_times, n_subjects, 160, depth, heads, d_head, d_ff)
        self.mask_embedding = nn.Parameter(torch.zeros(160))
        nn.init.trunc_normal_(self.mask_embedding, std=0.02)
        self.token_head = nn.Linear(160, n_codes)
        init_heads(head_init, self.token_head)

    def random_mask(self, batch: int, n_tokens: int, device) -> torch.Tensor:
        """``n_tokens - int(n_tokens * (1 - mask_ratio))`` masked positions per sample (the
        release's count: it truncates the number of kept tokens)."""
        n_mask = n_tokens - int(n_tokens * (1.0 - self.mask_ratio))
        order = torch.rand(batch, n_tokens, device=device).argsort(-1)
        return order < n_mask

    def forward(self, x: torch.Tensor, mask: torch.Tensor, subject=None) -> torch.Tensor:
        tokens = self.backbone.region_tokens(x, subject)
        tokens = torch.where(mask[..., None], self.mask_embedding.to(tokens.dtype), tokens)
        return self.token_head(self.backbone.encode(tokens))

    def predict_codes(self, x: torch.Tensor, mask: torch.Tensor, subject=None) -> torch.Tensor:
        """Code logits ``(B, n_tokens, n_codes)`` of every token, each from the view in which
        it is masked: ``where(mask, self(x, mask), self(x, ~mask))`` (the release's
        ``c_pred``)."""
        return torch.where(mask[..., None], self(x, mask, subject), self(x, ~mask, subject))

    def loss(self, x: torch.Tensor, targets: torch.Tensor, subject=None,
             mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Masked-code cross-entropy (see ``mae_loss``) for a random mask (or ``mask``)."""
        if mask is None:
            mask = self.random_mask(len(x), targets.shape[1], x.device)
        if self.mae_loss == "single_ce":
            logits = self.predict_codes(x, mask, subject)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            correct = float((logits.argmax(-1) == targets).float().sum())
        else:
            loss, correct = 0.0, 0.0
            for view in (mask, ~mask):
                logits = self(x, view, subject)
                loss = loss + F.cross_entropy(logits[view], targets[view])
                correct += float((logits[view].argmax(-1) == targets[view]).float().sum())
        return {"loss": loss, "token_accuracy": torch.tensor(correct / targets.numel())}


class DuINRegionTokens(Tokenizer):
    """The tokenization-layer view of a trained Du-IN VQ-VAE: ``(B, C, T)`` sEEG -> one
    discrete region token per 100 ms (ids into its 2048-code codebook)."""

    discrete = True
    sfreq = 1000.0

    def __init__(self, vqvae: DuINVQVAE, subject: int = 0):
        super().__init__()
        self.vqvae, self.subject = vqvae, subject

    def encode(self, x: torch.Tensor) -> Tokens:
        x = self.check_input(x)
        subject = torch.full((len(x),), self.subject, dtype=torch.long, device=x.device)
        h = self.vqvae.backbone(x, subject)
        ids = self.vqvae.vq.quantizer.nearest(self.vqvae.vq.pre_proj(h))
        emb = self.vqvae.vq.quantizer.lookup(ids)
        return Tokens(emb, ids, time_index=torch.arange(ids.shape[1], device=x.device))


def zscore_channels(X: np.ndarray) -> np.ndarray:
    """Z-score each channel over all trials and time (Du-IN's per-subject normalisation)."""
    X = np.asarray(X, dtype=np.float32)
    mean = X.mean(axis=(0, 2), keepdims=True)
    std = X.std(axis=(0, 2), keepdims=True) + 1e-8
    return (X - mean) / std


@torch.no_grad()
def vqvae_targets(vqvae: DuINVQVAE, X: np.ndarray, subjects: np.ndarray | None = None,
                  batch_size: int = 64) -> np.ndarray:
    vqvae.eval()
    subjects = np.zeros(len(X), np.int64) if subjects is None else np.asarray(subjects)
    out = [vqvae.code_indices(torch.as_tensor(X[i:i + batch_size], dtype=torch.float32),
                              torch.as_tensor(subjects[i:i + batch_size]))
           for i in range(0, len(X), batch_size)]
    return torch.cat(out).numpy()
