"""Shared neural building blocks (attention, transformer blocks, positional encodings), written
once and reused, with the reference/fast path switches of :class:`FastPath`."""

from .blocks import (
    FAST,
    REFERENCE,
    ConvEfficientAttention,
    ConvProjection,
    ConvProjectionAttention,
    FastPath,
    FeedForward,
    MultiHeadAttention,
    TransformerEncoder,
    TransformerEncoderBlock,
    current_fast_path,
    fast_path,
    patchify_1d,
    patchify_2d,
    set_fast_path,
    unpatchify_2d,
)
from .positional import (
    RotaryEmbedding,
    ScaledSinusoidalEmbedding,
    learnable_positions,
    sinusoidal_table,
)

__all__ = [
    "FAST", "REFERENCE", "ConvEfficientAttention", "ConvProjection", "ConvProjectionAttention",
    "FastPath", "FeedForward", "MultiHeadAttention", "RotaryEmbedding",
    "ScaledSinusoidalEmbedding", "TransformerEncoder", "TransformerEncoderBlock",
    "current_fast_path", "fast_path", "learnable_positions", "patchify_1d", "patchify_2d",
    "set_fast_path", "sinusoidal_table", "unpatchify_2d",
]
