"""The example notebooks execute without errors (on a copy; the committed outputs stay)."""

import importlib.util
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9]*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path):
    spec = importlib.util.spec_from_file_location("nb_execute", path.parent / "_execute.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["nb_execute"] = module
    spec.loader.exec_module(module)
    nb = module.execute(path)  # raises CellExecutionError with the failing cell's traceback
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert any(o.get("output_type") == "display_data" for c in nb.cells
               if c.cell_type == "code" for o in c.get("outputs", []))  # plots rendered
