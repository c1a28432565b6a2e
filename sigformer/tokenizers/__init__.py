"""The shared tokenization layer: one interface, many tokenizers, one registry."""

from .base import ChannelIndependent, Tokenizer, Tokens
from .estimator import TokenTransformer
from .frontends import (
    DBConformerChannels,
    DBConformerPatches,
    DeFTAN2STFT,
    IQConvEmbedding,
    ModelFrontEnd,
    MossFormerFrames,
    OFDMGridPatches,
    SEEGRegionEmbeddings,
    SEEGRegionTokens,
    UnknownTokenizerError,
    create_tokenizer,
    list_tokenizers,
    register_tokenizer,
    tokenizer_entry,
)
from .simple import PatchTokenizer, STFTTokenizer, VQTokenizer, codebook_report, stft_magnitude

__all__ = [
    "ChannelIndependent", "DBConformerChannels", "DBConformerPatches", "DeFTAN2STFT",
    "IQConvEmbedding", "ModelFrontEnd", "MossFormerFrames", "OFDMGridPatches", "PatchTokenizer",
    "SEEGRegionEmbeddings", "SEEGRegionTokens", "STFTTokenizer", "TokenTransformer", "Tokenizer",
    "Tokens", "UnknownTokenizerError", "VQTokenizer", "codebook_report", "create_tokenizer",
    "list_tokenizers", "register_tokenizer", "stft_magnitude", "tokenizer_entry",
]
