"""benchmarks/perf_table.py joins the training and inference JSON into one row per model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("perf_table",
                                                  REPO / "benchmarks" / "perf_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_join_training_and_inference_with_ratios(tmp_path):
    training = {"models": {"clst": {"unit": "frames/s", "parameters": 1000, "batch_size": 64,
                                    "samples_per_s": {"reference": 10.0, "fast": 30.0,
                                                      "fast-noattn": 50.0}}}}
    inference = {"models": {"clst b1": {"unit": "frames/s", "items_per_s": {
        "reference": 100.0, "fast": 150.0, "fast-bf16": 200.0}},
        "duin b64": {"unit": "trials/s", "items_per_s": {"reference": 4.0}}}}
    (tmp_path / "t.json").write_text(json.dumps(training))
    (tmp_path / "i.json").write_text(json.dumps(inference))
    text = _module().main(["--training", str(tmp_path / "t.json"),
                           "--inference", str(tmp_path / "i.json")])
    lines = text.splitlines()
    clst = next(line for line in lines if line.startswith("| clst "))
    assert "| 3.00x | 5.00x |" in clst and "| 1.50x | 2.00x |" in clst
    duin = next(line for line in lines if line.startswith("| duin "))
    assert "4.0" in duin and duin.count("| - |") >= 3  # no training row, no b1 row


def test_missing_results_say_what_to_run(tmp_path):
    with pytest.raises(SystemExit, match="benchmarks/training.py"):
        _module().main(["--training", str(tmp_path / "no.json"),
                        "--inference", str(tmp_path / "no2.json")])
