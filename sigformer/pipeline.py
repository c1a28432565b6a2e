"""YAML pipelines: the entry points behind ``sigformer run``.

A pipeline file names a task (``classify``, ``tokenize``, ``separate``, ``enhance``,
``estimate_channel``; see :mod:`sigformer.tasks`). It is validated against that task's schema
before anything runs: an unknown key or a bad value fails with its location (e.g.
``train.max_epochs: Input should be greater than 0``). :func:`run_pipeline` runs the task and
publishes ``metrics.json``, ``pipeline.json``, plots and the inference bundle as one unit.

This module keeps the names earlier releases exported; the implementation lives in
:mod:`sigformer.tasks`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .tasks.classify import (
    ClassifyConfig,
    build_estimator,
    build_preprocess,
    data_override,
    load_epochs,
)
from .tasks.config import PipelineConfigError, StageConfig
from .tasks.registry import json_default, load_task_config, run_task

# The classification schema, under its earlier name (every other task has its own schema).
PipelineConfig = ClassifyConfig

__all__ = ["PipelineConfig", "PipelineConfigError", "StageConfig", "build_estimator",
           "build_preprocess", "data_override", "json_default", "load_config", "load_epochs",
           "run_pipeline", "run_tokenize_pipeline"]


def load_config(path_or_dict, overrides: dict | None = None):
    """Parse and validate a pipeline (YAML path or dict) against its task's schema."""
    return load_task_config(path_or_dict, overrides)


def run_pipeline(cfg, out_dir: str | Path | None = None, log=print) -> dict[str, Any]:
    """Run the pipeline's task; returns its report (also written as ``metrics.json``)."""
    return run_task(cfg, out_dir, log=log)


def run_tokenize_pipeline(cfg, out_dir: str | Path | None = None, log=print) -> dict[str, Any]:
    """Deprecated alias of :func:`run_pipeline` for ``task: tokenize``."""
    return run_task(cfg, out_dir, log=log)
