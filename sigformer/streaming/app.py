"""Build and run the online version of a YAML pipeline (``sigformer stream``) and publish
recordings as LSL streams (``sigformer replay``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..checkpoint import CheckpointError
from ..pipeline import PipelineConfig, PipelineConfigError
from ..stages import AdaptChannels, Pipeline
from .runtime import ModelRunner, OnlinePipeline, Smoother


def load_stream_model(checkpoint_dir) -> tuple:
    """``(estimator, meta)`` from a checkpoint written by ``sigformer run``."""
    from ..estimators import SignalClassifier

    path = Path(checkpoint_dir)
    meta_path = path / "pipeline_meta.json"
    if not meta_path.is_file():
        raise CheckpointError(f"{path} lacks pipeline_meta.json: stream a model trained by "
                              "`sigformer run` (it records channels, rate and preprocessing)")
    return SignalClassifier.load(path), json.loads(meta_path.read_text())


def build_online_pipeline(cfg: PipelineConfig, checkpoint_dir) -> OnlinePipeline:
    """Channel adapter (onto the model's channels) + the pipeline's preprocessing (which must
    be causal) + sliding windows + the checkpoint's model + smoothing."""
    clf, meta = load_stream_model(checkpoint_dir)
    stages = [AdaptChannels(meta["channels"], fill="auto")]
    for stage_cfg in cfg.preprocess:
        stage = stage_cfg.build()
        if not stage.streamable:
            raise PipelineConfigError(
                f"preprocess stage {stage_cfg.stage!r} is zero-phase and cannot stream; set "
                "phase: causal in the pipeline (and train with it) to run it online")
        stages.append(stage)
    sfreq = float(meta["sfreq"])
    window_s = cfg.stream.window_s or meta["n_times"] / sfreq
    window = int(round(window_s * sfreq))
    if window != clf.n_times_:
        raise PipelineConfigError(f"stream.window_s={window_s} gives {window} samples but the "
                                  f"model takes {clf.n_times_} ({clf.n_times_ / sfreq:g} s)")
    hop = max(1, int(round(cfg.stream.hop_s * sfreq)))
    alignment = "online" if meta.get("alignment", "none") != "none" else "none"
    runner = ModelRunner(clf.module_, [str(c) for c in clf.classes_],
                         threads=cfg.stream.threads, alignment=alignment,
                         scale=float(meta.get("input_scale", 1.0)))
    sm = cfg.stream.smoothing
    online = OnlinePipeline(Pipeline(stages), window, hop, runner,
                            smoothing=Smoother(sm.mode, sm.alpha, sm.n),
                            nan_policy=cfg.stream.nan_policy)
    online.expected_sfreq = sfreq
    return online


def make_source(cfg: PipelineConfig):
    from . import sources

    src = cfg.stream.source
    if src.kind == "lsl":
        return sources.LSLSource(src.name, src.stype, src.source_id, timeout=src.timeout)
    if not src.path:
        raise PipelineConfigError(f"stream.source.path is required for kind {src.kind!r}")
    if src.kind == "file":
        return sources.FileReplaySource(src.path, src.chunk_size, src.realtime)
    if src.kind == "wav":
        return sources.WAVSource(src.path, src.chunk_size, src.realtime)
    return sources.SigMFSource(src.path, src.chunk_size, src.realtime)


def run_stream(cfg: PipelineConfig, checkpoint_dir, *, duration: float | None = None,
               max_predictions: int | None = None, log=print) -> dict:
    from .engine import StreamRunner
    from .lsl import lsl
    from .sinks import LSLSink, Recorder

    online = build_online_pipeline(cfg, checkpoint_dir)
    source = make_source(cfg)
    if abs(source.sfreq - online.expected_sfreq) > 1e-6:
        raise PipelineConfigError(
            f"the stream runs at {source.sfreq:g} Hz but the model was trained at "
            f"{online.expected_sfreq:g} Hz; add a resample stage or retrain")
    classes = online.runner.classes
    sinks = []
    if cfg.stream.output.lsl_name:
        sinks.append(LSLSink(classes, name=cfg.stream.output.lsl_name,
                             source_id=cfg.stream.output.lsl_name))
    if cfg.stream.output.record:
        sinks.append(Recorder(cfg.stream.output.record, classes))
    clock = lsl().local_clock if cfg.stream.source.kind == "lsl" else None
    runner = StreamRunner(source, online, sinks, queue_size=cfg.stream.queue_size, status=log,
                          report_every=cfg.stream.report_every_s, clock=clock)
    log(f"streaming {len(source.channels)} channels at {source.sfreq:g} Hz -> "
        f"{len(online.runner.classes)} classes, window {online.windows.size} samples, hop "
        f"{online.windows.hop}")
    t0 = time.perf_counter()
    predictions = runner.run(duration=duration, max_predictions=max_predictions)
    source.close()
    report = {"predictions": len(predictions), "seconds": round(time.perf_counter() - t0, 2),
              **online.stats.as_dict(), "quality_events": online.monitor.events,
              "idle_events": runner.idle_events}
    if runner.processing_latencies:
        lat = 1e3 * np.asarray(runner.processing_latencies)
        report.update(processing_latency_ms_p50=float(np.median(lat)),
                      processing_latency_ms_p99=float(np.quantile(lat, 0.99)))
    log(runner.summary(time.perf_counter() - t0))
    return report


def replay(path, *, name: str = "sigformer-replay", source_id: str | None = None,
           chunk_size: int = 16, n_repeat: float = float("inf"), duration: float | None = None,
           log=print):
    """Publish a recording as an LSL stream with mne-lsl's ``PlayerLSL`` (loopback config)."""
    from ..data.io import read_raw
    from .lsl import use_loopback_config

    use_loopback_config()
    from mne_lsl.player import PlayerLSL

    raw = read_raw(path)
    repeat = {} if n_repeat == float("inf") else {"n_repeat": int(n_repeat)}
    player = PlayerLSL(raw, chunk_size=chunk_size, name=name, source_id=source_id or name,
                       **repeat)
    player.start()
    log(f"replaying {Path(path).name} as LSL stream {name!r} ({len(raw.ch_names)} channels at "
        f"{raw.info['sfreq']:g} Hz); Ctrl-C stops")
    return player
