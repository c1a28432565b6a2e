"""Map any recording onto the channel set a model was built for.

The adapter reorders channels, drops extras and fills missing ones (spherical-spline
interpolation through MNE where positions exist, zeros otherwise), returning a mask of which
model channels were really recorded. The map is a fixed linear matrix, so it applies the same
way to a whole recording, a batch of epochs, or a streaming chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .core import OLD_1020_NAMES, ChannelError, ChannelSet, normalize_channel_name

FILL_MODES = ("auto", "interpolate", "zeros")


def spline_interpolation_matrix(source: ChannelSet, target_names: Sequence[str],
                                target_positions: np.ndarray) -> np.ndarray:
    """``(n_target, n_source)`` spherical-spline weights (Perrin et al. 1989), computed by MNE.

    MNE's ``interpolate_bads`` is applied to an identity signal: the interpolated rows of an
    identity input are exactly the interpolation weights.
    """
    import mne

    n_src = len(source)
    names = list(source.names) + list(target_names)
    info = mne.create_info(names, 100.0, "eeg")
    positions = np.vstack([source.positions, target_positions])
    montage = mne.channels.make_dig_montage(ch_pos=dict(zip(names, positions)),
                                            coord_frame="head")
    data = np.vstack([np.eye(n_src), np.zeros((len(target_names), n_src))])
    raw = mne.io.RawArray(data, info, verbose="error")
    raw.set_montage(montage, verbose="error")
    raw.info["bads"] = list(target_names)
    try:
        raw.interpolate_bads(reset_bads=True, origin="auto", verbose="error")
    except Exception:  # too few digitisation points to fit a head sphere: use the origin
        raw.interpolate_bads(reset_bads=True, origin=(0.0, 0.0, 0.0), verbose="error")
    return raw.get_data(picks=list(target_names))


# both directions, lower-case: an old name finds its modern position and the reverse
_ALIASES = {**{k.lower(): v.lower() for k, v in OLD_1020_NAMES.items()},
            **{v.lower(): k.lower() for k, v in OLD_1020_NAMES.items()}}


class ChannelAdapter:
    """Adapt recordings to ``target`` channels.

    Parameters
    ----------
    target : the model's channel set (names; positions are needed for interpolation).
    fill : ``"auto"`` (spherical splines where the missing channel and at least
        ``min_interpolation_sources`` recorded channels have positions, zeros otherwise),
        ``"interpolate"`` (splines, and an error when positions are missing) or ``"zeros"``.
    min_match : fraction of target channels that must be present in the recording.
    normalize : compare names after :func:`normalize_channel_name` (``Fc5.`` matches ``FC5``).

    After :meth:`fit`, ``matrix_`` (n_target, n_source) maps recorded to model channels,
    ``mask_`` marks target channels that were recorded, and ``interpolated_``/``zero_filled_``
    list the filled ones.
    """

    def __init__(self, target: ChannelSet | Sequence[str], *, fill: str = "auto",
                 min_match: float = 0.5, normalize: bool = True,
                 min_interpolation_sources: int = 4):
        if fill not in FILL_MODES:
            raise ValueError(f"fill must be one of {FILL_MODES}, got {fill!r}")
        if not 0 < min_match <= 1:
            raise ValueError(f"min_match is a fraction in (0, 1], got {min_match}")
        self.target = target if isinstance(target, ChannelSet) else ChannelSet(tuple(target))
        self.fill, self.min_match, self.normalize = fill, min_match, normalize
        self.min_interpolation_sources = min_interpolation_sources

    def _key(self, name: str) -> str:
        return (normalize_channel_name(name) if self.normalize else name).lower()

    def _source_lookup(self, source: ChannelSet):
        """``find(target_name) -> source index or None``: the exact (normalised) name first,
        then the old / modern 10-20 alias (T3 <-> T7, T4 <-> T8, T5 <-> P7, T6 <-> P8, as TUH
        recordings name them). A target channel that two recording channels claim (e.g. "EEG
        Fp1-REF" and "EEG Fp1-LE") is refused: which one is meant is not known."""
        exact: dict[str, list[int]] = {}
        for i, name in enumerate(source.names):
            exact.setdefault(self._key(name), []).append(i)

        def find(name: str) -> int | None:
            key = self._key(name)
            candidates = exact.get(key) or (exact.get(_ALIASES.get(key, ""))
                                            if self.normalize else None)
            if not candidates:
                return None
            if len(candidates) > 1:
                clash = [source.names[i] for i in candidates]
                raise ChannelError(f"recording channels {clash} are the same electrode as "
                                   f"model channel {name!r} once normalised: pick one before "
                                   f"adapting")
            return candidates[0]

        return find

    def fit(self, source) -> ChannelAdapter:
        """Fit on the recording's channels: a :class:`ChannelSet`, names, an ``mne.Info``,
        or anything carrying one (``mne.io.Raw``/``mne.Epochs``, a sigformer ``Recording``)."""
        source = as_channel_set(source)
        find = self._source_lookup(source)
        n_t, n_s = len(self.target), len(source)
        matrix = np.zeros((n_t, n_s))
        mask = np.zeros(n_t, bool)
        for t, name in enumerate(self.target.names):
            s = find(name)
            if s is not None:
                matrix[t, s] = 1.0
                mask[t] = True
        n_found = int(mask.sum())
        missing = [n for n, m in zip(self.target.names, mask) if not m]
        if n_found < self.min_match * n_t:
            raise ChannelError(
                f"only {n_found} of the {n_t} model channels are in the recording (at least "
                f"{self.min_match:.0%} needed); missing {missing}. Recording channels: "
                f"{list(source.names)}"
            )
        self.interpolated_, self.zero_filled_ = [], list(missing)
        if missing and self.fill in ("auto", "interpolate"):
            self._interpolate(source, matrix, mask)
        if self.fill == "interpolate" and self.zero_filled_:
            raise ChannelError(
                f"cannot interpolate {self.zero_filled_}: spherical splines need 3-D positions "
                f"for the missing channels and for at least {self.min_interpolation_sources} "
                "recorded ones (attach a montage with ChannelSet.with_montage(), or use "
                "fill='auto' / 'zeros')")
        self.source_, self.matrix_, self.mask_ = source, matrix, mask
        return self

    def _interpolate(self, source: ChannelSet, matrix: np.ndarray, mask: np.ndarray) -> None:
        if source.positions is None or self.target.positions is None:
            return
        usable = [i for i in np.flatnonzero(matrix.any(0)) if np.isfinite(source.positions[i]).all()]
        fillable = [t for t in np.flatnonzero(~mask)
                    if np.isfinite(self.target.positions[t]).all()]
        if len(usable) < self.min_interpolation_sources or not fillable:
            return
        sources = source.pick([source.names[i] for i in usable])
        names = [f"__target_{self.target.names[t]}" for t in fillable]
        weights = spline_interpolation_matrix(sources, names, self.target.positions[fillable])
        for row, t in zip(weights, fillable):
            matrix[t, usable] = row
        self.interpolated_ = [self.target.names[t] for t in fillable]
        self.zero_filled_ = [n for n in self.zero_filled_ if n not in self.interpolated_]

    def transform(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(..., n_source, n_times)`` -> ``(..., n_target, n_times)`` and the channel mask."""
        if not hasattr(self, "matrix_"):
            raise RuntimeError("ChannelAdapter is not fitted; call fit(recording_channels)")
        data = np.asarray(data)
        if data.shape[-2] != self.matrix_.shape[1]:
            raise ChannelError(f"adapter was fitted on {self.matrix_.shape[1]} channels, got "
                               f"data with {data.shape[-2]}")
        # only the source channels the matrix uses: 0 x NaN is NaN, so a NaN in a dropped
        # stim or aux channel would otherwise reach every output channel
        used = np.flatnonzero(self.matrix_.any(0))
        return (np.einsum("ts,...sn->...tn", self.matrix_[:, used], data[..., used, :]),
                self.mask_.copy())

    def adapt(self, recording):
        """A :class:`~sigformer.Recording` on the target channels (plus the mask)."""
        self.fit(recording.channels)
        data, mask = self.transform(recording.data)
        # replace() builds the same Recording type without this layer importing it.
        adapted = replace(recording, data=data, channels=self.target,
                          annotations=list(recording.annotations))
        return adapted, mask


def as_channel_set(source) -> ChannelSet:
    """A :class:`ChannelSet` from names, an ``mne.Info`` or an object with ``.info`` /
    ``.channels`` (MNE Raw/Epochs, sigformer Recording/Epochs)."""
    if isinstance(source, ChannelSet):
        return source
    channels = getattr(source, "channels", None)
    if isinstance(channels, ChannelSet):
        return channels
    info = getattr(source, "info", None)
    if info is not None and type(source).__module__.startswith("mne"):
        source = info
    if type(source).__name__ == "Info" and "chs" in source:
        return ChannelSet.from_mne_info(source)
    if isinstance(source, str):
        raise ChannelError(f"expected channel names, a ChannelSet or an mne.Info, got the "
                           f"string {source!r}; pass a list of names")
    try:
        return ChannelSet(tuple(source))
    except TypeError:
        raise ChannelError(f"expected channel names, a ChannelSet or an mne.Info, got "
                           f"{type(source).__name__}") from None
