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
  sklearn estimator can use it.

Signals are 200 Hz; each channel is scaled by the 95th percentile of its absolute value; the
STFT uses a 200-sample Hann window, hop 100, no centring, first 100 bins (0-99 Hz): one token
per 1 s window with 0.5 s hop (9 tokens for 5 s).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...nn import TransformerEncoder
from ...nn.vq import VectorQuantizer
from ...tokenizers.base import Tokenizer, Tokens
from ...tokenizers.simple import stft_magnitude
from ...validation import SignalError
from ..registry import register_model

TFM_SFREQ = 200.0
N_FFT, HOP, N_BINS = 200, 100, 100


def lat(dim: int, depth: int, heads: int = 8, layer_dropout: float = 0.0,
        ff_dropout: float = 0.0) -> TransformerEncoder:
    """linear-attention-transformer's encoder (pre-LN, global linear-attention heads, no q/k/v
    bias, GELU feed-forward x4, dropout after the attention projection)."""
    return TransformerEncoder(depth, dim, heads, dropout=0.0, attn_dropout=0.0,
                              ffn_dropout=ff_dropout, attention="linear", qkv_bias=False,
                              out_dropout=layer_dropout, norm_first=True)


def percentile_normalize(x: torch.Tensor, q: float = 0.95, eps: float = 1e-8) -> torch.Tensor:
    """Scale each channel by the ``q`` quantile of its absolute value (TFM's loader)."""
    return x / (torch.quantile(x.abs().float(), q, dim=-1, keepdim=True) + eps)


def tfm_spectrogram(x: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` signals at 200 Hz -> ``(B, 100, T)`` STFT magnitudes."""
    return stft_magnitude(x, N_FFT, HOP, N_BINS, center=False)


def freq_time_mask(n_bins: int, n_frames: int, freq_ratio: float = 0.5, freq_bin_size: int = 5,
                   time_ratio: float = 0.5, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """Visible-entry mask ``(F, T)`` of ``freq_bin_temporal_masking``: ``freq_ratio`` of the
    ``freq_bin_size``-wide bands and ``time_ratio`` of the frames are masked; the visible
    region is their intersection (about 25%). The complementary view is ``~mask``."""
    n_bands = n_bins // freq_bin_size
    bands = torch.randperm(n_bands, generator=generator)[: int(round(n_bands * freq_ratio))]
    frames = torch.randperm(n_frames, generator=generator)[: int(round(n_frames * time_ratio))]
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
    codebook_loss_after_ste : add the VQ codebook term computed after the straight-through
        estimator, as the release does (False: commitment term only, the intended VQ loss).
    dead_code_threshold : re-seed codes whose running usage falls below this from the
        current batch (0, as released; small codebooks trained briefly collapse without it).
    """

    discrete = True
    sfreq = TFM_SFREQ

    @staticmethod
    def prepare(X: np.ndarray, sfreq: float) -> np.ndarray:
        """Resample to 200 Hz and apply the 95th-percentile scaling (see :func:`tfm_prepare`)."""
        return tfm_prepare(X, sfreq)

    def __init__(self, emb_size: int = 64, code_size: int = 64, n_codes: int = 8192,
                 freq_depth: int = 2, temporal_depth: int = 2, decoder_depth: int = 8,
                 heads: int = 8, dropout: float = 0.2, codebook_loss_after_ste: bool = False,
                 dead_code_threshold: float = 0.0, n_chans=None, n_outputs=None, n_times=None, sfreq=None, chs_info=None):
        super().__init__()
        if emb_size % 2 or (emb_size // 2) % 4:
            raise ValueError(f"emb_size must be a multiple of 8, got {emb_size}")
        half = emb_size // 2
        self.emb_size, self.n_codes = emb_size, n_codes
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
                                         init="uniform", ema="average", beta=1.0,
                                         codebook_loss_after_ste=codebook_loss_after_ste,
                                         dead_code_threshold=dead_code_threshold)
        self.decoder = lat(code_size, decoder_depth, heads, dropout)
        self.decoder_head = nn.Sequential(nn.Linear(code_size, code_size), nn.Tanh(),
                                          nn.Linear(code_size, N_BINS))

    # --- encoder ------------------------------------------------------------------------
    def embed(self, signal: torch.Tensor, spec: torch.Tensor,
              visible: torch.Tensor | None = None) -> torch.Tensor:
        """Continuous (L2-normalised) token vectors ``(B, T, code_size)`` of single-channel
        signals ``(B, N)`` and their spectrograms ``(B, 100, T)``. ``visible`` ``(100, T)``
        zeroes masked spectrogram entries and the temporal embeddings of masked frames."""
        b, n_bins, t = spec.shape
        if visible is not None:
            spec = spec * visible.to(spec.dtype)
        frames = spec.transpose(1, 2).reshape(b * t, 1, n_bins)
        patches = self.freq_patch(frames).transpose(1, 2)  # (B*T, 20, D)
        patches = self.freq_transformer(patches).transpose(1, 2)  # (B*T, D, 20)
        freq = (torch.sigmoid(self.freq_gate(patches)) * self.freq_value(patches))
        freq = freq.reshape(b, t, -1)  # (B, T, D/2)
        temporal = self.temporal_embed(signal[:, None]).transpose(1, 2)  # (B, T, D/2)
        if visible is not None:
            frame_kept = visible.any(0).to(temporal.dtype)  # frames with any visible bin
            temporal = temporal * frame_kept[None, :, None]
        fused = self.temporal_transformer(torch.cat([freq, temporal], dim=-1))
        return F.normalize(self.to_code(fused), dim=-1)

    def _prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.check_input(x)
        if x.shape[-1] < N_FFT:
            raise SignalError(f"TFM-Tokenizer needs at least {N_FFT} samples (1 s at 200 Hz), "
                              f"got {x.shape[-1]}")
        flat = x.reshape(-1, x.shape[-1])
        return flat, tfm_spectrogram(flat)

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
        per_channel = codes.reshape(b * c, -1, codes.shape[-1])
        spec = self.decoder_head(self.decoder(per_channel)).transpose(1, 2)
        return spec.reshape(b, c, N_BINS, -1)

    # --- pretraining objective ----------------------------------------------------------
    def reconstruction_loss(self, x: torch.Tensor, generator: torch.Generator | None = None
                            ) -> dict[str, torch.Tensor]:
        """Masked-view + complementary-view reconstruction of the full spectrogram plus the VQ
        loss of both views (one random mask shared by the batch, as released)."""
        flat, spec = self._prepare(x)
        visible = freq_time_mask(spec.shape[1], spec.shape[2], generator=generator).to(x.device)
        total, recon, vq_loss, perplexity = 0.0, 0.0, 0.0, 0.0
        for view in (visible, ~visible):
            out = self.quantizer(self.embed(flat, spec, view))
            rec = self.decoder_head(self.decoder(out.quantized)).transpose(1, 2)
            r = F.mse_loss(rec, spec)
            total = total + r + out.loss
            recon, vq_loss = recon + r.detach(), vq_loss + out.loss.detach()
            perplexity = perplexity + out.perplexity.detach() / 2
        return {"loss": total, "reconstruction": recon, "vq": vq_loss, "perplexity": perplexity}

    def fit(self, X, y=None, *, max_epochs: int = 100, batch_size: int = 256, lr: float = 1e-3,
            weight_decay: float = 1e-5, warmup_epochs: int = 10, final_lr: float = 0.005,
            lr_schedule: str = "intended", seed: int | None = 0, **trainer_kwargs):
        """Tokenizer pretraining on signals ``(n, N)`` or ``(n, C, N)`` (channels are treated
        independently), already at 200 Hz and normalised (:func:`tfm_prepare`).

        ``lr_schedule="released"`` reproduces the official config, where ``final_lr=0.005``
        exceeds ``lr`` so the cosine schedule *rises* after warm-up; ``"intended"`` decays
        from ``lr`` to ``final_lr * lr``.
        """
        from ...training import train_objective

        X = np.asarray(X, np.float32)
        X = X.reshape(-1, X.shape[-1])
        if lr_schedule not in ("intended", "released"):
            raise ValueError(f"lr_schedule must be 'intended' or 'released', got {lr_schedule!r}")
        end_lr = final_lr if lr_schedule == "released" else final_lr * lr
        self.train()
        self.history_ = train_objective(
            self, lambda model, batch: model.reconstruction_loss(batch[0]), [X],
            max_epochs=max_epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
            betas=(0.9, 0.99), warmup_epochs=warmup_epochs, final_lr=end_lr, seed=seed,
            **trainer_kwargs)
        return self


def tfm_prepare(x: np.ndarray, sfreq: float) -> np.ndarray:
    """Resample ``(..., N)`` to 200 Hz (``scipy.signal.resample``, as the reference loader)
    and scale each channel by its 95th-percentile absolute value."""
    from scipy.signal import resample

    x = np.asarray(x, dtype=np.float64)
    if sfreq != TFM_SFREQ:
        x = resample(x, int(round(x.shape[-1] * TFM_SFREQ / sfreq)), axis=-1)
    scale = np.quantile(np.abs(x), 0.95, axis=-1, keepdims=True) + 1e-8
    return (x / scale).astype(np.float32)


def sinusoidal_encoding(max_len: int, dim: int) -> torch.Tensor:
    position = torch.arange(max_len, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    pe = torch.zeros(max_len, dim)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)
    return pe


@register_model("tfm_encoder", domain="eeg", presets={
    "tuev": dict(n_outputs=6),
    "tuab": dict(n_outputs=1),
    "tiny": dict(emb_size=16, n_codes=64, depth=1, heads=2),
})
class TFMEncoder(nn.Module):
    """Downstream TFM-Encoder (``TFM_TOKEN_Classifier`` "64x4") on token ids ``(B, C, T)``.

    ``n_outputs=None`` gives the masked-token-prediction model (an ``n_codes``-way head on
    every token). ``max_channels`` is the reference's hard 16-channel limit of the channel
    embedding. The [MASK] id is ``n_codes``.
    """

    def __init__(self, n_outputs: int | None = 6, emb_size: int = 64, n_codes: int = 8192,
                 depth: int = 4, heads: int = 8, dropout: float = 0.2,
                 max_channels: int = 16, max_len: int = 1000, n_chans=None, n_times=None,
                 sfreq=None, chs_info=None):
        super().__init__()
        self.n_codes, self.mask_id, self.max_channels = n_codes, n_codes, max_channels
        self.n_outputs = n_outputs
        self.token_embedding = nn.Embedding(n_codes + 1, emb_size)
        self.channel_embedding = nn.Embedding(max_channels, emb_size)
        self.channel_index = nn.Parameter(torch.arange(max_channels), requires_grad=False)
        self.register_buffer("time_encoding", sinusoidal_encoding(max_len, emb_size),
                             persistent=False)
        self.pos_dropout = nn.Dropout(0.1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, emb_size))
        self.transformer = lat(emb_size, depth, heads, dropout, ff_dropout=dropout)
        self.head = nn.Linear(emb_size, n_codes if n_outputs is None else n_outputs)

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
        return self.transformer(x)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.tokens(ids)
        if self.n_outputs is None:  # masked-token prediction on every token
            return self.head(h[:, 1:])
        out = self.head(h[:, 0])
        return out[:, 0] if self.n_outputs == 1 else out

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
    """

    def __init__(self, n_chans=None, n_outputs=2, n_times=None, sfreq=TFM_SFREQ, chs_info=None,
                 tokenizer_params: dict | None = None, encoder_params: dict | None = None,
                 freeze_tokenizer: bool = True, tokenizer_epochs: int = 0,
                 mtp_epochs: int = 0, pretrain_batch_size: int = 256, pretrain_lr: float = 1e-3):
        super().__init__()
        self.tokenizer_epochs, self.mtp_epochs = tokenizer_epochs, mtp_epochs
        self.pretrain_batch_size, self.pretrain_lr = pretrain_batch_size, pretrain_lr
        if sfreq is not None and float(sfreq) != TFM_SFREQ:
            raise SignalError(f"TFM models take 200 Hz signals, got sfreq={sfreq}; resample "
                              "with tfm_prepare()")
        self.tokenizer = TFMTokenizer(**(tokenizer_params or {}))
        enc = dict(encoder_params or {})
        enc.setdefault("n_codes", self.tokenizer.n_codes)
        self.encoder = TFMEncoder(n_outputs=n_outputs, **enc)
        self.freeze_tokenizer = freeze_tokenizer
        if freeze_tokenizer:
            self.tokenizer.requires_grad_(False)

    def fit_unsupervised(self, X: np.ndarray) -> None:
        """Called by the estimator before supervised training, on the training trials only:
        tokenizer pretraining (``tokenizer_epochs``), codebook-initialised token embeddings,
        then masked-token pretraining of the encoder (``mtp_epochs``)."""
        X = percentile_normalize(torch.as_tensor(np.asarray(X, np.float32))).numpy()
        if self.tokenizer_epochs > 0:
            self.tokenizer.requires_grad_(True)
            self.tokenizer.fit(X, max_epochs=self.tokenizer_epochs, lr=self.pretrain_lr,
                               batch_size=self.pretrain_batch_size,
                               warmup_epochs=max(1, self.tokenizer_epochs // 10))
            self.tokenizer.requires_grad_(not self.freeze_tokenizer)
            self.encoder.init_from_codebook(self.tokenizer.quantizer.codebook.detach())
        if self.mtp_epochs > 0:
            self.pretrain_encoder_mtp(X)

    def pretrain_encoder_mtp(self, X: np.ndarray, **kwargs) -> None:
        """Masked-token prediction with an ``n_codes``-way head; the transformer, token,
        channel and CLS embeddings are then transferred to this classifier's encoder."""
        from ...training import train_objective

        self.tokenizer.eval()
        ids = self.tokenizer.transform(X)
        ids = ids.reshape(len(X), X.shape[1], -1)
        enc = self.encoder
        mtp = TFMEncoder(n_outputs=None, emb_size=enc.token_embedding.embedding_dim,
                         n_codes=enc.n_codes, depth=len(enc.transformer.blocks),
                         heads=enc.transformer.blocks[0].attn.num_heads,
                         max_channels=enc.max_channels)
        shared = {k: v for k, v in enc.state_dict().items() if not k.startswith("head.")}
        mtp.load_state_dict(shared, strict=False)
        train_objective(mtp, lambda m, b: m.mtp_loss(b[0]), [ids.astype(np.int64)],
                        max_epochs=self.mtp_epochs, batch_size=self.pretrain_batch_size,
                        lr=self.pretrain_lr, weight_decay=1e-5,
                        warmup_epochs=max(1, self.mtp_epochs // 10), **kwargs)
        enc.load_state_dict({k: v for k, v in mtp.state_dict().items()
                             if not k.startswith("head.")}, strict=False)

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
        with torch.set_grad_enabled(not self.freeze_tokenizer and torch.is_grad_enabled()):
            tok = self.tokenizer.encode(percentile_normalize(x))
        b, c = x.shape[:2]
        return self.encoder(tok.ids.reshape(b, c, -1))
