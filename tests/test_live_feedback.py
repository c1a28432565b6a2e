"""Live feedback (issue 18): the stream status line names the latest class, its probability
and the processing latency; predictions recorded as XDF read back with pyxdf; per-epoch
progress lines for the OFDM, AMR and speech recipes; OFDM grid and enhancement plots."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from sigformer.models import create_model
from sigformer.stages import BandPass
from sigformer.streaming import ArraySource, ListSink, ModelRunner, OnlinePipeline, StreamRunner

CLASSES = ["left", "right"]


def _online(window: int = 100, hop: int = 50) -> OnlinePipeline:
    torch.manual_seed(0)
    model = create_model("dbconformer", n_chans=2, n_outputs=2, n_times=window, emb_size=8,
                         num_heads=2, depth=1, spa_dim=4, patch_size=20).eval()
    return OnlinePipeline([BandPass(8, 30)], window, hop, ModelRunner(model, CLASSES, scale=1.0))


def _run(sinks=(), n: int = 1000):
    messages: list[str] = []
    data = np.random.default_rng(1).standard_normal((2, n))
    runner = StreamRunner(ArraySource(data, 250, ["a", "b"], chunk_size=64), _online(),
                          [ListSink(), *sinks], status=messages.append, report_every=0.0)
    return runner.run(), messages


def test_status_line_shows_latest_class_probability_and_latency():
    predictions, messages = _run()
    reports = [m for m in messages if "windows" in m]
    assert reports
    match = re.search(r"latest (\w+) \(p=([0-9.]+)\)", reports[-1])
    assert match, reports[-1]
    last = predictions[-1]  # nothing is emitted after the last report but the flush
    label, probability = match.group(1), float(match.group(2))
    assert label in CLASSES
    shown = [p for p in predictions if p.label == label]
    assert any(abs(float(max(p.probabilities)) - probability) < 5e-3 for p in shown), last
    assert re.search(r"processing latency p50 [0-9.]+ ms", reports[-1])


def test_xdf_recorder_round_trip(tmp_path):
    pyxdf = pytest.importorskip("pyxdf")
    from sigformer.streaming.sinks import XDFRecorder

    recorder = XDFRecorder(tmp_path / "predictions.xdf", CLASSES)
    predictions, _ = _run([recorder])
    streams, _ = pyxdf.load_xdf(str(recorder.path), synchronize_clocks=False, dejitter_timestamps=False)
    by_type = {s["info"]["type"][0]: s for s in streams}
    probs = by_type["Predictions"]
    labels = [c["label"][0] for c in probs["info"]["desc"][0]["channels"][0]["channel"]]
    assert labels == CLASSES
    np.testing.assert_allclose(probs["time_series"],
                               np.stack([p.probabilities for p in predictions]), rtol=1e-6)
    np.testing.assert_allclose(probs["time_stamps"], [p.timestamp for p in predictions])
    markers = by_type["Markers"]
    assert [row[0] for row in markers["time_series"]] == [p.label for p in predictions]


def test_xdf_recorder_never_replaces_a_recording(tmp_path):
    from sigformer.streaming.sinks import XDFRecorder

    target = tmp_path / "predictions.xdf"
    target.write_bytes(b"earlier session")
    recorder = XDFRecorder(target, CLASSES)
    _run([recorder], n=300)
    assert target.read_bytes() == b"earlier session"
    assert recorder.path != target and recorder.path.read_bytes().startswith(b"XDF:")


def test_xdf_recorder_rejects_wrong_class_count(tmp_path):
    from sigformer.streaming.sinks import XDFRecorder

    recorder = XDFRecorder(tmp_path / "p.xdf", ["a", "b", "c"])
    with pytest.raises(ValueError, match="3 classes"):
        _run([recorder], n=300)


def test_ofdm_grid_plot_has_one_shared_colour_bar(tmp_path):
    from sigformer.data.ofdm import simulate_ofdm
    from sigformer.rf.ofdm import plot_grids

    data = simulate_ofdm(2, seed=0)
    noisy = {"LS": data.channels * 1.5, "model": data.channels * 0.5}
    fig = plot_grids(data, noisy, path=tmp_path / "grids.png")
    assert (tmp_path / "grids.png").stat().st_size > 0
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 3
    assert len({im.get_clim() for im in images}) == 1  # one scale for all panels
    vmax = images[0].get_clim()[1]
    assert vmax == pytest.approx(np.abs(noisy["LS"][0]).max())
    assert len(fig.axes) == 4  # three panels + one colour bar


def test_enhancement_plot_is_written(tmp_path):
    from sigformer.speech.pipeline import _plot_enhancement_example

    rng = np.random.default_rng(0)
    target = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    noisy = target + 0.5 * rng.standard_normal(8000)
    _plot_enhancement_example(noisy, target + 0.05 * rng.standard_normal(8000), target, 8000,
                              tmp_path / "enhancement.png", "deftan2")
    assert (tmp_path / "enhancement.png").stat().st_size > 10_000


class _InterruptingSink(ListSink):
    """Sends Ctrl-C to this process in the middle of its third write, after its own write
    (where a KeyboardInterrupt used to leave the other sinks and the count behind)."""

    def write(self, predictions):
        super().write(predictions)
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 3:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_inside_a_sink_write_stops_after_the_chunk_with_every_sink_complete():
    first, second = _InterruptingSink(), ListSink()
    data = np.random.default_rng(1).standard_normal((2, 5000))
    runner = StreamRunner(ArraySource(data, 250, ["a", "b"], chunk_size=64), _online(),
                          [first, second])
    predictions = runner.run()
    assert runner.interrupted
    # every sink got the interrupted chunk's outputs and the count agrees with them
    assert len(first.predictions) == len(second.predictions) == runner.n_outputs \
        == len(predictions)
    assert runner.n_outputs < 5000 // 50  # it stopped early (a window every 50 samples)
