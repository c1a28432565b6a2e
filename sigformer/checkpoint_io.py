"""The one checkpoint format, on disk: a folder with ``model.safetensors`` and ``config.json``.

This module writes, reads and verifies the files and knows nothing about models;
:mod:`sigformer.checkpoint` rebuilds models from them.

``config.json`` names the registered model and its constructor arguments and, for an
*inference bundle* (:mod:`sigformer.bundle`), the input :class:`~sigformer.spec.SignalSpec`,
the stage chain, the head kind and label names, units and training provenance. Nothing is
unpickled. Guarantees:

* **atomic**: the folder is written beside its final path and published in one step
  (:func:`sigformer.atomic.publish_directory`): a kill at any instant leaves the previous
  complete checkpoint or the new one, never a mix;
* **verified**: the SHA-256 of every weight file is in the config and checked on load;
  the config is validated field by field (an unknown, mistyped or malformed field is a
  :class:`CheckpointError` naming it); tensor shapes are read from the safetensors header and
  compared with a model built on the ``meta`` device *before* any memory is allocated, so
  a config asking for a billion channels is refused instead of allocating 160 GB;
* **strict**: missing, unexpected and shape-mismatched keys are listed and refused.

Format 1 folders (earlier sigformer releases, no checksums) still load, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors.torch import save_file
from torch import nn

from .atomic import (
    atomic_write_bytes,
    check_replaceable,
    discard_stale_staging,
    published,
    recover_directory,
)
from .channels import ChannelSet

FORMAT_VERSION = 2
WEIGHTS_FILE, CONFIG_FILE, CARD_FILE = "model.safetensors", "config.json", "MODEL_CARD.md"
TASKS = ("classify", "tokenize", "separate", "enhance", "estimate_channel")

__all__ = [
    "CARD_FILE", "CONFIG_FILE", "CheckpointError", "FORMAT_VERSION", "WEIGHTS_FILE",
    "atomic_write_bytes", "kwargs_from_json", "kwargs_to_json", "read_config",
    "read_safetensors_header", "save_checkpoint", "shape_report", "state_dict_tensors",
    "user_path", "verify_files",
]


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, corrupt or does not match its config."""


# --- config schema ------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileRecord(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class HeadConfig(_Strict):
    kind: Literal["classify", "tokenize", "separate", "enhance", "estimate_channel",
                  "features"]
    labels: list[str] | None = None


class BundleConfig(_Strict):
    """The schema of ``config.json`` (format 2)."""

    format: Literal["sigformer-bundle"] = "sigformer-bundle"
    format_version: int = Field(ge=1)
    model: str = Field(min_length=1)
    kwargs: dict[str, Any]
    task: Literal["classify", "tokenize", "separate", "enhance", "estimate_channel"] | None = None
    input_spec: dict[str, Any] | None = None
    chain: list[dict[str, Any]] = Field(default_factory=list)
    model_spec: dict[str, Any] | None = None
    input_scale: float = Field(1.0, gt=0)
    head: HeadConfig | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileRecord] = Field(default_factory=dict)
    sigformer_version: str | None = None


# --- JSON helpers -------------------------------------------------------------------------

def kwargs_to_json(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = dict(kwargs)
    if out.get("chs_info") is not None:  # MNE channel dicts hold numpy arrays
        out["chs_info"] = {"__channelset__": ChannelSet.from_chs_info(out["chs_info"]).to_dict()}
    for key, value in out.items():
        if isinstance(value, (np.integer, np.floating)):
            out[key] = value.item()
        elif isinstance(value, tuple):
            out[key] = list(value)
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


def _to_json(obj):
    """numpy values in metadata (e.g. channel positions in estimator parameters)."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable: checkpoint metadata must "
                    f"be plain values")


def state_dict_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share memory (tied or parametrized weights)
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def user_path(path: str | os.PathLike) -> Path:
    """A path the user typed, with ``~`` expanded (``Path`` alone would look for a folder
    literally named ``~`` in the working directory)."""
    return Path(path).expanduser()


# --- saving -------------------------------------------------------------------------------

def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, name: str | None = None,
                    kwargs: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                    bundle: dict[str, Any] | None = None, card: str | None = None,
                    extra_files: dict[str, bytes] | None = None) -> Path:
    """Write ``model`` to the checkpoint folder ``path`` (atomically, with checksums).

    ``name``/``kwargs`` default to what :func:`~sigformer.models.create_model` recorded.
    ``bundle`` adds the inference-bundle fields (``task``, ``input_spec``, ``chain``,
    ``model_spec``, ``input_scale``, ``head``, ``provenance``); ``card`` is written as
    ``MODEL_CARD.md``; ``extra_files`` are more files to publish with the folder.
    """
    built = getattr(model, "sigformer_config", None) or {}
    name = name or built.get("name")
    if name is None:
        raise CheckpointError("unknown model name: build the model with create_model() or pass "
                              "name= and kwargs=")
    from . import __version__

    config: dict[str, Any] = {
        "format": "sigformer-bundle", "format_version": FORMAT_VERSION, "model": name,
        "kwargs": kwargs_to_json(kwargs if kwargs is not None else built.get("kwargs", {})),
        "extra": extra or {}, "sigformer_version": __version__,
    }
    config.update(bundle or {})
    final = user_path(path)
    discard_stale_staging(final)
    recover_directory(final)
    check_replaceable(final)
    with published(final) as staging:
        save_file(state_dict_tensors(model), str(staging / WEIGHTS_FILE),
                  metadata={"model": name})
        files = {WEIGHTS_FILE: staging / WEIGHTS_FILE}
        for fname, data in (extra_files or {}).items():
            (staging / plain_file_name(fname, final)).write_bytes(data)
            files[fname] = staging / fname
        config["files"] = {f: {"sha256": sha256_of(p), "bytes": p.stat().st_size}
                           for f, p in files.items()}
        config = json.loads(json.dumps(config, default=_to_json))
        try:
            BundleConfig.model_validate(config)
        except ValidationError as err:
            raise CheckpointError(_describe(err, "the bundle to save")) from None
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=_to_json))
        if card:
            (staging / CARD_FILE).write_text(card)
        for p in staging.iterdir():
            os.chmod(p, 0o644)
    return final


# --- reading ------------------------------------------------------------------------------

def _describe(err: ValidationError, source: str) -> str:
    lines = [f"{source} is not a valid sigformer checkpoint config:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {loc}: {e['msg']} (got {e.get('input')!r})"[:300])
    return "\n".join(lines)


_FORMAT_1_FIELDS = frozenset({"format_version", "model", "kwargs", "extra", "sigformer_version"})


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The validated ``config.json`` of a checkpoint folder (as a dict)."""
    directory = user_path(path)
    recover_directory(directory)
    cfg_path = directory / CONFIG_FILE
    if not directory.exists():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is a file, not a checkpoint folder (a folder with "
                              f"{CONFIG_FILE} and {WEIGHTS_FILE})")
    if not cfg_path.is_file():
        raise CheckpointError(f"{directory} is not a sigformer checkpoint: {CONFIG_FILE} missing")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_path} must hold a JSON object, got {type(config).__name__}")
    for key in ("model", "kwargs", "format_version"):
        if key not in config:
            raise CheckpointError(f"{cfg_path} lacks the required key {key!r}")
    version = config["format_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{cfg_path}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path} has format {version}; this sigformer reads up to "
                              f"{FORMAT_VERSION}: upgrade sigformer")
    if version == 1:  # earlier releases: model, kwargs, extra, sigformer_version only
        later = sorted(set(config) - _FORMAT_1_FIELDS)
        if later:  # format 1 has no checksums: lowering the version must not skip them
            raise CheckpointError(f"{cfg_path} says format_version 1 but holds the format-2 "
                                  f"fields {later}, which no format-1 checkpoint has (an "
                                  f"edited config?); re-save the model from its source")
        config = {**config, "format": "sigformer-bundle"}
    try:
        BundleConfig.model_validate(config)
    except ValidationError as err:
        raise CheckpointError(_describe(err, str(cfg_path))) from None
    return config


def verify_files(path: str | os.PathLike, config: dict[str, Any]) -> None:
    """Check every file the config lists against its size and SHA-256."""
    directory = user_path(path)
    files = config.get("files") or {}
    if not files and config["format_version"] >= 2:
        raise CheckpointError(f"{directory / CONFIG_FILE} lists no checksums, which every "
                              f"format-{config['format_version']} bundle records: its weights "
                              f"cannot be verified (edited config?); re-save the model")
    if not files:
        warnings.warn(f"{directory} has no checksums (a format-{config['format_version']} "
                      f"checkpoint): its weights cannot be verified; re-save it to add them",
                      stacklevel=3)
    elif WEIGHTS_FILE not in files:
        raise CheckpointError(f"{directory / CONFIG_FILE} lists checksums but none for "
                              f"{WEIGHTS_FILE}: the weights cannot be verified (edited config?)")
    for fname, record in files.items():
        file = directory / plain_file_name(fname, directory)
        if not file.is_file():
            raise CheckpointError(f"{file} is missing (listed in {CONFIG_FILE})")
        size = file.stat().st_size
        if size != record["bytes"]:
            raise CheckpointError(f"{file} is truncated or corrupt: {size} bytes, the config "
                                  f"records {record['bytes']}")
        if sha256_of(file) != record["sha256"]:
            raise CheckpointError(f"{file} is corrupt: its SHA-256 does not match the one "
                                  f"recorded in {CONFIG_FILE} (the bytes changed after saving)")


def plain_file_name(fname: str, directory: Path) -> str:
    """A bundle's file names are plain names inside its folder (no ``..``, no absolute path,
    no subfolder): a listed ``../../etc/x`` must not be read, nor written on save."""
    if not isinstance(fname, str) or fname in ("", ".", "..") or Path(fname).name != fname \
            or "\\" in fname:
        raise CheckpointError(f"{directory}: file name {fname!r} is not a plain file name "
                              f"inside the bundle folder")
    return fname


# config.json's own integrity: the SHA-256 of the canonical config (every field but the
# ``files`` checksums and this entry), kept in ``extra`` so that earlier sigformer releases,
# whose schema refuses unknown top-level keys, still read the bundles.
CONFIG_DIGEST_KEY = "config_sha256"


def config_digest(config: dict[str, Any]) -> str:
    """SHA-256 of a bundle config in canonical JSON (sorted keys, no whitespace), without
    its ``files`` checksums (the weights have their own) and without the digest itself."""
    canonical = {k: v for k, v in config.items() if k != "files"}
    canonical["extra"] = {k: v for k, v in (config.get("extra") or {}).items()
                          if k != CONFIG_DIGEST_KEY}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def verify_config_digest(config: dict[str, Any], path) -> None:
    """Refuse a config.json edited after it was saved (a changed label, rate or chain would
    otherwise run silently wrong). Bundles saved before the digest existed have none and
    pass."""
    recorded = (config.get("extra") or {}).get(CONFIG_DIGEST_KEY)
    if recorded is None:
        return
    if recorded != config_digest(config):
        raise CheckpointError(
            f"{user_path(path) / CONFIG_FILE} was changed after it was saved: its content no "
            f"longer matches the SHA-256 recorded in extra.{CONFIG_DIGEST_KEY}. Restore the "
            f"original file; if the edit is intended, record it with "
            f"sigformer.bundle.stamp_config({str(path)!r})")


def read_safetensors_header(path: str | os.PathLike) -> dict[str, tuple[str, list[int]]]:
    """``{key: (dtype, shape)}`` from a safetensors header, without reading the tensors."""
    path = user_path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise CheckpointError(f"{path} is truncated or corrupt: no safetensors header")
            (length,) = struct.unpack("<Q", raw)
            if length > min(path.stat().st_size, 100 << 20):
                raise CheckpointError(f"{path} is truncated or corrupt: header length {length}")
            header = json.loads(fh.read(length))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is truncated or corrupt: {err}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is corrupt: its safetensors header is not a JSON object")
    entries = {}
    for key, value in header.items():
        if key == "__metadata__":
            continue
        if not (isinstance(value, dict) and isinstance(value.get("dtype"), str)
                and isinstance(value.get("shape"), list)
                and all(isinstance(n, int) and n >= 0 for n in value["shape"])):
            raise CheckpointError(f"{path} is corrupt: header entry {key!r} is not "
                                  f"{{dtype, shape, data_offsets}}")
        entries[key] = (value["dtype"], list(value["shape"]))
    return entries


def shape_report(expected: dict[str, list[int]], found: dict[str, list[int]]) -> list[str]:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    lines = []
    if missing:
        lines.append(f"{len(missing)} missing key(s): {missing[:8]}"
                     + (" ..." if len(missing) > 8 else ""))
    if unexpected:
        lines.append(f"{len(unexpected)} unexpected key(s): {unexpected[:8]}"
                     + (" ..." if len(unexpected) > 8 else ""))
    if mismatched:
        lines.append(f"{len(mismatched)} shape mismatch(es): " + ", ".join(
            f"{k}: model {expected[k]} vs file {found[k]}" for k in mismatched[:8]))
    return lines
