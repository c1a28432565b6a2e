"""Official checkpoints -> sigformer state dicts, verified key by key.

Each convertible model has a :class:`ConversionRules` entry: ordered regex rewrites of the
official key names, the packed tensors to split (``nn.MultiheadAttention``'s ``in_proj``), the
official keys that are deliberately not loaded (with the reason), the sigformer keys that
several official keys fill with one tied tensor (MossFormer's rotary frequencies), and the
sigformer-only keys that keep a freshly built model's value. The rules were written from the
parity fixtures' key tables (``shared/reference/parity/<model>/keys.txt``) and are checked
against them in ``tests/test_parity.py``; real official checkpoints come without such a table,
so the mapping lives here in code.

A conversion is refused (:class:`ConversionError`, a ``ValueError``) unless every official key
is consumed or explicitly ignored, every sigformer key is filled (or is a documented
sigformer-only key), shapes and dtypes match and tied copies agree. The message lists the
first keys of each problem and how many there are.

>>> from sigformer.models import create_model
>>> from sigformer.models.convert import load_official
>>> model = create_model("mossformer", preset="small")
>>> report = load_official(model, "checkpoints/mossformer_release/", "mossformer")  # doctest: +SKIP
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "CONVERTIBLE", "ConversionError", "ConversionRules", "LoadReport", "convert_state_dict",
    "load_official", "read_official_checkpoint", "rules_for",
]

SHOWN = 10  # keys listed per problem in a report
CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "net")
WRAPPER_PREFIXES = ("module.", "model.")
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
MOSSFORMER_RELEASE_FILES = {"encoder.bin": "encoder.", "decoder.bin": "decoder.",
                            "masknet.bin": "mask_net."}


class ConversionError(ValueError):
    """An official checkpoint does not fit the sigformer model (the message lists the keys)."""


Rewrite = tuple[str, "str | Callable[[re.Match], str]"]


@dataclass(frozen=True)
class Split:
    """One packed official tensor cut into equal chunks along dim 0 (``{part}`` in the
    replacement is filled with each name of ``parts`` in order)."""

    pattern: str
    replacement: str
    parts: tuple[str, ...] = ("query", "key", "value")


@dataclass(frozen=True)
class ConversionRules:
    """How one model's official keys become sigformer keys.

    ``rewrites`` are ``(regex, replacement)`` pairs applied in order with :func:`re.sub` to
    every official key that is neither ignored nor split. ``ignored`` and ``sigformer_only``
    map full-match regexes to the reason. ``tied`` lists sigformer keys (full-match regexes)
    that several official keys legitimately fill; their copies must be equal.
    ``ignored_without_module`` ignores official keys when the target model was built without
    the named submodule (e.g. Du-IN's unused blocks with ``with_unused_blocks=False``).
    """

    rewrites: tuple[Rewrite, ...]
    splits: tuple[Split, ...] = ()
    ignored: Mapping[str, str] = field(default_factory=dict)
    tied: tuple[str, ...] = ()
    sigformer_only: Mapping[str, str] = field(default_factory=dict)
    ignored_without_module: Mapping[str, tuple[str, str]] = field(default_factory=dict)


# --- per-model rules --------------------------------------------------------------------

def _dbconformer() -> ConversionRules:
    block = r"(temporal|spatial)_transformer\.(\d+)\."
    return ConversionRules(rewrites=(
        (r"^embedding\.stem\.sconv\.conv\.", "temporal_embedding.spatial.0."),
        (r"^embedding\.stem\.sconv\.bn\.", "temporal_embedding.spatial.1."),
        (r"^embedding\.stem\.tconv\.(\d+)\.conv\.", r"temporal_embedding.temporal.\1.0."),
        (r"^embedding\.stem\.tconv\.(\d+)\.bn\.", r"temporal_embedding.temporal.\1.1."),
        (r"^channel_embedding\.encoder\.", "spatial_embedding.encoder."),
        # pre-norm residual wrappers: (i.0 = attention, i.1 = feed-forward), fn.0 = the norm
        ("^" + block + r"0\.fn\.0\.", r"\1_transformer.blocks.\2.norm1."),
        (r"^" + block + r"0\.fn\.1\.queries\.", r"\1_transformer.blocks.\2.attn.query."),
        (r"^" + block + r"0\.fn\.1\.keys\.", r"\1_transformer.blocks.\2.attn.key."),
        (r"^" + block + r"0\.fn\.1\.values\.", r"\1_transformer.blocks.\2.attn.value."),
        (r"^" + block + r"0\.fn\.1\.projection\.", r"\1_transformer.blocks.\2.attn.out."),
        (r"^" + block + r"1\.fn\.0\.", r"\1_transformer.blocks.\2.norm2."),
        (r"^" + block + r"1\.fn\.1\.", r"\1_transformer.blocks.\2.ffn."),
        (r"^classifier\.fc\.", "final_layer."),
    ))


def _linear_attention_block(official: str, sigformer: str) -> tuple[Rewrite, ...]:
    """``linear-attention-transformer`` layers (``layers.layers.i.{0,1}``) -> sigformer
    blocks: ``0`` is PreNorm(attention), ``1`` is PreNorm(Chunk(FeedForward))."""
    layer = "^" + re.escape(official) + r"\.(\d+)\."
    return (
        (layer + r"0\.fn\.to_q\.", sigformer + r".\1.attn.query."),
        (layer + r"0\.fn\.to_k\.", sigformer + r".\1.attn.key."),
        (layer + r"0\.fn\.to_v\.", sigformer + r".\1.attn.value."),
        (layer + r"0\.fn\.to_out\.", sigformer + r".\1.attn.out."),
        (layer + r"0\.norm\.", sigformer + r".\1.norm1."),
        (layer + r"1\.fn\.fn\.w1\.", sigformer + r".\1.ffn.0."),
        (layer + r"1\.fn\.fn\.w2\.", sigformer + r".\1.ffn.3."),
        (layer + r"1\.norm\.", sigformer + r".\1.norm2."),
    )


def _tfm_tokenizer() -> ConversionRules:
    return ConversionRules(
        rewrites=(
            *_linear_attention_block("trans_freq_encoder.transformer.layers.layers",
                                     "freq_transformer.blocks"),
            *_linear_attention_block("trans_temporal_encoder.transformer.layers.layers",
                                     "temporal_transformer.blocks"),
            *_linear_attention_block("trans_decoder.transformer.layers.layers",
                                     "decoder.blocks"),
            (r"^freq_patch_embedding_2_atten\.0\.", "freq_gate."),
            (r"^freq_patch_embedding_2\.0\.", "freq_value."),
            (r"^freq_patch_embedding\.", "freq_patch."),
            (r"^temporal_patch_embedding\.", "temporal_embed."),
            (r"^decoder\.(\d+)\.", r"decoder_head.\1."),
            (r"^quantizer\.embedding\.weight$", "quantizer.codebook"),
            (r"^quantizer\.cluster_size$", "quantizer.counts"),
            (r"^quantizer\.ema_w$", "quantizer.embed_sum"),
        ),
        sigformer_only={
            r"quantizer\.initted": "set to 1: the release's codebook is trained (a k-means "
                                   "init at the first training step would overwrite it)",
            r"quantizer\.usage": "codebook usage statistics since reset_usage()",
        },
    )


def _tfm_encoder() -> ConversionRules:
    return ConversionRules(
        rewrites=(
            *_linear_attention_block("LAT.layers.layers", "transformer.blocks"),
            (r"^eeg_token_embedding\.", "token_embedding."),
            (r"^channel_embed\.", "channel_embedding."),
            (r"^index$", "channel_index"),
            (r"^classification_head\.", "head."),
        ),
        ignored={r"temporal_pos_embed\.pe": "sinusoidal table; sigformer recomputes it as the "
                                            "non-persistent buffer time_encoding"},
    )


def _duin_transformer(official: str, sigformer: str) -> tuple[Rewrite, ...]:
    block = "^" + re.escape(official) + r"\.1\.xfmr_blocks\.(\d+)\."
    target = sigformer + r".blocks.\1."
    return (
        (block + r"mha\.W_q\.W\.", target + "attn.query."),
        (block + r"mha\.W_k\.W\.", target + "attn.key."),
        (block + r"mha\.W_v\.W\.", target + "attn.value."),
        (block + r"mha\.norm_q\.", target + "attn.q_norm."),
        (block + r"mha\.norm_k\.", target + "attn.k_norm."),
        (block + r"mha\.attention\.scale$", target + "attn.scale"),
        (block + r"mha\.proj\.0\.", target + "attn.out."),
        (block + r"norm_mha\.", target + "norm1."),
        (block + r"norm_ffn\.", target + "norm2."),
        (block + r"ffn\.fc1\.0\.", target + "ffn.0."),
        (block + r"ffn\.fc2\.0\.", target + "ffn.3."),
    )


def _duin_backbone() -> tuple[Rewrite, ...]:
    return (
        (r"^subj_block\.subj_layer\.W\.", "backbone.subject_layer.weight."),
        (r"^subj_block\.subj_layer\.B\.", "backbone.subject_layer.bias."),
        # conv_blocks.c = Sequential(Sequential(pad, Conv), Sequential(pad?, BatchNorm))
        (r"^tokenizer\.conv_blocks\.(\d+)\.([01])\.1\.", _tokenizer_conv_index),
        (r"^emb_time\.time_encodings$", "backbone.time_encoding"),
        *_duin_transformer("encoder", "backbone.encoder"),
    )


def _tokenizer_conv_index(match: re.Match) -> str:
    block, layer = int(match.group(1)), int(match.group(2))
    return f"backbone.tokenizer.convs.{2 * block + layer}."


def _duin_vq(official: str, sigformer: str) -> tuple[Rewrite, ...]:
    vq = "^" + re.escape(official) + r"\."
    return (
        (vq + r"counts$", sigformer + ".quantizer.counts"),
        (vq + r"codex\.embeddings$", sigformer + ".quantizer.codebook"),
        (vq + r"codex\.initted$", sigformer + ".quantizer.initted"),
        (vq + r"pre_proj\.", sigformer + ".pre_proj."),
        (vq + r"layernorm\.", sigformer + ".post_norm."),
        (vq + r"post_proj\.0\.", sigformer + ".post_proj."),
    )


_DUIN_USAGE = {r"(vq_block|vq)\.quantizer\.usage": "codebook usage statistics since "
                                                    "reset_usage()"}


def _duin_cls() -> ConversionRules:
    return ConversionRules(
        rewrites=(
            *_duin_backbone(),
            *_duin_vq("vq_block", "vq_block"),
            (r"^contra_block\.proj_([zy])\.0\.", r"contra_block.proj_\1."),
            # LabelCLSHead: 0 = Flatten, 1 = hidden Linear(+ReLU), [Dropout], last = output
            (r"^cls_block\.cls_head\.1\.0\.", "head.1."),
            (r"^cls_block\.cls_head\.[23]\.0\.", "head.3."),
        ),
        ignored={r"contra_block\.t": "UniCL log-scale temperature t (logits * exp(t)); "
                                     "sigformer's contra_block.tau is a CLIP temperature "
                                     "(logits / tau = exp(-t)); the block is unused (loss "
                                     "weight 0)"},
        sigformer_only={**_DUIN_USAGE,
                        r"contra_block\.tau": "CLIP temperature 0.25 (the release stores the "
                                              "UniCL t instead)"},
        ignored_without_module={
            r"(vq_block|contra_block)\..*": (
                "vq_block", "unused block (loss weight 0); model built with "
                            "with_unused_blocks=False"),
        },
    )


def _duin_vqvae() -> ConversionRules:
    return ConversionRules(
        rewrites=(
            *_duin_backbone(),
            *_duin_vq("vq_block", "vq"),
            *_duin_transformer("decoder", "decoder"),
            # TimeRGSHead: rgs_head.i = Sequential(Sequential(permute, ConvT, permute)), last
            # = Sequential(Linear)
            (r"^rgs_block\.rgs_head\.(\d+)\.0\.1\.", r"regression_head.\1."),
            (r"^rgs_block\.rgs_head\.\d+\.0\.(weight|bias)$", r"out_proj.\1"),
            (r"^desubj_block\.subj_layer\.W\.", "desubject.weight."),
            (r"^desubj_block\.subj_layer\.B\.", "desubject.bias."),
        ),
        sigformer_only=_DUIN_USAGE,
    )


def _duin_mae() -> ConversionRules:
    return ConversionRules(rewrites=(
        *_duin_backbone(),
        (r"^mask_emb$", "mask_embedding"),
        (r"^cls_block\.cls_head\.0\.0\.", "token_head."),
    ))


def _mossformer() -> ConversionRules:
    layer = r"^mask_net\.mdl\.att_mdl\.mossformerM\.layers\.(\d+)\."
    return ConversionRules(
        rewrites=(
            (r"^encoder\.conv1d\.", "encoder."),
            (layer + r"rotary_pos_emb\.freqs$", "masker.rotary.freqs"),
            # FFConvM: mdl = (norm, Linear, SiLU, ConvModule(sequential(.., DWConv)), dropout)
            (layer + r"(to_hidden|to_qk|to_out)\.mdl\.3\.sequential\.1\.conv\.",
             r"masker.blocks.\1.\2.3.conv."),
            (layer + r"(to_hidden|to_qk|to_out)\.mdl\.", r"masker.blocks.\1.\2."),
            (layer, r"masker.blocks.\1."),
            (r"^mask_net\.mdl\.att_mdl\.norm\.norm\.", "masker.blocks_norm."),
            (r"^mask_net\.mdl\.att_norm\.", "masker.stack_norm."),
            (r"^mask_net\.conv1d_encoder\.", "masker.conv_in."),
            (r"^mask_net\.conv1d_out\.", "masker.conv_out."),
            (r"^mask_net\.conv1_decoder\.", "masker.conv_mask."),
            (r"^mask_net\.output\.0\.", "masker.output."),
            (r"^mask_net\.output_gate\.0\.", "masker.output_gate."),
            (r"^mask_net\.", "masker."),
        ),
        ignored={r"mask_net\.pos_enc\.inv_freq": "1/10000^(2i/N) table; sigformer recomputes "
                                                 "it (non-persistent buffer)"},
        tied=(r"masker\.rotary\.freqs",),
    )


def _deftan2() -> ConversionRules:
    block = r"^blocks\.(\d+)\.([FT])_"
    return ConversionRules(rewrites=(
        (r"^up_conv\.", "encoder."),
        (r"^down_conv\.", "decoder."),
        # split dense blocks: <path>.blocks.k -> <path>.units.k (not the top-level blocks.i)
        (r"\.blocks\.(\d+)\.", r".units.\1."),
        (block + r"norm\.", r"blocks.\1.\2.norm."),
        (block + r"inv\.", r"blocks.\1.\2.subgroups."),
        (block + r"att\.fn\.cv_qk\.0\.", r"blocks.\1.\2.attention.fn.qk_conv."),
        (block + r"att\.", r"blocks.\1.\2.attention."),
        (block + r"ffw\.fn\.PW1\.", r"blocks.\1.\2.feed_forward.fn.pointwise."),
        (block + r"ffw\.fn\.PW2\.", r"blocks.\1.\2.feed_forward.fn.to_conv."),
        (block + r"ffw\.fn\.DW_Conv\.", r"blocks.\1.\2.feed_forward.fn.dilated."),
        (block + r"ffw\.fn\.PW3\.", r"blocks.\1.\2.feed_forward.fn.project."),
        (block + r"ffw\.", r"blocks.\1.\2.feed_forward."),
        (block + r"linear\.", r"blocks.\1.\2.restore."),
        (r"^blocks\.(\d+)\.F\.", r"blocks.\1.freq."),
        (r"^blocks\.(\d+)\.T\.", r"blocks.\1.time."),
    ))


def _adafortitran() -> ConversionRules:
    layer = r"^transformer_encoder\.transformer\.layers\.(\d+)\."
    return ConversionRules(
        rewrites=(
            (r"^pilot_upsampler\.", "upsampler."),
            (r"^initial_enhancer\.conv_block\.", "initial_enhancer."),
            (r"^final_refiner\.conv_block\.", "refiner."),
            (r"^channel_adapter\.snr_encoder\.", "adapter.mlps.0."),
            (r"^channel_adapter\.ds_encoder\.", "adapter.mlps.1."),
            (r"^channel_adapter\.dop_encoder\.", "adapter.mlps.2."),
            (r"^transformer_encoder\.linear_1\.", "input_projection."),
            (r"^transformer_encoder\.linear_2\.", "output_projection."),
            (r"^transformer_encoder\.positional_encoding\.position_embeddings$",
             "positional_encoding"),
            (layer + r"self_attn\.out_proj\.", r"encoder.blocks.\1.attn.out."),
            (layer + r"linear1\.", r"encoder.blocks.\1.ffn.0."),
            (layer + r"linear2\.", r"encoder.blocks.\1.ffn.3."),
            (layer + r"(norm[12])\.", r"encoder.blocks.\1.\2."),
        ),
        splits=(Split(layer[1:] + r"self_attn\.in_proj_(weight|bias)",
                      r"encoder.blocks.\1.attn.{part}.\2"),),
    )


_RULES = {
    "dbconformer": _dbconformer, "tfm_tokenizer": _tfm_tokenizer, "tfm_encoder": _tfm_encoder,
    "duin": _duin_cls, "duin_vqvae": _duin_vqvae, "duin_mae": _duin_mae,
    "mossformer": _mossformer, "deftan2": _deftan2, "adafortitran": _adafortitran,
}
CONVERTIBLE: tuple[str, ...] = tuple(_RULES)


def rules_for(model_name: str) -> ConversionRules:
    if model_name not in _RULES:
        raise ConversionError(f"no official-checkpoint converter for {model_name!r}; "
                              f"convertible models: {list(CONVERTIBLE)}")
    return _RULES[model_name]()


# --- conversion -------------------------------------------------------------------------

@dataclass
class Conversion:
    """Converted tensors plus where each came from (for reports)."""

    state: dict[str, Tensor]
    sources: dict[str, list[str]]  # sigformer key -> official key(s)
    ignored: dict[str, str]  # official key -> reason


def _full_match(patterns: Mapping[str, object] | tuple[str, ...], key: str):
    for pattern in patterns:
        if re.fullmatch(pattern, key):
            return pattern
    return None


def unwrap_prefix(official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Strip ``module.`` (DataParallel/DDP) and ``model.`` (Lightning) when every key has it."""
    state = dict(official)
    while state:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)),
                      None)
        if prefix is None:
            break
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def rename(key: str, rules: ConversionRules) -> str:
    for pattern, replacement in rules.rewrites:
        key = re.sub(pattern, replacement, key)
    return key


def _split(key: str, tensor: Tensor, rule: Split) -> dict[str, Tensor]:
    n = len(rule.parts)
    if tensor.dim() == 0 or tensor.shape[0] % n:
        raise ConversionError(f"cannot split {key!r} of shape {tuple(tensor.shape)} into {n} "
                              "equal parts along dim 0")
    template = re.sub("^" + rule.pattern + "$", rule.replacement, key)
    return {template.replace("{part}", part): chunk.clone()
            for part, chunk in zip(rule.parts, tensor.chunk(n, dim=0), strict=True)}


def _convert(model_name: str, official: Mapping[str, Tensor],
             absent_modules: frozenset[str] = frozenset()) -> Conversion:
    rules = rules_for(model_name)
    conditional = {pattern: reason for pattern, (module, reason)
                   in rules.ignored_without_module.items() if module in absent_modules}
    ignored_patterns = {**rules.ignored, **conditional}
    sources: dict[str, list[str]] = {}
    candidates: dict[str, list[Tensor]] = {}
    ignored: dict[str, str] = {}
    for key, tensor in unwrap_prefix(official).items():
        if not isinstance(tensor, Tensor):
            raise ConversionError(f"official entry {key!r} is a {type(tensor).__name__}, "
                                  "not a tensor")
        pattern = _full_match(ignored_patterns, key)
        if pattern is not None:
            ignored[key] = ignored_patterns[pattern]
            continue
        split = next((s for s in rules.splits if re.fullmatch(s.pattern, key)), None)
        targets = _split(key, tensor, split) if split else {rename(key, rules): tensor}
        for target, value in targets.items():
            sources.setdefault(target, []).append(key)
            candidates.setdefault(target, []).append(value)
    _check_collisions(candidates, sources, rules)
    state = {k: v[0] for k, v in candidates.items()}
    return Conversion(state, sources, ignored)


def _check_collisions(candidates: dict[str, list[Tensor]], sources: dict[str, list[str]],
                      rules: ConversionRules) -> None:
    problems = []
    for target, values in candidates.items():
        if len(values) == 1:
            continue
        if _full_match(rules.tied, target) is None:
            problems.append(f"{sources[target]} all map to {target!r}")
        elif not all(v.shape == values[0].shape and torch.equal(v, values[0])
                     for v in values[1:]):
            problems.append(f"tied copies {sources[target]} of {target!r} disagree")
    if problems:
        raise ConversionError("official checkpoint is inconsistent: " + "; ".join(problems))


def convert_state_dict(model_name: str, official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Official key names in, sigformer key names out (a leading ``module.``/``model.`` is
    unwrapped). Ignored keys are dropped, packed tensors split, tied copies checked equal.
    Completeness and shapes are checked against a model by :func:`load_official`."""
    return _convert(model_name, official).state


# --- checking against a model -----------------------------------------------------------

@dataclass
class LoadReport:
    """What a conversion loaded, and every key that did not fit."""

    model_name: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # sigformer keys left unfilled
    unexpected: list[str] = field(default_factory=list)  # "official -> sigformer" not in model
    shape_mismatched: list[str] = field(default_factory=list)
    dtype_mismatched: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)  # official key -> reason
    kept: dict[str, str] = field(default_factory=dict)  # sigformer-only key -> reason
    notes: list[str] = field(default_factory=list)  # e.g. a head swapped after loading

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatched
                    or self.dtype_mismatched)

    def __str__(self) -> str:
        lines = [f"{self.model_name}: loaded {len(self.loaded)} tensors, ignored "
                 f"{len(self.ignored)} official keys, kept {len(self.kept)} sigformer-only keys"]
        for title, keys in (("missing (sigformer keys not filled)", self.missing),
                            ("unexpected (official keys with no place)", self.unexpected),
                            ("shape mismatch", self.shape_mismatched),
                            ("dtype mismatch", self.dtype_mismatched)):
            if keys:
                more = f" ... and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
                lines.append(f"  {len(keys)} {title}: " + ", ".join(keys[:SHOWN]) + more)
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


def check_conversion(conversion: Conversion, expected: Mapping[str, Tensor],
                     model_name: str) -> LoadReport:
    """Compare converted tensors with a model's state dict (names, shapes, dtypes)."""
    rules = rules_for(model_name)
    report = LoadReport(model_name, ignored=dict(conversion.ignored))
    for key, value in conversion.state.items():
        origin = "|".join(conversion.sources.get(key, [key]))
        if key not in expected:
            report.unexpected.append(f"{origin} -> {key}")
        elif value.shape != expected[key].shape:
            report.shape_mismatched.append(f"{key} ({origin}): checkpoint "
                                           f"{tuple(value.shape)}, model "
                                           f"{tuple(expected[key].shape)}")
        elif value.dtype != expected[key].dtype:
            report.dtype_mismatched.append(f"{key} ({origin}): checkpoint {value.dtype}, "
                                           f"model {expected[key].dtype}")
        else:
            report.loaded.append(key)
    for key in expected:
        if key in conversion.state:
            continue
        pattern = _full_match(rules.sigformer_only, key)
        if pattern is None:
            report.missing.append(key)
        else:
            report.kept[key] = rules.sigformer_only[pattern]
    return report


def _absent_modules(model: nn.Module, rules: ConversionRules) -> frozenset[str]:
    names = {module for module, _ in rules.ignored_without_module.values()}
    return frozenset(n for n in names if not hasattr(model, n))


def _mark_loaded_codebooks_initialised(model: nn.Module, loaded: list[str]) -> None:
    """A quantizer built with ``codebook_init="kmeans"`` starts uninitialised and would run
    k-means over the first training batch, replacing the codebook just loaded."""
    buffers = dict(model.named_buffers()) | dict(model.named_parameters())
    for key in loaded:
        if key.endswith("codebook") and (flag := buffers.get(key[:-len("codebook")] + "initted")) \
                is not None:
            flag.data.fill_(1.0)


def load_official(model: nn.Module, path_or_state: str | Path | Mapping[str, Tensor],
                  model_name: str, strict: bool = True) -> LoadReport:
    """Load an official checkpoint (a path, see :func:`read_official_checkpoint`, or a state
    dict with official key names) into a built sigformer model.

    ``strict=True`` (default) refuses any mismatch with :class:`ConversionError` and leaves
    the model untouched; ``strict=False`` loads the tensors that fit, warns with the report
    (:class:`~sigformer.models.weights.PretrainedLoadWarning`) and returns it; when nothing
    fits it raises (a model left entirely random is never a partial load).
    """
    if isinstance(path_or_state, Mapping):
        official = path_or_state
    else:
        official = read_official_checkpoint(path_or_state, model_name)
    rules = rules_for(model_name)
    conversion = _convert(model_name, official, _absent_modules(model, rules))
    report = check_conversion(conversion, model.state_dict(), model_name)
    if not report.ok and strict:
        raise ConversionError("official checkpoint does not fit the model (pass strict=False "
                              "to load what fits):\n" + str(report))
    if not report.loaded:
        raise ConversionError(f"none of the official checkpoint's tensors fit {model_name!r}: "
                              f"wrong model, preset or file (nothing was loaded):\n{report}")
    fitting = {k: conversion.state[k] for k in report.loaded}
    model.load_state_dict(fitting, strict=False)
    _mark_loaded_codebooks_initialised(model, report.loaded)
    if not report.ok:
        from .weights import PretrainedLoadWarning

        warnings.warn(f"official checkpoint loaded with strict=False; what did not fit:\n"
                      f"{report}", PretrainedLoadWarning, stacklevel=2)
    return report


# --- reading files ----------------------------------------------------------------------

def read_official_checkpoint(path: str | Path, model_name: str) -> dict[str, Tensor]:
    """Official weights from ``.safetensors``, ``.pt/.pth/.bin/.ckpt`` (``torch.load`` with
    ``weights_only=True`` only; ``state_dict``/``model``/``model_state_dict``/``net``
    containers are unwrapped) or MossFormer's release folder (``encoder.bin``,
    ``decoder.bin``, ``masknet.bin``)."""
    path = Path(path)
    _refuse_a_bundles_own_weights(path, model_name)
    rules_for(model_name)  # refuse unknown models before touching the file
    if path.is_dir():
        return _read_release_folder(path, model_name)
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as err:
            raise ConversionError(f"{path} is truncated or corrupt ({path.stat().st_size:,} "
                                  f"bytes; safetensors: {err})") from None
    if path.suffix in TORCH_SUFFIXES:
        return _unwrap_container(_torch_load(path), path)
    raise ConversionError(f"unsupported checkpoint file {path.name!r}: expected .safetensors "
                          f"or one of {list(TORCH_SUFFIXES)}")


def _refuse_a_bundles_own_weights(path: Path, model_name: str) -> None:
    """A sigformer folder's ``model.safetensors`` is not an official checkpoint: its keys
    are sigformer's, and the folder (with its config and checksums) is what loads it."""
    from ..atomic import is_sigformer_config

    if path.name == "model.safetensors" and is_sigformer_config(path.parent / "config.json"):
        raise ConversionError(f"{path} is the weights file of a sigformer bundle, not an "
                              f"official checkpoint: load the folder, create_model("
                              f"{model_name!r}, weights={str(path.parent)!r}) or "
                              f"from_pretrained({str(path.parent)!r})")


def _torch_load(path: Path) -> object:
    size = path.stat().st_size
    if size == 0:
        raise ConversionError(f"{path} is empty (0 bytes): an interrupted download or copy?")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, zipfile.BadZipFile) as err:
        raise ConversionError(f"{path} is truncated or corrupt ({size:,} bytes; "
                              f"{type(err).__name__}: {err})") from None
    except RuntimeError as err:
        if _looks_truncated(err):
            raise ConversionError(f"{path} is truncated or corrupt ({size:,} bytes; "
                                  f"{str(err).splitlines()[0].split('. This is')[0]})"
                                  ) from None
        raise _pickled_objects_error(path, err) from err
    except (pickle.UnpicklingError, AttributeError) as err:
        raise _pickled_objects_error(path, err) from err


def _looks_truncated(err: RuntimeError) -> bool:
    # torch's zip reader on a cut file: "PytorchStreamReader failed reading zip archive:
    # failed finding central directory" (or "...reading file data/0")
    text = str(err)
    return "PytorchStreamReader" in text or "central directory" in text


def _pickled_objects_error(path: Path, err: Exception) -> ConversionError:
    return ConversionError(
        f"{path} cannot be read with torch.load(weights_only=True): it holds pickled "
        "objects beyond tensors (e.g. a whole model saved with torch.save(model)). "
        "sigformer never unpickles arbitrary code; re-save it as "
        "torch.save(model.state_dict(), path) in the official environment. "
        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")


def _unwrap_container(obj: object, path: Path) -> dict[str, Tensor]:
    while isinstance(obj, Mapping) and not all(isinstance(v, Tensor) for v in obj.values()):
        inner = next((obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            others = [k for k, v in obj.items() if not isinstance(v, Tensor)][:SHOWN]
            raise ConversionError(f"{path}: no state dict found; entries that are not "
                                  f"tensors: {others} (looked for containers {CONTAINER_KEYS})")
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise ConversionError(f"{path}: expected a state dict of tensors, got "
                              f"{type(obj).__name__}")
    return dict(obj)


def _read_release_folder(folder: Path, model_name: str) -> dict[str, Tensor]:
    files = {name: folder / name for name in MOSSFORMER_RELEASE_FILES}
    if model_name != "mossformer" or not all(f.is_file() for f in files.values()):
        raise ConversionError(
            f"{folder} is a folder; the only folder layout understood is MossFormer's release "
            f"({sorted(MOSSFORMER_RELEASE_FILES)}); pass a checkpoint file instead")
    state: dict[str, Tensor] = {}
    for name, prefix in MOSSFORMER_RELEASE_FILES.items():
        part = _unwrap_container(_torch_load(files[name]), files[name])
        state.update({prefix + k: v for k, v in part.items()})
    return state
