"""Deployment export: ONNX, TorchScript and ``torch.export`` for every sigformer model.

``export_bundle(bundle, out, fmt="onnx")`` writes ``out/model.onnx`` (or ``model.pt`` for
TorchScript, ``model.pt2`` for ``torch.export``) and ``out/preprocess.json`` (the bundle's
input spec, stage chain, input scale, labels, task and the model's input/output names, shapes
and dtypes), checks the exported model against the eager PyTorch model on a seeded input and
publishes the folder in one step. ``export_model(model, example_inputs, out, fmt)`` does the
same for a plain model.

Every model is exported through a thin *deployable* wrapper (:func:`deployable`) that takes
and returns real-valued tensors only:

* braindecode-style models (DBConformer) are traced through a wrapper, so TorchScript never
  inspects the mixin's ``chs_info``/``n_times`` properties ("chs_info not specified");
* complex OFDM pilots (AdaFortiTran, FortiTran, OFDMLinear) come in as ``(B, Np_sc, Np_sym,
  2)`` real/imag pairs (``torch.view_as_real`` layout) and the estimate goes out as
  ``(B, K, L, 2)``;
* ``torch.stft`` / ``torch.istft`` (DeFTAN-II, the TFM tokenizer) run as strided convolutions
  with a fixed windowed DFT basis (:class:`ConvSTFT`, :class:`ConvISTFT`): real operators
  that every ONNX opset >= 11 has, equal to the FFT within float32 rounding;
* ``torch.quantile`` (TFM classifier input scaling) runs as sort + linear interpolation;
* tokenizers (TFM tokenizer, Du-IN VQ-VAE) export their encoder path to token ids (and, for
  TFM, the quantised code vectors); the codebook lookup is the same nearest-code rule as
  :meth:`sigformer.nn.vq.VectorQuantizer.nearest`, without the usage-counter update.

Wrappers reuse the model's own submodules and weights; each one is checked against the
original model's eager output (``max_abs_diff`` in the returned dict), not only against
itself.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FORMATS = ("onnx", "torchscript", "torch.export")
FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.pt", "torch.export": "model.pt2"}
PREPROCESS_FILE = "preprocess.json"
TOLERANCE = 1e-4
ONNX_EXPORTERS = ("auto", "torchscript", "dynamo")
# What the result's "exporter" says for ONNX: the tool that wrote the file, never a bare
# "torchscript" beside "format": "onnx" (which read as a contradiction)
ONNX_EXPORTER_NAMES = {"torchscript": "torch.onnx (TorchScript-based exporter)",
                       "dynamo": "torch.onnx (dynamo exporter, torch.export-based)"}
ONNX_EXPORTER_TOKENS = {name: token for token, name in ONNX_EXPORTER_NAMES.items()}


class ExportError(RuntimeError):
    """A model cannot be exported in the requested format, or the export does not match."""


# --- real-valued STFT / iSTFT ------------------------------------------------------------


def _dft_basis(n_fft: int, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Windowed onesided DFT kernels: cos and -sin rows ``(n_fft // 2 + 1, n_fft)``, float64."""
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    n = torch.arange(n_fft, dtype=torch.float64)[None]
    angle = 2 * math.pi * k * n / n_fft
    w = window.to(torch.float64)[None]
    return torch.cos(angle) * w, -torch.sin(angle) * w


class ConvSTFT(nn.Module):
    """``torch.stft(x, n_fft, hop, window=window, center=center, onesided=True)`` as one
    strided ``Conv1d`` with a fixed windowed DFT basis: ``(B, N)`` -> real and imaginary parts
    ``(B, n_fft // 2 + 1, frames)`` each. ``center`` pads ``n_fft // 2`` on both sides with
    reflection, as torch.stft does by default."""

    def __init__(self, n_fft: int, hop: int, window: torch.Tensor, center: bool = True):
        super().__init__()
        self.n_fft, self.hop, self.center = n_fft, hop, center
        cos, sin = _dft_basis(n_fft, window)
        self.register_buffer("basis", torch.cat([cos, sin])[:, None].float(), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x[:, None]
        if self.center:
            half = self.n_fft // 2
            x = F.pad(x, (half, half), mode="reflect")
        out = F.conv1d(x, self.basis.to(x.dtype), stride=self.hop)
        n_bins = self.n_fft // 2 + 1
        return out[:, :n_bins], out[:, n_bins:]


class ConvISTFT(nn.Module):
    """``torch.istft(complex(real, imag), n_fft, hop, window=window, center=True)`` as one
    strided ``ConvTranspose1d`` (inverse real DFT times the window, overlap-added) divided by
    the overlap-added squared window: ``(B, F, frames)`` pairs -> ``(B, hop * (frames - 1))``.
    The imaginary parts of the DC and Nyquist bins are ignored, as by ``irfft``."""

    def __init__(self, n_fft: int, hop: int, window: torch.Tensor):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        cos, sin = _dft_basis(n_fft, window)
        weight = torch.full((n_fft // 2 + 1, 1), 2.0, dtype=torch.float64)
        weight[0] = 1.0
        if n_fft % 2 == 0:
            weight[-1] = 1.0
        basis = torch.cat([cos * weight, sin * weight]) / n_fft  # -sin already in `sin`
        self.register_buffer("basis", basis[:, None].float(), persistent=False)
        self.register_buffer("window_sq", (window.double() ** 2)[None, None].float(),
                             persistent=False)

    def forward(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        frames = torch.cat([real, imag], dim=1)
        wave = F.conv_transpose1d(frames, self.basis.to(frames.dtype), stride=self.hop)
        ones = torch.ones_like(real[:1, :1])
        envelope = F.conv_transpose1d(ones, self.window_sq.to(frames.dtype), stride=self.hop)
        half = self.n_fft // 2
        end = wave.shape[-1] - half
        return (wave[:, 0, half:end] / envelope[:, 0, half:end])


# --- deployable wrappers -----------------------------------------------------------------


def traceable_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` that tracers can walk: properties that raise (braindecode's mixin
    raises ``ValueError("chs_info not specified.")`` when ``torch.jit.trace`` lists the
    module's attributes) read as ``None``, and frozen scalar parameters (Du-IN's attention
    scale, read with ``float()``, a data-dependent value to ``torch.export``) become plain
    floats. The original model is not changed; the weights are the same values."""
    clone = copy.deepcopy(model)
    for module in clone.modules():
        _silence_raising_properties(module)
        for name, param in list(module.named_parameters(recurse=False)):
            if param.numel() == 1 and not param.requires_grad and name == "scale":
                del module._parameters[name]
                setattr(module, name, float(param))
    return clone


def _silence_raising_properties(module: nn.Module) -> None:
    cls = type(module)
    silenced = {}
    for name in dir(cls):
        if isinstance(inspect.getattr_static(cls, name, None), property):
            try:
                getattr(module, name)
            except Exception:  # noqa: BLE001 - any raising property would break tracing
                silenced[name] = property(lambda self: None)
    if silenced:
        module.__class__ = type(cls.__name__, (cls,), silenced)


class _Forward(nn.Module):
    """``model(x)`` behind a plain module, on a :func:`traceable_copy` of the model;
    complex outputs come out as real/imag pairs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = traceable_copy(model)

    def forward(self, x: torch.Tensor):
        out = self.model(x)
        if isinstance(out, (tuple, list)):
            return tuple(_real(o) for o in out if torch.is_tensor(o))
        return _real(out)


def _real(t: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


def _duin_backbone(backbone: nn.Module, x: torch.Tensor, subject: torch.Tensor
                   ) -> torch.Tensor:
    """:meth:`DuINBackbone.forward` with a one-hot subject, without ``len(x)`` (which fixes
    the batch size in a ``torch.export`` graph)."""
    return backbone.encode(backbone.tokenizer(backbone.subject_layer(x.transpose(1, 2),
                                                                     subject)))


class DuINForward(nn.Module):
    """Du-IN classifier with the subject as a one-hot input ``(B, n_subjects)`` (subject 0
    when the model has one subject)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = traceable_copy(model)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        if subject is None:
            subject = torch.ones_like(x[:, 0, :1])  # (B, 1): the single subject
        out = self.model.head(_duin_backbone(self.model.backbone, x, subject))
        return torch.sigmoid(out) if self.model.sigmoid_head else out


class DuINTokenIds(nn.Module):
    """Du-IN VQ-VAE encoder path: ``(B, C, T)`` -> region-token ids ``(B, T / 100)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = traceable_copy(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _duin_backbone(self.model.backbone, x, torch.ones_like(x[:, 0, :1]))
        return self.model.vq.quantizer.nearest(self.model.vq.pre_proj(h))


class TFMTokenIds(nn.Module):
    """TFM tokenizer encoder path on normalised 200 Hz signals ``(B, C, N)``: token ids
    ``(B, C * T)`` (channel-major, as :meth:`TFMTokenizer.encode`) and their code vectors
    ``(B, C * T, code_size)``; the magnitude STFT runs as :class:`ConvSTFT`."""

    def __init__(self, tokenizer: nn.Module):
        super().__init__()
        from .models.eeg.tfm_tokenizer import HOP, N_BINS, N_FFT

        self.tokenizer, self.n_bins = tokenizer, N_BINS
        self.stft = ConvSTFT(N_FFT, HOP, torch.hann_window(N_FFT), center=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, n = x.shape
        flat = x.reshape(b * c, n)
        real, imag = self.stft(flat)
        spec = torch.sqrt(real * real + imag * imag)[:, :self.n_bins]
        quantizer = self.tokenizer.quantizer
        ids = quantizer.nearest(self.tokenizer.embed(flat, spec))
        codes = quantizer.lookup(ids)
        return ids.reshape(b, -1), codes.reshape(b, -1, codes.shape[-1])


def percentile_of_abs(x: torch.Tensor, q: float = 0.95, eps: float = 1e-8) -> torch.Tensor:
    """:func:`~sigformer.models.eeg.tfm_tokenizer.channel_scale` (``(..., 1)``) with the
    quantile as sort + linear interpolation (``torch.quantile`` has no ONNX operator)."""
    values = x.abs().float().sort(dim=-1).values
    position = q * (x.shape[-1] - 1)
    lo = int(math.floor(position))
    hi = min(lo + 1, x.shape[-1] - 1)
    frac = position - lo
    quantile = values[..., lo:lo + 1] + frac * (values[..., hi:hi + 1] - values[..., lo:lo + 1])
    return quantile + eps


def percentile_scale(x: torch.Tensor, q: float = 0.95, eps: float = 1e-8) -> torch.Tensor:
    """:func:`~sigformer.models.eeg.tfm_tokenizer.percentile_normalize` with the quantile as
    sort + linear interpolation (``torch.quantile`` has no ONNX operator)."""
    return x / percentile_of_abs(x, q, eps)


class TFMClassifierForward(nn.Module):
    """TFM classifier: percentile scaling, token ids (:class:`TFMTokenIds`), TFM-Encoder; with
    ``amplitude_input`` the divided-out scales also go to the head
    (:meth:`TFMClassifier.classify_tokens`, its calibrated statistics as constants)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.token_ids = TFMTokenIds(model.tokenizer)
        self.amplitude_input = bool(getattr(model, "amplitude_input", False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[0], x.shape[1]
        if not self.amplitude_input:
            ids, _ = self.token_ids(percentile_scale(x))
            return self.model.encoder(ids.reshape(b, c, -1))
        scale = percentile_of_abs(x)
        ids, _ = self.token_ids(x / scale)
        return self.model.classify_tokens(ids.reshape(b, c, -1), scale[..., 0])


class RealPilotsEstimator(nn.Module):
    """OFDM channel estimators (AdaFortiTran, FortiTran, OFDMLinear) on real tensors: pilots
    ``(B, Np_sc, Np_sym, 2)`` [+ statistics ``(B, 3)``] -> estimate ``(B, K, L, 2)``, the
    ``torch.view_as_real`` layout of the complex model's input and output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.adaptive = bool(getattr(model, "adaptive", False))

    def _statistics(self, statistics: torch.Tensor) -> torch.Tensor:
        model = self.model
        if not model.normalize_statistics:
            return statistics
        lo = statistics.new_tensor([r[0] for r in model.statistics_range])
        hi = statistics.new_tensor([r[1] for r in model.statistics_range])
        return (statistics - lo) / (hi - lo)

    def forward(self, pilots: torch.Tensor, statistics: torch.Tensor | None = None):
        b = pilots.shape[0]
        both = torch.cat([pilots[..., 0], pilots[..., 1]], dim=0)
        if hasattr(self.model, "_estimate_real"):
            stats = self._statistics(statistics).repeat(2, 1) if self.adaptive else None
            out = self.model._estimate_real(both, stats)
        else:  # OFDMLinear
            out = self.model.upsampler(both.reshape(2 * b, -1)).view(2 * b, *self.model.grid)
        return torch.stack([out[:b], out[b:]], dim=-1)


class DeFTAN2Forward(nn.Module):
    """DeFTAN-II with its STFT and inverse STFT as real convolutions (:class:`ConvSTFT`,
    :class:`ConvISTFT`); everything between them is the model's own encoder, blocks and
    decoder, in the order of :meth:`DeFTAN2.forward`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.stft = ConvSTFT(model.win, model.hop, model.window, center=True)
        self.istft = ConvISTFT(model.win, model.hop, model.window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        model = self.model
        b, m, n = x.shape
        padded, _ = model._pad(x)
        std = padded.std(dim=(1, 2), keepdim=True).clamp_min(1e-8)
        padded = padded / std
        real, imag = self.stft(padded.reshape(b * m, -1))  # (B*M, F, T) each
        f, t = real.shape[-2:]
        feats = torch.stack([real, imag], dim=-1).view(b, m, f, t, 2).permute(0, 1, 4, 3, 2)
        h = model.encoder(feats.reshape(b, 2 * m, t, f))
        for block in model.blocks:
            h = block(h)
        h = h[..., :t, :f]
        out = model.decoder(h).view(b * model.n_srcs, 2, t, f).transpose(2, 3)  # (., 2, F, T)
        wave = self.istft(out[:, 0], out[:, 1])
        wave = wave[:, model.hop:model.hop + n].reshape(b, model.n_srcs, n)
        return wave * std


# --- what to export for each model --------------------------------------------------------


@dataclass
class Deployable:
    """A real-valued module ready to trace, its example inputs and what they mean.

    ``reference`` maps the example inputs to the original model's eager outputs in the
    exported layout (what the parity check compares against); ``time_axes`` names the
    inputs (and outputs) whose time axis may vary (speech)."""

    module: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    reference: Callable[..., tuple[torch.Tensor, ...]]
    time_axes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _model_name(model: nn.Module) -> str:
    return getattr(model, "sigformer_config", {}).get("name", type(model).__name__)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(shape: Sequence[int], seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=_generator(seed))


def _as_tuple(out: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(out, (tuple, list)):
        return tuple(_real(o) for o in out if torch.is_tensor(o))
    return (_real(out),)


def _reference(fn: Callable[..., Any], model: nn.Module) -> Callable[..., tuple]:
    """Eager outputs of a *copy* of the model (tokenizers count code usage in a buffer; the
    check must not change the model being exported)."""
    frozen = copy.deepcopy(model).eval()

    def run(*inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            return _as_tuple(fn(frozen, *inputs))

    return run


def _signal_shape(model: nn.Module, spec, default_chans: int | None, default_times: int | None
                  ) -> tuple[int, int]:
    chans = getattr(model, "n_chans", None) if _has_attr(model, "n_chans") else None
    times = getattr(model, "n_times", None) if _has_attr(model, "n_times") else None
    if spec is not None:
        chans = chans or spec.n_channels
        times = times or spec.window
    chans, times = chans or default_chans, times or default_times
    if chans is None or times is None:
        raise ExportError(f"cannot tell the input shape of {_model_name(model)}: give "
                          f"example_inputs or a bundle whose model spec has a window")
    return int(chans), int(times)


def _has_attr(model: nn.Module, name: str) -> bool:
    try:  # braindecode mixin properties raise when the value was never given
        return getattr(model, name, None) is not None
    except (ValueError, AttributeError):
        return False


def deployable(model: nn.Module, spec=None, *, batch: int = 2, seed: int = 0,
               example_inputs: Sequence[torch.Tensor] | None = None) -> Deployable:
    """The export wrapper, seeded example inputs and reference for ``model`` (see the module
    docstring). ``spec`` (a :class:`~sigformer.spec.SignalSpec`, the bundle's model spec)
    gives the channel count and window where the model does not record them; explicit
    ``example_inputs`` (complex tensors allowed: they are passed as real/imag pairs) win."""
    model = model.eval()
    cls = type(model).__name__
    builder = _BUILDERS.get(cls, _build_plain)
    dep = builder(model, spec, batch, seed)
    if example_inputs is not None:
        given = tuple(_real(torch.as_tensor(t)) for t in example_inputs)
        if len(given) != len(dep.example_inputs):
            raise ExportError(f"{cls} takes {len(dep.example_inputs)} input(s) "
                              f"{dep.input_names}, got {len(given)} example input(s)")
        dep.example_inputs = given
    return dep


def _build_plain(model, spec, batch, seed) -> Deployable:
    chans, times = _signal_shape(model, spec, None, None)
    x = _randn((batch, chans, times), seed)
    return Deployable(_Forward(model), (x,), ["input"], ["output"],
                      _reference(lambda m, x: m(x), model))


def _build_duin(model, spec, batch, seed) -> Deployable:
    bb = model.backbone
    x = _randn((batch, bb.n_chans, bb.n_times), seed)
    inputs, names = (x,), ["input"]
    notes = []
    if bb.n_subjects > 1:
        subject = F.one_hot(torch.arange(batch) % bb.n_subjects, bb.n_subjects).float()
        inputs, names = (x, subject), ["input", "subject"]
        notes.append("subject: one-hot (batch, n_subjects) float")
    return Deployable(DuINForward(model), inputs, names, ["output"],
                      _reference(lambda m, x, s=None: m(x, s), model), notes=notes)


def _build_duin_vqvae(model, spec, batch, seed) -> Deployable:
    x = _randn((batch, model.n_chans, model.n_times), seed)
    return Deployable(DuINTokenIds(model), (x,), ["input"], ["ids"],
                      _reference(lambda m, x: m.code_indices(x), model),
                      notes=["exports the encoder path: region-token ids (code_indices); the "
                             "decoder is a training-time component"])


def _refuse_duin_mae(model, spec, batch, seed) -> Deployable:
    raise ExportError(
        "duin_mae is a pretraining model: its forward needs a token mask (it predicts the "
        "VQ-VAE codes of masked tokens), so it has no inference output to deploy; export the "
        "'duin' classifier fine-tuned from it (clf.backbone.load_state_dict("
        "mae.backbone.state_dict()), then train), or the 'duin_vqvae' tokenizer (region-token "
        "ids)")


def _tfm_input(spec, batch, seed, default_chans=2) -> torch.Tensor:
    chans = spec.n_channels if spec is not None else default_chans
    times = spec.window if spec is not None and spec.window else 1000
    return _randn((batch, chans, times), seed)


def _build_tfm_tokenizer(model, spec, batch, seed) -> Deployable:
    def encode(m, x):
        tokens = m.encode(x)
        return tokens.ids, tokens.embeddings

    return Deployable(TFMTokenIds(model), (_tfm_input(spec, batch, seed),), ["input"],
                      ["ids", "embeddings"], _reference(encode, model),
                      notes=["input: normalised 200 Hz signals (tfm_prepare); the magnitude "
                             "STFT runs as a fixed-basis Conv1d"])


def _amplitude_probe(model, x: torch.Tensor) -> torch.Tensor:
    """``x`` rescaled so each channel's log scale lies inside the linear range of the
    model's calibrated :class:`LogScaleInput` (z from -2 to 2 across channels): at unit
    amplitude a probe sits near z = -4 for a model calibrated in uV and is clipped at +5 for
    one calibrated in V, so the parity check would compare the saturated branch only."""
    from .models.eeg.tfm_tokenizer import channel_scale

    amplitude = model.amplitude
    std = float(amplitude.var.sqrt().clamp_min(amplitude.min_std))
    chans = x.shape[1]
    z = torch.linspace(-2.0, 2.0, chans) if chans > 1 else torch.zeros(1)
    target = torch.exp(amplitude.mean.float() + std * z)  # (C,) the scales to probe with
    return x / channel_scale(x) * target[:, None]


def _build_tfm_classifier(model, spec, batch, seed) -> Deployable:
    probe = _tfm_input(spec, batch, seed)
    if getattr(model, "amplitude_input", False):
        probe = _amplitude_probe(model, probe)
    return Deployable(TFMClassifierForward(model), (probe,),
                      ["input"], ["output"], _reference(lambda m, x: m(x), model),
                      notes=["percentile scaling as sort + interpolation; STFT as Conv1d"]
                      + (["amplitude_input: input NOT percentile-scaled (tfm_prepare(scale="
                          "False)); the log-scale statistics are fixed constants"]
                         if getattr(model, "amplitude_input", False) else []))


def _build_tfm_encoder(model, spec, batch, seed) -> Deployable:
    chans = spec.n_channels if spec is not None else 2
    frames = 9
    ids = torch.randint(0, model.n_codes, (batch, chans, frames), generator=_generator(seed))
    return Deployable(_Forward(model), (ids,), ["ids"], ["output"],
                      _reference(lambda m, x: m(x), model),
                      notes=["input: int64 token ids (batch, channels, frames)"])


def _build_ofdm(model, spec, batch, seed) -> Deployable:
    n_sc, n_sym = model.pilot_shape
    pilots = _randn((batch, n_sc, n_sym, 2), seed)
    inputs, names = (pilots,), ["pilots"]
    if getattr(model, "adaptive", False):
        lo = torch.tensor([r[0] for r in model.statistics_range])
        hi = torch.tensor([r[1] for r in model.statistics_range])
        u = torch.rand(batch, 3, generator=_generator(seed + 1))
        inputs, names = (pilots, lo + u * (hi - lo)), ["pilots", "statistics"]

    def complex_model(m, pilots, statistics=None):
        return m(torch.view_as_complex(pilots.contiguous()), statistics)

    return Deployable(RealPilotsEstimator(model), inputs, names, ["estimate"],
                      _reference(complex_model, model),
                      notes=["complex tensors as (..., 2) real/imag pairs "
                             "(torch.view_as_real layout)"])


def _build_mossformer(model, spec, batch, seed) -> Deployable:
    length = spec.window if spec is not None and spec.window else 800
    x = _randn((batch, length), seed)
    return Deployable(_Forward(model), (x,), ["mixture"], ["sources"],
                      _reference(lambda m, x: m(x), model),
                      time_axes={"mixture": 1, "sources": 2})


def _build_deftan2(model, spec, batch, seed) -> Deployable:
    length = spec.window if spec is not None and spec.window else 4 * model.win
    x = _randn((batch, model.n_mics, length), seed)
    return Deployable(DeFTAN2Forward(model), (x,), ["mixture"], ["enhanced"],
                      _reference(lambda m, x: m(x), model),
                      time_axes={"mixture": 2, "enhanced": 2},
                      notes=["STFT / inverse STFT as fixed-basis Conv1d / ConvTranspose1d"])


_BUILDERS: dict[str, Callable[..., Deployable]] = {
    "DuINClassifier": _build_duin,
    "DuINVQVAE": _build_duin_vqvae,
    "DuINMAE": _refuse_duin_mae,
    "TFMTokenizer": _build_tfm_tokenizer,
    "TFMClassifier": _build_tfm_classifier,
    "TFMEncoder": _build_tfm_encoder,
    "AdaFortiTran": _build_ofdm,
    "FortiTran": _build_ofdm,
    "OFDMLinear": _build_ofdm,
    "MossFormer": _build_mossformer,
    "DeFTAN2": _build_deftan2,
}


# --- exporters ----------------------------------------------------------------------------


@dataclass
class _Exported:
    path: Path
    runner: Callable[..., tuple[np.ndarray, ...]]
    opset: int | None = None
    exporter: str | None = None  # the tool that wrote the file, in words
    dynamic_batch: bool = True
    dynamic_time: bool = False
    notes: list[str] = field(default_factory=list)


def _numpy(outputs: Sequence[torch.Tensor]) -> tuple[np.ndarray, ...]:
    return tuple(o.detach().cpu().numpy() for o in outputs)


def _dynamic_axes(dep: Deployable, time: bool) -> dict[str, dict[int, str]]:
    axes = {name: {0: "batch"} for name in (*dep.input_names, *dep.output_names)}
    if time:
        for name, axis in dep.time_axes.items():
            axes[name][axis] = "time"
    return axes


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session for an exported model. ``threads``: intra-op threads with one
    inter-op thread and sequential execution (what fits a few shared cores; ``None``:
    onnxruntime's defaults). Exported models run 1.3-4.4x faster here than eager PyTorch
    for six of the seven models (docs/performance.md)."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ExportError("running an ONNX model needs onnxruntime: "
                          "pip install 'sigformer[export]'") from err
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads, options.inter_op_num_threads = int(threads), 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _export_onnx(dep: Deployable, path: Path, opset: int, exporter: str,
                 time: bool) -> _Exported:
    try:
        import onnx
        import onnxruntime  # noqa: F401 - the parity check runs the export
    except ImportError as err:
        raise ExportError("ONNX export needs the onnx and onnxruntime packages: "
                          "pip install 'sigformer[export]'") from err
    if exporter not in ONNX_EXPORTERS:
        raise ExportError(f"exporter must be one of {ONNX_EXPORTERS}, got {exporter!r}")
    used, fallback = exporter, None
    if exporter in ("auto", "torchscript"):
        try:
            _onnx_torchscript(dep, path, opset, time)
            used = "torchscript"
        except Exception as err:  # noqa: BLE001 - "auto" falls back to the dynamo exporter
            if exporter == "torchscript":
                raise ExportError(f"ONNX export (TorchScript-based exporter) failed: {err}"
                                  ) from err
            used, fallback = "dynamo", _first_line(err)
    if used == "dynamo":
        try:
            _onnx_dynamo(dep, path, opset, time)
        except Exception as err:  # noqa: BLE001 - name both exporters' reasons
            before = f"TorchScript-based exporter: {fallback}; " if fallback else ""
            raise ExportError(f"ONNX export failed ({before}dynamo exporter: "
                              f"{_first_line(err)})") from err
    written = onnx.load(str(path), load_external_data=False)
    actual = max((o.version for o in written.opset_import if o.domain in ("", "ai.onnx")),
                 default=None)
    session = onnx_session(path)

    def run(*inputs: torch.Tensor) -> tuple[np.ndarray, ...]:
        feed = {name: t.detach().cpu().numpy() for name, t in zip(dep.input_names, inputs)}
        return tuple(session.run(dep.output_names, feed))

    notes = [] if fallback is None else [f"TorchScript-based ONNX exporter: {fallback}; "
                                         f"used the dynamo exporter"]
    if actual != opset:
        notes.append(f"the {used} exporter wrote opset {actual}, not the requested {opset}")
    return _Exported(path, run, actual, ONNX_EXPORTER_NAMES[used], True, time, notes)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200] if text else ''}"


@contextmanager
def _stdout_silenced():
    """Route file descriptor 1 to /dev/null: the TorchScript-based exporter prints the whole
    graph there when a conversion fails, which would corrupt ``sigformer export``'s JSON."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _onnx_torchscript(dep: Deployable, path: Path, opset: int, time: bool) -> None:
    with warnings.catch_warnings(), _stdout_silenced():
        warnings.simplefilter("ignore")
        torch.onnx.export(dep.module, dep.example_inputs, str(path), dynamo=False,
                          opset_version=opset, input_names=dep.input_names,
                          output_names=dep.output_names,
                          dynamic_axes=_dynamic_axes(dep, time), do_constant_folding=True)


def _onnx_dynamo(dep: Deployable, path: Path, opset: int, time: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(dep.module, dep.example_inputs,
                                      dynamic_shapes=_export_dims(dep, time), strict=False)
        torch.onnx.export(program, dep.example_inputs, str(path), dynamo=True,
                          opset_version=opset, input_names=dep.input_names,
                          output_names=dep.output_names, external_data=False)


def _export_dims(dep: Deployable, time: bool) -> tuple[dict[int, Any], ...]:
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    dims = []
    for name in dep.input_names:
        axes: dict[int, Any] = {0: batch}
        if time and name in dep.time_axes:
            axes[dep.time_axes[name]] = torch.export.Dim.DYNAMIC
        dims.append(axes)
    return tuple(dims)


def _export_torchscript(dep: Deployable, path: Path, time: bool) -> _Exported:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(dep.module, dep.example_inputs, check_trace=False)
        torch.jit.save(traced, str(path))
        loaded = torch.jit.load(str(path))

    def run(*inputs: torch.Tensor) -> tuple[np.ndarray, ...]:
        with torch.no_grad():
            return _numpy(_as_tuple(loaded(*inputs)))

    return _Exported(path, run, exporter="torch.jit.trace", dynamic_time=time)


def _export_program(dep: Deployable, path: Path, time: bool) -> _Exported:
    """``torch.export`` with dynamic batch (and time) axes; where a model fixes one of them,
    the next attempt keeps fewer axes dynamic (time, then batch) and says so."""
    attempts = [(True, True)] if time else []
    attempts += [(True, False), (False, False)]
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for batch_dynamic, time_dynamic in attempts:
            dims = _export_dims(dep, time_dynamic) if batch_dynamic else None
            try:
                program = torch.export.export(dep.module, dep.example_inputs,
                                              dynamic_shapes=dims)
                torch.export.save(program, str(path))
                break
            except Exception as err:  # noqa: BLE001 - retry with fewer dynamic axes
                if not batch_dynamic:
                    raise ExportError(f"torch.export failed: {_first_line(err)}") from err
                axes = "batch and time axes" if time_dynamic else "batch axis"
                notes.append(f"torch.export with a dynamic {axes} failed "
                             f"({_first_line(err)})")
        loaded = torch.export.load(str(path)).module()

    def run(*inputs: torch.Tensor) -> tuple[np.ndarray, ...]:
        with torch.no_grad():
            return _numpy(_as_tuple(loaded(*inputs)))

    return _Exported(path, run, exporter="torch.export", dynamic_batch=batch_dynamic,
                     dynamic_time=time_dynamic, notes=notes)


def _export(dep: Deployable, fmt: str, path: Path, opset: int, exporter: str,
            time: bool) -> _Exported:
    if fmt == "onnx":
        return _export_onnx(dep, path, opset, exporter, time)
    if fmt == "torchscript":
        return _export_torchscript(dep, path, time)
    return _export_program(dep, path, time)


# --- parity -------------------------------------------------------------------------------


def _variants(dep: Deployable, exported: _Exported, seed: int) -> list[tuple[torch.Tensor, ...]]:
    """The example inputs, plus one more batch size (and one more length for a dynamic time
    axis): dynamic axes are checked, not assumed."""
    base = dep.example_inputs
    variants = [base]
    if exported.dynamic_batch:
        variants.append(tuple(_resize(t, 0, t.shape[0] + 1, seed + 7) for t in base))
    if exported.dynamic_time:
        variants.append(tuple(
            _resize(t, dep.time_axes[name], t.shape[dep.time_axes[name]] + 37, seed + 11)
            if name in dep.time_axes else t for name, t in zip(dep.input_names, base)))
    return variants


def _resize(t: torch.Tensor, axis: int, size: int, seed: int) -> torch.Tensor:
    """A tensor like ``t`` with ``size`` along ``axis``: more rows of ``t`` for the batch (so
    ids, one-hot subjects and statistics stay valid), fresh seeded noise for time."""
    if axis == 0:
        return t[torch.arange(size) % t.shape[0]]
    shape = list(t.shape)
    shape[axis] = size
    return torch.randn(*shape, generator=_generator(seed), dtype=t.dtype)


def compare(expected: Sequence[torch.Tensor], actual: Sequence[np.ndarray]
            ) -> tuple[float, int]:
    """Max abs difference over the float outputs and the number of differing integer
    outputs (token ids)."""
    if len(expected) != len(actual):
        raise ExportError(f"the exported model returned {len(actual)} outputs, the eager "
                          f"model {len(expected)}")
    max_diff, mismatched = 0.0, 0
    for e, a in zip(expected, actual):
        e = e.detach().cpu().numpy()
        if e.shape != tuple(a.shape):
            raise ExportError(f"output shape {tuple(a.shape)} differs from the eager model's "
                              f"{e.shape}")
        if np.issubdtype(e.dtype, np.integer):
            mismatched += int((e != a).sum())
            continue
        e64, a64 = e.astype(np.float64), np.asarray(a, dtype=np.float64)
        if not np.array_equal(np.isfinite(e64), np.isfinite(a64)):
            return math.inf, mismatched  # NaN/Inf in one output only: never "equal"
        finite = np.isfinite(e64)
        max_diff = max(max_diff, float(np.abs(e64[finite] - a64[finite]).max(initial=0.0)))
    return max_diff, mismatched


def _check(dep: Deployable, exported: _Exported, seed: int, tolerance: float
           ) -> tuple[float, list[str]]:
    """Max abs difference to the eager model over the example inputs and the shape variants;
    a mismatch at the example shape and one at another shape are different errors (the
    second means a dynamic axis does not hold)."""
    max_diff = 0.0
    for i, inputs in enumerate(_variants(dep, exported, seed)):
        try:
            diff, mismatched = compare(dep.reference(*inputs), exported.runner(*inputs))
        except Exception:  # noqa: BLE001 - a dynamic axis that does not hold
            if i == 0:
                raise
            diff, mismatched = math.inf, 0
        if diff > tolerance or mismatched:
            shapes = [tuple(t.shape) for t in inputs]
            if i == 0:
                raise ExportError(f"exported model differs from the eager model by {diff:.3g} "
                                  f"(tolerance {tolerance:g}; {mismatched} token ids differ) "
                                  f"on inputs {shapes}")
            raise ExportError(f"the exported model does not generalise to input shapes "
                              f"{shapes} (max abs diff {diff:.3g}, {mismatched} ids differ)")
        max_diff = max(max_diff, diff)
    return max_diff, []


# --- public API ---------------------------------------------------------------------------


def _describe(names: Sequence[str], tensors: Sequence[torch.Tensor], dep: Deployable,
              dynamic_batch: bool, dynamic_time: bool) -> list[dict[str, Any]]:
    described = []
    for name, t in zip(names, tensors):
        shape: list[int | str] = list(t.shape)
        if dynamic_batch:
            shape[0] = "batch"
        if dynamic_time and name in dep.time_axes:
            shape[dep.time_axes[name]] = "time"
        described.append({"name": name, "shape": shape, "dtype": str(t.dtype).replace(
            "torch.", "")})
    return described


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {FORMATS}")


def export_model(model: nn.Module, example_inputs: Sequence[torch.Tensor] | None,
                 out: str | os.PathLike, fmt: str = "onnx", *, opset: int = 17,
                 check: bool = True, spec=None, exporter: str = "auto",
                 dynamic_time: bool | None = None, seed: int = 0, tolerance: float = TOLERANCE,
                 metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export ``model`` to ``out/model.{onnx,pt,pt2}`` + ``out/preprocess.json``.

    ``example_inputs`` default to seeded inputs of the model's own shape (or ``spec``'s).
    ``exporter`` (ONNX only): ``"torchscript"`` (``torch.onnx.export(dynamo=False)``, writes
    exactly ``opset``), ``"dynamo"`` (``torch.export`` based; writes opset >= 18) or
    ``"auto"`` (the first, falling back to the second). ``dynamic_time`` (speech models):
    ``None`` tries a dynamic time axis and falls back to the example length when the traced
    graph does not generalise. Returns ``{"format", "files", "max_abs_diff", "opset",
    "inputs", "outputs", "exporter", "onnx_exporter", ...}`` (``exporter``: the tool that
    wrote the file, e.g. ``"torch.onnx (TorchScript-based exporter)"``, ``"torch.jit.trace"``;
    ``onnx_exporter``: the ``exporter=`` value that wrote an ONNX file, else None); with
    ``check`` a max abs difference above ``tolerance`` (or any differing token id) is an
    :class:`ExportError` and nothing is written."""
    from .atomic import check_replaceable

    _check_format(fmt)
    check_replaceable(out)  # before the export's work, not only when it is published
    was_training = model.training  # the caller's model comes back in its own mode
    try:
        return _export_to(model, example_inputs, out, fmt, opset, check, spec, exporter,
                          dynamic_time, seed, tolerance, metadata)
    finally:
        model.train(was_training)


def _export_to(model, example_inputs, out, fmt, opset, check, spec, exporter, dynamic_time,
               seed, tolerance, metadata) -> dict[str, Any]:
    from .atomic import published

    dep = deployable(model, spec, example_inputs=example_inputs, seed=seed)
    out = Path(out)
    want_time = bool(dep.time_axes) and dynamic_time is not False
    with published(out) as staging:
        path = staging / FILE_NAMES[fmt]
        exported, max_diff, notes = _export_checked(dep, fmt, path, opset, exporter,
                                                    want_time, dynamic_time, check, seed,
                                                    tolerance)
        with torch.no_grad():
            outputs = dep.reference(*dep.example_inputs)
        result = {
            "format": fmt,
            "files": [str(out / FILE_NAMES[fmt]), str(out / PREPROCESS_FILE)],
            "max_abs_diff": max_diff,
            "opset": exported.opset if fmt == "onnx" else None,
            "inputs": _describe(dep.input_names, dep.example_inputs, dep,
                                exported.dynamic_batch, exported.dynamic_time),
            "outputs": _describe(dep.output_names, outputs, dep, exported.dynamic_batch,
                                 exported.dynamic_time),
            "exporter": exported.exporter,
            # the exporter= value that wrote it (ONNX), to pass back or compare
            "onnx_exporter": ONNX_EXPORTER_TOKENS.get(exported.exporter),
            "model": _model_name(model),
            "notes": dep.notes + exported.notes + notes,
        }
        extra_files = sorted(p.name for p in staging.iterdir() if p.name != path.name)
        result["files"][1:1] = [str(out / name) for name in extra_files]
        preprocess = {**(metadata or {}), **result, "tolerance": tolerance,
                      "torch_version": torch.__version__}
        preprocess["files"] = [Path(f).name for f in result["files"]]
        (staging / PREPROCESS_FILE).write_text(json.dumps(preprocess, indent=2, default=str))
    return result


def _export_checked(dep, fmt, path, opset, exporter, want_time, dynamic_time, check, seed,
                    tolerance) -> tuple[_Exported, float | None, list[str]]:
    """Export with a dynamic time axis if wanted; if it does not generalise (and the caller
    did not insist), export again at the example length."""
    exported = _export(dep, fmt, path, opset, exporter, want_time)
    if not check:
        return exported, None, []
    try:
        max_diff, notes = _check(dep, exported, seed, tolerance)
        return exported, max_diff, notes
    except ExportError as err:
        if not (want_time and dynamic_time is None) or "generalise" not in str(err):
            raise
    for leftover in path.parent.iterdir():
        leftover.unlink()
    exported = _export(dep, fmt, path, opset, exporter, False)
    max_diff, notes = _check(dep, exported, seed, tolerance)
    return exported, max_diff, notes + ["the time axis is fixed to the example length: the "
                                        "traced graph did not generalise to other lengths"]


def export_bundle(bundle, out: str | os.PathLike, *, fmt: str = "onnx", opset: int = 17,
                  check: bool = True, exporter: str = "auto", dynamic_time: bool | None = None,
                  seed: int = 0) -> dict[str, Any]:
    """Export a :class:`~sigformer.bundle.Bundle` (or a bundle folder / catalogue name) for
    batch inference at its window length; ``preprocess.json`` beside the model holds what a
    deployer needs to rebuild the preprocessing (input spec, chain, input scale, labels,
    task). See :func:`export_model` for the other arguments and the returned dict."""
    from .bundle import Bundle

    _check_format(fmt)
    if not isinstance(bundle, Bundle):
        bundle = Bundle.load(bundle)
    spec = _chunk_spec(bundle)
    metadata = {
        "task": bundle.task,
        "input_spec": None if bundle.input_spec is None else bundle.input_spec.to_dict(),
        "model_spec": None if bundle.model_spec is None else bundle.model_spec.to_dict(),
        "chain": bundle.chain,
        "input_scale": float(bundle.input_scale),
        "labels": bundle.labels,
        "model_config": getattr(bundle.model, "sigformer_config", None),
        # steps between the chain and the model that predict_proba applies: IQ frames are
        # scaled per frame, aligned bundles whiten each window (a deployer who skipped them
        # fed the graph other inputs than it was trained on)
        "frame_normalization": bundle.frame_normalization,
        "alignment": bundle.extra.get("alignment", "none"),
        "alignment_reference": bundle.extra.get("alignment_reference"),
        # speech bundles run in chunks (sigformer separate / enhance): the length the graph
        # is traced at, and the overlap the deployer cross-fades
        "chunk_s": bundle.extra.get("chunk_s"),
        "overlap_s": bundle.extra.get("overlap_s"),
    }
    return export_model(bundle.model, None, out, fmt, opset=opset, check=check, spec=spec,
                        exporter=exporter, dynamic_time=dynamic_time, seed=seed,
                        metadata=metadata)


def _chunk_spec(bundle):
    """The spec to trace a bundle at: a speech bundle without a window length (any length
    streams through it) at its own chunk length, so a graph whose time axis stays fixed
    still takes the chunks the bundle runs on (it was traced at an 800-sample example)."""
    from dataclasses import replace

    spec = bundle.model_spec or bundle.input_spec
    chunk_s = bundle.extra.get("chunk_s")
    if spec is None or spec.window or not chunk_s or spec.layout == "iq":
        return spec
    return replace(spec, window=int(round(float(chunk_s) * spec.sfreq)))


def read_preprocess(out: str | os.PathLike) -> dict[str, Any]:
    """The ``preprocess.json`` written beside an exported model."""
    return json.loads((Path(out) / PREPROCESS_FILE).read_text())


def build_chain(out: str | os.PathLike):
    """The stage chain recorded beside an exported model, as a fresh
    :class:`~sigformer.stages.Pipeline` (configure it with the input rate and channels)."""
    from .stages import Pipeline, stage_from_config

    return Pipeline([stage_from_config(c) for c in read_preprocess(out).get("chain", [])])
