"""Models by domain, reachable through the registry."""

from .eeg.dbconformer import DBConformer
from .registry import (
    UnknownModelError,
    create_model,
    get_model_class,
    list_models,
    list_presets,
    register_model,
)

__all__ = [
    "DBConformer", "UnknownModelError", "create_model", "get_model_class", "list_models",
    "list_presets", "register_model",
]
