"""Checkpoints and bundles on disk -> models: :func:`load_checkpoint` rebuilds a registered
model from a checkpoint folder and loads its verified weights; the file format itself
(writing, checksums, schema, safetensors headers) is :mod:`sigformer.checkpoint_io`, whose
names are re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
from .models.weights import (  # noqa: F401 - checks shared with create_model(weights=)
    LOADING_ARGUMENTS,
    check_model_kwargs,
    checked_model_kwargs,
)

__all__ = ["CARD_FILE", "CONFIG_FILE", "CheckpointError", "FORMAT_VERSION", "WEIGHTS_FILE",
           "atomic_write_bytes", "kwargs_from_json", "kwargs_to_json", "load_checkpoint",
           "read_config", "read_safetensors_header", "save_checkpoint", "state_dict_tensors",
           "verify_files"]


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
