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


def cli_json(capsys, argv: list[str]) -> dict:
    """Run ``sigformer ARGV`` in this process (it must succeed) and parse the JSON report it
    prints last (progress lines may come before it)."""
    import json

    from sigformer.cli import main

    assert main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):])
