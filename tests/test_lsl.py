"""Real-time BCI over LSL, end to end, on the loopback-only config (see conftest)."""

import os
import threading
import time
import uuid

import numpy as np
import pytest

from sigformer.pipeline import load_config, run_pipeline
from sigformer.streaming import ListSink, LSLSink, LSLSource, StreamRunner, offline_windows
from sigformer.streaming.app import build_online_pipeline, replay
from sigformer.streaming.lsl import lsl

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_loopback_config_is_in_place():
    path = os.environ["LSLAPICFG"]
    text = open(path).read()
    assert "ResolveScope = machine" in text and "KnownPeers = {127.0.0.1}" in text
    assert "IPv6 = disable" in text


@pytest.fixture(scope="module")
def checkpoint(eegmmidb_dir, tmp_path_factory):
    cfg = load_config(os.path.join(REPO, "pipelines", "bci_realtime.yaml"), {
        "data": {"source": "eegmmidb", "path": str(eegmmidb_dir)},
        "train": {"max_epochs": 2}, "evaluate": {"protocol": "none"},
        "model": {"name": "dbconformer",
                  "params": {"patch_size": 40, "kernel_size": 41, "emb_size": 16,
                             "num_heads": 4, "depth": 1, "spa_dim": 8}},
    })
    out = tmp_path_factory.mktemp("bci")
    run_pipeline(cfg, out, log=lambda *a: None)
    return cfg, out / "model"


class OpenSink(LSLSink):
    """Keeps the outlet open after the run so the test inlet can drain it (a closed outlet
    sends the inlet into recovery, where pulls block)."""

    def close(self):
        pass


class TapSource:
    """Wraps a source and keeps every chunk it delivered (for the offline comparison)."""

    def __init__(self, source):
        self.source, self.chunks, self.stamps = source, [], []
        self.sfreq, self.channels = source.sfreq, source.channels

    def read(self, timeout=0.05):
        item = self.source.read(timeout)
        if item is not None:
            self.chunks.append(item[0])
            self.stamps.append(item[1])
        return item

    def close(self):
        self.source.close()


def _stream_cfg(cfg, **stream):
    data = cfg.model_dump()
    data["stream"].update(stream)
    data["stream"]["smoothing"] = {"mode": "none"}
    from sigformer.pipeline import PipelineConfig

    return PipelineConfig.model_validate(data)


@pytest.mark.slow
def test_replay_stream_predict_end_to_end(checkpoint, eegmmidb_dir):
    cfg, model_dir = checkpoint
    name = f"sf-e2e-{uuid.uuid4().hex[:8]}"
    cfg = _stream_cfg(cfg, hop_s=0.25)
    online = build_online_pipeline(cfg, model_dir)
    player = replay(eegmmidb_dir / "S001R04.edf", name=name, chunk_size=16, log=lambda *a: None)
    try:
        source = TapSource(LSLSource(name=name, timeout=10))
        sink = OpenSink(online.runner.classes, name=f"{name}-pred", source_id=f"{name}-pred")
        L = lsl()
        infos = L.resolve_streams(timeout=5, source_id=f"{name}-pred")
        inlet = L.StreamInlet(infos[0])
        inlet.open_stream(timeout=5)
        runner = StreamRunner(source, online, [sink], clock=L.local_clock)
        preds = runner.run(max_predictions=12, duration=30)
        time.sleep(0.3)
        received, stamps = inlet.pull_chunk(timeout=2.0, max_samples=1000)
        inlet.close_stream()
    finally:
        player.stop()
    received = np.asarray(received)
    assert len(preds) >= 12
    assert received.shape == (len(preds), 2)  # every prediction arrived, none extra
    assert np.all(np.diff(stamps) > 0)
    np.testing.assert_allclose(stamps, [p.timestamp for p in preds], atol=1e-6)
    np.testing.assert_allclose(received, np.stack([p.probabilities for p in preds]), atol=1e-6)
    # the online predictions equal an offline run over the same samples
    data = np.concatenate(source.chunks, axis=1)
    fresh = build_online_pipeline(cfg, model_dir)
    windows = offline_windows(fresh.pre, data, source.sfreq, source.channels,
                              fresh.windows.size, fresh.windows.hop)
    offline = fresh.runner(windows[:len(preds)])
    np.testing.assert_allclose(np.stack([p.probabilities for p in preds]), offline, atol=1e-5)
    assert [p.label for p in preds] == [fresh.runner.classes[i] for i in offline.argmax(1)]
    # the received samples are a contiguous run of the file (in volts)
    from sigformer.data import read_recording

    raw = read_recording(eegmmidb_dir / "S001R04.edf").data
    start = int(np.flatnonzero(np.isclose(raw[0], data[0, 0]) & np.isclose(raw[1], data[1, 0]))[0])
    np.testing.assert_allclose(data, raw[:, start:start + data.shape[1]], rtol=1e-5, atol=1e-9)
    assert online.stats.gaps == 0 and online.stats.queue_drops == 0


@pytest.mark.slow
def test_source_restart_reports_gap_and_resumes(checkpoint, eegmmidb_dir):
    cfg, model_dir = checkpoint
    name = f"sf-restart-{uuid.uuid4().hex[:8]}"
    online = build_online_pipeline(_stream_cfg(cfg, hop_s=0.5), model_dir)
    player = replay(eegmmidb_dir / "S001R04.edf", name=name, chunk_size=16, log=lambda *a: None)
    messages = []
    source = LSLSource(name=name, timeout=10)
    seen = ListSink()
    runner = StreamRunner(source, online, [seen], status=messages.append, report_every=60)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("p", runner.run(duration=60,
                                                                              idle_report=1.0)))
    thread.start()
    try:
        time.sleep(4.0)
        player.stop()  # the source goes away
        t_stop = lsl().local_clock()
        time.sleep(2.5)
        player = replay(eegmmidb_dir / "S001R04.edf", name=name, chunk_size=16,
                        log=lambda *a: None)  # same identity comes back
        deadline = time.monotonic() + 45  # liblsl's recovery polls; give it time under load
        while time.monotonic() < deadline and not any(
                p.timestamp > t_stop + 2.0 for p in seen.predictions):
            time.sleep(0.2)
        runner.stop()
        thread.join(timeout=30)
    finally:
        player.stop()
    preds = result["p"]
    assert runner.idle_events, "the silent source was not reported"
    assert any("waiting for the source" in m for m in messages)
    assert any(m.startswith("source back") for m in messages)
    assert online.stats.gaps >= 1 and online.stats.dropped_samples > 160  # > 1 s missing
    assert any(p.timestamp > t_stop + 2.0 for p in preds)  # predictions resumed after restart


@pytest.mark.slow
def test_cli_replay_and_stream(checkpoint, eegmmidb_dir, tmp_path, capsys):
    import json

    import yaml

    from sigformer.cli import main

    cfg, model_dir = checkpoint
    name = f"sf-cli-{uuid.uuid4().hex[:8]}"
    data = cfg.model_dump()
    data["stream"]["source"]["name"] = name
    data["stream"]["output"] = {"lsl_name": f"{name}-pred",
                                "record": str(tmp_path / "preds.sgrec")}
    path = tmp_path / "bci.yaml"
    path.write_text(yaml.safe_dump(data))
    replayer = threading.Thread(target=main, args=(["replay", str(eegmmidb_dir / "S001R04.edf"),
                                                    "--name", name, "--duration", "12"],))
    replayer.start()
    try:
        assert main(["stream", str(path), "--model", str(model_dir), "--max-predictions", "5",
                     "--duration", "20"]) == 0
    finally:
        replayer.join(timeout=30)
    report = json.loads(capsys.readouterr().out.strip().split("\n{", 1)[-1].join(["{", ""]))
    assert report["predictions"] >= 5 and report["gaps"] == 0
    from sigformer.streaming import read_recorder

    columns, stamps, values = read_recorder(tmp_path / "preds.sgrec")
    assert columns == ["left_hand", "right_hand"] and len(stamps) >= 5
    np.testing.assert_allclose(values.sum(1), 1, atol=1e-5)


def test_stream_errors_are_clear(checkpoint, tmp_path):
    from sigformer.checkpoint import CheckpointError
    from sigformer.pipeline import PipelineConfigError

    cfg, model_dir = checkpoint
    # the chain comes from the bundle (a zero-phase chain is refused: tests/test_bundle.py);
    # the YAML's stream section still sets the window, which must fit the model
    from sigformer.pipeline import PipelineConfig

    wrong_window = cfg.model_dump()
    wrong_window["stream"]["window_s"] = 3.0
    with pytest.raises(PipelineConfigError, match="model takes 320"):
        build_online_pipeline(PipelineConfig.model_validate(wrong_window), model_dir)
    with pytest.raises(CheckpointError, match="not a sigformer checkpoint"):
        build_online_pipeline(cfg, tmp_path)
    from sigformer import SignalError

    with pytest.raises(SignalError, match="no LSL stream matching"):
        LSLSource(name=f"absent-{uuid.uuid4().hex[:6]}", timeout=0.5)
