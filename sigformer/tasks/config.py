"""Pipeline configuration schemas, shared by every task.

One model + training schema (:class:`ModelConfig`, :class:`TrainConfig`), one output schema,
the EEG data / preprocessing / epoching sections, and each task's own section (``amr``,
``ofdm``, ``speech``, ``enhance``, ``tokenizer``). A task's full schema
(:mod:`sigformer.tasks`) is :class:`BaseConfig` plus the sections it uses; an unknown key or a
bad value fails with its location before anything runs.
"""

from __future__ import annotations

import difflib
import re
import string
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .. import stages as st
from ..metrics import METRICS


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


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    stage: str

    @field_validator("stage")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in st.STAGES:
            raise ValueError(f"unknown stage {value!r}; known stages: {sorted(st.STAGES)}")
        return value

    def build(self) -> st.Stage:
        try:
            return st.stage_from_config(self.stage_config())
        except (TypeError, ValueError) as err:
            raise PipelineConfigError(f"preprocess stage {self.stage!r}: {err}") from None

    def stage_config(self) -> dict[str, Any]:
        return {"stage": self.stage, **dict(self.model_extra or {})}


class EpochsConfig(_Strict):
    events: list[str] | None = None
    tmin: float = 0.0
    tmax: float = 4.0

    @model_validator(mode="after")
    def _window(self) -> EpochsConfig:
        if self.tmax <= self.tmin:
            raise ValueError(f"epochs.tmax ({self.tmax:g} s) must be greater than epochs.tmin "
                             f"({self.tmin:g} s)")
        return self


class ModelConfig(_Strict):
    name: str = "dbconformer"
    preset: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "tpu", "hpu", "auto")
DEVICES_SPEC = re.compile(r"^(auto|-1|\d+|\d+(\s*,\s*\d+)*,?)$")


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

    @field_validator("accelerator")
    @classmethod
    def _known_accelerator(cls, value: str) -> str:
        if value not in ACCELERATORS:
            raise ValueError(f"unknown accelerator {value!r}; Lightning's: {list(ACCELERATORS)}")
        return value

    @field_validator("devices")
    @classmethod
    def _device_spec(cls, value: int | str) -> int | str:
        # Lightning's forms: a count, -1 / "auto" (all), or a list of indices "0,1"
        if isinstance(value, str) and not DEVICES_SPEC.match(value.strip()):
            raise ValueError(f"devices must be a count, -1, 'auto' or indices like '0,1', got "
                             f"{value!r}")
        return value

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value == "auto":
            return value
        from lightning.pytorch.strategies import StrategyRegistry

        known = StrategyRegistry.available_strategies()
        if value not in known:
            close = difflib.get_close_matches(value, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown strategy {value!r}{hint} (Lightning's: 'auto', "
                             f"{', '.join(repr(k) for k in sorted(known)[:8])}, ...)")
        return value
    num_nodes: int = Field(1, ge=1)
    progress_bar: bool = False


class ProgressOnlyTrainConfig(_Strict):
    """``train:`` of the tasks whose training settings live in their own section (``speech``,
    ``enhance``, ``ofdm.models``, ``amr.models``): only ``progress_bar`` applies, and any
    other key is refused with where it belongs (it used to be accepted and ignored)."""
    progress_bar: bool = False

    @model_validator(mode="before")
    @classmethod
    def _only_progress(cls, value: Any) -> Any:
        if isinstance(value, dict):
            other = sorted(set(value) - {"progress_bar"})
            if other:
                raise ValueError(f"only train.progress_bar applies to this task, not "
                                 f"{', '.join(other)}: its training settings live in the "
                                 f"task's own section ({TASK_TRAINING_SECTIONS})")
        return value


TASK_TRAINING_SECTIONS = ("speech.max_epochs / lr / batch_size for separate, enhance.* for "
                          "enhance, ofdm.models[].max_epochs / lr for estimate_channel, "
                          "amr.models[].max_epochs / lr for classify with amr")


class EvaluateConfig(_Strict):
    protocol: Literal["within_session", "leave_one_subject_out", "none"] = "within_session"
    n_splits: int = Field(5, ge=2)
    shuffle: bool = True
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
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
    # a pretrained tokenizer (catalogue name, bundle folder or official checkpoint); with
    # max_epochs 0 it is used as is
    weights: str | None = None
    max_epochs: int = Field(10, ge=0)
    batch_size: int = Field(64, gt=0)
    lr: float = Field(1e-3, gt=0)
    seed: int = 0
    progress_bar: bool = False


class StreamSourceConfig(_Strict):
    kind: Literal["lsl", "file", "wav", "sigmf", "zmq", "soundcard"] = "lsl"
    address: str | None = None  # zmq: e.g. tcp://127.0.0.1:5555
    sfreq: float | None = Field(None, gt=0)  # zmq / soundcard: the stream's sample rate
    channels: int = Field(1, ge=1)  # soundcard: input channels
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
    # None: the bundle-form default (EEG: a quarter window; IQ: one frame); 0.5 s used to be
    # the default, which gave a rate-agnostic IQ bundle a hop of one sample
    hop_s: float | None = Field(None, gt=0)
    # or in samples at the model's input rate (IQ bundles are rate-agnostic: samples only)
    hop: int | None = Field(None, ge=1)
    threads: int = Field(1, ge=1)
    nan_policy: Literal["raise", "skip", "interpolate"] = "skip"
    smoothing: StreamSmoothingConfig = Field(default_factory=StreamSmoothingConfig)
    output: StreamOutputConfig = Field(default_factory=StreamOutputConfig)
    queue_size: int = Field(256, ge=1)
    report_every_s: float = Field(2.0, gt=0)
    # IQ classifiers: a label per frame, or per burst as classify-iq (None: the bundle's own)
    decision: Literal["frame", "burst"] | None = None
    min_power_db: float | None = Field(30.0, ge=0)  # burst gate; None: every frame is kept
    max_burst_frames: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _one_hop(self):
        if self.hop is not None and self.hop_s is not None:
            raise ValueError(f"give the hop once: stream.hop ({self.hop} samples) or "
                             f"stream.hop_s ({self.hop_s:g} seconds), not both")
        return self


class OFDMDrawConfig(_Strict):
    """Channel statistics to draw from (uniformly, independently per sample)."""
    snr_db: list[float] = Field(default_factory=lambda: [0, 5, 10, 15, 20, 25])
    delay_spread_ns: list[float] = Field(
        default_factory=lambda: [float(v) for v in range(25, 301, 25)])
    doppler_hz: list[float] = Field(default_factory=lambda: [float(v) for v in range(50, 1001, 50)])


class TrainedModelConfig(_Strict):
    """A model of a task's ``models`` list and its training settings."""
    name: str
    preset: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    max_epochs: int = Field(10, gt=0)
    batch_size: int = Field(64, gt=0)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class OFDMModelConfig(TrainedModelConfig):
    # a catalogue name or bundle folder: evaluated as trained, not trained again
    weights: str | None = None


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
    # evaluate each model's shipped bundle (sigformer run ... --pretrained); models without
    # one are left out, none is trained
    pretrained: bool = False
    deepmimo: str | None = None
    deepmimo_snr_db: list[float] = Field(default_factory=lambda: [0.0, 10.0, 20.0])


class AMRModelConfig(TrainedModelConfig):
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
    # "modgen": the realistic generator (impairments, every parameter recorded);
    # "legacy": the earlier RadioML-2016-style generator, for reproducing old results
    generator: Literal["modgen", "legacy"] = "modgen"
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

    @field_validator("distill", mode="before")
    @classmethod
    def _no_distillation(cls, value):
        return {} if value is None else value  # `distill: null` = no distillation


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


OUTPUT_FIELDS = ("name", "task")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class OutputConfig(_Strict):
    dir: str = "runs/{name}"
    save_model: bool = True

    @field_validator("dir")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as err:
            raise ValueError(f"output.dir {value!r} is not a valid template: {err}") from None
        unknown = sorted(fields - set(OUTPUT_FIELDS))
        if unknown:
            raise ValueError(f"output.dir uses unknown field(s) {unknown}; templates may use "
                             f"{{name}} and {{task}}")
        if ".." in re.split(r"[/\\]", value):  # a run must not write beside its parents
            raise ValueError(f"output.dir {value!r} steps out with '..'; give the folder "
                             f"without '..' (relative to the working folder, or absolute)")
        return value


class BaseConfig(_Strict):
    """Fields every task has: a name (used in output paths), the task, the output."""
    name: str = "pipeline"
    task: str = "classify"
    output: OutputConfig = Field(default_factory=OutputConfig)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not SAFE_NAME.match(value) or ".." in value:
            raise ValueError(f"name {value!r} must be letters, digits, '_', '-' or '.', not "
                             f"start with '.', and hold no path separators (it names the "
                             f"output folder)")
        return value

    def output_dir(self) -> str:
        return self.output.dir.format(name=self.name, task=self.task)
