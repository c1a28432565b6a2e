"""Checkpoints and bundles on disk -> models: :func:`load_checkpoint` rebuilds a registered
model from a checkpoint folder and loads its verified weights; the file format itself
(writing, checksums, schema, safetensors headers) is :mod:`sigformer.checkpoint_io`, whose
names are re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from .checkpoint_io import (  # noqa: F401 - the public checkpoint API lives here too
    CARD_FILE,
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    CheckpointError,
    atomic_write_bytes,
    kwargs_from_json,
    kwargs_to_json,
    read_config,
    read_safetensors_header,
    save_checkpoint,
    shape_report,
    state_dict_tensors,
    user_path,
    verify_config_digest,
    verify_files,
)

__all__ = ["CARD_FILE", "CONFIG_FILE", "CheckpointError", "FORMAT_VERSION", "WEIGHTS_FILE",
           "atomic_write_bytes", "kwargs_from_json", "kwargs_to_json", "load_checkpoint",
           "read_config", "read_safetensors_header", "save_checkpoint", "state_dict_tensors",
           "verify_files"]


def _meta_shapes(name: str, kwargs: dict[str, Any]) -> dict[str, list[int]] | None:
    """State-dict shapes of the model the config describes, built on the meta device (no
    memory); None when the model cannot be built there."""
    from .models import create_model

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
    from .models.registry import UnknownModelError, constructor_parameters

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


def load_checkpoint(path: str | os.PathLike, *, map_location: str = "cpu", verify: bool = True,
                    verify_config: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from its config and load its weights. Returns ``(model, config)``.
    ``verify``: the weights' checksums and (``verify_config``) config.json's own digest,
    when it has one (``Bundle.load`` checks the digest itself, after its field checks)."""
    from .models import create_model

    path = user_path(path)  # "~/runs/x" as typed
    config = read_config(path)
    kwargs = checked_model_kwargs(path, config, verify=verify)
    weights = Path(path) / WEIGHTS_FILE
    try:
        state = load_file(weights, device=map_location)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights} is truncated or corrupt: {err}") from None
    try:
        model = create_model(config["model"], **kwargs)
    except (TypeError, ValueError) as err:
        reason = str(err) if len(str(err)) < 300 else str(err)[:300] + " ..."
        raise CheckpointError(f"{Path(path) / CONFIG_FILE}: cannot build model "
                              f"{config['model']!r} from its kwargs: {reason}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"weights in {weights} do not fit model {config['model']!r} built "
                              f"from {Path(path) / CONFIG_FILE}: {err}") from None
    model.eval()
    if verify and verify_config:
        verify_config_digest(config, path)
    return model, config
