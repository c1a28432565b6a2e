"""Pretrained weights: sigformer's own catalogue, bundles, official checkpoints, the HF hub.

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
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import CONFIG_FILE, CheckpointError, read_config

CATALOGUE_DIR = Path(__file__).parent / "catalogue"
OFFICIAL_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


class PretrainedLoadWarning(UserWarning):
    """Weights were loaded with ``strict=False`` and some did not fit."""


# --- the catalogue ------------------------------------------------------------------------

def list_pretrained(model: str | None = None) -> list[dict[str, Any]]:
    """The catalogue: name, model, task, size and headline results of each shipped bundle."""
    entries = []
    if not CATALOGUE_DIR.is_dir():
        return entries
    for folder in sorted(p for p in CATALOGUE_DIR.iterdir() if (p / CONFIG_FILE).is_file()):
        config = json.loads((folder / CONFIG_FILE).read_text())
        if model is not None and config["model"] != model:
            continue
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        prov = config.get("provenance", {})
        entries.append({"name": folder.name, "model": config["model"],
                        "task": config.get("task"), "bytes": size,
                        "summary": prov.get("summary", ""), "path": str(folder)})
    return entries


def resolve_bundle_path(source: str | os.PathLike) -> Path:
    """A local folder for ``source``: an existing folder, a catalogue name, or (online, with
    huggingface_hub) a hub repository id."""
    path = Path(source)
    if path.is_dir():
        return path
    name = str(source)
    if (CATALOGUE_DIR / name / CONFIG_FILE).is_file():
        return CATALOGUE_DIR / name
    if path.exists():
        raise CheckpointError(f"{path} is a file, not a bundle folder; official checkpoint "
                              f"files load with create_model(name, weights={str(path)!r})")
    if _looks_like_hub_id(name):
        return _download_from_hub(name)
    known = [e["name"] for e in list_pretrained()]
    raise CheckpointError(f"{name!r} is neither a bundle folder nor a pretrained name; "
                          f"pretrained: {known or 'none installed'} "
                          f"(`sigformer models --pretrained` lists them)")


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def _download_from_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(f"{repo_id!r} is not a local folder or pretrained name; to fetch "
                              f"it from the Hugging Face hub install huggingface_hub "
                              f"(pip install 'sigformer[hub]')") from None
    return Path(snapshot_download(repo_id))


# --- loading weights into a model ---------------------------------------------------------

def load_state_dict_verified(model: nn.Module, state: dict[str, torch.Tensor], *,
                             strict: bool = True, name: str = "model"):
    """Load ``state`` into ``model``; returns a :class:`~sigformer.models.convert.LoadReport`.
    With ``strict`` any missing, unexpected or shape-mismatched key is an error listing them;
    otherwise what fits is loaded and a :class:`PretrainedLoadWarning` prints the report."""
    from .models.convert import LoadReport

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
    from .checkpoint import kwargs_from_json

    config = read_config(resolve_bundle_path(weights))
    if config["model"] != name:
        raise CheckpointError(f"{weights} holds a {config['model']!r} model, not {name!r}")
    return kwargs_from_json(config["kwargs"])


def load_weights(model: nn.Module, weights: str | os.PathLike, *, strict: bool = True,
                 name: str | None = None):
    """Load a bundle, catalogue entry or official checkpoint into a built model."""
    name = name or getattr(model, "sigformer_config", {}).get("name", type(model).__name__)
    if is_official_checkpoint(weights):
        from .models.convert import load_official

        return load_official(model, weights, name, strict=strict)
    from safetensors.torch import load_file

    from .checkpoint import WEIGHTS_FILE, verify_files

    path = resolve_bundle_path(weights)
    verify_files(path, read_config(path))
    return load_state_dict_verified(model, load_file(str(path / WEIGHTS_FILE)), strict=strict,
                                    name=name)


# --- the HF hub convention ----------------------------------------------------------------

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
    from .checkpoint import save_checkpoint

    return save_checkpoint(directory, model, bundle=bundle_fields or None)


def push_to_hub(model_or_folder, repo_id: str, *, private: bool = False,
                commit_message: str = "Upload sigformer bundle") -> str:
    """Upload a bundle folder (or a model, saved first) to the Hugging Face hub."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ImportError("push_to_hub needs huggingface_hub: pip install 'sigformer[hub]'"
                          ) from None
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(model_or_folder) if isinstance(model_or_folder, (str, os.PathLike)) \
            else save_pretrained(model_or_folder, Path(tmp) / "bundle")
        read_config(folder)  # refuse to upload something that is not a valid bundle
        api = HfApi()
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id,
                                 commit_message=commit_message)
    return str(info)
