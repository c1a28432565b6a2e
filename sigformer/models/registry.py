"""Model registry: ``create_model(name, **kwargs)`` and ``list_models()`` (timm-style).

sigformer models register themselves with a domain and named presets. Every braindecode model
is reachable as ``"braindecode.<ClassName>"`` (e.g. ``"braindecode.EEGNet"``), so any pipeline,
estimator or benchmark can swap in a braindecode baseline by name.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

BRAINDECODE_PREFIX = "braindecode."


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError repr-quotes its message; keep it readable
        return str(self.args[0])


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
        return cls

    return decorator


def _braindecode_models() -> list[str]:
    import braindecode.models as bm
    from braindecode.models.base import EEGModuleMixin

    return sorted(
        n for n in dir(bm)
        if isinstance(getattr(bm, n), type) and issubclass(getattr(bm, n), EEGModuleMixin)
        and getattr(bm, n) is not EEGModuleMixin
    )


def list_models(domain: str | None = None, *, include_braindecode: bool = False) -> list[str]:
    """Registered model names (optionally of one domain, plus ``braindecode.*``)."""
    names = sorted(n for n, e in _REGISTRY.items() if domain in (None, e.domain))
    if include_braindecode and domain in (None, "eeg"):
        names += [BRAINDECODE_PREFIX + n for n in _braindecode_models()]
    return names


def list_presets(name: str) -> list[str]:
    return sorted(_entry(name).presets)


def _entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {close}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}{hint} Known models: {list_models()} "
            f"(and 'braindecode.<Name>' for braindecode models)"
        )
    return _REGISTRY[name]


def get_model_class(name: str) -> type[nn.Module]:
    if name.startswith(BRAINDECODE_PREFIX):
        import braindecode.models as bm

        cls_name = name[len(BRAINDECODE_PREFIX):]
        cls = getattr(bm, cls_name, None)
        if not isinstance(cls, type):
            close = difflib.get_close_matches(cls_name, _braindecode_models(), n=3)
            raise UnknownModelError(f"braindecode has no model {cls_name!r}"
                                    + (f"; did you mean {close}?" if close else ""))
        return cls
    return _entry(name).cls


def resolve_kwargs(name: str, preset: str | None = None, **kwargs) -> dict[str, Any]:
    """Preset values overridden by explicit keyword arguments."""
    merged: dict[str, Any] = {}
    if preset is not None:
        if name.startswith(BRAINDECODE_PREFIX):
            raise ValueError("braindecode models have no sigformer presets")
        presets = _entry(name).presets
        if preset not in presets:
            raise UnknownModelError(f"model {name!r} has no preset {preset!r}; presets: "
                                    f"{sorted(presets)}")
        merged.update(presets[preset])
    merged.update(kwargs)
    return merged


def create_model(name: str, preset: str | None = None, **kwargs) -> nn.Module:
    """Build a model by registry name, optionally from a named preset.

    >>> model = create_model("dbconformer", preset="bnci2014001")
    >>> baseline = create_model("braindecode.EEGNet", n_chans=22, n_outputs=2, n_times=1001)
    """
    cls = get_model_class(name)
    merged = resolve_kwargs(name, preset, **kwargs)
    try:
        model = cls(**merged)
    except TypeError as err:
        raise TypeError(f"cannot build {name!r} with {sorted(merged)}: {err}") from err
    # Remember how it was built, so checkpoints can rebuild it without pickle.
    model.sigformer_config = {"name": name, "kwargs": merged}
    return model
