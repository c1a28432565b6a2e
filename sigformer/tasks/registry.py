"""The task registry, the one place CLI overrides apply, and the one report writer.

A task (``classify``, ``tokenize``, ``separate``, ``enhance``, ``estimate_channel``) owns its
config schema and its runner and registers both with :func:`register_task`; nothing else
needs to change to add one. :func:`run_task` gives every task the same outputs:

* everything is written into a staging folder beside the output folder and published in one
  step (:func:`sigformer.atomic.publish_directory`): a kill at any instant leaves the previous
  complete run or the new one;
* an :class:`~sigformer.atomic.OutputLock` stops a second run into the same folder (it
  refuses and names the first);
* ``pipeline.json`` (the resolved config) and ``metrics.json`` are written by the writer,
  plots and bundles by the task into ``ctx.dir``.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..atomic import json_default
from .config import BaseConfig, PipelineConfigError

OVERRIDES = ("max_epochs", "accelerator", "devices", "strategy", "num_nodes", "data",
             "progress", "pretrained")
OVERRIDE_FLAGS = {"max_epochs": "--max-epochs", "accelerator": "--accelerator",
                  "devices": "--devices", "strategy": "--strategy",
                  "num_nodes": "--num-nodes", "data": "--data", "progress": "--progress",
                  "pretrained": "--pretrained"}

Applier = Callable[[dict, Any], None]


@dataclass
class Task:
    """A registered task: its full config schema, its runner and its overrides."""

    name: str
    config_cls: type[BaseModel]
    run: Callable[..., dict]  # run(cfg, ctx) -> report
    overrides: dict[str, Applier] = field(default_factory=dict)
    summary: Callable[[dict], Any] = lambda report: report.get("summary", {})
    prepare_raw: Callable[[dict, str], None] | None = None  # e.g. an alias's defaults
    description: str = ""


_TASKS: dict[str, Task] = {}
_ALIASES: dict[str, str] = {}


def register_task(task: Task, *, aliases: tuple[str, ...] = ()) -> Task:
    if task.name in _TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    _TASKS[task.name] = task
    for alias in aliases:
        _ALIASES[alias] = task.name
    return task


def _load_builtin_tasks() -> None:
    from . import classify, estimate_channel, speech, tokenize  # noqa: F401 - registration


def list_tasks() -> list[str]:
    _load_builtin_tasks()
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    _load_builtin_tasks()
    name = _ALIASES.get(name, name)
    if name not in _TASKS:
        close = difflib.get_close_matches(name, [*_TASKS, *_ALIASES], n=2)
        hint = f"; did you mean {close}?" if close else ""
        raise PipelineConfigError(f"unknown task {name!r}{hint} Tasks: {sorted(_TASKS)}")
    return _TASKS[name]


# --- loading configs ----------------------------------------------------------------------

class PipelineLoader(yaml.SafeLoader):
    """YAML as a pipeline author means it: ``1e-3`` is a float (YAML 1.1 wants ``1.0e-3``;
    PyYAML read it as the string ``'1e-3'``, which then failed deep inside a model), and a
    key given twice in one mapping is an error (the first section was silently dropped)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *anchor": PyYAML merges it
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"key {key!r} appears twice (first on line {seen[key].line + 1}); the "
                    f"second would silently replace the first", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


PipelineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def read_raw_config(path_or_dict) -> tuple[dict, str]:
    if isinstance(path_or_dict, dict):
        return dict(path_or_dict), "config"
    path = Path(path_or_dict).expanduser()
    if not path.is_file():
        raise PipelineConfigError(f"pipeline file {path} does not exist")
    try:
        raw = yaml.load(path.read_text(), Loader=PipelineLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as err:
        raise PipelineConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise PipelineConfigError(f"{path} must hold a mapping of sections, got "
                                  f"{type(raw).__name__}")
    return raw, str(path)


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid pipeline {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        lines.append(f"  {loc}: {e['msg']} (got {e.get('input')!r})"[:400])
    return "\n".join(lines)


def load_task_config(path_or_dict, overrides: dict | None = None):
    """Parse and validate a pipeline (YAML path or dict) against its task's schema, after
    applying CLI overrides (``max_epochs``, ``accelerator``, ``devices``, ``strategy``,
    ``num_nodes``, ``data``) and plain section overrides (``{"train": {...}}``)."""
    raw, source = read_raw_config(path_or_dict)
    requested = str(raw.get("task", "classify"))
    task = get_task(requested)
    raw["task"] = task.name
    if task.prepare_raw is not None:
        task.prepare_raw(raw, requested)
    overrides = dict(overrides or {})
    for key in OVERRIDES:
        # a mapping under "data" is a section merge (Python API), not the CLI's --data PATH
        if key in overrides and not isinstance(overrides[key], dict):
            apply_override(task, raw, key, overrides.pop(key))
    for key, value in overrides.items():  # section merges, e.g. {"train": {"lr": 1e-4}}
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    try:
        cfg = task.config_cls.model_validate(raw)
    except ValidationError as err:
        raise PipelineConfigError(format_validation_error(err, source)) from None
    check_model_names(cfg)
    return cfg


def apply_override(task: Task, raw: dict, key: str, value) -> None:
    if value is None:
        return
    if key not in task.overrides:
        supported = [OVERRIDE_FLAGS[k] for k in OVERRIDES if k in task.overrides]
        raise PipelineConfigError(
            f"{OVERRIDE_FLAGS[key]} does not apply to task {task.name!r} (its training does not "
            f"use that setting); this task accepts {', '.join(supported) or 'no overrides'}")
    task.overrides[key](raw, value)


def set_in(raw: dict, dotted: str, value) -> None:
    """``set_in(raw, "train.max_epochs", 5)``, creating sections as needed."""
    *parents, leaf = dotted.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise PipelineConfigError(f"{'.'.join(parents)} must be a mapping to override "
                                      f"{dotted}")
    node[leaf] = value


def setter(dotted: str) -> Applier:
    return lambda raw, value: set_in(raw, dotted, value)


def check_model_params(name: str, params: dict, where: str) -> None:
    """Unknown constructor arguments in ``model.params`` get a 'did you mean'."""
    if not params:
        return
    from ..models.registry import constructor_parameters

    try:
        signature = constructor_parameters(name)
    except KeyError as err:
        raise PipelineConfigError(f"{where}.name: {err}") from None
    if signature is None:
        return
    accepted = list(signature)
    for key in params:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=2)
            hint = f"; did you mean {close}?" if close else ""
            raise PipelineConfigError(f"{where}.params: model {name!r} has no argument "
                                      f"{key!r}{hint} It takes {accepted}")


def check_model_names(cfg) -> None:
    """Model names and params of every model section of a config."""
    from ..models.registry import UnknownModelError, get_model_class

    for where, model in iter_model_sections(cfg):
        try:
            get_model_class(model.name)
        except UnknownModelError as err:
            raise PipelineConfigError(f"{where}.name: {err}") from None
        check_model_params(model.name, dict(model.params), where)
    for where, name in iter_model_names(cfg):
        try:
            get_model_class(name)
        except UnknownModelError as err:
            raise PipelineConfigError(f"{where}: {err}") from None
    check_distill_teacher(cfg)


def iter_model_names(cfg):
    """Model names of sections that give only a name (speech, enhancement)."""
    for section in ("speech", "enhance"):
        sec = getattr(cfg, section, None)
        if sec is not None and getattr(sec, "model", None):
            yield f"{section}.model", sec.model
    tokenizer = getattr(cfg, "tokenizer", None)
    if tokenizer is not None and getattr(tokenizer, "name", None):
        yield "tokenizer.name", tokenizer.name


def check_distill_teacher(cfg) -> None:
    """``amr.distill.teacher`` names one of ``amr.models`` (by name or ``name:preset``):
    checked before anything trains, not after every model has."""
    amr = getattr(cfg, "amr", None)
    if amr is None or not amr.distill.students:
        return
    labels = set()
    for m in amr.models:
        labels |= {m.name, m.name if m.preset is None else f"{m.name}:{m.preset}"}
    if amr.distill.teacher not in labels:
        close = difflib.get_close_matches(str(amr.distill.teacher), sorted(labels), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise PipelineConfigError(f"amr.distill.teacher {amr.distill.teacher!r} is not one of "
                                  f"the models amr.models trains {sorted(labels)}{hint}")


def iter_model_sections(cfg):
    model = getattr(cfg, "model", None)
    if model is not None and hasattr(model, "params") and getattr(cfg, "task", "") == "classify" \
            and getattr(cfg, "amr", None) is None:
        yield "model", model
    for section in ("amr", "ofdm"):
        sec = getattr(cfg, section, None)
        for i, m in enumerate(getattr(sec, "models", []) or []):
            yield f"{section}.models.{i}", m
    amr = getattr(cfg, "amr", None)
    for i, m in enumerate(getattr(getattr(amr, "distill", None), "students", []) or []):
        yield f"amr.distill.students.{i}", m


# --- running ------------------------------------------------------------------------------

def is_main_process() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) == 0


@dataclass
class RunContext:
    """What a runner gets: the folder to write into, a logger, the final output path."""

    dir: Path
    final_dir: Path
    log: Callable[[str], None] = print
    main: bool = True


def run_task(cfg, out_dir: str | Path | None = None, log=print) -> dict[str, Any]:
    """Run ``cfg``'s task and publish its outputs atomically into ``out_dir`` (default: the
    config's ``output.dir``)."""
    from ..atomic import (
        OutputLock,
        check_replaceable,
        discard_stale_staging,
        publish_directory,
        staging_directory,
    )

    task = get_task(cfg.task)
    final = Path(out_dir or cfg.output_dir()).expanduser()  # "~/runs/x" as typed
    check_replaceable(final)  # before any work: a folder of the user's is never replaced
    if not is_main_process():  # DDP ranks > 0 compute but publish nothing
        scratch = Path(tempfile.mkdtemp(prefix="sigformer-rank-"))
        try:
            return task.run(cfg, RunContext(scratch, final, log, main=False))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    with OutputLock(final):
        discard_stale_staging(final)
        staging = staging_directory(final)
        try:
            t0 = time.perf_counter()
            report = task.run(cfg, RunContext(staging, final, log))
            report.setdefault("seconds", round(time.perf_counter() - t0, 2))
            report.setdefault("task", task.name)
            (staging / "pipeline.json").write_text(cfg.model_dump_json(indent=2))
            (staging / "metrics.json").write_text(
                json.dumps(report, indent=2, default=json_default))
            publish_directory(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    log(f"outputs in {final}")
    return report


def ensure_base(cls: type[BaseModel]) -> type[BaseModel]:
    if not issubclass(cls, BaseConfig):
        raise TypeError(f"{cls.__name__} must extend BaseConfig")
    return cls
