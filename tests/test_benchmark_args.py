"""Benchmarks refuse arguments that would silently measure nothing."""

from __future__ import annotations

import subprocess
import sys

from tests.repo_scripts import REPO


def test_bonn_benchmark_refuses_an_unknown_model_name(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "eeg_bonn.py"),
                           "--models", "tfm", "--out", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "unknown --models ['tfm']" in done.stderr and "EEGNet" in done.stderr
    assert not (tmp_path / "r.json").exists()
