"""Channel operations: pick, re-reference, adapt onto a model's channels, bipolar."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..channels import TCP_DOUBLE_BANANA, ChannelAdapter, ChannelSet, bipolar_matrix
from .base import Stage, StreamFormat

# --- channel operations -----------------------------------------------------------------

class PickChannels(Stage):
    """Keep (and order) the named channels; ``normalize=True`` matches after name clean-up."""

    config_name = "pick"

    def __init__(self, names: Sequence[str], normalize: bool = False):
        self.names, self.normalize = names, normalize

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        chans = fmt.channels.normalized() if self.normalize else fmt.channels
        names = [self.names] if isinstance(self.names, str) else list(self.names)
        self._idx = chans.indices(names)
        return StreamFormat(fmt.sfreq, chans.pick(names))

    def _process(self, chunk: np.ndarray) -> np.ndarray:
        return chunk[self._idx]


class Rereference(Stage):
    """Subtract the average of all channels (``"average"``) or of the named reference ones."""

    config_name = "rereference"

    def __init__(self, ref: str | Sequence[str] = "average"):
        self.ref = ref

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        if self.ref == "average":
            self._ref_idx = list(range(len(fmt.channels)))
        else:
            names = [self.ref] if isinstance(self.ref, str) else list(self.ref)
            self._ref_idx = fmt.channels.indices(names)
        return fmt

    def _process(self, chunk: np.ndarray) -> np.ndarray:
        return chunk - chunk[self._ref_idx].mean(axis=0, keepdims=True)


class AdaptChannels(Stage):
    """Map the stream onto a model's channel set with a :class:`ChannelAdapter` (reorder,
    drop extras, interpolate or zero-fill missing channels). ``mask_`` marks recorded ones."""

    config_name = "adapt_channels"

    def __init__(self, target: ChannelSet | Sequence[str] | Mapping[str, Any],
                 fill: str = "auto", min_match: float = 0.5):
        self.target, self.fill, self.min_match = target, fill, min_match

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        # A mapping is a ChannelSet.to_dict() (names, types, positions), as configs store it.
        target = ChannelSet.from_dict(self.target) if isinstance(self.target, Mapping) \
            else self.target
        self._adapter = ChannelAdapter(target, fill=self.fill,
                                       min_match=self.min_match).fit(fmt.channels)
        self.mask_ = self._adapter.mask_
        return StreamFormat(fmt.sfreq, self._adapter.target)

    def _process(self, chunk: np.ndarray) -> np.ndarray:
        return self._adapter.matrix_ @ chunk


class Bipolar(Stage):
    """Bipolar derivations (anode - cathode); default: the 16-channel double banana."""

    config_name = "bipolar"

    def __init__(self, pairs: Sequence[Sequence[str]] | None = None):
        self.pairs = pairs

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        pairs = [tuple(p) for p in (self.pairs or TCP_DOUBLE_BANANA)]
        self._matrix, channels = bipolar_matrix(fmt.channels, pairs)
        return StreamFormat(fmt.sfreq, channels)

    def _process(self, chunk: np.ndarray) -> np.ndarray:
        return self._matrix @ chunk
