"""The shared tokenization layer: one interface, many tokenizers."""

from .base import ChannelIndependent, Tokenizer, Tokens
from .estimator import TokenTransformer
from .simple import PatchTokenizer, STFTTokenizer, VQTokenizer, codebook_report, stft_magnitude

__all__ = [
    "ChannelIndependent", "PatchTokenizer", "STFTTokenizer", "TokenTransformer", "Tokenizer", "Tokens",
    "VQTokenizer", "codebook_report", "stft_magnitude",
]
