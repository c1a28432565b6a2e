"""The inference benchmark's ONNX Runtime variant (benchmarks/inference.py ``--onnxruntime``):
the exported reference model runs, matches the eager output and is timed like the others."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from sigformer.export import TOLERANCE, ExportError
from tests.repo_scripts import REPO

pytest.importorskip("onnxruntime")


@pytest.fixture
def inference(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # its `_table` and `training` imports
    spec = importlib.util.spec_from_file_location("inference_benchmark",
                                                  REPO / "benchmarks" / "inference.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# AdaFortiTran: complex pilots in, complex estimate out (real/imag pairs in the export);
# TFM tokenizer: the benchmark's module wraps the tokenizer, the output is token ids
@pytest.mark.parametrize("name", ["adafortitran-small", "tfm-tokenizer"])
def test_onnxruntime_variant_matches_the_reference_and_reports_a_rate(inference, name,
                                                                      tmp_path):
    variants = {"reference": inference.VARIANTS["reference"]}
    ort = inference.OnnxRuntime(tmp_path, threads=1)
    row = inference.bench_case(name, variants, batch=3, repeats=1, calls=1, onnxruntime=ort)
    assert row["errors"] == {}
    assert row["max_abs_diff_to_reference"]["onnxruntime"] <= TOLERANCE  # ids: fraction
    assert row["items_per_s"]["onnxruntime"] > 0
    assert row["ratio_to_reference"]["onnxruntime"] > 0
    assert row["export_s"]["onnxruntime"] > 0
    assert (tmp_path / name / "model.onnx").is_file()


def test_a_failed_export_is_reported_once_and_the_other_variants_still_run(inference,
                                                                          tmp_path,
                                                                          monkeypatch):
    attempts = []

    def fail(name, init):
        attempts.append(name)
        raise ExportError("no ONNX operator for this model")

    ort = inference.OnnxRuntime(tmp_path, threads=1)
    monkeypatch.setattr(ort, "_export", fail)
    variants = {"reference": inference.VARIANTS["reference"]}
    rows = [inference.bench_case("clst", variants, batch=b, repeats=1, calls=1, onnxruntime=ort)
            for b in (1, 2)]
    for row in rows:
        assert "no ONNX operator" in row["errors"]["onnxruntime"]
        assert set(row["items_per_s"]) == {"reference"}
    assert attempts == ["clst"]  # exported once per model, the failure kept
