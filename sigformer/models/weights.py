"""Loading weights into a built model: sigformer bundles and catalogue entries (verified
checksums) or official checkpoints (converted by :mod:`sigformer.models.convert`). Strict by
default: missing, unexpected and shape-mismatched keys are listed and refused."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..catalogue import resolve_bundle_path
from ..checkpoint_io import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    kwargs_from_json,
    read_config,
    read_safetensors_header,
    shape_report,
    verify_files,
)

OFFICIAL_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


class PretrainedLoadWarning(UserWarning):
    """Weights were loaded with ``strict=False`` and some did not fit."""


def load_state_dict_verified(model: nn.Module, state: dict[str, torch.Tensor], *,
                             strict: bool = True, name: str = "model"):
    """Load ``state`` into ``model``; returns a :class:`~sigformer.models.convert.LoadReport`.
    With ``strict`` any missing, unexpected or shape-mismatched key is an error listing them;
    otherwise what fits is loaded and a :class:`PretrainedLoadWarning` prints the report."""
    from .convert import LoadReport

    own = model.state_dict()
    report = LoadReport(name)
    report.missing = sorted(set(own) - set(state))
    report.unexpected = sorted(set(state) - set(own))
    report.shape_mismatched = sorted(
        f"{k}: model {tuple(own[k].shape)} vs weights {tuple(state[k].shape)}"
        for k in set(own) & set(state) if own[k].shape != state[k].shape)
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    report.loaded = sorted(fitting)
    if strict and not report.ok:
        raise CheckpointError(f"weights do not fit {name} (nothing was loaded; pass "
                              f"strict=False to load what fits):\n{report}")
    if not fitting:
        raise CheckpointError(f"none of the {len(state)} weights fit {name}: wrong model or "
                              f"configuration?\n{report}")
    model.load_state_dict(fitting, strict=False)
    if not report.ok:
        warnings.warn(f"partial load (strict=False):\n{report}", PretrainedLoadWarning,
                      stacklevel=3)
    return report


def is_official_checkpoint(weights: str | os.PathLike) -> bool:
    path = Path(weights)
    if path.is_file():
        return path.suffix in OFFICIAL_SUFFIXES
    return path.is_dir() and not (path / CONFIG_FILE).is_file() and any(
        (path / f).is_file() for f in ("encoder.bin", "masknet.bin"))


def bundle_model_kwargs(weights: str | os.PathLike, name: str) -> dict[str, Any] | None:
    """The constructor arguments recorded in a sigformer bundle (None for official files)."""
    if is_official_checkpoint(weights):
        return None
    from ..checkpoint_io import verify_config_digest

    path = resolve_bundle_path(weights)
    config = read_config(path)
    if config["model"] != name:
        raise CheckpointError(f"{weights} holds a {config['model']!r} model, not {name!r}")
    # the checks load_checkpoint makes, before the caller builds anything from the kwargs
    kwargs = checked_model_kwargs(path, config)
    verify_config_digest(config, path)
    return kwargs


def load_weights(model: nn.Module, weights: str | os.PathLike, *, strict: bool = True,
                 name: str | None = None):
    """Load a bundle, catalogue entry or official checkpoint into a built model."""
    name = name or getattr(model, "sigformer_config", {}).get("name", type(model).__name__)
    if is_official_checkpoint(weights):
        from .convert import load_official

        return load_official(model, weights, name, strict=strict)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = resolve_bundle_path(weights)
    verify_files(path, read_config(path))
    try:
        state = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path / WEIGHTS_FILE} is truncated or corrupt: {err}") from None
    return load_state_dict_verified(model, state, strict=strict, name=name)


# --- checks before a model is built from a bundle's config (load_checkpoint and
# create_model(weights=) both make them) ----------------------------------------------------

def _meta_shapes(name: str, kwargs: dict[str, Any]) -> dict[str, list[int]] | None:
    """State-dict shapes of the model the config describes, built on the meta device (no
    memory); None when the model cannot be built there."""
    from . import create_model

    try:
        with torch.device("meta"):
            model = create_model(name, **kwargs)
    except Exception:  # noqa: BLE001 - some constructors compute on real tensors
        return None
    return {k: list(v.shape) for k, v in model.state_dict().items()}


# create_model's arguments that load or fetch weights: never taken from a bundle's config
LOADING_ARGUMENTS = ("weights", "strict", "spec")


def check_model_kwargs(config: dict[str, Any], where: Path) -> None:
    """The config's model is registered and its kwargs are arguments of that model, with
    the type of their defaults (a CheckpointError names the field otherwise)."""
    from .registry import UnknownModelError, constructor_parameters

    try:
        params = constructor_parameters(config["model"])
    except UnknownModelError as err:
        raise CheckpointError(f"{where}: model: {err}") from None
    if params is None:
        return
    for key, value in config["kwargs"].items():
        if key in LOADING_ARGUMENTS:
            raise CheckpointError(f"{where}: kwargs.{key}: a bundle records constructor "
                                  f"arguments only; {key!r} is create_model's own (it would "
                                  f"make loading this bundle load or fetch something else)")
        if key == "preset":  # create_model's own, and only a name of the model's presets
            continue
        if key not in params:
            accepted = list(params)
            raise CheckpointError(f"{where}: kwargs.{key}: model {config['model']!r} has no "
                                  f"argument {key!r}; it takes {accepted}")
        default = params[key].default
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        if numeric and isinstance(value, str):  # (lists stay: some take int or tuple)
            raise CheckpointError(f"{where}: kwargs.{key} is {value!r}; expected "
                                  f"{type(default).__name__} (like its default {default!r})")


def checked_model_kwargs(path: Path, config: dict[str, Any], *, verify: bool = True
                         ) -> dict[str, Any]:
    """The constructor arguments of a bundle, after every check that needs no real memory:
    the kwargs are the model's own, the weights file exists (and matches its checksums when
    ``verify``), and its header's shapes are those of the model the kwargs build (on the
    meta device, so absurd sizes are refused before anything is allocated)."""
    check_model_kwargs(config, Path(path) / CONFIG_FILE)
    weights = Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing")
    if verify:
        verify_files(path, config)
    header = read_safetensors_header(weights)
    kwargs = kwargs_from_json(config["kwargs"])
    expected = _meta_shapes(config["model"], kwargs)
    if expected is not None:
        problems = shape_report(expected, {k: v[1] for k, v in header.items()})
        if problems:
            raise CheckpointError(
                f"weights in {weights} do not fit model {config['model']!r} built from "
                f"{Path(path) / CONFIG_FILE}: " + "; ".join(problems))
    return kwargs
