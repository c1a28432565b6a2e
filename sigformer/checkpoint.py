"""Checkpoints: weights as safetensors + a JSON config; loading never unpickles.

A checkpoint is a directory holding ``model.safetensors`` (the state dict) and ``config.json``
(registry name, constructor keyword arguments, sigformer version, and any extra metadata such
as class names, channel set or preprocessing). Files are written to a temporary name and moved
into place, so an interrupted save never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .channels import ChannelSet

FORMAT_VERSION = 1
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, corrupt or does not match its config."""


def kwargs_to_json(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = dict(kwargs)
    if out.get("chs_info") is not None:  # MNE channel dicts hold numpy arrays
        out["chs_info"] = {"__channelset__": ChannelSet.from_chs_info(out["chs_info"]).to_dict()}
    for key, value in out.items():
        if isinstance(value, (np.integer, np.floating)):
            out[key] = value.item()
    try:
        json.dumps(out)
    except TypeError as err:
        raise CheckpointError(f"model arguments must be JSON-serialisable to checkpoint: {err}"
                              ) from None
    return out


def kwargs_from_json(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = dict(kwargs)
    chs = out.get("chs_info")
    if isinstance(chs, dict) and "__channelset__" in chs:
        out["chs_info"] = ChannelSet.from_dict(chs["__channelset__"]).to_chs_info()
    return out


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def state_dict_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share memory (tied or parametrized weights)
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, name: str | None = None,
                    kwargs: dict[str, Any] | None = None, extra: dict[str, Any] | None = None
                    ) -> Path:
    """Write ``model`` to the checkpoint directory ``path``.

    ``name``/``kwargs`` default to what :func:`~sigformer.models.create_model` recorded.
    """
    built = getattr(model, "sigformer_config", None) or {}
    name = name or built.get("name")
    if name is None:
        raise CheckpointError("unknown model name: build the model with create_model() or pass "
                              "name= and kwargs=")
    config = {
        "format_version": FORMAT_VERSION,
        "model": name,
        "kwargs": kwargs_to_json(kwargs if kwargs is not None else built.get("kwargs", {})),
        "extra": extra or {},
    }
    from . import __version__

    config["sigformer_version"] = __version__
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".weights.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state_dict_tensors(model), tmp, metadata={"model": name})
        os.replace(tmp, directory / WEIGHTS_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # config last: a directory with a config always has complete weights beside it
    atomic_write_bytes(directory / CONFIG_FILE, json.dumps(config, indent=2).encode())
    return directory


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    directory = Path(path)
    cfg_path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    if not cfg_path.is_file():
        raise CheckpointError(f"{directory} is not a sigformer checkpoint: {CONFIG_FILE} missing")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({err})") from None
    for key in ("model", "kwargs", "format_version"):
        if key not in config:
            raise CheckpointError(f"{cfg_path} lacks the required key {key!r}")
    if config["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path} has format {config['format_version']}; this "
                              f"sigformer reads up to {FORMAT_VERSION}: upgrade sigformer")
    return config


def load_checkpoint(path: str | os.PathLike, *, map_location: str = "cpu"
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from its config and load its weights. Returns ``(model, config)``."""
    from .models import create_model

    config = read_config(path)
    weights = Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing")
    try:
        state = load_file(weights, device=map_location)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights} is truncated or corrupt: {err}") from None
    model = create_model(config["model"], **kwargs_from_json(config["kwargs"]))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"weights in {weights} do not fit model {config['model']!r} built "
                              f"from {Path(path) / CONFIG_FILE}: {err}") from None
    model.eval()
    return model, config
