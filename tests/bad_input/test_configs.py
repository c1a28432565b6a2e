"""Bad pipeline configs: YAML syntax, unknown keys, wrong types, bad ranges, unknown
stages/models/tasks/metrics, output templates, names and paths escaping the output folder,
conflicting options, and every CLI override given to a task it does not apply to."""

from __future__ import annotations

import pytest
from badinput import Catalogue, check

from sigformer.tasks import PipelineConfigError, load_task_config

CASES = Catalogue("configs")
case = CASES.case


def _load(raw: dict, overrides: dict | None = None):
    return load_task_config(raw, overrides)


def _yaml(ctx, text: str):
    path = ctx.tmp / "pipeline.yaml"
    path.write_text(text)
    return load_task_config(path)


@case("yaml-syntax", "YAML with an unclosed bracket", PipelineConfigError,
      r"pipeline\.yaml is not valid YAML", r"expected ',' or '\]'")
def _(ctx):
    _yaml(ctx, "name: x\ntrain: {max_epochs: [1, 2}\n")


@case("yaml-tabs", "YAML indented with a tab", PipelineConfigError,
      r"is not valid YAML", r"found character '\\t'")
def _(ctx):
    _yaml(ctx, "train:\n\tmax_epochs: 1\n")


@case("yaml-not-mapping", "YAML holding a list", PipelineConfigError,
      r"got list", r"must hold a mapping of sections")
def _(ctx):
    _yaml(ctx, "- a\n- b\n")


@case("yaml-empty", "empty YAML file", PipelineConfigError, r"got NoneType",
      r"must hold a mapping of sections")
def _(ctx):
    _yaml(ctx, "")


@case("yaml-missing", "pipeline file that does not exist", PipelineConfigError,
      r"pipeline file .*nope\.yaml", r"does not exist")
def _(ctx):
    load_task_config(ctx.tmp / "nope.yaml")


@case("yaml-duplicate-key", "YAML giving the train section twice", PipelineConfigError,
      r"key 'train' appears twice", r"the second would silently replace the first")
def _(ctx):
    _yaml(ctx, "train:\n  max_epochs: 100\nname: x\ntrain:\n  lr: 0.0001\n")


@case("train-key-a-task-ignores", "train.max_epochs for task separate (read from speech:)",
      PipelineConfigError, r"not max_epochs", r"only train.progress_bar applies")
def _(ctx):
    _load({"task": "separate", "train": {"max_epochs": 50}})


@case("eeg-section-beside-amr", "a model section next to an amr: section",
      PipelineConfigError, r"does not read model", r"give the models, epochs and lr under "
                                                    r"amr.models")
def _(ctx):
    _load({"task": "amr", "model": {"name": "dbconformer", "preset": "bnci2014001"}})


@case("epoch-window-reversed", "epochs.tmax before epochs.tmin", PipelineConfigError,
      r"epochs.tmax \(0 s\)", r"must be greater than epochs.tmin")
def _(ctx):
    _load({"epochs": {"tmin": 4, "tmax": 0}})


@case("unknown-teacher", "a distillation teacher that no model of amr.models trains",
      PipelineConfigError, r"teacher 'clst_small'", r"is not one of the models amr.models "
                                                    r"trains")
def _(ctx):
    _load({"task": "amr", "amr": {"models": [{"name": "clst"}], "distill": {
        "teacher": "clst_small", "students": [{"name": "kd_cnn"}]}}})


@case("unknown-section", "unknown top-level section 'trian'", PipelineConfigError,
      r"trian: Extra inputs are not permitted", r"invalid pipeline config")
def _(ctx):
    _load({"trian": {"max_epochs": 1}})


@case("unknown-key", "unknown key train.epochs", PipelineConfigError,
      r"train\.epochs: Extra inputs are not permitted", r"got 1")
def _(ctx):
    _load({"train": {"epochs": 1}})


@case("wrong-type", "train.max_epochs: 'ten'", PipelineConfigError,
      r"train\.max_epochs: .*got 'ten'", r"valid integer")
def _(ctx):
    _load({"train": {"max_epochs": "ten"}})


@case("section-wrong-type", "train: 5 (not a mapping)", PipelineConfigError,
      r"train: .*got 5", r"valid dictionary|instance of TrainConfig")
def _(ctx):
    _load({"train": 5})


@case("range-max-epochs", "train.max_epochs: 0", PipelineConfigError,
      r"train\.max_epochs: .*got 0", r"greater than 0")
def _(ctx):
    _load({"train": {"max_epochs": 0}})


@case("range-lr", "train.lr: -0.1", PipelineConfigError, r"train\.lr: .*got -0\.1",
      r"greater than 0")
def _(ctx):
    _load({"train": {"lr": -0.1}})


@case("range-validation-split", "train.validation_split: 1.5", PipelineConfigError,
      r"train\.validation_split: .*got 1\.5", r"less than 1")
def _(ctx):
    _load({"train": {"validation_split": 1.5}})


@case("range-n-splits", "evaluate.n_splits: 1", PipelineConfigError,
      r"evaluate\.n_splits: .*got 1", r"greater than or equal to 2")
def _(ctx):
    _load({"evaluate": {"n_splits": 1}})


@case("range-subject", "data.eegmmidb.subject: 110", PipelineConfigError,
      r"data\.eegmmidb\.subject: .*got 110", r"less than or equal to 109")
def _(ctx):
    _load({"data": {"eegmmidb": {"subject": 110}}})


@case("unknown-stage", "preprocess stage 'bandpas'", PipelineConfigError,
      r"unknown stage 'bandpas'", r"known stages: \[.*'bandpass'")
def _(ctx):
    _load({"preprocess": [{"stage": "bandpas", "l_freq": 8, "h_freq": 30}]})


@case("stage-bad-params", "bandpass stage with an unknown argument", PipelineConfigError,
      r"preprocess stage 'bandpass': stage 'bandpass' has no argument\(s\) \['low'\]",
      r"it takes \['l_freq', 'h_freq'")
def _(ctx):
    from sigformer.tasks.classify import build_preprocess

    build_preprocess(_load({"preprocess": [{"stage": "bandpass", "low": 8, "h_freq": 30}]}))


@case("unknown-model", "model.name 'dbconformr'", PipelineConfigError,
      r"model\.name: unknown model 'dbconformr'", r"did you mean .*dbconformer")
def _(ctx):
    _load({"model": {"name": "dbconformr"}})


@case("model-param-typo", "model.params typo 'emb_sise'", PipelineConfigError,
      r"model 'dbconformer' has no argument 'emb_sise'", r"did you mean \['emb_size'\]")
def _(ctx):
    _load({"model": {"name": "dbconformer", "params": {"emb_sise": 8}}})


@case("amr-model-typo", "amr.models[0].name 'clts'", PipelineConfigError,
      r"amr\.models\.0\.name: unknown model 'clts'", r"did you mean .*clst")
def _(ctx):
    _load({"task": "amr", "amr": {"models": [{"name": "clts"}]}})


@case("unknown-task", "task 'clasify'", PipelineConfigError, r"unknown task 'clasify'",
      r"did you mean \['classify'\]")
def _(ctx):
    _load({"task": "clasify"})


@case("unknown-metric", "evaluate.metrics ['acc']", PipelineConfigError,
      r"unknown metric\(s\) \['acc'\]", r"available: \[")
def _(ctx):
    _load({"evaluate": {"metrics": ["acc"]}})


@case("unknown-data-source", "data.source 'kaggle'", PipelineConfigError,
      r"data\.source: .*got 'kaggle'", r"'simulator', 'eegmmidb', 'files', 'moabb' or 'bonn'")
def _(ctx):
    _load({"data": {"source": "kaggle"}})


@case("unknown-alignment", "alignment 'euclid'", PipelineConfigError,
      r"alignment: .*got 'euclid'", r"'none', 'fit' or 'batch'")
def _(ctx):
    _load({"alignment": "euclid"})


@case("template-unknown-field", "output.dir 'runs/{date}'", PipelineConfigError,
      r"output\.dir uses unknown field\(s\) \['date'\]", r"\{name\} and \{task\}")
def _(ctx):
    _load({"output": {"dir": "runs/{date}"}})


@case("template-malformed", "output.dir 'runs/{name'", PipelineConfigError,
      r"output\.dir 'runs/\{name' is not a valid template", r"expected '\}'")
def _(ctx):
    _load({"output": {"dir": "runs/{name"}})


@case("name-escapes", "name '../../etc'", PipelineConfigError,
      r"name '\.\./\.\./etc'", r"no path separators")
def _(ctx):
    _load({"name": "../../etc"})


@case("name-hidden", "name '.hidden'", PipelineConfigError, r"name '\.hidden'",
      r"not start with '\.'")
def _(ctx):
    _load({"name": ".hidden"})


@case("output-dir-escapes", "output.dir 'runs/../../elsewhere'", PipelineConfigError,
      r"output\.dir 'runs/\.\./\.\./elsewhere' steps out with '\.\.'",
      r"give the folder without '\.\.'", before="silent")
def _(ctx):
    _load({"output": {"dir": "runs/../../elsewhere"}})


@case("conflict-bonn-preprocess", "Bonn windows with preprocess stages", PipelineConfigError,
      r"Bonn segments are windows already", r"preprocess stages apply to continuous")
def _(ctx):
    from sigformer.tasks.classify import load_epochs

    load_epochs(_load({"data": {"source": "bonn", "path": str(ctx.tmp)},
                       "preprocess": [{"stage": "notch", "freq": 50}]}))


@case("conflict-moabb-preprocess", "MOABB data with preprocess stages", PipelineConfigError,
      r"MOABB data are filtered by the paradigm", r"data\.moabb\.paradigm_params")
def _(ctx):
    from sigformer.tasks.classify import load_epochs

    load_epochs(_load({"data": {"source": "moabb"},
                       "preprocess": [{"stage": "notch", "freq": 50}]}))


@case("missing-data-path", "data.source eegmmidb without data.path", PipelineConfigError,
      r"data\.path is required", r"for source 'eegmmidb'")
def _(ctx):
    from sigformer.tasks.classify import load_epochs

    load_epochs(_load({"data": {"source": "eegmmidb"}}))


@case("data-override-missing", "--data pointing nowhere", PipelineConfigError,
      r"--data .*nowhere: no such file or folder", r"no such file or folder")
def _(ctx):
    _load({}, {"data": str(ctx.tmp / "nowhere")})


@case("data-override-empty-folder", "--data folder without EEG files", PipelineConfigError,
      r"no EEG files", r"\(EDF/BDF/GDF/FIF/CSV/XDF\) in the folder")
def _(ctx):
    _load({}, {"data": str(ctx.tmp)})


@case("stream-nan-policy", "stream.nan_policy 'drop'", PipelineConfigError,
      r"stream\.nan_policy: .*got 'drop'", r"'raise', 'skip' or 'interpolate'")
def _(ctx):
    _load({"stream": {"nan_policy": "drop"}})


@case("stream-source-kind", "stream.source.kind 'serial'", PipelineConfigError,
      r"stream\.source\.kind: .*got 'serial'", r"'lsl', 'file', 'wav'")
def _(ctx):
    _load({"stream": {"source": {"kind": "serial"}}})


@case("stream-smoothing", "stream.smoothing.mode 'median'", PipelineConfigError,
      r"stream\.smoothing\.mode: .*got 'median'", r"'none', 'ema' or 'vote'")
def _(ctx):
    _load({"stream": {"smoothing": {"mode": "median"}}})


# Every CLI override on every task that does not use it.
_OVERRIDES = {"accelerator": "gpu", "devices": 2, "strategy": "ddp", "num_nodes": 2}
_FLAG = {"accelerator": "--accelerator", "devices": "--devices", "strategy": "--strategy",
         "num_nodes": "--num-nodes"}
for _task in ("separate", "enhance", "estimate_channel", "tokenize"):
    for _key, _value in _OVERRIDES.items():
        case(f"override-{_FLAG[_key][2:]}-{_task}", f"{_FLAG[_key]} on task {_task}",
             PipelineConfigError,
             rf"{_FLAG[_key]} does not apply to task '{_task}'",
             r"this task accepts --max-epochs, --data")(
            lambda ctx, t=_task, k=_key, v=_value: _load({"task": t}, {k: v}))


@pytest.mark.parametrize("case", CASES.params())
def test_bad_config(case, ctx):
    check(case, ctx)
