"""Every command shown in README.md's ```bash blocks runs, with tiny budgets, so the docs cannot
drift from the CLI (issue 18, "Everyday comfort").

How a README line becomes a test case:
- commands are the lines starting with ``sigformer `` or ``python `` (``\\`` continuations joined,
  trailing ``# comments`` and ``&`` dropped; ``pip install ... && CMD`` keeps ``CMD``);
- they run in a scratch workspace (a tmp folder holding a copy of ``pipelines/``), so relative
  ``--out runs/...`` folders and the bundles they produce stay in tmp; ``../shared/data`` is
  rewritten to the real shared data folder and the case is skipped when it is absent;
- ``--max-epochs`` is forced to 1 (added to every ``run``);
- the copied pipeline YAMLs get smaller data settings (``TINY_DATA`` below): even one epoch on
  the shipped sizes (13,200 AMR frames, 5-fold CV, 64 speech mixtures) would not fit the 3-minute
  budget of this file on 2 shared cores;
- input files a command names but the README does not ship (``meeting.wav``, ``array.wav``,
  ``array8.wav``, ``mic*.wav``, ``capture.sigmf-meta``) are generated in the workspace;
- a command that uses a bundle made by an earlier README command (``--model runs/sep/model``)
  first runs that earlier command once (module-scoped cache).
Skipped on purpose: usage synopses (``PIPELINE.yaml``, ``[--opt]``, ``a|b``), the test suite
itself, multi-GPU and `--device cuda` training commands, and the live-stream pair (``replay`` of a live LSL stream and the
``stream`` that listens to it: covered by tests/test_lsl.py).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import REPO, SHARED_DATA

README = REPO / "README.md"

# Per-pipeline YAML overrides (nested dict merge) that keep one epoch within seconds.
TINY_DATA: dict[str, dict] = {
    "eeg_mi_dbconformer.yaml": {
        "data": {"simulator": {"n_trials": 24}},
        "evaluate": {"n_splits": 2},
    },
    "bci_realtime.yaml": {
        "data": {"simulator": {"n_trials": 24}},
        "evaluate": {"n_splits": 2},
    },
    "speech_separation_mossformer.yaml": {
        "speech": {"n_train": 4, "n_test": 2, "seconds": 1.0, "perceptual_metrics": False},
    },
    "speech_enhancement_deftan2.yaml": {
        "enhance": {"n_train": 4, "n_test": 2, "seconds": 1.0, "perceptual_metrics": False,
                    "max_order": 2},
    },
    "amr_clst.yaml": {"amr": {"n_per_condition": 2}},
}

# README commands known to be wrong as written: {command: reason} -> xfail(strict=True).
STALE: dict[str, str] = {}

SYNOPSIS = re.compile(r"\[|\||\b[A-Z][A-Z_]+(\.[a-z]+)?\b")
SKIP_REASONS = (
    (lambda c: c.startswith("python -m pytest"), "runs the whole test suite (this file included)"),
    (lambda c: "--accelerator gpu" in c, "needs GPUs (multi-device DDP)"),
    (lambda c: "--device cuda" in c,
     "trains on a CUDA GPU (tests/test_training_device.py covers --device)"),
    (lambda c: c.startswith("sigformer replay"), "publishes a live LSL stream (tests/test_lsl.py)"),
    (lambda c: c.startswith("sigformer stream") and "bci_realtime" in c,
     "listens to the live LSL stream of `sigformer replay` (tests/test_lsl.py)"),
    (lambda c: SYNOPSIS.search(c) is not None, "usage synopsis with placeholders, not a command"),
)


def readme_commands(text: str) -> list[str]:
    """The runnable lines of the README's bash blocks, in order."""
    commands: list[str] = []
    in_bash, pending = False, ""
    for line in text.splitlines():
        if line.startswith("```"):
            in_bash, pending = line.strip() == "```bash", ""
            continue
        if not in_bash:
            continue
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        command = _strip_comment(line.split("&&")[-1].strip()).rstrip("&").strip()
        if command.startswith(("sigformer ", "python ")):
            commands.append(command)
    return commands


def _strip_comment(line: str) -> str:
    # A "#" preceded by whitespace starts a comment (none of the commands quote one).
    return re.split(r"\s#", line, maxsplit=1)[0].strip()


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def _skip_reason(command: str) -> str | None:
    return next((reason for test, reason in SKIP_REASONS if test(command)), None)


def _deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _make_inputs(workspace: Path) -> None:
    """The user files README commands name: a mono mixture, a 4-mic array (one file and one
    file per microphone), an 8-mic array, an IQ capture."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    sf.write(workspace / "meeting.wav", 0.1 * rng.standard_normal(8000 * 2), 8000)
    array = 0.1 * rng.standard_normal((16000, 4))
    sf.write(workspace / "array.wav", array, 16000)
    for i in range(4):  # the same array as one mono file per microphone ('mic*.wav')
        sf.write(workspace / f"mic{i}.wav", array[:, i], 16000)
    sf.write(workspace / "array8.wav", 0.1 * rng.standard_normal((16000, 8)), 16000)
    _write_capture(workspace / "capture", rng)


def _write_capture(stem: Path, rng: np.random.Generator) -> None:
    import json

    n = 128 * 16
    symbols = np.exp(1j * np.pi / 2 * rng.integers(0, 4, n))  # QPSK-like, strong
    iq = (symbols + 0.05 * (rng.standard_normal(n) + 1j * rng.standard_normal(n))) * 100
    iq.astype(np.complex64).tofile(stem.with_suffix(".sigmf-data"))
    meta = {"global": {"core:datatype": "cf32_le", "core:sample_rate": 1e6,
                       "core:version": "1.0.0"},
            "captures": [{"core:sample_start": 0}], "annotations": []}
    stem.with_suffix(".sigmf-meta").write_text(json.dumps(meta), encoding="utf-8")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    (root / "pipelines").mkdir()
    for yaml_path in (REPO / "pipelines").glob("*.yaml"):
        override = TINY_DATA.get(yaml_path.name)
        if override is None:
            shutil.copy(yaml_path, root / "pipelines" / yaml_path.name)
            continue
        spec = _deep_merge(yaml.safe_load(yaml_path.read_text(encoding="utf-8")), override)
        (root / "pipelines" / yaml_path.name).write_text(yaml.safe_dump(spec), encoding="utf-8")
    _make_inputs(root)
    return root


def tiny_argv(command: str) -> list[str]:
    """The command's arguments with 1 epoch and the shared data folder made absolute."""
    argv = [a.replace("../shared/data", str(SHARED_DATA)) for a in shlex.split(command)]
    if argv[:2] == ["sigformer", "run"]:
        if "--max-epochs" in argv:
            argv[argv.index("--max-epochs") + 1] = "1"
        else:
            argv += ["--max-epochs", "1"]
    return argv


def _bundle_producer(path: str) -> str | None:
    """The earlier README `run` whose output folder holds the bundle `path`."""
    for command in COMMANDS:
        argv = shlex.split(command)
        if argv[:2] != ["sigformer", "run"] or _skip_reason(command):
            continue
        out = argv[argv.index("--out") + 1] if "--out" in argv else _default_out(argv[2])
        if Path(path).parts[: len(Path(out).parts)] == Path(out).parts:
            return command
    return None


def _default_out(pipeline: str) -> str:
    spec = yaml.safe_load((REPO / pipeline).read_text(encoding="utf-8"))
    return spec["output"]["dir"].format(name=spec.get("name", ""))


@pytest.fixture(scope="module")
def run_command(workspace):
    done: dict[str, int] = {}

    def run(command: str) -> int:
        if command in done:
            return done[command]
        argv = tiny_argv(command)
        if "--model" in argv:
            producer = _bundle_producer(argv[argv.index("--model") + 1])
            if producer is not None and producer != command:
                assert run(producer) == 0, f"the README command making the bundle failed: {producer}"
        if any(str(SHARED_DATA) in a for a in argv) and not SHARED_DATA.is_dir():
            pytest.skip(f"{SHARED_DATA} is absent (only on the project's CI and dev machines)")
        done[command] = _execute(argv, workspace)
        return done[command]

    return run


def _execute(argv: list[str], cwd: Path) -> int:
    if argv[0] == "python":
        return subprocess.run([sys.executable, *argv[1:]], cwd=cwd, timeout=120).returncode
    import os

    from sigformer.cli import main

    previous = Path.cwd()
    os.chdir(cwd)
    try:
        return main(argv[1:])
    finally:
        os.chdir(previous)


def _case(command: str):
    marks = []
    reason = _skip_reason(command)
    if reason:
        marks.append(pytest.mark.skip(reason=reason))
    elif command in STALE:
        marks.append(pytest.mark.xfail(strict=True, reason=STALE[command]))
    return pytest.param(command, id=command, marks=marks)


def test_readme_has_commands():
    assert any(c.startswith("sigformer run") for c in COMMANDS), COMMANDS


@pytest.mark.parametrize("command", [_case(c) for c in COMMANDS])
def test_readme_command_runs(command, run_command, workspace):
    assert run_command(command) == 0
    argv = tiny_argv(command)
    if "--out" in argv:  # the output named on the command line exists afterwards
        assert (workspace / argv[argv.index("--out") + 1]).exists()
