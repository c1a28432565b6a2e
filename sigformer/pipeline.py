"""YAML pipelines: load -> preprocess -> epoch -> train -> evaluate -> report.

A pipeline file is validated against the schema below before anything runs; an unknown key or
a bad value fails with its location (e.g. ``train.max_epochs: Input should be greater than
0``). ``run_pipeline`` writes ``metrics.json``, ``confusion_matrix.png``,
``learning_curve.png``, the resolved ``pipeline.json`` and (optionally) a model checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import stages as st
from .metrics import METRICS


class PipelineConfigError(ValueError):
    """The pipeline file is unreadable or does not match the schema."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimulatorConfig(_Strict):
    n_trials: int = Field(120, ge=10)
    sfreq: float = Field(250.0, gt=0)
    trial_duration: float = Field(4.0, gt=0)
    snr_db: float = 0.0
    erd: float = Field(0.6, ge=0, le=1)
    seed: int = 0


class EEGMMIDBConfig(_Strict):
    subject: int = Field(1, ge=1, le=109)
    runs: str | list[int] = "imagined_left_right"
    verify_checksums: bool = True


class MOABBConfig(_Strict):
    dataset: str = "BNCI2014_001"
    subjects: list[int] | None = None
    paradigm: str = "MotorImagery"
    paradigm_params: dict[str, Any] = Field(default_factory=dict)


class BonnConfig(_Strict):
    task: str = "seizure_vs_rest"
    window_s: float | None = Field(5.0, gt=0)


class DataConfig(_Strict):
    source: Literal["simulator", "eegmmidb", "files", "moabb", "bonn"] = "simulator"
    path: str | None = None
    files: list[str] = Field(default_factory=list)
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    eegmmidb: EEGMMIDBConfig = Field(default_factory=EEGMMIDBConfig)
    moabb: MOABBConfig = Field(default_factory=MOABBConfig)
    bonn: BonnConfig = Field(default_factory=BonnConfig)


STAGES = {
    "bandpass": st.BandPass, "notch": st.Notch, "resample": st.Resample,
    "rereference": st.Rereference, "pick": st.PickChannels, "scale": st.Scale,
    "standardize": st.Standardize, "adapt_channels": st.AdaptChannels, "bipolar": st.Bipolar,
}


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    stage: str

    @field_validator("stage")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in STAGES:
            raise ValueError(f"unknown stage {value!r}; known stages: {sorted(STAGES)}")
        return value

    def build(self) -> st.Stage:
        params = dict(self.model_extra or {})
        try:
            return STAGES[self.stage](**params)
        except (TypeError, ValueError) as err:
            raise PipelineConfigError(f"preprocess stage {self.stage!r} with {params}: {err}"
                                      ) from None


class EpochsConfig(_Strict):
    events: list[str] | None = None
    tmin: float = 0.0
    tmax: float = 4.0


class ModelConfig(_Strict):
    name: str = "dbconformer"
    preset: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class TrainConfig(_Strict):
    max_epochs: int = Field(30, gt=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    seed: int = 0
    validation_split: float = Field(0.0, ge=0, lt=1)
    early_stopping_patience: int | None = Field(None, gt=0)
    accelerator: str = "cpu"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1)
    progress_bar: bool = False


class EvaluateConfig(_Strict):
    protocol: Literal["within_session", "leave_one_subject_out", "none"] = "within_session"
    n_splits: int = Field(5, ge=2)
    shuffle: bool = True
    seeds: list[int] = Field(default_factory=lambda: [0])
    metrics: list[str] = Field(default_factory=lambda: list(METRICS))

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; available: {list(METRICS)}")
        return value


class TokenizerConfig(_Strict):
    name: str = "tfm_tokenizer"
    preset: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    max_epochs: int = Field(10, gt=0)
    batch_size: int = Field(64, gt=0)
    lr: float = Field(1e-3, gt=0)
    seed: int = 0


class StreamSourceConfig(_Strict):
    kind: Literal["lsl", "file", "wav", "sigmf"] = "lsl"
    name: str | None = None
    stype: str | None = None
    source_id: str | None = None
    path: str | None = None
    realtime: bool = True
    chunk_size: int = Field(32, gt=0)
    timeout: float = Field(10.0, gt=0)


class StreamSmoothingConfig(_Strict):
    mode: Literal["none", "ema", "vote"] = "none"
    alpha: float = Field(0.5, gt=0, le=1)
    n: int = Field(3, ge=1)


class StreamOutputConfig(_Strict):
    lsl_name: str | None = "sigformer-predictions"
    record: str | None = None


class StreamConfig(_Strict):
    source: StreamSourceConfig = Field(default_factory=StreamSourceConfig)
    window_s: float | None = Field(None, gt=0)  # default: the epochs' length
    hop_s: float = Field(0.5, gt=0)
    threads: int = Field(1, ge=1)
    nan_policy: Literal["raise", "skip", "interpolate"] = "skip"
    smoothing: StreamSmoothingConfig = Field(default_factory=StreamSmoothingConfig)
    output: StreamOutputConfig = Field(default_factory=StreamOutputConfig)
    queue_size: int = Field(256, ge=1)
    report_every_s: float = Field(2.0, gt=0)


class OFDMDrawConfig(_Strict):
    """Channel statistics to draw from (uniformly, independently per sample)."""
    snr_db: list[float] = Field(default_factory=lambda: [0, 5, 10, 15, 20, 25])
    delay_spread_ns: list[float] = Field(
        default_factory=lambda: [float(v) for v in range(25, 301, 25)])
    doppler_hz: list[float] = Field(default_factory=lambda: [float(v) for v in range(50, 1001, 50)])


class OFDMModelConfig(_Strict):
    name: str
    preset: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    max_epochs: int = Field(10, gt=0)
    batch_size: int = Field(64, gt=0)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class OFDMTaskConfig(_Strict):
    """``task: ofdm``: simulate (or load) OFDM data, train estimators, sweep NMSE."""
    grid: dict[str, Any] = Field(default_factory=dict)
    profile: str = "A"
    snr_definition: Literal["pilot", "measured_grid"] = "pilot"
    ici: bool = False
    n_train: int = Field(4000, ge=16)
    train_file: str | None = None
    draw: OFDMDrawConfig = Field(default_factory=OFDMDrawConfig)
    n_test_per_point: int = Field(200, ge=8)
    seed: int = 0
    baselines: list[Literal["ls", "lmmse_sample"]] = Field(
        default_factory=lambda: ["ls", "lmmse_sample"])
    models: list[OFDMModelConfig] = Field(default_factory=list)
    deepmimo: str | None = None
    deepmimo_snr_db: list[float] = Field(default_factory=lambda: [0.0, 10.0, 20.0])


class AMRModelConfig(OFDMModelConfig):
    max_epochs: int = Field(20, gt=0)
    batch_size: int = Field(128, gt=0)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)


class DistillConfig(_Strict):
    teacher: str | None = None
    students: list[AMRModelConfig] = Field(default_factory=list)
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1)
    compare_without: bool = True


class AMRTaskConfig(_Strict):
    """``task: amr``: modulation recognition on generated or DeepSig frames."""
    source: Literal["generator", "rml2016", "rml2018", "npz"] = "generator"
    path: str | None = None
    allow_pickle: bool = False
    n_per_condition: int = Field(60, ge=2)
    snrs: list[float] = Field(default_factory=lambda: [float(s) for s in range(-20, 20, 2)])
    frame_length: int = Field(128, ge=16)
    normalization: Literal["l1", "rms", "peak", "none"] = "rms"
    max_frames: int | None = Field(None, gt=0)
    test_size: float = Field(0.3, gt=0, lt=1)
    seed: int = 0
    models: list[AMRModelConfig] = Field(default_factory=list)
    distill: DistillConfig = Field(default_factory=DistillConfig)


class _AudioTaskConfig(_Strict):
    """Fields shared by the speech tasks (data folders, training budget, chunked inference)."""
    clean_dir: str | None = None
    noise_dir: str | None = None
    seconds: float = Field(2.0, gt=0)
    preset: str | None = "small"
    params: dict[str, Any] = Field(default_factory=dict)
    max_epochs: int = Field(10, gt=0)
    batch_size: int = Field(4, gt=0)
    lr: float = Field(1e-3, gt=0)
    chunk_s: float = Field(4.0, gt=0)
    overlap_s: float = Field(0.5, ge=0)
    perceptual_metrics: bool = True
    seed: int = 0


class SpeechTaskConfig(_AudioTaskConfig):
    """``task: separate``: mixtures -> PIT SI-SNR training -> chunked evaluation."""
    n_src: int = Field(2, ge=2, le=3)
    sample_rate: int = Field(8000, gt=0)
    level_db: float = Field(2.5, ge=0)
    snr_db: tuple[float, float] = (10.0, 20.0)
    n_train: int = Field(64, ge=1)
    n_test: int = Field(8, ge=1)
    model: str = "mossformer"


class EnhanceTaskConfig(_AudioTaskConfig):
    """``task: enhance``: simulated array scenes -> PCM training -> beamformer comparison."""
    sample_rate: int = Field(16000, gt=0)
    n_mics: int = Field(4, ge=2)
    radius: float = Field(0.1, gt=0)
    snr_db: tuple[float, float] = (0.0, 15.0)
    max_order: int | None = Field(10, ge=0)
    n_train: int = Field(32, ge=1)
    n_test: int = Field(6, ge=1)
    model: str = "deftan2"


class OutputConfig(_Strict):
    dir: str = "runs/{name}"
    save_model: bool = True


class PipelineConfig(_Strict):
    name: str = "pipeline"
    task: Literal["classify", "tokenize", "ofdm", "amr", "separate", "enhance"] = "classify"
    data: DataConfig = Field(default_factory=DataConfig)
    preprocess: list[StageConfig] = Field(default_factory=list)
    epochs: EpochsConfig = Field(default_factory=EpochsConfig)
    alignment: Literal["none", "fit", "batch"] = "none"
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    stream: StreamConfig = Field(default_factory=StreamConfig)
    ofdm: OFDMTaskConfig = Field(default_factory=OFDMTaskConfig)
    amr: AMRTaskConfig = Field(default_factory=AMRTaskConfig)
    speech: SpeechTaskConfig = Field(default_factory=SpeechTaskConfig)
    enhance: EnhanceTaskConfig = Field(default_factory=EnhanceTaskConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid pipeline {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        value = e.get("input")
        lines.append(f"  {loc}: {e['msg']} (got {value!r})")
    return "\n".join(lines)


def load_config(path_or_dict, overrides: dict | None = None) -> PipelineConfig:
    """Parse and validate a pipeline (YAML path or dict)."""
    source = "config"
    if isinstance(path_or_dict, dict):
        raw = dict(path_or_dict)
    else:
        path = Path(path_or_dict)
        source = str(path)
        if not path.is_file():
            raise PipelineConfigError(f"pipeline file {path} does not exist")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise PipelineConfigError(f"{path} is not valid YAML: {err}") from None
        if not isinstance(raw, dict):
            raise PipelineConfigError(f"{path} must hold a mapping of sections, got "
                                      f"{type(raw).__name__}")
    for key, value in (overrides or {}).items():
        raw.setdefault(key, {}).update(value) if isinstance(value, dict) else raw.update(
            {key: value})
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as err:
        raise PipelineConfigError(_format_validation_error(err, source)) from None


def data_override(path: str) -> dict:
    """``--data PATH``: an eegmmidb folder, a folder of EEG files, or one EEG file."""
    p = Path(path)
    if not p.exists():
        raise PipelineConfigError(f"--data {path}: no such file or folder")
    if p.is_file() and p.suffix == ".npz":
        return {"source": "bonn", "path": str(p)}
    if p.is_dir():
        edfs = [f for f in p.rglob("*.edf") if re.fullmatch(r"S\d{3}R\d{2}\.edf", f.name)]
        if edfs:
            return {"source": "eegmmidb", "path": str(p)}
        files = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in
                       (".edf", ".bdf", ".gdf", ".fif"))
        if not files:
            raise PipelineConfigError(f"--data {path}: no EDF/BDF/GDF/FIF files in the folder")
        return {"source": "files", "files": files}
    return {"source": "files", "files": [str(p)]}


# --- running ------------------------------------------------------------------------------

def _is_main_process() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) == 0


def build_preprocess(cfg: PipelineConfig) -> st.Pipeline:
    return st.Pipeline([s.build() for s in cfg.preprocess])


def load_epochs(cfg: PipelineConfig):
    """Data source -> continuous preprocessing -> epochs."""
    from .data import load_bonn, load_eegmmidb, load_moabb, read_recording, simulate_motor_imagery
    from .recording import Epochs

    pre = build_preprocess(cfg)
    events, tmin, tmax = cfg.epochs.events, cfg.epochs.tmin, cfg.epochs.tmax
    d = cfg.data
    if d.source == "bonn":
        if not d.path:
            raise PipelineConfigError("data.path is required for source 'bonn' (the npz file "
                                      "or folder of segment text files)")
        if cfg.preprocess:
            raise PipelineConfigError("Bonn segments are windows already; preprocess stages "
                                      "apply to continuous recordings only")
        return load_bonn(d.path, d.bonn.task, window_s=d.bonn.window_s)
    if d.source == "eegmmidb":
        if not d.path:
            raise PipelineConfigError("data.path is required for source 'eegmmidb'")
        return load_eegmmidb(d.path, d.eegmmidb.subject, d.eegmmidb.runs, events=events,
                             tmin=tmin, tmax=tmax, preprocess=pre,
                             verify=d.eegmmidb.verify_checksums)
    if d.source == "moabb":
        if cfg.preprocess:
            raise PipelineConfigError("MOABB data are filtered by the paradigm: put filter "
                                      "settings in data.moabb.paradigm_params, not preprocess")
        return load_moabb(d.moabb.dataset, d.moabb.subjects, paradigm=d.moabb.paradigm,
                          **d.moabb.paradigm_params)
    if d.source == "simulator":
        recordings = [simulate_motor_imagery(**d.simulator.model_dump())]
    else:
        if not d.files:
            raise PipelineConfigError("data.files must list at least one file for source "
                                      "'files'")
        recordings = [read_recording(f, normalize_names=True) for f in d.files]
    parts = []
    for i, rec in enumerate(recordings):
        rec = pre.transform(rec)
        names = sorted({a.description for a in rec.annotations})
        chosen = events or names
        ep = rec.epochs({e: j for j, e in enumerate(sorted(chosen)) if e in names}, tmin, tmax)
        ep.event_id = {e: j for j, e in enumerate(sorted(chosen))}
        ep.groups = np.full(len(ep), i)
        parts.append(ep)
    return Epochs.concatenate(parts)


def build_estimator(cfg: PipelineConfig):
    from sklearn.pipeline import make_pipeline

    from .estimators import SignalClassifier

    t = cfg.train
    clf = SignalClassifier(
        model=cfg.model.name, preset=cfg.model.preset, model_params=dict(cfg.model.params),
        max_epochs=t.max_epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay,
        optimizer=t.optimizer, validation_split=t.validation_split,
        early_stopping_patience=t.early_stopping_patience, random_state=t.seed,
        accelerator=t.accelerator, devices=t.devices, strategy=t.strategy,
        num_nodes=t.num_nodes, verbose=t.progress_bar,
    )
    if cfg.alignment == "none":
        return clf
    return make_pipeline(st.EuclideanAlignment(mode=cfg.alignment), clf)


def run_pipeline(cfg: PipelineConfig, out_dir: str | Path | None = None,
                 log=print) -> dict[str, Any]:
    """Run the whole pipeline; returns the metrics dict that is also written as JSON."""
    from .evaluation import final_step, leave_one_subject_out, within_session_cv
    from .report import plot_confusion_matrix, plot_learning_curves

    out = Path(out_dir or cfg.output.dir.format(name=cfg.name))
    main = _is_main_process()
    t0 = time.perf_counter()
    log(f"[1/4] loading data ({cfg.data.source}) and preprocessing "
        f"({len(cfg.preprocess)} stages)")
    epochs = load_epochs(cfg)
    classes = [k for k, _ in sorted(epochs.event_id.items(), key=lambda kv: kv[1])]
    log(f"      {len(epochs)} epochs x {len(epochs.channels)} channels x {epochs.n_times} "
        f"samples at {epochs.sfreq:g} Hz; classes {classes}")
    # Recordings are in volts (MNE's convention); models see microvolts, as in braindecode.
    X = (epochs.data * 1e6).astype(np.float32)
    y = np.asarray(classes)[epochs.labels]
    estimator = build_estimator(cfg)
    ev = cfg.evaluate
    result = None
    if ev.protocol == "within_session":
        log(f"[2/4] {ev.n_splits}-fold within-session CV x {len(ev.seeds)} seed(s), model "
            f"{cfg.model.name!r}")
        result = within_session_cv(estimator, X, y, sessions=epochs.sessions,
                                   n_splits=ev.n_splits, seeds=ev.seeds, shuffle=ev.shuffle,
                                   progress=log)
    elif ev.protocol == "leave_one_subject_out":
        log(f"[2/4] leave-one-subject-out x {len(ev.seeds)} seed(s)")
        result = leave_one_subject_out(estimator, X, y, subjects=epochs.groups, seeds=ev.seeds,
                                       progress=log)
    report: dict[str, Any] = {
        "pipeline": cfg.name, "model": cfg.model.name, "data": cfg.data.source,
        "n_epochs": len(epochs), "n_channels": len(epochs.channels), "n_times": epochs.n_times,
        "sfreq": epochs.sfreq, "classes": classes,
    }
    if result is not None:
        summary = {k: v for k, v in result.summary().items() if k in ev.metrics}
        report.update(evaluation=ev.protocol, summary=summary, folds=result.rows,
                      confusion_matrix=result.confusion.tolist())
        for metric, s in summary.items():
            log(f"      {metric:18s} {s['mean']:.3f} ± {s['std']:.3f}")
    log("[3/4] training the final model on all epochs")
    estimator.fit(X, y)
    clf = final_step(estimator)
    report["n_parameters"] = int(sum(p.numel() for p in clf.module_.parameters()))
    report["seconds"] = round(time.perf_counter() - t0, 2)
    if main:
        log(f"[4/4] writing the report to {out}")
        out.mkdir(parents=True, exist_ok=True)
        (out / "pipeline.json").write_text(cfg.model_dump_json(indent=2))
        (out / "metrics.json").write_text(json.dumps(report, indent=2, default=json_default))
        if result is not None:
            plot_confusion_matrix(result.confusion, classes, out / "confusion_matrix.png",
                                  title=f"{cfg.model.name} ({ev.protocol})")
        histories = (result.histories if result is not None and result.histories
                     else [clf.history_.epochs])
        plot_learning_curves(histories, out / "learning_curve.png", title=cfg.model.name)
        if cfg.output.save_model:
            clf.save(out / "model")
            meta = {"alignment": cfg.alignment, "preprocess": [s.model_dump() for s in
                                                                cfg.preprocess],
                    "epochs": cfg.epochs.model_dump(), "sfreq": epochs.sfreq,
                    "channels": list(epochs.channels), "classes": classes,
                    "input_scale": 1e6, "n_times": epochs.n_times}
            (out / "model" / "pipeline_meta.json").write_text(json.dumps(meta, indent=2))
    return report


def json_default(obj):
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def run_tokenize_pipeline(cfg: PipelineConfig, out_dir: str | Path | None = None,
                          log=print) -> dict[str, Any]:
    """load -> preprocess -> windows -> learn the tokenizer -> token statistics and plots."""
    from .report import plot_codebook_usage, plot_token_grid
    from .tokenizers import TokenTransformer

    out = Path(out_dir or cfg.output.dir.format(name=cfg.name))
    t0 = time.perf_counter()
    log(f"[1/3] loading data ({cfg.data.source})")
    epochs = load_epochs(cfg)
    log(f"      {len(epochs)} windows x {len(epochs.channels)} channels x {epochs.n_times} "
        f"samples at {epochs.sfreq:g} Hz")
    t = cfg.tokenizer
    log(f"[2/3] learning tokenizer {t.name!r} ({t.max_epochs} epochs)")
    tt = TokenTransformer(t.name, t.preset, dict(t.params), sfreq=epochs.sfreq,
                          max_epochs=t.max_epochs, batch_size=t.batch_size, lr=t.lr,
                          random_state=t.seed).fit(epochs.data)
    ids = tt.transform(epochs.data)
    tokenizer = tt.tokenizer_
    n_codes = tokenizer.quantizer.num_codes
    counts = np.bincount(ids.ravel(), minlength=n_codes)
    report: dict[str, Any] = {
        "pipeline": cfg.name, "tokenizer": t.name, "data": cfg.data.source,
        "n_windows": len(epochs), "n_channels": len(epochs.channels),
        "tokens_per_window": int(ids.shape[1]), "codebook_size": int(n_codes),
        "codebook_usage": tt.codebook_usage_, "codebook_perplexity": tt.codebook_perplexity_,
        "n_parameters": int(sum(p.numel() for p in tokenizer.parameters())),
        "final_loss": tokenizer.history_.series("train_loss")[-1],
    }
    log(f"      codebook usage {tt.codebook_usage_:.1%}, perplexity "
        f"{tt.codebook_perplexity_:.1f} of {n_codes} codes")
    report["seconds"] = round(time.perf_counter() - t0, 2)
    if _is_main_process():
        log(f"[3/3] writing the report to {out}")
        out.mkdir(parents=True, exist_ok=True)
        (out / "pipeline.json").write_text(cfg.model_dump_json(indent=2))
        (out / "metrics.json").write_text(json.dumps(report, indent=2, default=json_default))
        np.save(out / "token_ids.npy", ids)
        plot_codebook_usage(counts, out / "codebook_usage.png", title=t.name)
        classes = [k for k, _ in sorted(epochs.event_id.items(), key=lambda kv: kv[1])]
        plot_token_grid(ids, epochs.labels, classes, len(epochs.channels),
                        out / "tokens.png", title=t.name)
        if cfg.output.save_model:
            from .checkpoint import save_checkpoint

            save_checkpoint(out / "tokenizer", tokenizer,
                            extra={"sfreq": tokenizer.sfreq, "input_sfreq": epochs.sfreq})
    return report
