"""Inference bundles: one trained model with everything needed to run it on new data.

A bundle is a checkpoint folder (:mod:`sigformer.checkpoint`: ``model.safetensors`` +
``config.json`` with checksums) whose config also holds

* ``input_spec``: the :class:`~sigformer.spec.SignalSpec` of the signal the bundle receives
  (rate, channels, layout, unit) *before* any preprocessing;
* ``chain``: the stage chain (:mod:`sigformer.stages` configs) that turns that signal into
  what the model was trained on; it runs identically offline and chunk by chunk;
* ``model_spec``: the spec after the chain (window length = the model's input length);
* ``input_scale``: a factor applied after the chain (e.g. volts -> microvolts);
* ``head``: the kind of output (classify, tokenize, separate, enhance, estimate_channel)
  and the label names;
* ``provenance``: data, recipe, budget and measured results of the training run.

Every inference command (``sigformer stream``, ``classify-iq``, ``separate``, ``enhance``)
rebuilds its online chain from the bundle alone; the YAML is only needed to train.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import (
    CONFIG_FILE,
    CheckpointError,
    load_checkpoint,
    read_config,
    save_checkpoint,
)
from .checkpoint_io import CONFIG_DIGEST_KEY, config_digest, verify_config_digest  # noqa: F401
from .spec import SignalSpec
from .validation import ScaleWarning, check_finite, detect_scale

UNIT_CHECK_WINDOWS, UNIT_CHECK_SAMPLES = 16, 100_000  # how much input the unit check reads

TASK_HEADS = {"classify": "classify", "tokenize": "tokenize", "separate": "separate",
              "enhance": "enhance", "estimate_channel": "estimate_channel"}


@dataclass
class Bundle:
    """A trained model + input spec + stage chain + head + provenance."""

    model: nn.Module
    task: str
    input_spec: SignalSpec | None = None
    chain: list[dict[str, Any]] = field(default_factory=list)
    input_scale: float = 1.0
    labels: list[str] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    model_spec: SignalSpec | None = None
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.task not in TASK_HEADS:
            raise CheckpointError(f"unknown bundle task {self.task!r}; expected one of "
                                  f"{sorted(TASK_HEADS)}")
        self.chain = [dict(c) for c in self.chain]
        if self.model_spec is None and self.input_spec is not None:
            self.model_spec = self.input_spec.through(self.build_chain())
        if self.task == "classify" and not self.labels:
            raise CheckpointError("a classification bundle needs its label names")
        if self.task == "classify":
            _check_labels_fit_outputs(self.model, self.labels)

    # --- the chain --------------------------------------------------------------------------

    def build_chain(self):
        """Fresh stage objects (a :class:`~sigformer.stages.Pipeline`) from the stored
        configs; each call gives independent state, e.g. one per stream."""
        from .stages import Pipeline, stage_from_config

        return Pipeline([stage_from_config(c) for c in self.chain])

    @property
    def window(self) -> int | None:
        return None if self.model_spec is None else self.model_spec.window

    @property
    def frame_normalization(self) -> str | None:
        """The per-frame scaling of an IQ-frame bundle (``extra["normalization"]``: ``"l1"``,
        ``"rms"``, ``"peak"`` or ``"none"``; RadioML's ``"l1"`` when it records none, as
        classify-iq and streams use too); None for other bundles."""
        spec = self.model_spec or self.input_spec
        if spec is None or spec.layout != "iq":
            return None
        from .data.sigmf_io import CAPTURE_NORMALIZATION

        return self.extra.get("normalization", CAPTURE_NORMALIZATION)

    # --- persistence ------------------------------------------------------------------------

    def config_fields(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "input_spec": None if self.input_spec is None else self.input_spec.to_dict(),
            "chain": self.chain,
            "model_spec": None if self.model_spec is None else self.model_spec.to_dict(),
            "input_scale": float(self.input_scale),
            "head": {"kind": TASK_HEADS[self.task], "labels": self.labels},
            "provenance": self.provenance,
        }

    def save(self, path: str | os.PathLike, *, card: str | None = None) -> Path:
        """Write the bundle folder atomically (see :func:`sigformer.checkpoint.save_checkpoint`);
        ``card`` defaults to a model card generated from the provenance."""
        card = card if card is not None else model_card(self)
        extra = {k: v for k, v in self.extra.items() if k != CONFIG_DIGEST_KEY}
        self.path = save_checkpoint(path, self.model, extra=extra,
                                    bundle=self.config_fields(), card=card)
        return stamp_config(self.path)

    @classmethod
    def load(cls, source: str | os.PathLike) -> Bundle:
        """A bundle from a folder, or a name in sigformer's pretrained catalogue."""
        from .catalogue import resolve_bundle_path

        path = resolve_bundle_path(source)
        model, config = load_checkpoint(path, verify_config=False)  # checked last, below
        if config.get("task") is None:
            raise CheckpointError(_not_a_bundle_message(path, config))
        head = config.get("head") or {}
        bundle = cls(model=model, task=config["task"],
                     input_spec=_spec_field(config, "input_spec", path),
                     chain=config.get("chain", []), input_scale=config.get("input_scale", 1.0),
                     labels=head.get("labels"), provenance=config.get("provenance", {}),
                     extra={k: v for k, v in config.get("extra", {}).items()
                            if k != CONFIG_DIGEST_KEY},
                     model_spec=_spec_field(config, "model_spec", path), path=Path(path))
        # last: a malformed field gets its own error above; an edit that still parses (a
        # label, a rate, a chain stage) would otherwise run silently wrong
        verify_config_digest(config, path)
        return bundle

    # --- offline inference ------------------------------------------------------------------

    def preprocess(self, data: np.ndarray, sfreq: float | None = None, channels=None
                   ) -> np.ndarray:
        """Run the chain over a whole ``(channels, samples)`` array exactly as a stream would
        (causal, stateful), after adapting channels onto the bundle's input channels."""
        from .stages import AdaptChannels, Pipeline

        spec = self._require_spec()
        sfreq = spec.sfreq if sfreq is None else float(sfreq)
        channels = spec.channels if channels is None else channels
        stages = [AdaptChannels(spec.channels, fill="auto")] + self.build_chain().stages
        if abs(sfreq - spec.sfreq) > 1e-6:
            from .stages import Resample

            stages.insert(1, Resample(spec.sfreq))
        chain = Pipeline(stages)
        chain.configure(sfreq, channels)
        data = np.asarray(data, dtype=np.float64)
        warn_on_unit_mismatch(data, spec.unit, "the data given to preprocess")
        return chain.process(data)

    def predict_proba(self, windows: np.ndarray) -> np.ndarray:
        """Class probabilities for model-space windows ``(n, channels, window)`` (after the
        chain); non-finite outputs are an error, never a label.

        An IQ-frame bundle scales each frame as it was trained (:attr:`frame_normalization`,
        as ``sigformer stream`` and ``classify-iq`` do): frames the caller normalised already
        give the same outputs, bit for bit (the normalisation is idempotent), and frames
        scaled any other way no longer give chance-level predictions. A bundle trained on
        Euclidean-aligned trials aligns the windows as ``sigformer stream`` does (in order,
        from the stored training reference), so the two agree."""
        if self.task != "classify":
            raise CheckpointError(f"predict_proba needs a classification bundle, this one is "
                                  f"{self.task!r}")
        windows = np.asarray(windows)
        if self.model_spec is not None:  # a clear error before the model sees the shape
            self.model_spec.check(windows, name="windows")
        check_finite(windows, "windows")
        if self.model_spec is not None:
            warn_on_unit_mismatch(windows, self.model_spec.unit, "the windows")
        x = self._normalized(np.ascontiguousarray(windows) * self.input_scale)
        x = torch.as_tensor(self._aligned(x), dtype=torch.float32)
        was_training = self.model.training  # a caller's model comes back as it was given
        try:
            with torch.inference_mode():
                out = self.model.eval()(x)
                if isinstance(out, (tuple, list)):
                    out = out[-1]
                probs = class_probabilities(out.float()).numpy()
        finally:
            self.model.train(was_training)
        if not np.isfinite(probs).all():
            raise FloatingPointError("the model produced non-finite outputs; the input may "
                                     "hold NaN/Inf or be far off the training scale")
        return probs

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Label names for model-space windows (see :meth:`predict_proba`)."""
        probs = self.predict_proba(windows)
        return np.asarray(self.labels)[probs.argmax(axis=1)]

    def _aligned(self, windows: np.ndarray) -> np.ndarray:
        """Windows whitened as a stream whitens them, for a bundle trained on aligned trials
        (``extra["alignment"] == "online"``): in order, each with the running mean covariance
        that starts from the training reference (:class:`~sigformer.streaming.runtime.
        ModelRunner`). Other bundles: unchanged."""
        if self.extra.get("alignment", "none") != "online":
            return windows
        from .stages import EuclideanAlignment

        reference = self.extra.get("alignment_reference")
        if reference is None:  # as the stream does: the running mean starts empty
            warnings.warn("this bundle was trained on Euclidean-aligned trials but records "
                          "no alignment_reference (saved before bundles carried one): the "
                          "running mean starts empty, so the first windows are whitened by "
                          "themselves alone", stacklevel=3)
            aligner = EuclideanAlignment(mode="online")
        else:
            aligner = EuclideanAlignment.from_reference(reference, mode="online")
        return np.concatenate([aligner.transform(windows[i:i + 1])
                               for i in range(len(windows))])

    def _normalized(self, frames: np.ndarray) -> np.ndarray:
        """``frames`` scaled by the bundle's recorded per-frame normalisation (IQ bundles)."""
        mode = self.frame_normalization
        if mode is None or mode == "none":
            return frames
        from .data.sigmf_io import NORMALIZATIONS, normalize_frames

        if mode not in NORMALIZATIONS:
            raise CheckpointError(f"this bundle's extra['normalization'] is {mode!r}; expected "
                                  f"one of {list(NORMALIZATIONS)}")
        return normalize_frames(frames, mode)

    def _require_spec(self) -> SignalSpec:
        if self.input_spec is None:
            raise CheckpointError("this bundle has no input spec: it cannot preprocess raw "
                                  "signals")
        return self.input_spec

    def __repr__(self) -> str:
        name = getattr(self.model, "sigformer_config", {}).get("name", type(self.model).__name__)
        labels = "" if not self.labels else f", labels {self.labels}"
        return f"<Bundle | {self.task}, model {name}, input {self.input_spec}{labels}>"


def warn_on_unit_mismatch(data: np.ndarray, unit: str, what: str) -> None:
    """A :class:`~sigformer.validation.ScaleWarning` when the amplitude of EEG-like ``data``
    says volts but the bundle expects microvolts (or the reverse): the model would see values
    1e6 off its training scale and answer with confidence anyway."""
    if unit not in ("V", "mV", "uV"):  # I/Q full scale, audio, a.u.: no physical scale
        return
    # the first windows / samples tell the unit; the whole of a large batch costs seconds
    sample = data[:UNIT_CHECK_WINDOWS] if data.ndim == 3 else data[..., :UNIT_CHECK_SAMPLES]
    guessed = detect_scale(sample)
    if guessed == "unknown" or guessed == unit:
        return
    warnings.warn(f"{what} look like {guessed} (from their amplitude) but this bundle "
                  f"expects {unit}; convert them (volts vs microvolts differ by 1e6), or the "
                  f"predictions will be meaningless", ScaleWarning, stacklevel=3)


def stamp_config(path: str | os.PathLike) -> Path:
    """Record the digest of a bundle folder's config.json in it (the weights, and so their
    checksums, are untouched); returns the folder."""
    from .atomic import atomic_write_json

    path = Path(path).expanduser()
    config = read_config(path)
    config["extra"] = {**config.get("extra", {}), CONFIG_DIGEST_KEY: config_digest(config)}
    atomic_write_json(path / CONFIG_FILE, config)
    return path


def _not_a_bundle_message(path, config: dict[str, Any]) -> str:
    """Why a checkpoint folder is not a bundle, and the way to one for its kind of model: a
    speech checkpoint (``scripts/train_speech.py`` writes them) is packaged, not re-trained."""
    from .models.registry import MODEL_INDEX

    model = config.get("model")
    if MODEL_INDEX.get(model, ("", ""))[1] == "speech":
        return (f"{path} is a {model} speech checkpoint (as scripts/train_speech.py writes "
                f"them) without an inference bundle (no task, input spec or chunking): "
                f"package it with `python scripts/package_speech.py {path} --dest DIR` and "
                f"pass the bundle folder it writes under DIR, or load the bare model with "
                f"sigformer.checkpoint.load_checkpoint")
    return (f"{path} is a model checkpoint without an inference bundle (no task, input spec "
            f"or chain): load it with sigformer.checkpoint.load_checkpoint, or re-train with "
            f"`sigformer run` to get a bundle")


def _spec_field(config: dict[str, Any], key: str, path) -> SignalSpec | None:
    """A spec from the config, a malformed one named as the config field it is."""
    from .spec import SpecError

    value = config.get(key)
    if value is None:
        return None
    try:
        return SignalSpec.from_dict(value)
    except (SpecError, TypeError, ValueError) as err:
        raise CheckpointError(f"{Path(path) / CONFIG_FILE}: {key}: {err}") from None


def _output_size(model: nn.Module) -> int | None:
    """The classifier's number of outputs where the model says it (``n_outputs``, also on a
    wrapped ``encoder``); None where it does not."""
    for part in (model, getattr(model, "encoder", None)):
        size = getattr(part, "n_outputs", None)
        if isinstance(size, int) and not isinstance(size, bool):
            return size
    return None


def _check_labels_fit_outputs(model: nn.Module, labels: Sequence[str]) -> None:
    size = _output_size(model)
    if size is None:
        return
    classes = 2 if size == 1 else size  # one output: a binary logit (sigmoid)
    if len(labels) != classes:
        raise CheckpointError(f"{len(labels)} label names {list(labels)[:5]}"
                              f"{'...' if len(labels) > 5 else ''} for a model with {size} "
                              f"output{'s' if size != 1 else ''} ({classes} classes): the "
                              "labels must name the model's outputs, in order")


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over classes; a single output is a binary logit (sigmoid -> [1-p, p])."""
    if logits.ndim == 2 and logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits, dim=-1)


def model_card(bundle: Bundle) -> str:
    """A Markdown model card from the bundle's provenance (data, recipe, budget, results)."""
    name = getattr(bundle.model, "sigformer_config", {}).get("name", type(bundle.model).__name__)
    n_params = sum(p.numel() for p in bundle.model.parameters())
    prov = bundle.provenance
    lines = [f"# {prov.get('title', name)}", "",
             f"- task: `{bundle.task}`; model: `{name}` ({n_params:,} parameters)",
             f"- input: {bundle.input_spec!r}", f"- model input: {bundle.model_spec!r}"]
    if bundle.chain:
        lines.append("- chain: " + " -> ".join(c.get("stage", "?") for c in bundle.chain))
    if bundle.labels:
        lines.append(f"- labels: {', '.join(bundle.labels)}")
    for key in _card_keys(prov):
        value = prov[key]
        if isinstance(value, dict):
            lines += ["", f"## {key.replace('_', ' ')}", ""]
            for k, v in value.items():
                table = _markdown_table(v)
                lines += [f"- {k}:", "", *table, ""] if table else [f"- {k}: {v}"]
        else:
            lines.append(f"- {key.replace('_', ' ')}: {value}")
    return "\n".join(lines) + "\n"


# the card's order; any other provenance field follows them (a field added by a packaging
# script must not vanish from the card), except the title (the heading) and the raw log tail
_CARD_ORDER = ("summary", "data", "fine_tuned_from", "data_licence", "recipe", "selection",
               "budget", "training_time", "trained_by", "results", "results_real_captures",
               "limitations")
_CARD_SKIP = {"title", "training_log_tail"}


def _card_keys(prov: dict[str, Any]) -> list[str]:
    known = [k for k in _CARD_ORDER if k in prov]
    return known + [k for k in prov if k not in _CARD_ORDER and k not in _CARD_SKIP]


def _markdown_table(rows) -> list[str]:
    """A Markdown table for a mapping of rows that share their keys (per-point or per-class
    results read better as a table than as one long line); ``[]`` for anything else."""
    if not isinstance(rows, dict) or len(rows) < 2 or not all(
            isinstance(r, dict) and r for r in rows.values()):
        return []
    columns = list(next(iter(rows.values())))
    if any(list(r) != columns for r in rows.values()):
        return []
    lines = ["| | " + " | ".join(map(str, columns)) + " |",
             "|---|" + "---:|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(str(r[c]) for c in columns) + " |"
              for name, r in rows.items()]
    return lines


def bundle_from_windows_model(model: nn.Module, *, task: str, input_spec: SignalSpec,
                              chain: Sequence[dict] = (), labels: Sequence[str] | None = None,
                              input_scale: float = 1.0, **kwargs) -> Bundle:
    """Convenience constructor used by the task runners."""
    return Bundle(model=model, task=task, input_spec=input_spec, chain=list(chain),
                  labels=None if labels is None else [str(label) for label in labels],
                  input_scale=input_scale, **kwargs)


def promote_to_bundle(path: str | os.PathLike, *, task: str, input_spec: SignalSpec | None,
                      model_spec: SignalSpec | None = None, chain: Sequence[dict] = (),
                      labels: Sequence[str] | None = None, input_scale: float = 1.0,
                      provenance: dict[str, Any] | None = None,
                      extra: dict[str, Any] | None = None) -> Path:
    """Add the bundle fields to a checkpoint folder written by a task runner (its weights,
    and so their checksums, are unchanged); the folder is rewritten atomically."""
    from .atomic import atomic_write_json

    path = Path(path).expanduser()
    config = read_config(path)
    if task not in TASK_HEADS:
        raise CheckpointError(f"unknown bundle task {task!r}")
    config.update(
        task=task, input_spec=None if input_spec is None else input_spec.to_dict(),
        model_spec=None if model_spec is None else model_spec.to_dict(), chain=list(chain),
        input_scale=float(input_scale),
        head={"kind": TASK_HEADS[task],
              "labels": None if labels is None else [str(x) for x in labels]},
        provenance={**config.get("provenance", {}), **(provenance or {})},
        extra={**config.get("extra", {}), **(extra or {})})
    config = json.loads(json.dumps(config))  # fail here, not half-way through writing
    config["extra"][CONFIG_DIGEST_KEY] = config_digest(config)  # of what is written
    atomic_write_json(path / CONFIG_FILE, config)
    read_config(path)  # validates the result
    return path
