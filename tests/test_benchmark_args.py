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


def load_muse_benchmark(monkeypatch):
    from tests.repo_scripts import load_script

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # its `from _table import ...`
    return load_script("benchmarks/eeg_muse.py")


def test_muse_erp_rate_decimates_without_losing_the_erp_band(monkeypatch):
    import numpy as np
    import pytest

    bench = load_muse_benchmark(monkeypatch)
    t = np.arange(231) / bench.SFREQ
    erp = np.sin(2 * np.pi * 5 * t)  # a 5 Hz wave: well inside 1-30 Hz
    X = np.stack([np.stack([erp, -erp, 2 * erp, 0 * erp])] * 3).astype(np.float32)
    low = bench.decimate_epochs(X, 64)
    assert low.shape == (3, 4, 58) and low.dtype == np.float32
    middle = slice(10, 48)  # away from the edges of the zero-phase filter
    np.testing.assert_allclose(low[0, 0, middle], erp[::4][middle], atol=0.02)
    assert bench.decimate_epochs(X, 256) is X
    with pytest.raises(SystemExit, match="--erp-rate must divide 256"):
        bench.decimate_epochs(X, 100)


def test_muse_erp_model_fits_the_decimated_epochs(monkeypatch):
    import numpy as np

    bench = load_muse_benchmark(monkeypatch)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 4, 58)).astype(np.float32)
    y = np.arange(24) % 2
    X[y == 1, :, 20:30] += 2.0  # a class-1 "ERP"
    model = bench.sigformer_model(epochs=1, quick=False, rate=64)
    assert model.model_params["patch_size"] == 8 and model.model_params["depth"] == 1
    proba = model.fit(X, y).predict_proba(X)
    assert proba.shape == (24, 2)
