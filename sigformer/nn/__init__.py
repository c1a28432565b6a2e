"""Shared neural building blocks (attention, transformer blocks), written once and reused."""

from .blocks import FeedForward, MultiHeadAttention, TransformerEncoder, TransformerEncoderBlock

__all__ = ["FeedForward", "MultiHeadAttention", "TransformerEncoder", "TransformerEncoderBlock"]
