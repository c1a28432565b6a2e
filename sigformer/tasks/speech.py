"""``task: separate`` (monaural speaker separation) and ``task: enhance`` (multichannel speech
enhancement): train on generated mixtures / simulated scenes, evaluate against the mixture,
beamformers and oracle ceilings, and write a bundle that ``sigformer separate`` / ``enhance``
/ ``stream`` run on any length of audio."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..spec import SignalSpec
from .config import (
    BaseConfig,
    EnhanceTaskConfig,
    PipelineConfigError,
    ProgressOnlyTrainConfig,
    SpeechTaskConfig,
)
from .registry import RunContext, Task, register_task, setter


class SeparateConfig(BaseConfig):
    task: Literal["separate"] = "separate"
    speech: SpeechTaskConfig = Field(default_factory=SpeechTaskConfig)
    train: ProgressOnlyTrainConfig = Field(default_factory=ProgressOnlyTrainConfig)


class EnhanceConfig(BaseConfig):
    task: Literal["enhance"] = "enhance"
    enhance: EnhanceTaskConfig = Field(default_factory=EnhanceTaskConfig)
    train: ProgressOnlyTrainConfig = Field(default_factory=ProgressOnlyTrainConfig)


def _promote(ctx: RunContext, task: str, spec: SignalSpec, labels, section, summary: str
             ) -> None:
    from ..bundle import promote_to_bundle

    folder = ctx.dir / "model"
    if ctx.main and folder.is_dir():
        promote_to_bundle(folder, task=task, input_spec=spec, model_spec=spec, labels=labels,
                          extra={"chunk_s": section.chunk_s, "overlap_s": section.overlap_s},
                          provenance={"summary": summary,
                                      "recipe": section.model_dump(mode="json")})


def run_separate(cfg: SeparateConfig, ctx: RunContext) -> dict[str, Any]:
    from ..guardrails import check_separation
    from ..speech.pipeline import run_separation_pipeline

    report = run_separation_pipeline(cfg, ctx.dir, log=ctx.log)
    s = cfg.speech
    sdri = report.get("summary", {}).get("si_sdri")
    if sdri is not None and check_separation(sdri):
        report.setdefault("warnings", []).append("separation collapsed (SI-SDRi <= 0 dB)")
    _promote(ctx, "separate", SignalSpec.audio(s.sample_rate, 1),
             [f"s{i + 1}" for i in range(s.n_src)], s, f"{s.model} {s.n_src}-speaker separation")
    return report


def run_enhance(cfg: EnhanceConfig, ctx: RunContext) -> dict[str, Any]:
    from ..guardrails import check_enhancement
    from ..speech.pipeline import run_enhancement_pipeline

    report = run_enhancement_pipeline(cfg, ctx.dir, log=ctx.log)
    e = cfg.enhance
    results = report.get("results", {})
    if e.model in results and "unprocessed" in results:
        gain = results[e.model]["si_sdr"] - results["unprocessed"]["si_sdr"]
        if check_enhancement(gain):
            report.setdefault("warnings", []).append("enhancement below the reference mic")
    _promote(ctx, "enhance", SignalSpec.audio(e.sample_rate, e.n_mics), None, e,
             f"{e.model} {e.n_mics}-microphone enhancement")
    return report


def _clean_dir(section: str):
    def apply(raw: dict, path: str) -> None:
        if not Path(path).is_dir():
            raise PipelineConfigError(f"--data {path}: speech tasks take a folder of clean "
                                      f"speech files (WAV/FLAC)")
        raw.setdefault(section, {})["clean_dir"] = str(path)

    return apply


register_task(Task(
    name="separate", config_cls=SeparateConfig, run=run_separate,
    overrides={"progress": setter("train.progress_bar"), "max_epochs": setter("speech.max_epochs"), "data": _clean_dir("speech")},
    summary=lambda r: r.get("summary", {}), description="mono mixture -> speakers"))
register_task(Task(
    name="enhance", config_cls=EnhanceConfig, run=run_enhance,
    overrides={"progress": setter("train.progress_bar"), "max_epochs": setter("enhance.max_epochs"), "data": _clean_dir("enhance")},
    summary=lambda r: r.get("results", {}), description="microphone array -> clean speech"))
