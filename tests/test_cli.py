import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sigformer.cli import EXIT_BAD_INPUT, main
from sigformer.pipeline import PipelineConfigError, load_config

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "name": "tiny_mi",
    "data": {"source": "simulator",
             "simulator": {"n_trials": 20, "sfreq": 100, "trial_duration": 2.0, "snr_db": 0,
                           "seed": 1}},
    "preprocess": [{"stage": "bandpass", "l_freq": 8, "h_freq": 30, "phase": "zero"}],
    "epochs": {"events": ["left_hand", "right_hand"], "tmin": 0.0, "tmax": 2.0},
    "alignment": "batch",
    "model": {"name": "dbconformer",
              "params": {"emb_size": 8, "num_heads": 2, "depth": 1, "spa_dim": 4,
                         "patch_size": 25}},
    "train": {"max_epochs": 2, "batch_size": 8},
    "evaluate": {"n_splits": 2},
}


def _write(tmp_path, cfg) -> Path:
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_shipped_pipelines_validate():
    for path in (REPO / "pipelines").glob("*.yaml"):
        cfg = load_config(path)
        assert cfg.name


def test_run_writes_metrics_plots_and_checkpoint(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(_write(tmp_path, TINY)), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_epochs"] == 20 and metrics["classes"] == ["left_hand", "right_hand"]
    assert set(metrics["summary"]) == {"accuracy", "balanced_accuracy", "kappa", "roc_auc"}
    assert len(metrics["folds"]) == 2
    for png in ("confusion_matrix.png", "learning_curve.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from sigformer.estimators import SignalClassifier

    clf = SignalClassifier.load(out / "model")
    assert list(clf.classes_) == ["left_hand", "right_hand"]
    from sigformer.bundle import Bundle

    bundle = Bundle.load(out / "model")  # the inference bundle: spec, chain, labels, scale
    assert bundle.extra["alignment"] == "online" and bundle.task == "classify"
    assert bundle.labels == ["left_hand", "right_hand"] and bundle.input_scale == 1e6
    assert bundle.model_spec.window == metrics["n_times"]
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("change,message", [
    ({"train": {"max_epochs": 0}}, "train.max_epochs: Input should be greater than 0"),
    ({"trian": {}}, "trian: Extra inputs are not permitted"),
    ({"preprocess": [{"stage": "bandstop"}]}, "unknown stage 'bandstop'"),
    ({"evaluate": {"metrics": ["f1"]}}, "unknown metric"),
    ({"model": {"name": "dbconformr"}}, "unknown model 'dbconformr'"),
    ({"preprocess": [{"stage": "bandpass", "l_freq": 30, "h_freq": 8}]},
     "0 < l_freq < h_freq"),
])
def test_bad_config_names_the_key(tmp_path, capsys, change, message):
    cfg = {**TINY, **change}
    assert main(["run", str(_write(tmp_path, cfg)), "--out", str(tmp_path / "o")]) \
        == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_unreadable_pipeline_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(PipelineConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(PipelineConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_run_on_real_eegmmidb(tmp_path, eegmmidb_dir):
    cfg = {**TINY, "data": {"source": "simulator"}, "alignment": "none",
           "epochs": {"events": ["left_hand", "right_hand"], "tmin": 0.0, "tmax": 4.0}}
    out = tmp_path / "real"
    assert main(["run", str(_write(tmp_path, cfg)), "--data", str(eegmmidb_dir),
                 "--out", str(out), "--max-epochs", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == "eegmmidb" and metrics["n_channels"] == 64
    assert metrics["n_epochs"] == 45 and metrics["sfreq"] == 160


def test_console_entry_point_lists_models():
    proc = subprocess.run([sys.executable, "-m", "sigformer.cli", "models"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "dbconformer" in proc.stdout.split()


TOKENIZE = {
    "name": "tiny_tokens", "task": "tokenize",
    "data": {"source": "simulator",
             "simulator": {"n_trials": 10, "sfreq": 200, "trial_duration": 2.0, "seed": 0}},
    "epochs": {"events": ["left_hand", "right_hand"], "tmin": 0.0, "tmax": 2.0},
    "tokenizer": {"name": "tfm_tokenizer", "preset": "tiny", "max_epochs": 1, "batch_size": 64},
}


def test_tokenize_pipeline_reports_codebook(tmp_path):
    out = tmp_path / "tok"
    assert main(["run", str(_write(tmp_path, TOKENIZE)), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tokens_per_window"] == 22 * 3  # 22 channels x 3 frames of 2 s
    assert 0 < metrics["codebook_usage"] <= 1 and metrics["codebook_perplexity"] >= 1
    for png in ("codebook_usage.png", "tokens.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    from sigformer.checkpoint import load_checkpoint

    tokenizer, config = load_checkpoint(out / "tokenizer")
    assert config["model"] == "tfm_tokenizer" and tokenizer.quantizer.num_codes == 64


def test_tokenize_pipeline_on_real_bonn(tmp_path, eegmmidb_dir):
    bonn = eegmmidb_dir.parents[1] / "eeg_bonn" / "bonn_ZONFS_001-080.npz"
    cfg = {**TOKENIZE, "epochs": {}}
    out = tmp_path / "bonn"
    assert main(["run", str(_write(tmp_path, cfg)), "--data", str(bonn), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == "bonn" and metrics["n_channels"] == 1
    assert metrics["n_windows"] == 1600 and metrics["tokens_per_window"] == 9


# --- pipeline parsing (review findings, fourteenth session) -------------------------------

def test_data_flag_keeps_the_sections_other_settings(tmp_path):
    bonn = tmp_path / "bonn.npz"
    bonn.write_bytes(b"")
    cfg = load_config({**TINY, "task": "classify",
                       "data": {"source": "bonn", "bonn": {"task": "five_class",
                                                           "window_s": None}}},
                      overrides={"data": str(bonn)})
    assert cfg.data.source == "bonn" and cfg.data.path == str(bonn)
    assert cfg.data.bonn.task == "five_class" and cfg.data.bonn.window_s is None
    mmidb = tmp_path / "mmidb"
    (mmidb / "S007").mkdir(parents=True)
    (mmidb / "S007" / "S007R04.edf").write_bytes(b"")
    cfg = load_config({**TINY, "data": {"source": "files", "files": ["a.edf"],
                                        "eegmmidb": {"subject": 7, "runs": [4, 8, 12]}}},
                      overrides={"data": str(mmidb)})
    assert cfg.data.source == "eegmmidb" and cfg.data.files == []
    assert cfg.data.eegmmidb.subject == 7 and cfg.data.eegmmidb.runs == [4, 8, 12]


def test_a_key_given_twice_is_refused_with_its_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("name: x\ntrain:\n  max_epochs: 100\nmodel:\n  name: dbconformer\n"
                    "train:\n  lr: 0.0001\n")
    with pytest.raises(PipelineConfigError, match=r"key 'train' appears twice \(first on line 2"):
        load_config(path)


def test_exponent_numbers_without_a_dot_are_floats(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in TINY.items() if k != "train"})
                    + "train:\n  lr: 1e-3\n  max_epochs: 2\n")
    path.write_text(path.read_text().replace("h_freq: 30", "h_freq: 3e1"))
    cfg = load_config(path)
    assert cfg.train.lr == 1e-3
    assert cfg.preprocess[0].stage_config()["h_freq"] == 30.0  # a float, not '3e1'


@pytest.mark.parametrize("cfg, match", [
    ({"task": "separate", "train": {"max_epochs": 50, "lr": 1e-4}},
     r"only train.progress_bar applies to this task, not lr, max_epochs"),
    ({"task": "enhance", "train": {"accelerator": "gpu"}}, "not accelerator"),
    ({"task": "estimate_channel", "train": {"batch_size": 8}}, "ofdm.models"),
    ({"task": "amr", "model": {"name": "dbconformer", "preset": "bnci2014001"},
      "train": {"max_epochs": 100}}, r"does not read model, train.max_epochs"),
])
def test_training_keys_a_task_would_ignore_are_refused(cfg, match):
    with pytest.raises(PipelineConfigError, match=match):
        load_config({"name": "x", **cfg})


def test_progress_bar_still_applies_to_every_task():
    for task in ("separate", "enhance", "estimate_channel", "amr"):
        cfg = load_config({"name": "x", "task": task, "train": {"progress_bar": True}})
        assert cfg.train.progress_bar is True


@pytest.mark.parametrize("cfg, match", [
    ({"task": "amr", "amr": {"models": [{"name": "clst"}], "distill": {
        "teacher": "clst_small", "students": [{"name": "kd_cnn"}]}}},
     r"amr.distill.teacher 'clst_small' is not one of the models amr.models trains"),
    ({"task": "amr", "amr": {"models": [{"name": "clst"}], "distill": {
        "teacher": "clst", "students": [{"name": "kd_cnnn"}]}}},
     r"amr.distill.students.0.name: unknown model 'kd_cnnn'"),
    ({"task": "amr", "amr": {"models": [{"name": "clst"}], "distill": {
        "teacher": "clst", "students": [{"name": "kd_cnn", "params": {"nope": 1}}]}}},
     r"amr.distill.students.0.params: model 'kd_cnn' has no argument 'nope'"),
    ({"task": "separate", "speech": {"model": "mosformer"}}, r"speech.model: unknown model"),
    ({"task": "tokenize", "tokenizer": {"name": "tfm_tokeniser"}}, r"tokenizer.name: unknown"),
    ({"train": {"accelerator": "gpus"}}, r"unknown accelerator 'gpus'"),
    ({"train": {"strategy": "dpp"}}, r"unknown strategy 'dpp'; did you mean 'ddp'"),
    ({"train": {"devices": "two"}}, r"devices must be a count"),
    ({"epochs": {"tmin": 4, "tmax": 0}}, r"epochs.tmax \(0 s\) must be greater"),
    ({"evaluate": {"seeds": []}}, r"evaluate.seeds: List should have at least 1 item"),
])
def test_names_and_values_that_would_fail_after_training_started_are_refused_at_parse(cfg, match):
    with pytest.raises(PipelineConfigError, match=match):
        load_config({"name": "x", **cfg})


def test_lightning_device_and_strategy_forms_are_accepted():
    cfg = load_config({"name": "x", "train": {"devices": "0,1", "strategy": "ddp",
                                              "accelerator": "gpu"}})
    assert cfg.train.devices == "0,1" and cfg.train.strategy == "ddp"
    cfg = load_config({"name": "x", "task": "amr", "amr": {
        "models": [{"name": "clst", "preset": "small"}],
        "distill": {"teacher": "clst:small", "students": [{"name": "kd_cnn"}]}}})
    assert cfg.amr.distill.teacher == "clst:small"


def test_a_tfm_tokenizer_bundle_states_the_input_the_tokenizer_takes():
    """The tokenizer runs on tfm_prepare's 200 Hz, scaled windows: a bundle whose model spec
    said the epochs' 160 Hz window made its export refuse correctly prepared input."""
    from types import SimpleNamespace

    from sigformer.models import create_model
    from sigformer.tasks.tokenize import _tokenizer_model_spec

    epochs = SimpleNamespace(sfreq=160.0, channels=["C3", "C4"], n_times=320)
    spec, extra = _tokenizer_model_spec(create_model("tfm_tokenizer", "tiny"), epochs)
    assert spec.sfreq == 200.0 and spec.window == 400 and spec.unit == "a.u."
    assert extra["input_sfreq"] == 160.0 and "tfm_prepare" in extra["prepare"]


def test_an_amr_runs_own_pipeline_json_loads_again():
    """A run writes every default into pipeline.json: the EEG sections beside amr: are
    refused only when they say something other than their defaults."""
    cfg = load_config(REPO / "pipelines" / "amr_clst.yaml")
    again = load_config(json.loads(cfg.model_dump_json()))
    assert again.amr == cfg.amr


def test_yaml_merge_keys_still_load(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("name: x\nbase: &b {max_epochs: 3, batch_size: 8}\n"
                    "train:\n  <<: *b\n  lr: 0.01\n")
    from sigformer.tasks.registry import read_raw_config

    loaded, _ = read_raw_config(path)
    assert loaded["train"] == {"max_epochs": 3, "batch_size": 8, "lr": 0.01}
