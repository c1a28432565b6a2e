"""Bipolar derivations, e.g. the 16-channel 'double banana' of TUH-style EEG models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .core import OLD_1020_NAMES, ChannelError, ChannelSet, normalize_channel_name

# Longitudinal bipolar montage used by BIOT / TFM-Tokenizer on TUAB, TUEV and CHB-MIT
# (10-20 names in modern spelling; T3/T4/T5/T6 are accepted as aliases).
TCP_DOUBLE_BANANA: tuple[tuple[str, str], ...] = (
    ("Fp1", "F7"), ("F7", "T7"), ("T7", "P7"), ("P7", "O1"),
    ("Fp2", "F8"), ("F8", "T8"), ("T8", "P8"), ("P8", "O2"),
    ("Fp1", "F3"), ("F3", "C3"), ("C3", "P3"), ("P3", "O1"),
    ("Fp2", "F4"), ("F4", "C4"), ("C4", "P4"), ("P4", "O2"),
)


def _lookup(channels: ChannelSet) -> dict[str, int]:
    index = {}
    for i, name in enumerate(channels.names):
        key = normalize_channel_name(name)
        index.setdefault(key.lower(), i)
        index.setdefault(OLD_1020_NAMES.get(key, key).lower(), i)
    return index


def bipolar_matrix(channels: ChannelSet, pairs: Sequence[tuple[str, str]]
                   ) -> tuple[np.ndarray, ChannelSet]:
    """``(n_pairs, n_channels)`` matrix of anode - cathode and the derived channel set."""
    index = _lookup(channels)
    matrix = np.zeros((len(pairs), len(channels)))
    missing = []
    for row, (anode, cathode) in enumerate(pairs):
        for name, sign in ((anode, 1.0), (cathode, -1.0)):
            key = normalize_channel_name(name)
            i = index.get(key.lower(), index.get(OLD_1020_NAMES.get(key, key).lower()))
            if i is None:
                missing.append(name)
            else:
                matrix[row, i] = sign
    if missing:
        raise ChannelError(f"bipolar montage needs channels {sorted(set(missing))}, which the "
                           f"recording lacks (it has {list(channels.names)})")
    names = tuple(f"{a}-{c}" for a, c in pairs)
    types = tuple(channels.types[int(np.flatnonzero(matrix[r] > 0)[0])] for r in range(len(pairs)))
    return matrix, ChannelSet(names, types)


def bipolar_reference(recording, pairs: Sequence[tuple[str, str]] = TCP_DOUBLE_BANANA):
    """A new :class:`~sigformer.Recording` of bipolar derivations (default: double banana)."""
    matrix, channels = bipolar_matrix(recording.channels, pairs)
    # replace() builds the same Recording type without this layer importing it.
    return replace(recording, data=matrix @ recording.data, channels=channels,
                   annotations=list(recording.annotations))
