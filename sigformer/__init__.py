"""sigformer: transformer models for biosignals and radio, with streaming pipelines."""

from .channels import ChannelError, ChannelSet, normalize_channel_name
from .recording import Annotation, Epochs, Recording
from .validation import SignalError

__version__ = "0.1.0"

__all__ = [
    "Annotation", "ChannelError", "ChannelSet", "Epochs", "Recording", "SignalError",
    "normalize_channel_name", "__version__",
]
