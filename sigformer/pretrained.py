"""Pretrained weights for users: sigformer's catalogue, bundles, official checkpoints and the
Hugging Face hub convention.

``create_model(name, weights=...)`` (and :func:`from_pretrained`) accepts

* a **catalogue name** (``sigformer models --pretrained`` lists them): bundles trained by
  sigformer that ship inside the package, each with a model card;
* a **bundle or checkpoint folder** written by sigformer;
* an **official checkpoint** (``.pt``/``.pth``/``.bin``/``.ckpt``/``.safetensors``, or
  MossFormer's release folder), converted on the fly by :mod:`sigformer.models.convert`;
  PyTorch files are read with ``torch.load(weights_only=True)`` only;
* a **Hugging Face hub id** (``"org/name"``) when ``huggingface_hub`` is installed and the
  machine is online; the repository holds a sigformer bundle (:func:`push_to_hub` writes one).

Loading is strict and verified: missing, unexpected and shape-mismatched keys are listed and
refused. ``strict=False`` must be asked for; it loads what fits and warns with the report.
Registered model classes also have ``Model.from_pretrained(source)``,
``model.save_pretrained(folder)``, ``model.push_to_hub(repo)`` and ``model.reset_head(n)``.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from .catalogue import (  # noqa: F401 - public names
    CATALOGUE_DIR,
    list_pretrained,
    push_folder_to_hub,
    resolve_bundle_path,
)
from .checkpoint_io import read_config, save_checkpoint
from .models.weights import (  # noqa: F401 - public names
    PretrainedLoadWarning,
    load_state_dict_verified,
    load_weights,
)


def from_pretrained(source: str | os.PathLike, **kwargs) -> nn.Module:
    """A model from a bundle folder, catalogue name or hub id (kwargs override the recorded
    constructor arguments; loading stays strict unless ``strict=False``)."""
    from .models import create_model

    strict = kwargs.pop("strict", True)
    path = resolve_bundle_path(source)
    config = read_config(path)
    return create_model(config["model"], weights=path, strict=strict, **kwargs)


def save_pretrained(model: nn.Module, directory: str | os.PathLike, **bundle_fields) -> Path:
    """Write ``model`` as a sigformer checkpoint folder (the hub's ``save_pretrained``)."""
    return save_checkpoint(directory, model, bundle=bundle_fields or None)


def push_to_hub(model_or_folder, repo_id: str, **kwargs) -> str:
    """Upload a bundle folder (or a model, saved first) to the Hugging Face hub."""
    from .catalogue import push_model_to_hub

    if isinstance(model_or_folder, (str, os.PathLike)):
        return push_folder_to_hub(model_or_folder, repo_id, **kwargs)
    return push_model_to_hub(model_or_folder, repo_id, **kwargs)
