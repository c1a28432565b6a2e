""""real_time_factor" meant three things. The streaming benchmark's latency rows held model
time / signal time under it, where the ``sigformer stream`` report holds wall time / signal
time (with ``compute_real_time_factor`` beside it): the benchmark now writes
``compute_real_time_factor`` for what it measures, and its tables say "compute RTF" and
"wall RTF"."""

from __future__ import annotations

import pytest
from repo_scripts import REPO, load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/streaming.py")


def test_latency_rows_name_the_compute_rtf(bench):
    # 40 windows of 5 ms model time over 10 s of signal (1600 samples at 160 Hz)
    row = bench.latency_summary([0.01] * 10, [0.005] * 40, samples=1600, sfreq=160.0)
    assert row["compute_real_time_factor"] == pytest.approx(0.2 / 10)
    assert "real_time_factor" not in row  # the stream report's key means wall time
    assert row["compute_ms_per_window"]["p50"] == pytest.approx(5.0)
    assert row["latency_ms"]["p50"] == pytest.approx(10.0) and row["predictions"] == 10


def test_domain_table_names_both_ratios(bench, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # its _table helper
    row = {"outputs": 5, "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0},
           "real_time_factor": 1.01, "compute_real_time_factor": 0.031, "queue_drops": 0,
           "rss_mb_growth": 1.0}
    bench._print_domains({"separate": row})
    out = capsys.readouterr().out
    assert "wall RTF" in out and "compute RTF" in out
    assert "1.01" in out and "0.031" in out
