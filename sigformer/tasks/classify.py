"""``task: classify``: EEG epochs and IQ frames alike.

EEG: load -> preprocess (the stage chain) -> epoch -> cross-validate -> train the final model
-> write the inference bundle (input spec before the chain, the chain, the model, labels).
IQ frames (an ``amr:`` section; ``task: amr`` is an alias): generate or load modulation frames,
train the models (and distil students), evaluate per SNR, one bundle per model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from .. import stages as st
from ..spec import SignalSpec
from ..validation import SignalError
from .config import (
    AMRTaskConfig,
    BaseConfig,
    DataConfig,
    EpochsConfig,
    EvaluateConfig,
    ModelConfig,
    PipelineConfigError,
    StageConfig,
    StreamConfig,
    TrainConfig,
)
from .registry import RunContext, Task, register_task, set_in, setter


class ClassifyConfig(BaseConfig):
    """``task: classify``: EEG epochs (data/preprocess/epochs) or IQ frames (``amr``)."""
    task: Literal["classify"] = "classify"
    data: DataConfig = Field(default_factory=DataConfig)
    preprocess: list[StageConfig] = Field(default_factory=list)
    epochs: EpochsConfig = Field(default_factory=EpochsConfig)
    alignment: Literal["none", "fit", "batch"] = "none"
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    stream: StreamConfig = Field(default_factory=StreamConfig)
    amr: AMRTaskConfig | None = None

    @model_validator(mode="after")
    def _amr_reads_its_own_section(self) -> ClassifyConfig:
        """IQ classification (``amr:``) takes everything from its own section: the EEG
        sections it would ignore are refused, not silently dropped."""
        if self.amr is None:
            return self
        # refused when set to anything but its default (a run's own pipeline.json spells out
        # every default, and must load again)
        fields = type(self).model_fields
        eeg = sorted(name for name in ("data", "preprocess", "epochs", "alignment", "model",
                                       "evaluate")
                     if getattr(self, name) != fields[name].get_default(call_default_factory=True))
        plain = TrainConfig()
        train = sorted(k for k in TrainConfig.model_fields
                       if k != "progress_bar" and getattr(self.train, k) != getattr(plain, k))
        if eeg or train:
            ignored = eeg + [f"train.{k}" for k in train]
            raise ValueError(f"with an amr: section the pipeline classifies IQ frames and "
                             f"does not read {', '.join(ignored)} (EEG settings); give the "
                             f"models, epochs and lr under amr.models (train.progress_bar "
                             f"is the one train setting that applies)")
        return self


# --- EEG ----------------------------------------------------------------------------------

def data_override(path: str) -> dict:
    """``--data PATH``: an eegmmidb folder, a folder of EEG files, one EEG file, or a Bonn
    ``.npz``."""
    import re

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
                       (".edf", ".bdf", ".gdf", ".fif", ".csv", ".xdf"))
        if not files:
            raise PipelineConfigError(f"--data {path}: no EEG files (EDF/BDF/GDF/FIF/CSV/XDF) "
                                      f"in the folder")
        return {"source": "files", "files": files}
    return {"source": "files", "files": [str(p)]}


def override_data(raw: dict, path: str) -> None:
    """``--data PATH`` in the raw config: only ``source``, ``path`` and ``files`` change; the
    section's other settings (``bonn.task``, ``eegmmidb.subject``, ``runs``, ...) stay the
    pipeline's (a fresh section would silently reset them to their defaults)."""
    data = dict(raw.get("data") or {})
    for key in ("path", "files"):
        data.pop(key, None)
    data.update(data_override(path))
    raw["data"] = data


def build_preprocess(cfg: ClassifyConfig, *, legacy_defaults: bool = True) -> st.Pipeline:
    """The ``preprocess`` stages. ``legacy_defaults=False`` gives arguments the YAML leaves
    out a new stage's defaults (e.g. ``standardize``'s ``bias_correction``); the default
    reads the list as a saved chain would be read, which is what a bundle that stores the
    YAML's own dicts (``task: tokenize``) gets back at load time. Save
    :func:`chain_configs` of the result to keep the two in step."""
    if not legacy_defaults:
        return st.Pipeline([_build_current(s) for s in cfg.preprocess])
    return st.Pipeline([s.build() for s in cfg.preprocess])


def _build_current(stage: StageConfig) -> st.Stage:
    try:
        return st.stage_from_config(stage.stage_config(), legacy_defaults=False)
    except (TypeError, ValueError) as err:
        raise PipelineConfigError(f"preprocess stage {stage.stage!r}: {err}") from None


def chain_configs(chain: st.Pipeline) -> list[dict[str, Any]]:
    """A bundle's chain: every argument of every stage, so a later version that adds an
    argument knows this chain ran without it."""
    return [stage.get_config() for stage in chain.stages]


class _InputProbe:
    """Passes recordings to the chain and remembers the first one's rate and channels: the
    bundle's input spec is the signal *before* preprocessing."""

    def __init__(self, chain: st.Pipeline):
        self.chain, self.spec = chain, None

    def transform(self, rec):
        if self.spec is None:
            self.spec = SignalSpec.eeg(rec.sfreq, rec.channels,
                                       unit=getattr(rec, "unit", "V"))
        return self.chain.transform(rec)


def load_epochs(cfg: ClassifyConfig, probe: _InputProbe | None = None):
    """Data source -> continuous preprocessing -> epochs."""
    from ..data import load_bonn, load_eegmmidb, load_moabb, read_recording, simulate_motor_imagery
    from ..recording import Epochs

    pre = probe or _InputProbe(build_preprocess(cfg))
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
        where = d.files[i] if d.source == "files" else "the simulated recording"
        _check_events_present(where, list(events or []), names)
        ep = rec.epochs({e: j for j, e in enumerate(sorted(chosen)) if e in names}, tmin, tmax)
        ep.event_id = {e: j for j, e in enumerate(sorted(chosen))}
        ep.groups = np.full(len(ep), i)
        parts.append(ep)
    return Epochs.concatenate(parts)


def _check_events_present(where: str, requested: list[str], found: list[str]) -> None:
    """Refuse a recording without the events to epoch, naming those asked for and those it
    has (a file from another source often names them differently, e.g. T1 vs left_hand)."""
    if not found:
        raise SignalError(f"{where} has no event annotations: epoching needs events"
                          + (f" ({requested} requested in epochs.events)" if requested else ""))
    if requested and not set(requested) & set(found):
        hint = ("; for an eegmmidb run (T0/T1/T2), pass the folder holding it as --data so "
                "the eegmmidb loader names them" if {"T1", "T2"} <= set(found) else "")
        raise SignalError(f"{where}: none of the requested events {requested} (epochs.events) "
                          f"occur in it; its events are {found}. Set epochs.events to names "
                          f"it has{hint}")


def build_estimator(cfg: ClassifyConfig, spec: SignalSpec | None = None):
    """The configured :class:`~sigformer.estimators.SignalClassifier`. The model gets
    ``chs_info`` and ``sfreq`` from the data's spec.

    ``alignment: batch``: the classifier's own per-subject Euclidean alignment (fit with
    ``subjects=``; each subject's test trials aligned with their own mean: transductive).
    ``alignment: fit``: one :class:`~sigformer.stages.EuclideanAlignment` step before it,
    whose reference is the mean covariance of all training trials (every subject together),
    applied unchanged to the test trials (inductive)."""
    from sklearn.pipeline import make_pipeline

    from ..estimators import SignalClassifier
    from ..models.registry import get_model_class

    params = dict(cfg.model.params)
    if spec is not None:
        from_spec = spec.model_kwargs(get_model_class(cfg.model.name))
        for key in ("chs_info", "sfreq"):  # n_chans / n_times come from the arrays
            if key in from_spec:
                params.setdefault(key, from_spec[key])
    t = cfg.train
    clf = SignalClassifier(
        model=cfg.model.name, preset=cfg.model.preset, model_params=params,
        max_epochs=t.max_epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay,
        optimizer=t.optimizer, validation_split=t.validation_split,
        early_stopping_patience=t.early_stopping_patience, random_state=t.seed,
        accelerator=t.accelerator, devices=t.devices, strategy=t.strategy,
        num_nodes=t.num_nodes, verbose=t.progress_bar,
        # per subject: an EA step in a Pipeline would get no subjects and whiten all the
        # training subjects together
        euclidean_alignment=cfg.alignment == "batch",
    )
    if cfg.alignment != "fit":
        return clf
    return make_pipeline(st.EuclideanAlignment(mode="fit"), clf)


def cv_subjects(cfg: ClassifyConfig, epochs, log=None) -> np.ndarray | None:
    """Whose each epoch is, for within-session CV (and per-subject alignment): MOABB's
    subjects; each file of a ``files`` source (its person unknown, it is kept apart, unless
    a file lacks a class: then the files are pooled, with a note); one unit for eegmmidb
    (one subject; its groups are runs of one session), the simulator and Bonn (whose groups
    are segments)."""
    if epochs.groups is None or cfg.data.source not in ("moabb", "files"):
        return None
    groups = np.asarray(epochs.groups)
    if cfg.data.source == "files":
        n_classes = len(np.unique(epochs.labels))
        short = [int(g) for g in np.unique(groups)
                 if len(np.unique(epochs.labels[groups == g])) < n_classes]
        if short:
            if log is not None:
                log(f"      file(s) {short} lack a class: CV pools all files (they may be "
                    f"different people); give one file per person with every class to keep "
                    f"them apart")
            return None
    return groups


LOSO_INSTEAD = ("use evaluate.protocol: within_session (folds inside the subject's data), "
                "or data.source: moabb with several subjects for leave-one-subject-out (e.g. "
                "data.moabb: {dataset: PhysionetMI, subjects: [1, 2, 3]}, the eegmmidb "
                "recordings)")


def loso_subjects(cfg: ClassifyConfig, epochs=None, log=None) -> np.ndarray | None:
    """The subject of each epoch for ``leave_one_subject_out``: MOABB's subjects, or each
    file of a ``files`` source (taken as one person each, with a note). eegmmidb (one
    subject, whose epochs are grouped by *run*), the simulator (one simulated subject) and
    Bonn (segments of people the dataset does not identify) are refused with a
    PipelineConfigError: holding one run or segment out is not leaving a subject out.
    ``epochs`` None: only the check that needs no data (to refuse before loading)."""
    d = cfg.data
    found = None
    if d.source == "eegmmidb":
        from ..data.eegmmidb import TASK_RUNS

        runs = d.eegmmidb.runs
        runs = list(TASK_RUNS.get(runs, [runs])) if isinstance(runs, str) else runs
        found = (f"one subject, S{d.eegmmidb.subject:03d} (data.eegmmidb.subject), whose "
                 f"epochs are grouped by run {runs}: holding one out would be "
                 f"leave-one-run-out")
    elif d.source == "simulator":
        found = "one simulated subject"
    elif d.source == "bonn":
        found = ("segments of people it does not identify (which segments share a person is "
                 "not recorded): holding one out would be leave-one-segment-out")
    elif d.source == "moabb" and d.moabb.subjects is not None and len(d.moabb.subjects) < 2:
        found = f"subject(s) {d.moabb.subjects} (data.moabb.subjects)"
    elif d.source == "files" and len(d.files) < 2:
        found = f"one file ({d.files}), taken as one subject"
    elif epochs is not None:
        subjects = None if epochs.groups is None else np.asarray(epochs.groups)
        names = [] if subjects is None else np.unique(subjects).tolist()
        if len(names) >= 2:
            if d.source == "files" and log is not None:
                log(f"      each of the {len(names)} files is taken as one subject: give one "
                    f"file per person")
            return subjects
        found = f"subject(s) {names}"
    if found is None:
        return None
    raise PipelineConfigError(f"evaluate.protocol leave_one_subject_out needs at least 2 "
                              f"subjects; the {d.source} data hold {found}. Instead, "
                              f"{LOSO_INSTEAD}")


def cv_recordings(cfg: ClassifyConfig, epochs) -> np.ndarray | None:
    """The recording each epoch was cut from, when the epochs are windows of longer
    recordings (Bonn with ``data.bonn.window_s``: several windows per segment), so that
    within-session folds keep a recording's windows together; None when every recording
    gives one epoch, or when epochs are event-locked trials (eegmmidb, files, MOABB, the
    simulator: MOABB's within-session protocol splits the trials of one run)."""
    if cfg.data.source != "bonn" or epochs.groups is None:
        return None
    groups = np.asarray(epochs.groups)
    return groups if len(np.unique(groups)) < len(groups) else None


INPUT_SCALE = 1e6  # recordings are in volts (MNE's convention); models see microvolts


def run_eeg(cfg: ClassifyConfig, ctx: RunContext) -> dict[str, Any]:
    from ..bundle import Bundle
    from ..evaluation import (
        final_step,
        fit_with_subjects,
        leave_one_subject_out,
        within_session_cv,
    )
    from ..guardrails import check_predictions
    from ..report import plot_confusion_matrix, plot_learning_curves

    log = ctx.log
    if cfg.evaluate.protocol == "leave_one_subject_out":
        loso_subjects(cfg)  # refuse one subject before loading anything
    log(f"[1/4] loading data ({cfg.data.source}) and preprocessing "
        f"({len(cfg.preprocess)} stages)")
    probe = _InputProbe(build_preprocess(cfg, legacy_defaults=False))
    epochs = load_epochs(cfg, probe)
    classes = [k for k, _ in sorted(epochs.event_id.items(), key=lambda kv: kv[1])]
    log(f"      {len(epochs)} epochs x {len(epochs.channels)} channels x {epochs.n_times} "
        f"samples at {epochs.sfreq:g} Hz; classes {classes}")
    unit = getattr(epochs, "unit", "V")
    # volts -> microvolts as braindecode models expect; other units (a.u.) pass unchanged
    scale = INPUT_SCALE if unit == "V" else 1.0
    model_spec = SignalSpec.eeg(epochs.sfreq, epochs.channels, window=epochs.n_times,
                                unit=unit)
    X = (epochs.data * scale).astype(np.float32)
    y = np.asarray(classes)[epochs.labels]
    estimator = build_estimator(cfg, model_spec)
    ev = cfg.evaluate
    result, grouping = None, None
    if ev.protocol == "within_session":
        log(f"[2/4] {ev.n_splits}-fold within-session CV x {len(ev.seeds)} seed(s), model "
            f"{cfg.model.name!r}")
        subjects = cv_subjects(cfg, epochs, log)
        recordings = cv_recordings(cfg, epochs)
        if recordings is not None:
            grouping = (f"grouped by recording: {len(epochs)} windows cut from "
                        f"{len(np.unique(recordings))} {cfg.data.source} segments, each "
                        f"segment's windows in one fold")
            log(f"      folds {grouping}")
        result = within_session_cv(estimator, X, y, sessions=epochs.sessions,
                                   subjects=subjects, recordings=recordings,
                                   n_splits=ev.n_splits, seeds=ev.seeds,
                                   shuffle=ev.shuffle, progress=log)
    elif ev.protocol == "leave_one_subject_out":
        subjects = loso_subjects(cfg, epochs, log)
        log(f"[2/4] leave-one-subject-out ({len(np.unique(subjects))} subjects) x "
            f"{len(ev.seeds)} seed(s)")
        result = leave_one_subject_out(estimator, X, y, subjects=subjects, seeds=ev.seeds,
                                       progress=log)
    else:
        subjects = cv_subjects(cfg, epochs)
    report: dict[str, Any] = {
        "pipeline": cfg.name, "model": cfg.model.name, "data": cfg.data.source,
        "n_epochs": len(epochs), "n_channels": len(epochs.channels), "n_times": epochs.n_times,
        "sfreq": epochs.sfreq, "classes": classes,
    }
    if result is not None:
        summary = {k: v for k, v in result.summary().items() if k in ev.metrics}
        report.update(evaluation=ev.protocol, summary=summary, folds=result.rows,
                      confusion_matrix=result.confusion.tolist())
        if grouping is not None:
            report["cv_folds"] = grouping
        for metric, s in summary.items():
            log(f"      {metric:18s} {s['mean']:.3f} ± {s['std']:.3f}")
        collapse = check_predictions(fold_predictions(result.confusion, classes))
        if collapse:
            report["warnings"] = [collapse]
    if result is not None and cfg.alignment == "batch":
        report["alignment_note"] = (
            "alignment: batch whitens each subject's test trials with their own mean "
            "covariance: a transductive protocol (the test fold's unlabelled statistics "
            "shape its input), as DBConformer's")
        log(f"      note: {report['alignment_note']}")
    log("[3/4] training the final model on all epochs")
    fit_with_subjects(estimator, X, y, subjects)
    clf = final_step(estimator)
    report["n_parameters"] = int(sum(p.numel() for p in clf.module_.parameters()))
    if not ctx.main:
        return report
    out = ctx.dir
    log(f"[4/4] writing the report and bundle to {ctx.final_dir}")
    if result is not None:
        plot_confusion_matrix(result.confusion, classes, out / "confusion_matrix.png",
                              title=f"{cfg.model.name} ({ev.protocol})")
    histories = (result.histories if result is not None and result.histories
                 else [clf.history_.epochs])
    plot_learning_curves(histories, out / "learning_curve.png", title=cfg.model.name)
    if cfg.output.save_model:
        input_spec = probe.spec or model_spec.with_(window=None)
        chain = chain_configs(probe.chain)
        # window in input-rate samples, so the spec survives resampling stages
        window_in = int(round(epochs.n_times * input_spec.sfreq / epochs.sfreq))
        bundle = Bundle(
            model=clf.module_, task="classify", input_spec=input_spec.with_(window=window_in),
            chain=chain, model_spec=model_spec, input_scale=scale,
            labels=[str(c) for c in clf.classes_],
            extra={"estimator": clf._estimator_meta(), **_alignment_extra(cfg, X)},
            provenance={"title": f"{cfg.model.name} trained by pipeline {cfg.name!r}",
                        "data": cfg.data.model_dump(mode="json"),
                        "recipe": cfg.train.model_dump(mode="json"),
                        "results": report.get("summary", {}),
                        "summary": f"{cfg.model.name} on {cfg.data.source}"})
        bundle.save(out / "model")
    return report


def fold_predictions(confusion, classes: list) -> np.ndarray:
    """The labels predicted over all test folds, recovered from the confusion counts, as
    plain ``str`` (an object array): the collapse warning then names ``'left_hand'``, not
    ``np.str_('left_hand')``."""
    confusion = np.asarray(confusion)
    names = np.array([str(c) for c in classes[:confusion.shape[1]]], dtype=object)
    return np.repeat(names, confusion.sum(axis=0))


def _alignment_extra(cfg: ClassifyConfig, X: np.ndarray) -> dict[str, Any]:
    """How a stream aligns: ``online``, its running mean seeded with the training trials'
    mean covariance (in the model's input unit), so the first windows are not whitened by
    themselves alone."""
    if cfg.alignment == "none":
        return {"alignment": "none"}
    from ..training import alignment_references

    return {"alignment": "online",
            "alignment_reference": alignment_references(X)[None].tolist()}


# --- IQ frames ----------------------------------------------------------------------------

def run_iq(cfg: ClassifyConfig, ctx: RunContext) -> dict[str, Any]:
    from ..bundle import promote_to_bundle
    from ..rf.amr import run_amr_pipeline

    report = run_amr_pipeline(cfg, ctx.dir, log=ctx.log)
    models = ctx.dir / "models"
    if ctx.main and models.is_dir():
        a = cfg.amr
        for folder in sorted(p for p in models.iterdir() if p.is_dir()):
            extra = _read_extra(folder)
            rate = float(extra.get("sample_rate") or 1.0)
            # the frames the model was trained on (RadioML 2018, npz: not amr.frame_length)
            spec = SignalSpec.iq(rate, int(extra.get("frame_length") or a.frame_length))
            promote_to_bundle(folder, task="classify", input_spec=spec, model_spec=spec,
                              labels=extra.get("classes"),
                              # generated / RadioML frames carry no absolute rate
                              extra={"rate_agnostic": not extra.get("sample_rate")},
                              provenance={"summary": f"modulation recognition ({a.source})",
                                          "data": a.model_dump(mode="json",
                                                               exclude={"models", "distill"})})
    return report


def _read_extra(folder: Path) -> dict:
    import json

    return json.loads((folder / "config.json").read_text()).get("extra", {})


def run_classify(cfg: ClassifyConfig, ctx: RunContext) -> dict[str, Any]:
    if cfg.amr is not None:
        return run_iq(cfg, ctx)
    from ..estimators import alignment_warnings_once

    with alignment_warnings_once():  # one alignment warning per cause, not one per fold
        return run_eeg(cfg, ctx)


# --- overrides ----------------------------------------------------------------------------

def _iq(raw: dict) -> bool:
    return raw.get("amr") is not None


def _max_epochs(raw: dict, value: int) -> None:
    if not _iq(raw):
        set_in(raw, "train.max_epochs", value)
        return
    amr = raw["amr"]
    for model in amr.get("models", []) or []:
        model["max_epochs"] = value
    for student in ((amr.get("distill") or {}).get("students", []) or []):
        student["max_epochs"] = value


def _train_setting(key: str):
    def apply(raw: dict, value) -> None:
        if _iq(raw):
            raise PipelineConfigError(
                f"--{key.replace('_', '-')} does not apply to IQ-frame classification (its "
                f"models train in sigformer's single-process loop); it applies to EEG "
                f"classification (train.{key})")
        set_in(raw, f"train.{key}", value)

    return apply


def _data(raw: dict, path: str) -> None:
    if _iq(raw):
        suffix = Path(path).suffix.lower()
        kinds = {".h5": "rml2018", ".hdf5": "rml2018", ".pkl": "rml2016", ".npz": "npz"}
        if suffix not in kinds:
            raise PipelineConfigError(f"--data {path}: IQ-frame classification reads RadioML "
                                      f"2016 (.pkl), 2018 (.h5) or npz files")
        if not Path(path).is_file():
            raise PipelineConfigError(f"--data {path}: no such file")
        raw["amr"].update(source=kinds[suffix], path=str(path))
        return
    override_data(raw, path)


def _prepare_raw(raw: dict, requested: str) -> None:
    if requested == "amr":
        raw["task"] = "classify"
        if raw.get("amr") is None:
            raw["amr"] = {}


def _summary(report: dict):
    if "models" in report:
        return {k: {"accuracy": v.get("accuracy"), "high_snr_accuracy":
                    v.get("high_snr_accuracy")} for k, v in report["models"].items()}
    return report.get("summary", {})


TASK = register_task(Task(
    name="classify", config_cls=ClassifyConfig, run=run_classify,
    overrides={"progress": setter("train.progress_bar"), "max_epochs": _max_epochs, "data": _data,
               **{k: _train_setting(k) for k in ("accelerator", "devices", "strategy",
                                                 "num_nodes")}},
    summary=_summary, prepare_raw=_prepare_raw,
    description="EEG epochs or IQ frames -> labels"), aliases=("amr",))
