"""Tasks: each owns its config schema and runner (classify, tokenize, separate, enhance,
estimate_channel); one report writer publishes their outputs atomically."""

from .config import BaseConfig, PipelineConfigError
from .registry import (
    RunContext,
    Task,
    get_task,
    list_tasks,
    load_task_config,
    register_task,
    run_task,
)

__all__ = ["BaseConfig", "PipelineConfigError", "RunContext", "Task", "get_task", "list_tasks",
           "load_task_config", "register_task", "run_task"]
