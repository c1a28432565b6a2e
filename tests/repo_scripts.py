"""Import a repository script (``scripts/``, ``benchmarks/``) as a module in tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(path: str) -> ModuleType:
    """The module of ``REPO / path`` (e.g. ``"scripts/package_amr.py"``), freshly executed."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
