"""Streaming runtime: online pipelines, sources, sinks and LSL, for EEG, audio and IQ.

Names are imported on first use, so ``import sigformer.streaming.lsl`` (done by the CLI before
anything touches liblsl) does not import torch.
"""

import importlib

_NAMES = {
    "StreamRunner": "engine", "use_loopback_config": "lsl",
    "ModelRunner": "runtime", "OnlinePipeline": "runtime", "BurstDecisions": "runtime", "Prediction": "runtime",
    "QualityMonitor": "runtime", "SlidingWindows": "runtime", "Smoother": "runtime",
    "StreamError": "runtime", "StreamStats": "runtime", "offline_windows": "runtime",
    "CallbackSink": "sinks", "ListSink": "sinks", "LSLSink": "sinks", "Recorder": "sinks",
    "CSVRecorder": "sinks",
    "RecorderData": "sinks", "read_recorder": "sinks", "WAVSink": "sinks",
    "SigMFAnnotationSink": "sinks", "NpzSink": "sinks", "XDFRecorder": "sinks", "LivePlotSink": "sinks",
    "ArraySource": "sources", "EndOfStream": "sources", "FileReplaySource": "sources",
    "LSLSource": "sources", "SigMFSource": "sources", "WAVSource": "sources",
    "ZMQSource": "sources", "SoundCardSource": "sources", "SlotSource": "sources",
    "AudioStream": "processors", "SlotEstimator": "processors", "AudioBlock": "processors",
    "ChannelEstimate": "processors",
    "build_online": "app", "stream_bundle": "app", "make_source": "app",
    "OnlineSettings": "app",
}


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_NAMES)
