"""Streaming runtime: online pipelines, sources, sinks and LSL."""

from .engine import StreamRunner
from .lsl import use_loopback_config
from .runtime import (
    ModelRunner,
    OnlinePipeline,
    Prediction,
    QualityMonitor,
    SlidingWindows,
    Smoother,
    StreamError,
    StreamStats,
    offline_windows,
)
from .sinks import CallbackSink, ListSink, LSLSink, Recorder, read_recorder
from .sources import (
    ArraySource,
    EndOfStream,
    FileReplaySource,
    LSLSource,
    SigMFSource,
    WAVSource,
)

__all__ = [
    "ArraySource", "CallbackSink", "EndOfStream", "FileReplaySource", "LSLSink", "LSLSource",
    "ListSink", "ModelRunner", "OnlinePipeline", "Prediction", "QualityMonitor", "Recorder",
    "SigMFSource", "SlidingWindows", "Smoother", "StreamError", "StreamRunner", "StreamStats",
    "WAVSource", "offline_windows", "read_recorder", "use_loopback_config",
]
