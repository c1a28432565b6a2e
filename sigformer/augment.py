"""Data augmentation for EEG trial batches, applied on the fly during training.

Each augmentation is a small callable ``aug(X, y, generator) -> (X, y)`` on a torch batch
``X (batch, channels, times)``, ``y (batch,)``. Per-trial transforms act on each trial with
probability ``p``; :class:`SegmentRecombination` *adds* new trials to the batch, as the
segmentation-and-reconstruction (S&R) augmentation of EEG Conformer / DBConformer's lineage
does (Lotte 2015): each artificial trial of a class is stitched from time segments of random
training trials of the same class, segment ``k`` staying at position ``k``.

Give them to :class:`~sigformer.estimators.SignalClassifier` (``augmentation=...``) or
:func:`~sigformer.training.train_classifier` as objects, names (``"gaussian_noise"``) or specs
(``{"name": "segment_recombination", "n_segments": 8}``); :func:`to_specs` turns them back into
JSON for checkpoints. Frequency shift uses braindecode's functional implementation.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np
import torch


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _chosen(generator: torch.Generator, n: int, p: float) -> torch.Tensor:
    """Boolean mask of the trials an augmentation applies to."""
    return torch.rand(n, generator=generator) < p


@dataclass
class Augmentation:
    """Base class: subclasses set ``name`` and implement :meth:`__call__`."""

    name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        p = getattr(self, "p", None)
        if p is not None and not 0 <= p <= 1:
            raise ValueError(f"{type(self).__name__}: p is a probability in [0, 1], got {p}")

    def prepare(self, X: np.ndarray, y: np.ndarray) -> None:
        """Called once with the training set before training (most augmentations ignore it)."""

    def __call__(self, X: torch.Tensor, y: torch.Tensor, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def to_spec(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


@dataclass
class TimeShift(Augmentation):
    """Shift each trial by up to ``max_shift`` of its length (zero-filled): jitter of the cue."""

    max_shift: float = 0.1
    p: float = 0.5
    name: ClassVar[str] = "time_shift"

    def __call__(self, X, y, generator):
        n_times = X.shape[-1]
        limit = int(self.max_shift * n_times)
        if limit < 1:
            return X, y
        out = X.clone()
        shifts = torch.randint(-limit, limit + 1, (len(X),), generator=generator)
        for i in torch.nonzero(_chosen(generator, len(X), self.p)).flatten().tolist():
            s = int(shifts[i])
            out[i] = 0
            if s >= 0:
                out[i, :, s:] = X[i, :, :n_times - s]
            else:
                out[i, :, :n_times + s] = X[i, :, -s:]
        return out, y


@dataclass
class RandomCrop(Augmentation):
    """Crop a random window of ``1 - max_crop`` of the trial and stretch it back to full length
    by linear interpolation (a mild time warp plus a random start)."""

    max_crop: float = 0.1
    p: float = 0.5
    name: ClassVar[str] = "random_crop"

    def __call__(self, X, y, generator):
        n_times = X.shape[-1]
        keep = max(2, int(round((1 - self.max_crop) * n_times)))
        if keep >= n_times:
            return X, y
        out = X.clone()
        starts = torch.randint(0, n_times - keep + 1, (len(X),), generator=generator)
        for i in torch.nonzero(_chosen(generator, len(X), self.p)).flatten().tolist():
            window = X[i:i + 1, :, int(starts[i]):int(starts[i]) + keep]
            out[i] = torch.nn.functional.interpolate(window, size=n_times, mode="linear",
                                                     align_corners=True)[0]
        return out, y


@dataclass
class AmplitudeScale(Augmentation):
    """Multiply each trial by a factor drawn uniformly from ``scale``."""

    scale: tuple[float, float] = (0.8, 1.2)
    p: float = 0.5
    name: ClassVar[str] = "amplitude_scale"

    def __call__(self, X, y, generator):
        factors = _uniform(generator, len(X), *self.scale)
        factors = torch.where(_chosen(generator, len(X), self.p), factors, torch.ones_like(factors))
        return X * factors.to(X.device, X.dtype)[:, None, None], y


@dataclass
class GaussianNoise(Augmentation):
    """Add white noise of ``std`` times each trial's own standard deviation (relative, so the
    same setting works for volts, microvolts or standardised data)."""

    std: float = 0.1
    p: float = 0.5
    name: ClassVar[str] = "gaussian_noise"

    def __call__(self, X, y, generator):
        noise = torch.randn(X.shape, generator=generator).to(X.device, X.dtype)
        level = self.std * X.std(dim=(1, 2), keepdim=True)
        mask = _chosen(generator, len(X), self.p).to(X.device)[:, None, None]
        return X + mask * level * noise, y


@dataclass
class ChannelDropout(Augmentation):
    """Zero each channel with probability ``p_drop`` (simulates bad or missing electrodes)."""

    p_drop: float = 0.2
    p: float = 0.5
    name: ClassVar[str] = "channel_dropout"

    def __call__(self, X, y, generator):
        drop = torch.rand(X.shape[:2], generator=generator) < self.p_drop
        drop &= _chosen(generator, len(X), self.p)[:, None]
        return X * (~drop).to(X.device, X.dtype)[:, :, None], y


@dataclass
class FrequencyShift(Augmentation):
    """Shift the spectrum of each trial by up to ``max_shift_hz`` (braindecode's analytic-signal
    frequency shift; needs the sampling rate)."""

    sfreq: float = 0.0
    max_shift_hz: float = 2.0
    p: float = 0.5
    name: ClassVar[str] = "frequency_shift"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.sfreq or self.sfreq <= 0:
            raise ValueError("FrequencyShift needs the sampling rate: pass sfreq=<Hz> (> 0)")

    def __call__(self, X, y, generator):
        from braindecode.augmentation.functional import frequency_shift

        deltas = _uniform(generator, len(X), -self.max_shift_hz, self.max_shift_hz)
        deltas = torch.where(_chosen(generator, len(X), self.p), deltas, torch.zeros_like(deltas))
        shifted, _ = frequency_shift(X.float(), y, deltas.to(X.device), self.sfreq)
        return shifted.to(X.dtype), y


@dataclass
class SegmentRecombination(Augmentation):
    """S&R: append ``ratio`` x batch-size artificial trials, each stitched from ``n_segments``
    equal time segments of random training trials of one class (class kept, positions kept).

    The segment pool is the whole training set (given by :meth:`prepare`), as in EEG
    Conformer's ``interaug``; without ``prepare`` the batch itself is the pool.
    """

    n_segments: int = 8
    ratio: float = 1.0
    name: ClassVar[str] = "segment_recombination"

    def __post_init__(self) -> None:
        if self.n_segments < 1:
            raise ValueError(f"n_segments must be >= 1, got {self.n_segments}")
        if self.ratio <= 0:
            raise ValueError(f"ratio must be > 0, got {self.ratio}")
        self._pool: dict[int, torch.Tensor] = {}

    def prepare(self, X: np.ndarray, y: np.ndarray) -> None:
        X = torch.as_tensor(np.asarray(X, dtype=np.float32))
        y = np.asarray(y)
        self._pool = {int(c): X[torch.as_tensor(y == c)] for c in np.unique(y)}

    def recombine(self, pool: torch.Tensor, n_new: int, generator: torch.Generator
                  ) -> torch.Tensor:
        n_times = pool.shape[-1]
        edges = np.linspace(0, n_times, self.n_segments + 1).astype(int)
        picks = torch.randint(0, len(pool), (n_new, self.n_segments), generator=generator)
        out = torch.empty((n_new, *pool.shape[1:]), dtype=pool.dtype)
        for k, (start, stop) in enumerate(zip(edges[:-1], edges[1:])):
            out[:, :, start:stop] = pool[picks[:, k], :, start:stop]
        return out

    def __call__(self, X, y, generator):
        new_X, new_y = [X], [y]
        for c in torch.unique(y).tolist():
            n_new = int(round(self.ratio * int((y == c).sum())))
            pool = self._pool.get(int(c))
            pool = X[y == c].detach().cpu() if pool is None or len(pool) == 0 else pool
            if n_new == 0:
                continue
            new_X.append(self.recombine(pool, n_new, generator).to(X.device, X.dtype))
            new_y.append(torch.full((n_new,), c, dtype=y.dtype, device=y.device))
        return torch.cat(new_X), torch.cat(new_y)

    def to_spec(self) -> dict[str, Any]:
        return {"name": self.name, "n_segments": self.n_segments, "ratio": self.ratio}


AUGMENTATIONS: dict[str, type[Augmentation]] = {
    cls.name: cls for cls in (TimeShift, RandomCrop, AmplitudeScale, GaussianNoise,
                              ChannelDropout, FrequencyShift, SegmentRecombination)
}


def _from_spec(spec: str | dict | Augmentation, sfreq: float | None) -> Augmentation:
    if isinstance(spec, Augmentation):
        # a copy: prepare() stores the training set on the object it is given, and the
        # user's object is a constructor argument (stored untouched, and pickled with it)
        return copy.copy(spec)
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise TypeError(f"an augmentation is an Augmentation object, a name or a dict with a "
                        f"'name' key; got {spec!r}")
    params = {k: v for k, v in spec.items() if k != "name"}
    cls = AUGMENTATIONS.get(spec["name"])
    if cls is None:
        raise ValueError(f"unknown augmentation {spec['name']!r}; available: "
                         f"{sorted(AUGMENTATIONS)}")
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"augmentation {spec['name']!r} has no parameter(s) {unknown}; "
                         f"parameters: {sorted(allowed)}")
    if cls is FrequencyShift and "sfreq" not in params and sfreq:
        params["sfreq"] = sfreq
    if isinstance(params.get("scale"), list):
        params["scale"] = tuple(params["scale"])
    return cls(**params)


def build_augmentations(specs, sfreq: float | None = None) -> list[Augmentation]:
    """Augmentation objects from ``None``, one spec, or a sequence of specs (names, dicts or
    objects). ``sfreq`` fills in :class:`FrequencyShift`'s rate when a spec omits it."""
    if specs is None:
        return []
    if isinstance(specs, (str, dict, Augmentation)):
        specs = [specs]
    if not isinstance(specs, Sequence):
        raise TypeError(f"augmentation must be None, a name, a dict, an Augmentation or a list "
                        f"of those; got {type(specs).__name__}")
    return [_from_spec(s, sfreq) for s in specs]


def to_specs(specs) -> list[dict[str, Any]] | None:
    """JSON-able form of ``specs`` (for checkpoints); ``None`` stays ``None``."""
    if specs is None:
        return None
    if isinstance(specs, (str, dict, Augmentation)):
        specs = [specs]
    out = []
    for s in specs:
        if isinstance(s, Augmentation):
            spec = s.to_spec()
            if isinstance(spec.get("scale"), tuple):
                spec["scale"] = list(spec["scale"])
            out.append(spec)
        else:
            out.append(s if isinstance(s, dict) else {"name": s})
    return out


def apply_augmentations(augmentations: Sequence[Augmentation], X: torch.Tensor,
                        y: torch.Tensor, generator: torch.Generator
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    for aug in augmentations:
        X, y = aug(X, y, generator)
    return X, y
