"""``task: estimate_channel`` (alias ``ofdm``): OFDM channel estimation. Simulate (or load)
slots, fit LS / sample-LMMSE baselines and train the models, sweep NMSE over SNR, delay spread
and Doppler against the genie-LMMSE bound, and write one bundle per model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..channels import ChannelSet
from ..spec import SignalSpec
from .config import BaseConfig, OFDMTaskConfig, PipelineConfigError, ProgressOnlyTrainConfig
from .registry import RunContext, Task, register_task, setter


class EstimateChannelConfig(BaseConfig):
    task: Literal["estimate_channel"] = "estimate_channel"
    ofdm: OFDMTaskConfig = Field(default_factory=OFDMTaskConfig)
    train: ProgressOnlyTrainConfig = Field(default_factory=ProgressOnlyTrainConfig)


def grid_spec(ofdm_config: dict, antennas: int = 1) -> SignalSpec:
    """An OFDM-grid spec: ``sfreq`` is the subcarrier spacing, one channel per receive
    antenna; the grid and pilot layout ride along in ``extra``."""
    channels = ChannelSet(tuple(f"rx{i}" for i in range(antennas)), ("antenna",) * antennas)
    return SignalSpec(float(ofdm_config.get("subcarrier_spacing", 15e3)), channels,
                      "ofdm_grid", None, "a.u.", {"ofdm_config": ofdm_config})


def run_estimate_channel(cfg: EstimateChannelConfig, ctx: RunContext) -> dict[str, Any]:
    from ..bundle import promote_to_bundle
    from ..guardrails import check_nmse
    from ..rf.ofdm import run_ofdm_pipeline

    report = run_ofdm_pipeline(cfg, ctx.dir, log=ctx.log)
    for name, row in _mean_nmse(report).items():
        if check_nmse(row):
            report.setdefault("warnings", []).append(f"{name}: NMSE near 0 dB")
    models = ctx.dir / "models"
    if ctx.main and models.is_dir():
        for folder in sorted(p for p in models.iterdir() if p.is_dir()):
            extra = json.loads((folder / "config.json").read_text()).get("extra", {})
            spec = grid_spec(extra.get("ofdm_config", {}))
            promote_to_bundle(folder, task="estimate_channel", input_spec=spec,
                              model_spec=spec,
                              provenance={"summary": f"OFDM channel estimation, TDL-"
                                                     f"{cfg.ofdm.profile}",
                                          "data": cfg.ofdm.model_dump(mode="json",
                                                                      exclude={"models"})})
    return report


def _mean_nmse(report: dict) -> dict[str, float]:
    """Mean NMSE (dB) per learned estimator over the sweep points, when reported."""
    import numpy as np

    values: dict[str, list[float]] = {}
    for point in report.get("sweeps", []) or []:
        for name, value in (point.get("nmse_db") or {}).items() if isinstance(point, dict) \
                else ():
            if isinstance(value, (int, float)):
                values.setdefault(name, []).append(float(value))
    learned = set(report.get("n_parameters") or {})
    return {k: float(np.mean(v)) for k, v in values.items() if k in learned and v}


def _max_epochs(raw: dict, value: int) -> None:
    for model in (raw.get("ofdm") or {}).get("models", []) or []:
        model["max_epochs"] = value


def _data(raw: dict, path: str) -> None:
    p = Path(path)
    section = raw.setdefault("ofdm", {})
    if p.is_file() and p.suffix == ".npz":
        section["train_file"] = str(p)
    elif p.is_dir():
        section["deepmimo"] = str(p)
    else:
        raise PipelineConfigError(f"--data {path}: channel estimation reads a training npz "
                                  f"(sigformer's OFDM dataset) or a DeepMIMO scenario folder")


def _prepare_raw(raw: dict, requested: str) -> None:
    raw["task"] = "estimate_channel"


register_task(Task(
    name="estimate_channel", config_cls=EstimateChannelConfig, run=run_estimate_channel,
    overrides={"progress": setter("train.progress_bar"), "max_epochs": _max_epochs,
               "data": _data, "pretrained": setter("ofdm.pretrained")},
    prepare_raw=_prepare_raw,
    summary=lambda r: r.get("worst_gap_to_bound_db", {}),
    description="OFDM pilots -> channel estimate"), aliases=("ofdm",))
