"""sigformer's pretrained catalogue and where bundles come from.

Shipped bundles live in ``sigformer/catalogue/<name>/`` (safetensors + JSON + model card).
:func:`resolve_bundle_path` turns a catalogue name, a folder, or (online, with
``huggingface_hub``) a hub repository id into a local folder. This module reads files only;
building models is :mod:`sigformer.models`' job.
"""

from __future__ import annotations

import difflib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .checkpoint_io import CONFIG_FILE, CheckpointError, read_config

CATALOGUE_DIR = Path(__file__).parent / "catalogue"
# the pretrained weights a model uses when it is asked for without training
DEFAULT_PRETRAINED = {"tfm_tokenizer": "tfm-tokenizer-eeg-corpus"}


def default_pretrained(model: str) -> str | None:
    """The catalogue entry a model falls back to when no training is asked for."""
    name = DEFAULT_PRETRAINED.get(model)
    return name if name and (CATALOGUE_DIR / name / CONFIG_FILE).is_file() else None


def find_pretrained(model: str, *, task: str | None = None,
                    accept: Callable[[dict[str, Any]], bool] | None = None) -> list[str]:
    """Names of the catalogue bundles of ``model`` (and ``task``) whose ``config.json``
    ``accept`` takes (e.g. the right grid and architecture); the model's default first."""
    names = []
    for entry in list_pretrained(model):
        if task is not None and entry["task"] != task:
            continue
        config = json.loads((Path(entry["path"]) / CONFIG_FILE).read_text())
        if accept is None or accept(config):
            names.append(entry["name"])
    default = DEFAULT_PRETRAINED.get(model)
    return sorted(names, key=lambda name: (name != default, name))


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
    """A local folder for ``source``: an existing folder (``~`` expanded), a catalogue name,
    or (online, with huggingface_hub) a hub repository id."""
    name = str(source)
    if not name.strip():  # Path("") is the current folder: never load that by accident
        raise CheckpointError(f"empty bundle path {name!r}: expected a bundle folder (use "
                              f"'.' for the current folder) or a pretrained name (`sigformer "
                              f"models --pretrained` lists them)")
    path = Path(source).expanduser()
    shipped = (CATALOGUE_DIR / name / CONFIG_FILE).is_file()
    # a bare name (a str, no "./") is the catalogue's; a Path object is always a path
    if shipped and path.is_dir() and name == path.name and not isinstance(source, os.PathLike):
        warnings.warn(f"{name!r} is a pretrained name and also a folder here; loading the "
                      f"shipped bundle (give ./{name} for the folder)", stacklevel=3)
        return CATALOGUE_DIR / name
    if path.is_dir():
        _check_not_run_folder(path)
        # absolute: callers resolve the result again, and Path("./x") prints (and resolves)
        # as the bare name "x", the catalogue's when it ships one
        return path.absolute()
    if shipped:
        return CATALOGUE_DIR / name
    if path.exists():
        raise CheckpointError(f"{path} is a file, not a bundle folder; official checkpoint "
                              f"files load with create_model(name, weights={str(path)!r})")
    if _looks_like_hub_id(name) and not Path(name.split("/")[0]).is_dir():
        return _download_from_hub(name)
    if len(path.parts) > 1:  # a path, not a name: say so plainly
        raise CheckpointError(f"bundle folder {name!r} does not exist ({path.absolute()}); "
                              f"expected a folder written by `sigformer run` (or a pretrained "
                              f"name: `sigformer models --pretrained` lists them)")
    known = [e["name"] for e in list_pretrained()]
    close = _close_names(name, known)
    hint = f" (did you mean {close[0]!r}?)" if len(close) == 1 else \
        f" (did you mean one of {close}?)" if close else ""
    raise CheckpointError(f"{name!r} is neither a bundle folder nor a pretrained name{hint}; "
                          f"pretrained: {known or 'none installed'} "
                          f"(`sigformer models --pretrained` lists them)")


def _close_names(name: str, known: list[str]) -> list[str]:
    """The pretrained names close to ``name``, best first; only the best when it is clearly
    closer than the next (the catalogue's names share long prefixes such as ``amr-clst-``)."""
    close = difflib.get_close_matches(name, known, n=3)
    ratio = [difflib.SequenceMatcher(None, name, c).ratio() for c in close]
    return close[:1] if len(close) > 1 and ratio[0] - ratio[1] >= 0.1 else close


def _check_not_run_folder(path: Path) -> None:
    """A run folder of `sigformer run` holds its bundle in ``model/``: name that folder
    instead of failing later with "config.json missing"."""
    if not (path / CONFIG_FILE).is_file() and (path / "model" / CONFIG_FILE).is_file():
        raise CheckpointError(f"{path} is not a bundle folder ({CONFIG_FILE} missing); did you "
                              f"mean {path / 'model'}? (`sigformer run` writes the bundle in "
                              f"the run folder's model/ subfolder)")


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
    try:
        return Path(snapshot_download(repo_id))
    except Exception as err:  # noqa: BLE001 - offline, unknown repository, no access, ...
        raise CheckpointError(f"{repo_id!r} is not a local folder (it does not exist here: "
                              f"{Path(repo_id).absolute()}) nor a pretrained name, and the "
                              f"Hugging Face hub lookup failed ({type(err).__name__}); "
                              f"expected a bundle folder, a pretrained name (`sigformer "
                              f"models --pretrained`) or a reachable hub repository"
                              ) from None


def push_folder_to_hub(folder: str | os.PathLike, repo_id: str, *, private: bool = False,
                       commit_message: str = "Upload sigformer bundle") -> str:
    """Upload a bundle folder to the Hugging Face hub (needs huggingface_hub and a token)."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ImportError("push_to_hub needs huggingface_hub: pip install 'sigformer[hub]'"
                          ) from None
    read_config(folder)  # refuse to upload something that is not a valid bundle
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    return str(api.upload_folder(folder_path=str(folder), repo_id=repo_id,
                                 commit_message=commit_message))


def push_model_to_hub(model, repo_id: str, **kwargs) -> str:
    from .checkpoint_io import save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        return push_folder_to_hub(save_checkpoint(Path(tmp) / "bundle", model), repo_id,
                                  **kwargs)
