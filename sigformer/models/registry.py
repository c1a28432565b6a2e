"""Model registry: ``create_model(name, **kwargs)`` and ``list_models()`` (timm-style).

sigformer models register themselves with a domain and named presets. Every braindecode model
is reachable as ``"braindecode.<ClassName>"`` (e.g. ``"braindecode.EEGNet"``), so any pipeline,
estimator or benchmark can swap in a braindecode baseline by name.

``create_model(name, spec=spec, n_outputs=2)`` takes ``n_chans``, ``n_times``, ``sfreq``,
``chs_info`` (or ``sample_rate``, ``n_mics``, ``frame_length``) from a
:class:`~sigformer.spec.SignalSpec`; ``weights=`` loads a pretrained catalogue entry, a bundle
folder or an official checkpoint (strict; see :mod:`sigformer.pretrained`).

Model modules are imported on first use (:data:`MODEL_INDEX` says where each lives), so
listing models and ``sigformer --help`` do not import torch.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

BRAINDECODE_PREFIX = "braindecode."

# name -> (module that registers it, domain). A test checks it against the registrations.
MODEL_INDEX: dict[str, tuple[str, str]] = {
    "adafortitran": ("sigformer.models.rf.adafortitran", "rf"),
    "amr_resnet": ("sigformer.models.rf.amr_resnet", "rf"),
    "clst": ("sigformer.models.rf.clst", "rf"),
    "dbconformer": ("sigformer.models.eeg.dbconformer", "eeg"),
    "deftan2": ("sigformer.models.speech.deftan2", "speech"),
    "duin": ("sigformer.models.eeg.duin", "seeg"),
    "duin_mae": ("sigformer.models.eeg.duin", "seeg"),
    "duin_vqvae": ("sigformer.models.eeg.duin", "seeg"),
    "fortitran": ("sigformer.models.rf.adafortitran", "rf"),
    "kd_cnn": ("sigformer.models.rf.kd_cnn", "rf"),
    "kd_mobilenet": ("sigformer.models.rf.kd_mobilenet", "rf"),
    "mcldnn": ("sigformer.models.rf.mcldnn", "rf"),
    "mossformer": ("sigformer.models.speech.mossformer", "speech"),
    "ofdm_linear": ("sigformer.models.rf.ofdm_linear", "rf"),
    "tfm_classifier": ("sigformer.models.eeg.tfm_tokenizer", "eeg"),
    "tfm_encoder": ("sigformer.models.eeg.tfm_tokenizer", "eeg"),
    "tfm_tokenizer": ("sigformer.models.eeg.tfm_tokenizer", "eeg"),
    "vtcnn2": ("sigformer.models.rf.vtcnn2", "rf"),
}


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError repr-quotes its message; keep it readable
        return str(self.args[0])


class UnknownPresetError(UnknownModelError, ValueError):
    """A preset the model does not have (braindecode models have none): the one error type
    for both kinds of model. A KeyError like :class:`UnknownModelError` and a ValueError
    (what the braindecode case raised before), so existing handlers of either still work."""


@dataclass
class ModelEntry:
    name: str
    cls: type[nn.Module]
    domain: str
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, domain: str, presets: dict[str, dict] | None = None
                   ) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = ModelEntry(name, cls, domain, dict(presets or {}))
        _add_pretrained_methods(cls)
        return cls

    return decorator


def registered_name(model: nn.Module | type) -> str | None:
    """The name a model (instance or class) is registered under: the one it was created
    with, else the one its exact class was registered as; None for unregistered models."""
    recorded = getattr(model, "sigformer_config", {}).get("name")
    if recorded:
        return recorded
    cls = model if isinstance(model, type) else type(model)
    return next((e.name for e in _REGISTRY.values() if e.cls is cls), None)


def _add_pretrained_methods(cls: type) -> None:
    """Give registered classes the hub-style methods (``Model.from_pretrained(...)``,
    ``model.save_pretrained(dir)``, ``model.push_to_hub(repo)``, ``model.reset_head(n)``)
    unless they define their own."""
    from . import heads

    def from_pretrained(klass, source, **kwargs):
        from ..catalogue import resolve_bundle_path
        from ..checkpoint_io import read_config

        path = resolve_bundle_path(source)
        model = create_model(read_config(path)["model"], weights=path, **kwargs)
        if not isinstance(model, klass):
            raise TypeError(f"{source} holds a {type(model).__name__}, not a {klass.__name__}")
        return model

    def save_pretrained(self, directory, **bundle_fields):
        from ..checkpoint_io import save_checkpoint

        return save_checkpoint(directory, self, bundle=bundle_fields or None)

    def push_to_hub(self, repo_id, **kwargs):
        from ..catalogue import push_model_to_hub

        return push_model_to_hub(self, repo_id, **kwargs)

    methods = {"from_pretrained": classmethod(from_pretrained),
               "save_pretrained": save_pretrained, "push_to_hub": push_to_hub,
               "reset_head": heads.reset_head}
    for attr, method in methods.items():
        existing = getattr(cls, attr, None)
        # braindecode's EEGModuleMixin.reset_head only raises NotImplementedError
        if existing is None or getattr(existing, "__qualname__", "") == \
                "EEGModuleMixin.reset_head":
            setattr(cls, attr, method)


def _import_model_module(name: str) -> None:
    """Import the module that registers ``name`` (or all of them for ``None``)."""
    if name is None:
        for module, _ in set(MODEL_INDEX.values()):
            importlib.import_module(module)
        return
    if name in MODEL_INDEX and name not in _REGISTRY:
        importlib.import_module(MODEL_INDEX[name][0])


def braindecode_model_names() -> list[str]:
    import braindecode.models as bm
    from braindecode.models.base import EEGModuleMixin

    return sorted(
        n for n in dir(bm)
        if isinstance(getattr(bm, n), type) and issubclass(getattr(bm, n), EEGModuleMixin)
        and getattr(bm, n) is not EEGModuleMixin
    )


def list_domains() -> list[str]:
    """The model domains (``eeg``, ``seeg``, ``speech``, ``rf``)."""
    return sorted({d for _, d in MODEL_INDEX.values()} | {e.domain for e in _REGISTRY.values()})


def list_models(domain: str | None = None, *, include_braindecode: bool = False) -> list[str]:
    """Registered model names (optionally of one domain, plus ``braindecode.*``); an unknown
    domain is refused, naming the known ones (an empty list would look like "no models")."""
    if domain is not None and domain not in list_domains():
        raise ValueError(f"unknown domain {domain!r}; known domains: {list_domains()}")
    domains = {n: d for n, (_, d) in MODEL_INDEX.items()}
    domains.update({n: e.domain for n, e in _REGISTRY.items()})
    names = sorted(n for n, d in domains.items() if domain in (None, d))
    if include_braindecode and domain in (None, "eeg"):
        names += [BRAINDECODE_PREFIX + n for n in braindecode_model_names()]
    return names


def list_presets(name: str) -> list[str]:
    """Preset names of a model; ``[]`` for a braindecode model (they have no sigformer
    presets), an :class:`UnknownModelError` for an unknown name."""
    if name.startswith(BRAINDECODE_PREFIX):
        get_model_class(name)  # an unknown braindecode name is still an error
        return []
    return sorted(_entry(name).presets)


def _entry(name: str) -> ModelEntry:
    _import_model_module(name)
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list_models(), n=3)
        hint = f"; did you mean {close}?" if close else ""
        if not close and name[:1].isupper():  # a braindecode class name without its prefix
            hint = (f"; braindecode models are named with a prefix: did you mean "
                    f"'{BRAINDECODE_PREFIX}{name}'?")
        raise UnknownModelError(
            f"unknown model {name!r}{hint or '.'} Known models: {list_models()} "
            f"(and 'braindecode.<Name>' for braindecode models)"
        )
    return _REGISTRY[name]


def get_model_class(name: str) -> type[nn.Module]:
    if name.startswith(BRAINDECODE_PREFIX):
        import braindecode.models as bm

        cls_name = name[len(BRAINDECODE_PREFIX):]
        cls = getattr(bm, cls_name, None)
        if not isinstance(cls, type):
            raise UnknownModelError(f"braindecode has no model {cls_name!r}"
                                    + _braindecode_hint(cls_name))
        return cls
    return _entry(name).cls


def _braindecode_hint(cls_name: str) -> str:
    """"; did you mean [...]?" for a misspelt braindecode class name, ignoring case
    (``eegnet`` -> ``EEGNet``)."""
    names = braindecode_model_names()
    by_lower = {n.lower(): n for n in names}
    same = [by_lower[cls_name.lower()]] if cls_name.lower() in by_lower else []
    close = same or [by_lower[m] for m in
                     difflib.get_close_matches(cls_name.lower(), list(by_lower), n=3)]
    return f"; did you mean {[BRAINDECODE_PREFIX + n for n in close]}?" if close else ""


def constructor_parameters(name: str) -> dict[str, Any] | None:
    """``{argument: inspect.Parameter}`` of a registered model's constructor, or None when it
    takes ``**kwargs`` (anything goes) or has no inspectable signature."""
    import inspect

    cls = get_model_class(name)
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {k: p for k, p in params.items() if k != "self"}


def resolve_kwargs(name: str, preset: str | None = None, **kwargs) -> dict[str, Any]:
    """Preset values overridden by explicit keyword arguments."""
    merged: dict[str, Any] = {}
    if preset is not None:
        if name.startswith(BRAINDECODE_PREFIX):
            raise UnknownPresetError(f"model {name!r} has no preset {preset!r}: braindecode "
                                     "models have no sigformer presets (pass the arguments)")
        presets = _entry(name).presets
        if preset not in presets:
            raise UnknownPresetError(f"model {name!r} has no preset {preset!r}; presets: "
                                     f"{sorted(presets)}")
        merged.update(presets[preset])
    merged.update(kwargs)
    return merged


# the sizes braindecode-style EEG models infer from each other (any missing one may be fatal)
SIGNAL_SIZE_ARGUMENTS = ("n_chans", "n_times", "sfreq", "n_outputs")


def create_model(name: str, preset: str | None = None, *, spec=None, weights=None,
                 strict: bool = True, **kwargs) -> nn.Module:
    """Build a model by registry name, optionally from a named preset, a signal spec and
    pretrained weights.

    >>> model = create_model("dbconformer", preset="bnci2014001")
    >>> baseline = create_model("braindecode.EEGNet", n_chans=22, n_outputs=2, n_times=1001)
    >>> model = create_model("dbconformer", spec=epochs.spec, n_outputs=2)   # doctest: +SKIP

    ``spec`` fills the constructor arguments it determines (explicit kwargs win).
    ``weights``: a pretrained catalogue name, a bundle/checkpoint folder (its recorded
    constructor arguments are used, updated by ``kwargs``; a ``preset`` must agree with
    them) or an official checkpoint file (converted). Loading is strict: any missing,
    unexpected or mismatched key is refused with the list; ``strict=False`` loads what fits
    and warns with the report. ``n_outputs`` other than the bundle's loads the pretrained
    body and gives the model a fresh head of that size (``reset_head``; timm's
    ``num_classes``), noted in ``model.pretrained_report_``.
    """
    cls = get_model_class(name)
    new_head = None
    if weights is not None:
        from .weights import bundle_model_kwargs

        recorded = bundle_model_kwargs(weights, name)
        if recorded is not None and "preset" in recorded:  # a recorded preset: expand it
            rest = {k: v for k, v in recorded.items() if k != "preset"}
            recorded = resolve_kwargs(name, recorded["preset"], **rest)
        if recorded is not None:
            if preset is not None:
                _check_preset_agrees(name, preset, recorded, weights, explicit=kwargs)
            new_head = _new_head_size(recorded, kwargs)
            if new_head is not None:  # build as trained, load, then swap the head (below)
                kwargs = {**kwargs, "n_outputs": recorded["n_outputs"]}
            kwargs = {**recorded, **kwargs}
    if spec is not None:
        kwargs = {**spec.model_kwargs(cls), **kwargs}
    merged = resolve_kwargs(name, preset, **kwargs)
    try:
        model = cls(**merged)
    except TypeError as err:
        raise TypeError(f"cannot build {name!r} with {sorted(merged)}: {err}"
                        f"{_argument_hint(name, merged)}") from err
    except ValueError as err:
        if "could not be inferred" not in str(err):
            raise
        # braindecode's signal-size inference: say which sizes are missing and how to give them
        missing = [k for k in SIGNAL_SIZE_ARGUMENTS if merged.get(k) is None]
        given = f" (preset {preset!r} sets none of them)" if preset else ""
        sizes = ", ".join(missing) + given if missing else "the sizes it names"
        raise ValueError(f"cannot build {name!r}: the input size is not known: {err} Give "
                         f"{sizes}, or spec= from the data (e.g. "
                         f"create_model({name!r}, spec=epochs.spec, n_outputs=2))") from err
    # Remember how it was built, so checkpoints can rebuild it without pickle.
    model.sigformer_config = {"name": name, "kwargs": merged}
    if weights is not None:
        from .weights import load_weights

        model.pretrained_report_ = load_weights(model, weights, strict=strict, name=name)
        if new_head is not None:
            _swap_head(model, new_head, weights)
    return model


def _new_head_size(recorded: dict[str, Any], kwargs: dict[str, Any]) -> int | None:
    """``n_outputs`` asked beside weights trained with another number of outputs (timm's
    ``num_classes`` convention: the pretrained body with a fresh head of that size)."""
    wanted, trained = kwargs.get("n_outputs"), recorded.get("n_outputs")
    if wanted is None or trained is None or wanted == trained:
        return None
    return wanted


def _swap_head(model: nn.Module, n_outputs: int, weights) -> None:
    from ..checkpoint_io import CheckpointError
    from .heads import reset_head

    trained = model.sigformer_config["kwargs"]["n_outputs"]
    try:
        reset_head(model, n_outputs)
    except ValueError as err:
        raise CheckpointError(f"{weights} was trained with n_outputs={trained} and this model's "
                              f"head cannot be swapped for {n_outputs}: {err}") from err
    note = f"head re-initialised: {trained} -> {n_outputs} outputs (train it before use)"
    model.pretrained_report_.notes.append(note)
    import warnings  # a random head beside pretrained weights must not pass unnoticed

    warnings.warn(f"{weights}: {note}", UserWarning, stacklevel=3)


def _argument_hint(name: str, kwargs: dict[str, Any]) -> str:
    """"; did you mean ...?" for arguments the constructor does not take (``n_chan``)."""
    params = constructor_parameters(name)
    if params is None:
        return ""
    hints = [f"{close[0]!r} for {k!r}" for k in kwargs if k not in params
             for close in [difflib.get_close_matches(k, list(params), n=1)] if close]
    return f"; did you mean {', '.join(hints)}?" if hints else ""


def _check_preset_agrees(name: str, preset: str, recorded: dict[str, Any], weights,
                         explicit: dict[str, Any]) -> None:
    """Refuse a preset that asks for another architecture than the weights were built with:
    merging the two would build a model of neither (e.g. two-stage ``depths`` beside
    three-stage ``dims``). Keys given explicitly win over both and are not compared."""
    import inspect
    import json

    from ..checkpoint_io import CheckpointError

    def plain(value: Any) -> Any:  # tuples and lists compare equal after a round trip
        return json.loads(json.dumps(value, default=str))

    wanted = resolve_kwargs(name, preset)
    defaults = {k: p.default for k, p in (constructor_parameters(name) or {}).items()
                if p.default is not inspect.Parameter.empty}
    built = {**defaults, **recorded}
    conflicts = sorted(k for k, v in wanted.items()
                       if k not in explicit and (k not in built or plain(built[k]) != plain(v)))
    if conflicts:  # a CheckpointError (a ValueError): one line from the CLI
        raise CheckpointError(
            f"preset {preset!r} of {name!r} does not match the weights {str(weights)!r}: it "
            f"sets {plain(wanted)}, the weights were built with {plain(recorded)} (they differ "
            f"on {conflicts}); leave out the preset (the weights' recorded arguments are used) "
            f"or pass weights of a {preset!r} model")
