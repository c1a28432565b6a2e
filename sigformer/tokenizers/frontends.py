"""Every model's front-end as a registered tokenizer, and the tokenizer registry.

A front-end tokenizer is the part of a sigformer model that turns the raw signal into the
token sequence its transformer reads (patches, STFT bins, learned conv frames, OFDM grid
patches, sEEG region tokens, IQ conv embeddings), exposed through the one
:class:`~sigformer.tokenizers.Tokenizer` interface: ``encode(x) -> Tokens``. The tokenizer
holds the model's own submodules (shared, not copied), so the tokens are exactly what the
model computes at that stage and a pretrained model's front-end is reusable on its own:

>>> model = create_model("dbconformer", preset="bnci2014001")            # doctest: +SKIP
>>> patches = DBConformerPatches.from_model(model)                        # doctest: +SKIP
>>> create_tokenizer("mossformer_encoder", preset="tiny").encode(wave)    # doctest: +SKIP

The registry is timm-style: :func:`register_tokenizer` (decorator), :func:`create_tokenizer`
(by name and keyword arguments) and :func:`list_tokenizers`. The fixed tokenizers of
:mod:`sigformer.tokenizers.simple`, the TFM-Tokenizer and the front-ends are registered here.
Model modules are imported only when a front-end is built, so listing stays cheap.

Shared weights also mean shared train/eval state: ``tokenizer.eval()`` switches the model's
front-end submodules (BatchNorm, dropout) too, exactly as ``model.eval()`` would.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..validation import SignalError, check_array
from .base import ChannelIndependent, Tokenizer, Tokens
from .simple import PatchTokenizer, STFTTokenizer, VQTokenizer

# --- registry ------------------------------------------------------------------------------


class UnknownTokenizerError(KeyError):
    def __str__(self) -> str:  # KeyError repr-quotes its message; keep it readable
        return str(self.args[0])


@dataclass(frozen=True)
class TokenizerEntry:
    """A registered tokenizer: its factory, the model it comes from (None for model-free
    tokenizers) and one line saying what a token is."""

    name: str
    factory: Callable[..., Tokenizer]
    model: str | None
    summary: str


_TOKENIZERS: dict[str, TokenizerEntry] = {}


def register_tokenizer(name: str, *, model: str | None = None, summary: str = ""
                       ) -> Callable[[Any], Any]:
    """Register a tokenizer class or factory function under ``name``.

    Classes with a ``create`` classmethod (the :class:`ModelFrontEnd` subclasses) are built
    through it; other classes and functions are called with the keyword
    arguments given to :func:`create_tokenizer`.
    """
    def decorator(obj):
        # classes with a ``create`` classmethod (the front-ends) are built through it
        factory = getattr(obj, "create", obj) if isinstance(obj, type) else obj
        existing = _TOKENIZERS.get(name)
        if existing is not None and existing.factory != factory:
            raise ValueError(f"tokenizer name {name!r} is already registered")
        _TOKENIZERS[name] = TokenizerEntry(name, factory, model, summary)
        return obj

    return decorator


def list_tokenizers() -> list[str]:
    """Names of every registered tokenizer."""
    return sorted(_TOKENIZERS)


def tokenizer_entry(name: str) -> TokenizerEntry:
    """The registry entry of ``name``; unknown names get close matches and the full list."""
    if name not in _TOKENIZERS:
        close = difflib.get_close_matches(name, list_tokenizers(), n=3, cutoff=0.5)
        hint = f"; did you mean {close}?" if close else ""
        raise UnknownTokenizerError(f"unknown tokenizer {name!r}{hint} (known tokenizers: "
                                    f"{list_tokenizers()})")
    return _TOKENIZERS[name]


def create_tokenizer(name: str, **kwargs) -> Tokenizer:
    """Build a registered tokenizer by name.

    >>> create_tokenizer("stft", n_fft=64, hop=32)                           # doctest: +SKIP
    >>> create_tokenizer("dbconformer_patches", preset="bnci2014001")        # doctest: +SKIP
    >>> create_tokenizer("iq_conv", model=my_trained_clst)                   # doctest: +SKIP

    Front-ends take ``model=`` (a model instance, whose weights they share, or a registry
    name to build instead of the default one), or ``preset``, ``weights`` and model keyword
    arguments passed to :func:`sigformer.models.create_model`, plus their own options.
    With ``weights`` the tokenizer comes back in eval mode, as a loaded checkpoint does: in
    training mode a plain ``encode`` would move a pretrained codebook (its EMA update) and
    apply dropout; call ``.train()`` to fine-tune it.
    """
    tokenizer = tokenizer_entry(name).factory(**kwargs)
    if kwargs.get("weights") is not None and isinstance(tokenizer, torch.nn.Module):
        tokenizer.eval()
    return tokenizer


def _as_tokenizer(tokenizer: Tokenizer | str, kwargs: dict | None, role: str) -> Tokenizer:
    if isinstance(tokenizer, str):
        return create_tokenizer(tokenizer, **(kwargs or {}))
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError(f"{role} must be a Tokenizer or a registered tokenizer name, got "
                        f"{type(tokenizer).__name__}")
    return tokenizer


register_tokenizer("patch", summary="a Conv1d patch of one channel")(PatchTokenizer)
register_tokenizer("stft", summary="the STFT spectrum of one frame of one channel")(
    STFTTokenizer)


@register_tokenizer("vq", summary="the codebook entry nearest a base tokenizer's token")
def _vq_tokenizer(base: Tokenizer | str, base_kwargs: dict | None = None,
                  **kwargs) -> VQTokenizer:
    return VQTokenizer(_as_tokenizer(base, base_kwargs, "base"), **kwargs)


@register_tokenizer("channel_independent",
                    summary="a single-channel tokenizer's token, per channel")
def _channel_independent(tokenizer: Tokenizer | str, tokenizer_kwargs: dict | None = None
                         ) -> ChannelIndependent:
    return ChannelIndependent(_as_tokenizer(tokenizer, tokenizer_kwargs, "tokenizer"))


@register_tokenizer("tfm_tokenizer", model="tfm_tokenizer",
                    summary="a TFM-Tokenizer code per 1 s frame and channel")
def _tfm_tokenizer(preset: str | None = None, *, weights=None, **kwargs) -> Tokenizer:
    from ..models import create_model

    return create_model("tfm_tokenizer", preset, weights=weights, **kwargs)


# --- front-end base ------------------------------------------------------------------------


class ModelFrontEnd(Tokenizer):
    """Base of the model front-ends. Subclasses implement :meth:`from_model` (read the
    model's submodules) and :meth:`encode`; :meth:`create` builds the model first."""

    model_name: ClassVar[str]  # registry model built by name
    accepted_models: ClassVar[tuple[str, ...]]  # registry names whose classes are accepted
    frontend_options: ClassVar[tuple[str, ...]] = ()  # keyword options of from_model

    @classmethod
    def from_model(cls, model: nn.Module, **options) -> ModelFrontEnd:
        raise NotImplementedError

    @classmethod
    def create(cls, preset: str | None = None, *, model: nn.Module | str | None = None,
               weights=None, **kwargs) -> ModelFrontEnd:
        """From a model instance (``model=``) or a registry name (default
        :attr:`model_name`) built with ``preset``, ``weights`` and model keyword arguments."""
        options = {k: kwargs.pop(k) for k in cls.frontend_options if k in kwargs}
        if isinstance(model, nn.Module):
            unused = ([f"preset={preset!r}"] if preset is not None else []) + (
                ["weights"] if weights is not None else []) + sorted(kwargs)
            if unused:
                raise TypeError(f"{cls.__name__}: given a model instance, these arguments "
                                f"would be ignored: {unused}")
            return cls.from_model(model, **options)
        from ..models import create_model

        name = cls.model_name if model is None else model
        if name not in cls.accepted_models:
            raise ValueError(f"{cls.__name__} is the front-end of {list(cls.accepted_models)}, "
                             f"not {name!r}")
        return cls.from_model(create_model(name, preset, weights=weights, **kwargs), **options)

    @classmethod
    def check_model(cls, model: nn.Module) -> None:
        from ..models import get_model_class

        accepted = tuple(get_model_class(name) for name in cls.accepted_models)
        if not isinstance(model, accepted):
            names = sorted({c.__name__ for c in accepted})
            raise TypeError(f"{cls.__name__} reads the front-end of a {' or '.join(names)}, "
                            f"got a {type(model).__name__}")


def _arange(n: int, device: torch.device) -> torch.Tensor:
    return torch.arange(n, device=device)


def _positions(parameter: nn.Parameter | None, add: bool) -> nn.Parameter | None:
    return parameter if add else None


def _dbconformer_positions(model: nn.Module, attribute: str, add: bool
                           ) -> nn.Parameter | None:
    """The model's learnable positions when asked for (DBConformer built with pos_emb)."""
    positions = getattr(model, attribute, None)
    if add and positions is None:
        raise ValueError("add_positions=True, but this DBConformer has no positional "
                         "embedding (pos_emb=False)")
    return _positions(positions, add)


def _add_positions(tokens: torch.Tensor, positions: torch.Tensor | None,
                   what: str) -> torch.Tensor:
    if positions is None:
        return tokens
    if positions.shape[-2] < tokens.shape[1]:
        raise SignalError(f"{tokens.shape[1]} {what} but the model's positional embedding "
                          f"covers {positions.shape[-2]}: use the model's input size, or "
                          f"add_positions=False")
    return tokens + positions[:, :tokens.shape[1]]


# --- EEG -----------------------------------------------------------------------------------


@register_tokenizer("dbconformer_patches", model="dbconformer",
                    summary="one temporal patch of all channels (IFNet-style stem)")
class DBConformerPatches(ModelFrontEnd):
    """DBConformer's temporal-branch tokens (T-Conformer input).

    ``(B, C, T)`` EEG -> ``(B, P, D)`` with ``P = (T - 1) // patch_size`` (the stem drops the
    last sample as released) and ``D = emb_size``: the bnci2014001 preset gives ``(B, 8, 40)``.
    A token is one ``patch_size``-sample patch of the pointwise-spatial / depthwise-temporal
    stem, average-pooled, all channels mixed; ``time_index`` is the patch index and
    ``channel_index`` is None. ``add_positions=True`` adds the model's learnable positional
    embedding (then the tokens are exactly the temporal transformer's input). No decode.

    Parameters
    ----------
    stem : the model's ``temporal_embedding`` module (shared).
    n_chans : EEG channels the stem was built for.
    positions : the model's ``pos_embedding_temporal`` to add, or None.
    sfreq : the model's sampling rate (checked by ``check_input(x, sfreq)``).
    """

    model_name = "dbconformer"
    accepted_models = ("dbconformer",)
    frontend_options = ("add_positions",)

    def __init__(self, stem: nn.Module, n_chans: int, positions: nn.Parameter | None = None,
                 sfreq: float | None = None):
        super().__init__()
        self.stem, self.n_chans, self.positions, self.sfreq = stem, n_chans, positions, sfreq

    @classmethod
    def from_model(cls, model: nn.Module, add_positions: bool = False) -> DBConformerPatches:
        cls.check_model(model)
        positions = _dbconformer_positions(model, "pos_embedding_temporal", add_positions)
        return cls(model.temporal_embedding, model.n_chans, positions, model.sfreq)

    def encode(self, x: torch.Tensor) -> Tokens:
        x = _check_eeg(self, x, self.n_chans)
        patch = self.stem.pool.kernel_size[0]
        usable = x.shape[-1] - int(self.stem.drop_last_sample)
        if usable < patch:
            raise SignalError(f"{x.shape[-1]} samples give no complete patch of {patch} "
                              f"samples")
        emb = _add_positions(self.stem(x), self.positions, "patches")
        return Tokens(emb, None, time_index=_arange(emb.shape[1], x.device))


@register_tokenizer("dbconformer_channels", model="dbconformer",
                    summary="one EEG channel over the whole window")
class DBConformerChannels(ModelFrontEnd):
    """DBConformer's spatial-branch tokens (S-Conformer input).

    ``(B, C, T)`` EEG -> ``(B, C, D)`` (``(B, 22, 40)`` for bnci2014001): one token per
    channel, a per-channel strided ``Conv1d(1, spa_dim, 25, stride 5)`` + ELU, averaged over
    time and projected to ``emb_size``. ``channel_index`` is the channel, ``time_index`` is 0
    (every token spans the whole window). ``add_positions=True`` adds the model's learnable
    channel embedding (the spatial transformer's input). Without positions any number of
    channels works (the embedding is shared across channels). No decode.
    """

    model_name = "dbconformer"
    accepted_models = ("dbconformer",)
    frontend_options = ("add_positions",)

    def __init__(self, embedding: nn.Module, positions: nn.Parameter | None = None,
                 sfreq: float | None = None):
        super().__init__()
        self.embedding, self.positions, self.sfreq = embedding, positions, sfreq

    @classmethod
    def from_model(cls, model: nn.Module, add_positions: bool = False) -> DBConformerChannels:
        cls.check_model(model)
        positions = _dbconformer_positions(model, "pos_embedding_spatial", add_positions)
        return cls(model.spatial_embedding, positions, model.sfreq)

    def encode(self, x: torch.Tensor) -> Tokens:
        n_chans = None if self.positions is None else self.positions.shape[-2]
        x = _check_eeg(self, x, n_chans)
        emb = _add_positions(self.embedding(x), self.positions, "channels")
        c = emb.shape[1]
        return Tokens(emb, None, time_index=torch.zeros(c, dtype=torch.long, device=x.device),
                      channel_index=_arange(c, x.device))


def _check_eeg(tokenizer: Tokenizer, x: torch.Tensor, n_chans: int | None) -> torch.Tensor:
    if x.dim() == 4 and x.shape[1] == 1:  # (B, 1, C, T) as DBConformer's official scripts
        x = x.squeeze(1)
    x = tokenizer.check_input(x)
    if n_chans is not None and x.shape[1] != n_chans:
        raise SignalError(f"{type(tokenizer).__name__} expects {n_chans} channels (the model's "
                          f"montage), got {x.shape[1]}")
    return x


def _duin_region_tokens_class() -> type:
    from ..models.eeg.duin import DuINRegionTokens

    return DuINRegionTokens


class SEEGRegionEmbeddings(ModelFrontEnd):
    """Du-IN's continuous region tokens (any Du-IN model's backbone, before the encoder).

    ``(B, C, T)`` sEEG at 1 kHz -> ``(B, T / 100, 160)``: the per-subject linear layer fuses
    the contacts into 16 virtual channels, then each 100-sample (100 ms) segment goes through
    three convolutions and is flattened (10 x 16 = 160). ``time_index`` is the segment,
    ``channel_index`` None (channels are fused). The backbone adds its sinusoidal time
    encoding after this stage. No decode.
    """

    model_name = "duin"
    accepted_models = ("duin", "duin_mae", "duin_vqvae")
    frontend_options = ("subject",)
    sfreq = 1000.0

    def __init__(self, backbone: nn.Module, subject: int = 0):
        super().__init__()
        self.backbone, self.subject = backbone, subject

    @classmethod
    def from_model(cls, model: nn.Module, subject: int = 0) -> SEEGRegionEmbeddings:
        cls.check_model(model)
        return cls(model.backbone, subject)

    def encode(self, x: torch.Tensor) -> Tokens:
        x = self.check_input(x)
        subject = torch.full((len(x),), self.subject, dtype=torch.long, device=x.device)
        emb = self.backbone.region_tokens(x, subject)
        return Tokens(emb, None, time_index=_arange(emb.shape[1], x.device))


@register_tokenizer("seeg_regions", model="duin_vqvae",
                    summary="one 100 ms sEEG segment of all contacts (a Du-IN region token)")
def seeg_regions(preset: str | None = None, *, model: nn.Module | str | None = None,
                 weights=None, subject: int = 0, **kwargs) -> Tokenizer:
    """Du-IN's region tokens: discrete from a VQ-VAE, continuous from other Du-IN models.

    From a ``duin_vqvae`` (the default when built by name) this is
    :class:`SEEGRegionTokens`: ``(B, C, T)`` -> ids ``(B, T / 100)`` into the 2048-code
    codebook and their code vectors ``(B, T / 100, 64)``, with decode (the VQ-VAE's
    reconstruction). From ``duin`` / ``duin_mae`` it is :class:`SEEGRegionEmbeddings`.
    """
    if not isinstance(model, nn.Module):
        from ..models import create_model

        model = create_model(model or "duin_vqvae", preset, weights=weights, **kwargs)
    elif preset is not None or weights is not None or kwargs:
        raise TypeError("seeg_regions: given a model instance, preset, weights and model "
                        "arguments would be ignored")
    from ..models import get_model_class

    if isinstance(model, get_model_class("duin_vqvae")):
        return SEEGRegionTokens.from_model(model, subject)
    return SEEGRegionEmbeddings.from_model(model, subject=subject)


class SEEGRegionTokens(Tokenizer):
    """Discrete Du-IN region tokens with the VQ-VAE's decoder as :meth:`decode`.

    Wraps :class:`~sigformer.models.eeg.duin.DuINRegionTokens` (the ids are its ids): ids
    ``(B, T / 100)``, code vectors ``(B, T / 100, 64)``, ``time_index`` the 100 ms segment.
    ``decode(tokens)`` runs the VQ-VAE's reconstruction path (post-projection, time encoding,
    decoder transformer, transposed convolutions, inverse subject layer) and returns
    ``(B, C, T)``; on the tokens of ``encode(x)`` it equals the VQ-VAE's ``forward(x)[0]``.
    """

    discrete = True
    sfreq = 1000.0

    def __init__(self, region_tokens: Tokenizer):
        super().__init__()
        self.region_tokens = region_tokens

    @classmethod
    def from_model(cls, vqvae: nn.Module, subject: int = 0) -> SEEGRegionTokens:
        from ..models import get_model_class

        if not isinstance(vqvae, get_model_class("duin_vqvae")):
            raise TypeError(f"SEEGRegionTokens reads a DuINVQVAE, got a {type(vqvae).__name__}")
        return cls(_duin_region_tokens_class()(vqvae, subject))

    @property
    def quantizer(self):  # codebook health, as TokenTransformer reports it
        return self.region_tokens.vqvae.vq.quantizer

    def encode(self, x: torch.Tensor) -> Tokens:
        return self.region_tokens.encode(x)

    def decode(self, tokens: Tokens) -> torch.Tensor:
        if tokens.ids is None:
            raise ValueError("Du-IN region tokens decode from ids; these tokens have none")
        model = self.region_tokens.vqvae
        vq = model.vq
        codes = vq.quantizer.lookup(tokens.ids)
        z = vq.post_proj(vq.post_norm(codes))
        if model.decoder_time_embedding:
            z = z + model.backbone.time_encoding[None, :z.shape[1]]
        h = model.decoder(z).transpose(1, 2)
        h = model.out_proj(model.regression_head(h).transpose(1, 2))
        subject = torch.full((len(h),), self.region_tokens.subject, dtype=torch.long,
                             device=h.device)
        onehot = model.backbone.subject_onehot(subject, len(h), h.device)
        return model.desubject(h, onehot).transpose(1, 2)


# --- speech --------------------------------------------------------------------------------


@register_tokenizer("mossformer_encoder", model="mossformer",
                    summary="one learned-filterbank frame (K samples, hop K/2) of one channel")
class MossFormerFrames(ModelFrontEnd):
    """MossFormer's learned convolutional encoder frames.

    ``(B, C, L)`` audio at 8 kHz (C = 1 for the model itself; more channels are encoded one by
    one, channel-major) -> ``(B, C * S, N)`` with ``S = (L - K) // (K / 2) + 1`` frames and
    ``N = n_filters``: ``ReLU(Conv1d(1, N, K, stride K / 2, no bias))``, the mixture
    representation the masker reads (512 filters, K = 16: one frame per 1 ms hop).
    ``time_index`` is the frame, ``channel_index`` the channel.

    ``decode(tokens, length=None)`` applies the model's decoder (``ConvTranspose1d``), the
    synthesis the model runs on masked frames: a learned transform, an exact inverse only as
    far as training made it one. ``length`` pads/trims as the model does.
    """

    model_name = "mossformer"
    accepted_models = ("mossformer",)

    def __init__(self, encoder: nn.Conv1d, decoder: nn.ConvTranspose1d | None = None,
                 sfreq: float | None = 8000.0):
        super().__init__()
        self.encoder, self.decoder, self.sfreq = encoder, decoder, sfreq

    @classmethod
    def from_model(cls, model: nn.Module) -> MossFormerFrames:
        cls.check_model(model)
        return cls(model.encoder, model.decoder, float(model.sample_rate))

    def encode(self, x: torch.Tensor) -> Tokens:
        x = self.check_input(x)
        b, c, t = x.shape
        kernel = self.encoder.kernel_size[0]
        if t < kernel:
            raise SignalError(f"{t} samples are shorter than one encoder frame ({kernel})")
        frames = F.relu(self.encoder(x.reshape(b * c, 1, t)))  # (B*C, N, S)
        s = frames.shape[-1]
        emb = frames.transpose(1, 2).reshape(b, c * s, -1)
        return Tokens(emb, None, time_index=_arange(s, x.device).repeat(c),
                      channel_index=_arange(c, x.device).repeat_interleave(s))

    def decode(self, tokens: Tokens, length: int | None = None) -> torch.Tensor:
        if self.decoder is None:
            raise NotImplementedError("this MossFormerFrames was built without the decoder")
        c = 1 if tokens.channel_index is None else int(tokens.channel_index.max()) + 1
        b = tokens.batch_size
        frames = tokens.embeddings.reshape(b * c, -1, tokens.embeddings.shape[-1])
        wave = self.decoder(frames.transpose(1, 2)).view(b, c, -1)
        if length is None:
            return wave
        if wave.shape[-1] < length:
            wave = F.pad(wave, (0, length - wave.shape[-1]))
        return wave[..., :length]


@register_tokenizer("deftan2_stft", model="deftan2",
                    summary="one STFT time-frequency bin of all microphones, embedded")
class DeFTAN2STFT(ModelFrontEnd):
    """DeFTAN-II's STFT + encoder embedding (the input of its first block).

    ``(B, M, L)`` M-microphone audio at 16 kHz -> ``(B, T * F, emb_dim)``: the model's
    padding (a hop each side, then to a multiple of the window) and normalisation by the
    standard deviation over microphones and samples, a Hann STFT (window ``win``, hop
    ``win / 2``, ``F = win / 2 + 1`` bins), real and imaginary parts of every microphone as
    ``2M`` maps, then ``Conv2d(3x3)`` + GroupNorm + split dense block. A token is one
    (frame, bin) cell, time-major: ``time_index`` is the STFT frame of the padded signal,
    ``freq_index`` the bin, ``channel_index`` None (microphones are mixed). The
    normalising standard deviation is kept in ``last_scale_`` (``(B, 1, 1)``). No decode.
    """

    model_name = "deftan2"
    accepted_models = ("deftan2",)

    def __init__(self, encoder: nn.Module, win: int, n_mics: int,
                 sfreq: float | None = 16000.0):
        super().__init__()
        self.encoder, self.win, self.n_mics, self.sfreq = encoder, win, n_mics, sfreq

    @classmethod
    def from_model(cls, model: nn.Module) -> DeFTAN2STFT:
        cls.check_model(model)
        return cls(model.encoder, model.win, model.n_mics, float(model.sample_rate))

    def spectrum_maps(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, M, L)`` -> normalised ``(B, 2M, T, F)`` STFT maps (real, imag per mic)."""
        b, m, n = x.shape
        hop = self.win // 2
        rest = self.win - (hop + n % self.win) % self.win
        padded = F.pad(x, (hop, rest + hop))
        scale = padded.std(dim=(1, 2), keepdim=True).clamp_min(1e-8)
        self.last_scale_ = scale.detach()
        window = torch.hann_window(self.win, device=x.device, dtype=x.dtype)
        spec = torch.stft((padded / scale).reshape(b * m, -1), self.win, hop, window=window,
                          return_complex=True)  # (B*M, F, T)
        f, t = spec.shape[-2:]
        maps = torch.view_as_real(spec).view(b, m, f, t, 2).permute(0, 1, 4, 3, 2)
        return maps.reshape(b, 2 * m, t, f)

    def encode(self, x: torch.Tensor) -> Tokens:
        x = self.check_input(x)
        if x.shape[1] != self.n_mics:
            raise SignalError(f"DeFTAN2STFT expects {self.n_mics} microphones (the model's "
                              f"array), got {x.shape[1]}")
        h = self.encoder(self.spectrum_maps(x))  # (B, D, T, F)
        b, d, t, f = h.shape
        emb = h.permute(0, 2, 3, 1).reshape(b, t * f, d)
        return Tokens(emb, None, time_index=_arange(t, x.device).repeat_interleave(f),
                      freq_index=_arange(f, x.device).repeat(t))


# --- RF ------------------------------------------------------------------------------------


@register_tokenizer("ofdm_grid_patches", model="adafortitran",
                    summary="one subcarrier x symbol patch of the upsampled grid (real or imag)")
class OFDMGridPatches(ModelFrontEnd):
    """AdaFortiTran's / FortiTran's grid patch embedding (what its transformer reads).

    Complex LS pilot estimates ``(B, Np_sc, Np_sym)`` (or real ``(..., 2)``) and, for
    AdaFortiTran, channel statistics ``(B, 3)`` -> ``(B, 2 * n_patches, d_model)``: the
    linear upsampler to the full ``n_subcarriers x n_symbols`` grid, the convolutional
    enhancer, ``patch_size`` patches (3 x 2: 280 patches for 120 x 14), the statistic
    adapter's per-patch values (AdaFortiTran) and the input projection. The real and
    imaginary parts run separately, as in the model: ``channel_index`` 0 is the real part,
    1 the imaginary part; ``freq_index`` is the subcarrier patch and ``time_index`` the
    symbol patch. ``add_positions=True`` adds the learnable positional encoding (then the
    tokens are exactly the encoder input). No decode.
    """

    model_name = "adafortitran"
    accepted_models = ("adafortitran", "fortitran")
    frontend_options = ("add_positions",)

    def __init__(self, upsampler: nn.Linear, enhancer: nn.Module, input_projection: nn.Linear,
                 grid: tuple[int, int], pilot_shape: tuple[int, int],
                 patch_size: tuple[int, int], adapter: nn.Module | None = None,
                 positions: nn.Parameter | None = None, normalize_statistics: bool = False,
                 statistics_range: tuple | None = None):
        super().__init__()
        self.upsampler, self.enhancer, self.input_projection = upsampler, enhancer, \
            input_projection
        self.grid, self.pilot_shape, self.patch_size = grid, pilot_shape, patch_size
        self.adapter, self.positions = adapter, positions
        self.normalize_statistics, self.statistics_range = normalize_statistics, \
            statistics_range

    @classmethod
    def from_model(cls, model: nn.Module, add_positions: bool = False) -> OFDMGridPatches:
        cls.check_model(model)
        # the parts the embedding needs (shared), not the encoder or the refiner
        return cls(model.upsampler, model.initial_enhancer, model.input_projection,
                   model.grid, model.pilot_shape, model.patch_size,
                   adapter=model.adapter if model.adaptive else None,
                   positions=model.positional_encoding if add_positions else None,
                   normalize_statistics=model.normalize_statistics,
                   statistics_range=model.statistics_range)

    def _statistics(self, statistics, batch: int, device) -> torch.Tensor | None:
        if self.adapter is None:
            return None
        if statistics is None:
            raise ValueError("AdaFortiTran's grid patches need the channel statistics (B, 3): "
                             "SNR (dB), delay spread (ns), Doppler (Hz)")
        statistics = torch.as_tensor(statistics, dtype=torch.float32, device=device)
        if statistics.shape != (batch, 3) or not torch.isfinite(statistics).all():
            raise ValueError(f"statistics must be finite with shape ({batch}, 3) = SNR (dB), "
                             f"delay spread (ns), Doppler (Hz); got {tuple(statistics.shape)}")
        if self.normalize_statistics:
            lo = statistics.new_tensor([r[0] for r in self.statistics_range])
            hi = statistics.new_tensor([r[1] for r in self.statistics_range])
            statistics = (statistics - lo) / (hi - lo)
        return statistics

    def encode(self, x: torch.Tensor, statistics: torch.Tensor | None = None) -> Tokens:
        from ..models.rf.adafortitran import as_complex_pilots
        from ..nn.blocks import patchify_2d

        pilots = as_complex_pilots(x, self.pilot_shape)
        b = pilots.shape[0]
        stats = self._statistics(statistics, b, pilots.real.device)
        both = torch.cat([pilots.real, pilots.imag], dim=0).float()  # (2B, Np_sc, Np_sym)
        grid = self.upsampler(both.reshape(2 * b, -1)).view(2 * b, 1, *self.grid)
        patches = patchify_2d(self.enhancer(grid), self.patch_size).transpose(1, 2)
        if stats is not None:
            patches = torch.cat([patches, self.adapter(stats.repeat(2, 1))], dim=-1)
        emb = _add_positions(self.input_projection(patches), self.positions, "patches")
        n = emb.shape[1]
        n_sym = self.grid[1] // self.patch_size[1]
        device = emb.device
        return Tokens(torch.cat([emb[:b], emb[b:]], dim=1), None,
                      time_index=(_arange(n, device) % n_sym).repeat(2),
                      channel_index=_arange(2, device).repeat_interleave(n),
                      freq_index=(_arange(n, device) // n_sym).repeat(2))

    def forward(self, x: torch.Tensor, statistics: torch.Tensor | None = None) -> Tokens:
        return self.encode(x, statistics)

    @torch.inference_mode()
    def transform(self, X, statistics=None, batch_size: int = 256) -> np.ndarray:
        """Complex pilots ``(n, Np_sc, Np_sym)`` (or real ``(..., 2)``) -> ``(n, 2N, D)``."""
        X = check_array(X, ndim=(3, 4), name="pilots", allow_complex=True)
        was_training = self.training
        self.eval()
        outs = []
        for start in range(0, len(X), batch_size):
            stats = None if statistics is None else statistics[start:start + batch_size]
            tokens = self.encode(torch.as_tensor(X[start:start + batch_size]), stats)
            outs.append(tokens.embeddings.cpu().numpy())
        self.train(was_training)
        return np.concatenate(outs)


@register_tokenizer("iq_conv", model="clst",
                    summary="one strided conv window of the I/Q frame (PSCA-weighted)")
class IQConvEmbedding(ModelFrontEnd):
    """ClST's convolutional IQ token embedding (its first stage, before the transformer).

    ``(B, 2, T)`` I/Q rows -> ``(B, T', dims[0])`` with ``T' = T / stride`` (128 -> 64):
    ``Conv1d(C, D, k, stride)``, the parallel spatial-channel attention (PSCA) and
    LayerNorm, exactly what the first conv-transformer block reads. A token is one strided
    window of both I and Q; ``time_index`` is the window, ``channel_index`` None. Any frame
    length works (the model itself needs ``n_times``). No decode.
    """

    model_name = "clst"
    accepted_models = ("clst",)

    def __init__(self, embed: nn.Conv1d, psca: nn.Module, norm: nn.LayerNorm):
        super().__init__()
        self.embed, self.psca, self.norm = embed, psca, norm

    @classmethod
    def from_model(cls, model: nn.Module) -> IQConvEmbedding:
        cls.check_model(model)
        first = model.stages[0]
        return cls(first.embed, first.psca, first.embed_norm)

    def encode(self, x: torch.Tensor) -> Tokens:
        x = self.check_input(x)
        if x.shape[1] != self.embed.in_channels:
            raise SignalError(f"IQConvEmbedding expects {self.embed.in_channels} rows (I, Q"
                              f"{' per antenna' if self.embed.in_channels > 2 else ''}), got "
                              f"{x.shape[1]}")
        emb = self.norm(self.psca(self.embed(x)).transpose(1, 2))
        return Tokens(emb, None, time_index=_arange(emb.shape[1], x.device))


__all__ = [
    "DBConformerChannels", "DBConformerPatches", "DeFTAN2STFT", "IQConvEmbedding",
    "ModelFrontEnd", "MossFormerFrames", "OFDMGridPatches", "SEEGRegionEmbeddings",
    "SEEGRegionTokens", "TokenizerEntry", "UnknownTokenizerError", "create_tokenizer",
    "list_tokenizers", "register_tokenizer", "seeg_regions", "tokenizer_entry",
]
