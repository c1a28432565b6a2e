"""The one tokenizer interface shared across domains.

``Tokenizer.encode(x)`` turns signals ``(B, C, T)`` into :class:`Tokens`: continuous
embeddings and/or discrete ids, each token with its time, frequency and channel position.
``decode`` inverts where the tokenizer defines an inverse. Learned tokenizers are fitted with
``fit(X)`` (numpy in, trained in place) and ``transform(X)`` returns numpy ids or embeddings,
so they also work as scikit-learn transformers (see :class:`TokenTransformer`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..validation import SignalError, check_array


@dataclass
class Tokens:
    """A token sequence for a batch.

    embeddings : (B, N, D) continuous token vectors, or None for purely discrete tokenizers.
    ids : (B, N) codebook indices, or None for continuous tokenizers.
    time_index : (N,) index of each token's time frame / patch.
    channel_index : (N,) index of each token's channel (None when tokens mix channels).
    freq_index : (N,) index of each token's frequency band (None when not applicable).
    length : samples of the signal the tokens came from (what a decoder restores), or None.
    """

    embeddings: torch.Tensor | None
    ids: torch.Tensor | None
    time_index: torch.Tensor
    channel_index: torch.Tensor | None = None
    freq_index: torch.Tensor | None = None
    length: int | None = None

    def __len__(self) -> int:
        return int(self.time_index.numel())

    @property
    def batch_size(self) -> int:
        ref = self.ids if self.ids is not None else self.embeddings
        return int(ref.shape[0])

    def grid(self, n_channels: int) -> torch.Tensor:
        """Ids as ``(B, C, T)`` for channel-major token sequences."""
        if self.ids is None:
            raise ValueError("these tokens are continuous; there are no ids to arrange")
        return self.ids.view(self.batch_size, n_channels, -1)


class Tokenizer(nn.Module):
    """Base class. Subclasses implement :meth:`encode` (and :meth:`decode` when invertible).

    Attributes: ``discrete`` (ids produced), ``sfreq`` (the rate the tokenizer expects, or
    None for any rate).
    """

    discrete: bool = False
    sfreq: float | None = None

    def check_input(self, x: torch.Tensor, sfreq: float | None = None) -> torch.Tensor:
        if sfreq is not None and self.sfreq is not None and float(sfreq) != float(self.sfreq):
            raise SignalError(f"{type(self).__name__} expects signals sampled at {self.sfreq:g} "
                              f"Hz, got {float(sfreq):g} Hz; resample first")
        if x.dim() == 2:
            x = x[:, None]
        if x.dim() != 3:
            raise SignalError(f"{type(self).__name__} expects (batch, channels, times), got "
                              f"shape {tuple(x.shape)}")
        return x

    def encode(self, x: torch.Tensor) -> Tokens:
        raise NotImplementedError

    def decode(self, tokens: Tokens) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} defines no inverse (decode)")

    def forward(self, x: torch.Tensor) -> Tokens:
        return self.encode(x)

    # --- scikit-learn style -----------------------------------------------------------------
    def fit(self, X, y=None, **kwargs) -> Tokenizer:
        """Fixed tokenizers have nothing to learn; learned ones override this."""
        return self

    @torch.inference_mode()
    def transform(self, X, batch_size: int = 256) -> np.ndarray:
        """Numpy ``(n, C, T)`` -> ids ``(n, N)`` (discrete) or embeddings ``(n, N, D)``."""
        X = check_array(X, ndim=(2, 3), name="X")
        was_training = self.training
        self.eval()
        outs = []
        device = next(self.parameters(), torch.empty(0)).device
        for start in range(0, len(X), batch_size):
            xb = torch.as_tensor(np.asarray(X[start:start + batch_size], np.float32), device=device)
            tok = self.encode(xb)
            outs.append((tok.ids if self.discrete else tok.embeddings).cpu().numpy())
        self.train(was_training)
        return np.concatenate(outs)


class ChannelIndependent(Tokenizer):
    """Run a single-channel tokenizer over every channel of a multichannel batch and regroup
    the tokens channel-major: ``(B, C, T)`` -> ``C x N`` tokens with their channel index."""

    def __init__(self, tokenizer: Tokenizer):
        super().__init__()
        self.tokenizer = tokenizer
        self.discrete = tokenizer.discrete
        self.sfreq = tokenizer.sfreq

    def encode(self, x: torch.Tensor) -> Tokens:
        x = self.check_input(x)
        b, c, t = x.shape
        tok = self.tokenizer.encode(x.reshape(b * c, 1, t))
        n = len(tok)

        def regroup(z: torch.Tensor | None) -> torch.Tensor | None:
            return None if z is None else z.reshape(b, c * n, *z.shape[2:])

        return Tokens(
            embeddings=regroup(tok.embeddings), ids=regroup(tok.ids),
            time_index=tok.time_index.repeat(c),
            channel_index=torch.arange(c, device=x.device).repeat_interleave(n),
            freq_index=None if tok.freq_index is None else tok.freq_index.repeat(c),
            length=tok.length,
        )

    def decode(self, tokens: Tokens) -> torch.Tensor:
        c = int(tokens.channel_index.max()) + 1
        b = tokens.batch_size
        n = len(tokens) // c
        per_channel = Tokens(
            None if tokens.embeddings is None else
            tokens.embeddings.reshape(b * c, n, *tokens.embeddings.shape[2:]),
            None if tokens.ids is None else tokens.ids.reshape(b * c, n),
            tokens.time_index[:n],  # one channel each: the inner tokenizer's own view
            channel_index=torch.zeros(n, dtype=torch.long, device=tokens.time_index.device),
            length=tokens.length)
        out = self.tokenizer.decode(per_channel)
        return out.reshape(b, c, *out.shape[2:])

    def fit(self, X, y=None, **kwargs) -> ChannelIndependent:
        X = np.asarray(X)
        self.tokenizer.fit(X.reshape(-1, 1, X.shape[-1]), **kwargs)
        return self
