"""The channel layer: channel sets, name normalisation, adapters, bipolar montages, sEEG
contacts, channel embeddings, IQ and microphone-array helpers."""

from .adapter import ChannelAdapter, as_channel_set, spline_interpolation_matrix
from .arrays import (
    channels_to_iq,
    circular_array,
    iq_channel_set,
    iq_to_channels,
    max_delay_samples,
    mic_array,
)
from .core import (
    CHANNEL_TYPES,
    MONTAGE_ALIASES,
    ChannelError,
    ChannelSet,
    check_channels_match,
    normalize_channel_name,
    resolve_montage_name,
)
from .electrodes import ContactTable, read_electrodes_tsv, shaft_of
from .montages import TCP_DOUBLE_BANANA, bipolar_matrix, bipolar_reference

__all__ = [
    "CHANNEL_TYPES", "MONTAGE_ALIASES", "ChannelAdapter", "ChannelError", "ChannelSet", "ContactTable",
    "TCP_DOUBLE_BANANA", "bipolar_matrix", "bipolar_reference", "channels_to_iq",
    "check_channels_match", "circular_array", "iq_channel_set", "iq_to_channels",
    "max_delay_samples", "mic_array", "normalize_channel_name", "read_electrodes_tsv",
    "resolve_montage_name", "shaft_of", "spline_interpolation_matrix", "as_channel_set",
]
