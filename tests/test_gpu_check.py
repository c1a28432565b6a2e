"""The prepared GPU check (benchmarks/gpu_check.py, benchmarks/gpu_check.sh) on the CPU: the
report's structure and numbers on two real models, failures recorded without stopping the run,
and the refusals a GPU session must see at once (no CUDA, a script that does not parse)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch import nn

from tests.repo_scripts import REPO

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


def _load(monkeypatch, name: str):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # their `_table`/`training` imports
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark",
                                                  REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def gpu_check(monkeypatch):
    return _load(monkeypatch, "gpu_check")


def test_two_models_and_lightning_on_cpu(gpu_check, tmp_path):
    out = tmp_path / "gpu_check.json"
    steps = 2
    report = gpu_check.run_checks(torch.device("cpu"), ["clst", "adafortitran-small"],
                                  steps=steps, batch_size=2, out=out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))  # what was written
    assert report["device"] == "cpu" and report["torch"] == torch.__version__
    assert report["settings"]["steps"] == steps and report["failed"] == []
    assert list(report["models"]) == ["clst", "adafortitran-small"]
    for name, row in report["models"].items():
        assert row["status"] == "ok", (name, row["error"])
        training = row["training"]
        for key in ("loss_reference", "loss_fast", "loss_reference_repeat"):
            assert len(training[key]) == steps and all(map(math.isfinite, training[key]))
        assert training["loss_fast"] != training["loss_fast"][:1] * steps  # the weights moved
        assert training["max_rel_loss_diff"] <= gpu_check.LOSS_RTOL
        assert training["reference_repeat_max_abs_loss_diff"] <= gpu_check.LOSS_RTOL
        assert training["grad_max_rel_diff"] <= gpu_check.GRAD_RTOL
        assert training["parameters"] > 0
        ev = row["eval"]
        assert ev["output"] == "float" and ev["output_shape"][0] == 2
        assert ev["max_abs_diff"] <= gpu_check.EVAL_RTOL * ev["reference_output_scale"]
    lightning = report["lightning"]
    assert lightning["status"] == "ok" and lightning["accelerator"] == "cpu"
    fit = lightning["seed=0"]
    assert fit["batch_devices"] == ["cpu"] and len(fit["train_loss"]) == lightning["epochs"]
    assert all(map(math.isfinite, fit["train_loss"]))
    assert not torch.are_deterministic_algorithms_enabled()  # Lightning's setting given back


class _Toy(nn.Module):
    """A classifier whose ``set_fast`` switch can compute another function or fail."""

    def __init__(self, fast_scale: float = 1.0, fast_raises: bool = False):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.fast, self.fast_scale, self.fast_raises = False, fast_scale, fast_raises

    def set_fast(self, fast: bool = True) -> None:
        self.fast = fast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast and self.fast_raises:
            raise RuntimeError("no kernel for this fast path")
        return self.linear(x) * (self.fast_scale if self.fast else 1.0)


def _toy_case(gpu_check, build):
    from inference import InferenceCase
    from training import Case, _cross_entropy

    def batch(n, g):
        return (torch.randn(n, 4, generator=g),), torch.randint(0, 3, (n,), generator=g)

    return gpu_check.CheckCase(Case(build, batch, _cross_entropy, 8),
                               InferenceCase(build, lambda n, g: batch(n, g)[0], "x"))


def _missing():
    raise ModuleNotFoundError("No module named 'braindecode'")


def _toy_cases(gpu_check) -> dict:
    return {"wrong": _toy_case(gpu_check, lambda: _Toy(fast_scale=1.1)),
            "raises": _toy_case(gpu_check, lambda: _Toy(fast_raises=True)),
            "missing": _toy_case(gpu_check, _missing),
            "good": _toy_case(gpu_check, _Toy)}


def test_a_failure_is_recorded_and_the_next_model_still_runs(gpu_check, tmp_path):
    cases = _toy_cases(gpu_check)
    report = gpu_check.run_checks(torch.device("cpu"), list(cases), steps=2, batch_size=4,
                                  lightning=False, out=tmp_path / "r.json", cases=cases)
    rows = report["models"]
    assert rows["wrong"]["status"] == "failed" and "fast-path" in rows["wrong"]["error"]
    assert rows["wrong"]["training"]["max_rel_loss_diff"] > gpu_check.LOSS_RTOL
    assert rows["raises"]["status"] == "failed"
    assert "RuntimeError: no kernel" in rows["raises"]["error"]
    assert "in forward" in rows["raises"]["traceback"]  # where it failed, for the report
    assert rows["missing"] == {"status": "skipped", "error":
                               "ModuleNotFoundError: No module named 'braindecode'"}
    assert rows["good"]["status"] == "ok" and rows["good"]["error"] is None
    assert report["failed"] == ["wrong", "raises"] and report["skipped"] == ["missing"]
    assert report["lightning"] is None


def test_main_exits_non_zero_when_a_check_failed(gpu_check, monkeypatch, tmp_path, capsys):
    cases = _toy_cases(gpu_check)
    monkeypatch.setattr(gpu_check, "MODELS", tuple(cases))
    monkeypatch.setattr(gpu_check, "check_cases", lambda: cases)
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--models", "good,wrong", "--steps", "1",
                                      "--no-lightning", "--out", str(tmp_path / "r.json")])
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main()
    assert exit_.value.code == 1
    assert "FAILED: ['wrong']" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["models"]["good"]["status"] == "ok"


def test_list_buildable_prints_the_lines_the_shell_script_reads(gpu_check, monkeypatch, capsys):
    cases = _toy_cases(gpu_check)
    monkeypatch.setattr(gpu_check, "CASES", {n: c.training for n, c in cases.items()})
    monkeypatch.setattr(gpu_check, "INFERENCE_CASES", {n: c.inference for n, c in cases.items()})
    gpu_check.print_buildable()
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines == ["check=" + ",".join(gpu_check.MODELS),
                     "training=wrong,raises,good", "inference=wrong,raises,good"]
    assert "missing not buildable here: ModuleNotFoundError" in captured.err


@NO_CUDA
@pytest.mark.parametrize("script", ["gpu_check", "training", "inference"])
def test_device_cuda_without_cuda_is_a_usage_error(monkeypatch, capsys, tmp_path, script):
    module = _load(monkeypatch, script)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", "--device", "cuda", "--models", "clst",
                                      "--out", str(tmp_path / "r.json")])
    with pytest.raises(SystemExit) as exit_:
        module.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--device cuda: torch.cuda.is_available() is False" in err
    assert "or pass --device cpu" in err
    assert not (tmp_path / "r.json").exists()


def test_resolve_device(gpu_check):
    from training import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"device must be one of \['cpu', 'cuda'\]"):
        resolve_device("tpu")


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_the_shell_script_parses():
    done = subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "gpu_check.sh")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@NO_CUDA
@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_the_shell_script_stops_with_exit_3_without_cuda(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1", "GPU_CHECK_T_PROBE": "300"}  # imports on a busy CPU
    env.pop("GPU_CHECK_DEVICE", None)
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "CUDA is not usable here" in done.stderr
    assert "torch" in (tmp_path / "out" / "env.txt").read_text()
    assert not (tmp_path / "out" / "gpu_check.json").exists()  # nothing ran
