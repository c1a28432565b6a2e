"""Stages in sequence, and the registry that turns configs into stages."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..channels import ChannelSet
from .base import Stage, StageConfigError, StreamFormat, _jsonable
from .channel_ops import AdaptChannels, Bipolar, PickChannels, Rereference
from .filters import BandPass, Notch, _fuse_filters
from .resample import Resample
from .scaling import Scale, Standardize


class Pipeline(Stage):
    """Stages run in sequence; itself a stage.

    ``sfreq`` / ``channels`` optionally declare the input format, so that the pipeline works
    as an sklearn transformer on plain arrays (``fit(X)`` needs no other information).
    """

    config_name = "pipeline"

    def __init__(self, stages: Sequence[Stage], sfreq: float | None = None,
                 channels: ChannelSet | Sequence[str] | None = None):
        self.stages = stages
        self.sfreq = sfreq
        self.channels = channels

    @property
    def streamable(self) -> bool:  # type: ignore[override]
        return all(s.streamable for s in self.stages)

    def _declared_input(self) -> tuple[float | None, ChannelSet | Sequence[str] | None]:
        return self.sfreq, self.channels

    def _configure(self, fmt: StreamFormat) -> StreamFormat:
        for stage in self.stages:
            fmt = stage.configure(fmt.sfreq, fmt.channels)
        self._plan = _fuse_filters(list(self.stages))
        return fmt

    def reset(self) -> None:
        for stage in self.stages:
            stage.reset()
        for step in getattr(self, "_plan", []):
            step.reset()

    def _process(self, chunk: np.ndarray) -> np.ndarray:
        for step in self._plan:
            if chunk.shape[1] == 0:  # e.g. a resampler that had no complete output yet
                return self._empty(chunk.dtype)
            chunk = step._process(chunk)
        return chunk

    def _offline(self, data: np.ndarray) -> np.ndarray:
        for stage in self.stages:
            data = stage._offline(data)
        return data

    def unit_out(self, unit: str) -> str:
        for stage in self.stages:
            unit = stage.unit_out(unit)
        return unit

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"stage": "pipeline",
                                  "stages": [s.get_config() for s in self.stages]}
        if self.sfreq is not None:
            config["sfreq"] = _jsonable(self.sfreq, "Pipeline.sfreq")
        if self.channels is not None:
            config["channels"] = _jsonable(self.channels, "Pipeline.channels")
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Pipeline:
        """The reverse of :meth:`get_config` (also accepts a bare list of stage configs)."""
        if not isinstance(config, Mapping):
            config = {"stage": "pipeline", "stages": list(config)}
        stage = stage_from_config(config)
        if not isinstance(stage, Pipeline):
            raise StageConfigError(f"expected a pipeline config, got stage {config['stage']!r}")
        return stage



# --- registry and configs ----------------------------------------------------------------

STAGES: dict[str, type[Stage]] = {
    "bandpass": BandPass, "notch": Notch, "resample": Resample, "rereference": Rereference,
    "pick": PickChannels, "scale": Scale, "standardize": Standardize,
    "adapt_channels": AdaptChannels, "bipolar": Bipolar,
}


def registry_name(cls: type[Stage]) -> str:
    """The name a stage class has in :data:`STAGES` (and in configs)."""
    if cls is Pipeline:
        return "pipeline"
    for name, registered in STAGES.items():
        if registered is cls:
            return name
    raise StageConfigError(f"{cls.__name__} is not a registered stage, so it has no config; "
                           f"registered: {sorted(STAGES)}")


def _constructor_arguments(cls: type[Stage]) -> dict[str, inspect.Parameter]:
    params = inspect.signature(cls.__init__).parameters
    return {k: p for k, p in params.items() if k != "self"}


def stage_from_config(config: Mapping[str, Any], *, legacy_defaults: bool = True) -> Stage:
    """Build a stage from ``{"stage": name, **arguments}`` (the reverse of ``get_config``).

    A saved config (a bundle's chain, an export's ``preprocess.json``) may predate arguments
    a stage gained since; with ``legacy_defaults`` (the default) those it lacks take the
    value that reproduces what it did then (``Stage.legacy_config``, e.g. ``standardize``
    without ``bias_correction`` runs uncorrected). ``get_config`` writes every argument, so
    configs saved now are unaffected. ``legacy_defaults=False`` gives a new object's
    defaults instead: for configs written now by a person (a YAML ``preprocess`` list).
    """
    if not isinstance(config, Mapping) or "stage" not in config:
        raise StageConfigError(f"a stage config is a mapping with a 'stage' key naming one of "
                               f"{sorted(STAGES)} or 'pipeline', got {config!r}")
    arguments = dict(config)
    name = arguments.pop("stage")
    if name == "pipeline":
        stages = arguments.pop("stages", None)
        if not isinstance(stages, Sequence) or isinstance(stages, str):
            raise StageConfigError("a pipeline config needs 'stages': a list of stage configs")
        arguments["stages"] = [stage_from_config(c, legacy_defaults=legacy_defaults)
                               for c in stages]
    cls = Pipeline if name == "pipeline" else STAGES.get(name)
    if cls is None:
        raise StageConfigError(f"unknown stage {name!r}; known stages: {sorted(STAGES)} "
                               "and 'pipeline'")
    if legacy_defaults:
        arguments = {**cls.legacy_config, **arguments}
    accepted = _constructor_arguments(cls)
    unknown = sorted(set(arguments) - set(accepted))
    if unknown:
        raise StageConfigError(f"stage {name!r} has no argument(s) {unknown}; it takes "
                               f"{list(accepted)}")
    missing = [k for k, p in accepted.items()
               if p.default is inspect.Parameter.empty and k not in arguments]
    if missing:
        raise StageConfigError(f"stage {name!r} needs the argument(s) {missing}")
    try:
        stage = cls(**arguments)
        stage._validate_params()  # a saved config is checked when loaded, not at first use
        return stage
    except (TypeError, ValueError) as err:
        raise StageConfigError(f"stage {name!r} with {arguments}: {err}") from err
