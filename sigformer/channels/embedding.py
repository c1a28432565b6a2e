"""Learnable channel embeddings keyed by channel name, and channel dropout.

One model can then take recordings with different montages (as ChannelViT / ChAda-ViT do):
each channel's tokens get the embedding of its *name*, not of its position in the array.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from .core import ChannelError, normalize_channel_name


class ChannelEmbedding(nn.Module):
    """``names -> (n_channels, dim)`` embeddings from a fixed vocabulary of channel names.

    ``unknown="error"`` rejects names outside the vocabulary; ``"shared"`` maps them all to
    one extra learned vector. Names are normalised (``Fc5.`` and ``FC5`` share a vector).
    """

    def __init__(self, vocabulary: Iterable[str], dim: int, unknown: str = "error"):
        super().__init__()
        if unknown not in ("error", "shared"):
            raise ValueError(f"unknown must be 'error' or 'shared', got {unknown!r}")
        self.vocabulary = list(dict.fromkeys(normalize_channel_name(n) for n in vocabulary))
        if not self.vocabulary:
            raise ChannelError("a channel embedding needs at least one channel name")
        self._index = {n.lower(): i for i, n in enumerate(self.vocabulary)}
        self.unknown = unknown
        self.embedding = nn.Embedding(len(self.vocabulary) + (unknown == "shared"), dim)
        nn.init.trunc_normal_(self.embedding.weight, std=0.02)

    def indices(self, names: Sequence[str]) -> torch.Tensor:
        out, missing = [], []
        for name in names:
            i = self._index.get(normalize_channel_name(name).lower())
            if i is None:
                if self.unknown == "error":
                    missing.append(name)
                i = len(self.vocabulary)
            out.append(i)
        if missing:
            raise ChannelError(f"channel(s) {missing} have no embedding; known channels: "
                               f"{self.vocabulary}")
        return torch.tensor(out, dtype=torch.long, device=self.embedding.weight.device)

    def forward(self, names: Sequence[str]) -> torch.Tensor:
        return self.embedding(self.indices(names))


class ChannelDropout(nn.Module):
    """Zero whole channels of ``(B, C, ...)`` during training (rescaling the rest by
    ``1/(1-p)``), so a model learns not to rely on any single electrode."""

    def __init__(self, p: float = 0.1):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"channel dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape[:2], device=x.device) >= self.p
        shape = (*x.shape[:2],) + (1,) * (x.dim() - 2)
        return x * keep.view(shape).to(x.dtype) / (1 - self.p)
