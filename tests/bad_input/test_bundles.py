"""Bad bundles: missing or damaged files, configs with unknown, mistyped or malformed fields,
future formats, absurd shapes, non-finite weights, and a bundle given to the wrong command."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from badinput import Catalogue, check

from sigformer.bundle import Bundle
from sigformer.checkpoint import CheckpointError, load_checkpoint
from sigformer.models.convert import ConversionError
from sigformer.validation import SignalError

CASES = Catalogue("bundles")
case = CASES.case


def _edit_config(path, edit):
    config = json.loads((path / "config.json").read_text())
    edit(config)
    (path / "config.json").write_text(json.dumps(config))
    return path


def _set(key, value):
    return lambda config: config.__setitem__(key, value)


@case("checksums-removed", "a format-2 bundle whose config lists no checksums",
      CheckpointError, r"lists no checksums", r"which every format-2 bundle records")
def _(ctx):
    Bundle.load(_edit_config(ctx.copy_bundle(), _set("files", {})))


@case("config-fetches-weights", "a config whose kwargs name other weights to load",
      CheckpointError, r"kwargs\.weights", r"a bundle records constructor arguments only")
def _(ctx):
    Bundle.load(_edit_config(ctx.copy_bundle(),
                             lambda c: c["kwargs"].__setitem__("weights", "org/repo")))


@case("bundle-missing", "bundle folder that does not exist (absolute path)", CheckpointError,
      r"nope", r"neither a bundle folder nor a pretrained name|does not exist")
def _(ctx):
    Bundle.load(ctx.tmp / "nope")


@case("bundle-missing-relative", "relative bundle path 'runs/nope' that does not exist",
      CheckpointError, r"bundle folder 'runs/nope' does not exist",
      r"expected a folder written by `sigformer run`", before="crash")
def _(ctx):
    (ctx.tmp / "runs").mkdir()
    cwd = os.getcwd()
    os.chdir(ctx.tmp)
    try:
        Bundle.load("runs/nope")
    finally:
        os.chdir(cwd)


@case("hub-lookup-offline", "'someone/model' with no such folder and no hub access",
      CheckpointError, r"'someone/model' is not a local folder .* hub lookup failed",
      r"expected a bundle folder, a pretrained name", before="crash")
def _(ctx):
    pytest.importorskip("huggingface_hub")
    cwd, offline = os.getcwd(), os.environ.get("HF_HUB_OFFLINE")
    os.chdir(ctx.tmp)
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing leaves this machine
    try:
        Bundle.load("someone/model")
    finally:
        os.chdir(cwd)
        if offline is None:
            os.environ.pop("HF_HUB_OFFLINE")
        else:
            os.environ["HF_HUB_OFFLINE"] = offline


@case("bundle-is-file", "a file given as the bundle folder", CheckpointError,
      r"is a file, not a bundle folder", r"create_model\(name, weights=")
def _(ctx):
    (ctx.tmp / "model.pt").write_bytes(b"x")
    Bundle.load(ctx.tmp / "model.pt")


@case("config-missing", "bundle folder without config.json", CheckpointError,
      r"config\.json missing", r"is not a sigformer checkpoint")
def _(ctx):
    path = ctx.copy_bundle()
    (path / "config.json").unlink()
    Bundle.load(path)


@case("weights-missing", "bundle folder without model.safetensors", CheckpointError,
      r"model\.safetensors is missing", r"model\.safetensors")
def _(ctx):
    path = ctx.copy_bundle()
    (path / "model.safetensors").unlink()
    Bundle.load(path)


@case("config-not-json", "config.json that is not JSON", CheckpointError,
      r"config\.json is not valid JSON", r"Expecting")
def _(ctx):
    path = ctx.copy_bundle()
    (path / "config.json").write_text("{model: dbconformer")
    Bundle.load(path)


@case("config-list", "config.json holding a list", CheckpointError, r"got list",
      r"must hold a JSON object")
def _(ctx):
    path = ctx.copy_bundle()
    (path / "config.json").write_text("[]")
    Bundle.load(path)


@case("config-lacks-model", "config.json without 'model'", CheckpointError,
      r"lacks the required key 'model'", r"config\.json")
def _(ctx):
    Bundle.load(_edit_config(ctx.copy_bundle(), lambda c: c.pop("model")))


@case("config-edited", "a label changed in config.json after saving", CheckpointError,
      r"config\.json was changed after it was saved", r"Restore the original file",
      before="silent")
def _(ctx):
    Bundle.load(_edit_config(ctx.copy_bundle(), lambda c: c["head"].__setitem__(
        "labels", ["right", "left"])))


@case("future-format", "format_version 99", CheckpointError, r"has format 99",
      r"this sigformer reads up to 2: upgrade sigformer")
def _(ctx):
    Bundle.load(_edit_config(ctx.copy_bundle(), _set("format_version", 99)))


@case("format-mistyped", "format_version '2'", CheckpointError,
      r"format_version must be an integer", r"got '2'")
def _(ctx):
    Bundle.load(_edit_config(ctx.copy_bundle(), _set("format_version", "2")))


@case("unknown-field", "unknown config field 'colour'", CheckpointError,
      r"colour: Extra inputs are not permitted", r"not a valid sigformer checkpoint config")
def _(ctx):
    Bundle.load(_edit_config(ctx.copy_bundle(), _set("colour", "blue")))


@case("mistyped-field", "input_scale 'big'", CheckpointError, r"input_scale: .*got 'big'",
      r"valid number")
def _(ctx):
    Bundle.load(_edit_config(ctx.copy_bundle(), _set("input_scale", "big")))


@case("negative-scale", "input_scale -1", CheckpointError, r"input_scale: .*got -1",
      r"greater than 0")
def _(ctx):
    Bundle.load(_edit_config(ctx.copy_bundle(), _set("input_scale", -1)))


@case("unknown-task", "task 'dance'", CheckpointError, r"task: .*got 'dance'",
      r"'classify', 'tokenize', 'separate', 'enhance' or 'estimate_channel'")
def _(ctx):
    Bundle.load(_edit_config(ctx.copy_bundle(), _set("task", "dance")))


@case("malformed-labels", "head.labels 'ab' (a string)", CheckpointError,
      r"head\.labels: .*got 'ab'", r"valid list")
def _(ctx):
    Bundle.load(_edit_config(ctx.copy_bundle(),
                             _set("head", {"kind": "classify", "labels": "ab"})))


@case("malformed-checksum", "files.*.sha256 'xyz'", CheckpointError,
      r"files\.model\.safetensors\.sha256: .*got 'xyz'", r"should match pattern")
def _(ctx):
    Bundle.load(_edit_config(ctx.copy_bundle(), _set(
        "files", {"model.safetensors": {"sha256": "xyz", "bytes": 1}})))


@case("malformed-input-spec", "input_spec with an unknown field 'rate'", CheckpointError,
      r"config\.json: input_spec: unknown spec field\(s\) \['rate'\]",
      r"expected sfreq, channels", before="unclear")
def _(ctx):
    def edit(config):
        config["input_spec"]["rate"] = 3
    Bundle.load(_edit_config(ctx.copy_bundle(), edit))


@case("unknown-model", "config naming model 'eegnet9'", CheckpointError,
      r"config\.json: model: unknown model 'eegnet9'", r"Known models: \[",
      before="unclear")
def _(ctx):
    Bundle.load(_edit_config(ctx.copy_bundle(), _set("model", "eegnet9")))


@case("kwargs-mistyped", "kwargs.emb_size 'eight'", CheckpointError,
      r"config\.json: kwargs\.emb_size is 'eight'", r"expected int \(like its default 40\)",
      before="unclear")
def _(ctx):
    def edit(config):
        config["kwargs"]["emb_size"] = "eight"
    Bundle.load(_edit_config(ctx.copy_bundle(), edit))


@case("kwargs-unknown", "kwargs with an argument the model lacks", CheckpointError,
      r"kwargs\.colour: model 'dbconformer' has no argument 'colour'",
      r"it takes \['n_chans'")
def _(ctx):
    def edit(config):
        config["kwargs"]["colour"] = "blue"
    Bundle.load(_edit_config(ctx.copy_bundle(), edit))


@case("absurd-shapes", "kwargs.n_chans 1e9", CheckpointError,
      r"cannot build model 'dbconformer' from its kwargs: n_chans=1000000000",
      r"different from chs_info")
def _(ctx):
    def edit(config):
        config["kwargs"]["n_chans"] = 10**9
    load_checkpoint(_edit_config(ctx.copy_bundle(), edit))


@case("shape-mismatch", "kwargs.emb_size changed after saving", CheckpointError,
      r"shape mismatch", r"model \[.*\] vs file \[")
def _(ctx):
    def edit(config):
        config["kwargs"]["emb_size"] = 16
    Bundle.load(_edit_config(ctx.copy_bundle(), edit))


@case("corrupted-bytes", "one flipped byte in the weights", CheckpointError,
      r"model\.safetensors is corrupt: its SHA-256 does not match",
      r"recorded in config\.json")
def _(ctx):
    path = ctx.copy_bundle()
    raw = bytearray((path / "model.safetensors").read_bytes())
    raw[-7] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(raw))
    Bundle.load(path)


@case("truncated-weights", "weights cut in half", CheckpointError,
      r"model\.safetensors is truncated or corrupt: \d+ bytes", r"the config records \d+")
def _(ctx):
    path = ctx.copy_bundle()
    raw = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(raw[:len(raw) // 2])
    Bundle.load(path)


def _format_1(config):  # a checkpoint from before checksums existed: model and kwargs only
    for key in set(config) - {"model", "kwargs", "extra", "sigformer_version"}:
        config.pop(key)
    config["format_version"] = 1


@case("truncated-unverified", "truncated weights of a format-1 checkpoint (no checksums)",
      CheckpointError, r"truncated or corrupt", r"model\.safetensors")
def _(ctx):
    path = _edit_config(ctx.copy_bundle(), _format_1)
    raw = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(raw[:len(raw) // 2])
    with pytest.warns(UserWarning, match="no checksums"):
        load_checkpoint(path)


@case("non-finite-weights", "NaN weights (re-saved, checksums valid)", FloatingPointError,
      r"the model produced non-finite outputs", r"input may hold NaN/Inf")
def _(ctx):
    import torch

    bundle = Bundle.load(ctx.shared.eeg_bundle)
    with torch.no_grad():
        next(bundle.model.parameters()).fill_(float("nan"))
    bundle = Bundle.load(bundle.save(ctx.tmp / "nan_bundle"))
    bundle.predict(np.zeros((1, 6, 100)))


@case("plain-checkpoint", "a model checkpoint without bundle fields", CheckpointError,
      r"model checkpoint without an inference bundle", r"load it with .*load_checkpoint")
def _(ctx):
    Bundle.load(_edit_config(ctx.copy_bundle(), lambda c: c.pop("task")))


@case("classify-without-labels", "classification bundle without label names",
      CheckpointError, r"classification bundle", r"needs its label names")
def _(ctx):
    Bundle.load(_edit_config(ctx.copy_bundle(),
                             _set("head", {"kind": "classify", "labels": None})))


@case("wrong-task-classify-iq", "an EEG bundle given to classify-iq", CheckpointError,
      r"is not a modulation-recognition bundle", r"IQ classification pipeline")
def _(ctx):
    from sigformer.cli import _cmd_classify_iq

    class Args:
        model, file, out, in_place = str(ctx.shared.eeg_bundle), "x.sigmf-meta", None, False
    _cmd_classify_iq(Args)


@case("wrong-task-separate", "a classification bundle given to separate", CheckpointError,
      r"is not a separation bundle", r"its task is 'classify'")
def _(ctx):
    from sigformer.cli import _run_audio_bundle

    class Args:
        model, input = str(ctx.shared.eeg_bundle), ["a.wav"]
    _run_audio_bundle(Args, "separate", str(ctx.tmp / "out"))


@case("wrong-task-predict", "predict_proba on a separation bundle", CheckpointError,
      r"this one is 'separate'", r"needs a classification bundle")
def _(ctx):
    Bundle.load(ctx.shared.sep_bundle).predict_proba(np.zeros((1, 1, 100)))


@case("unknown-pretrained", "pretrained name that is not installed", CheckpointError,
      r"'dbconformer-imaginary' is neither a bundle folder nor a pretrained name",
      r"sigformer models --pretrained")
def _(ctx):
    Bundle.load("dbconformer-imaginary")


@case("tfm-tokenizer-rate", "TFM classifier from the shipped tokenizer at Bonn's 173.61 Hz",
      SignalError, r"got sfreq=173\.61", r"200 Hz.*tfm_prepare")
def _(ctx):
    from sigformer.models import create_model

    create_model("tfm_classifier", n_chans=1, n_outputs=2, sfreq=173.61,
                 tokenizer_weights="tfm-tokenizer-eeg-corpus")


@case("tfm-tokenizer-window", "868-sample windows for the shipped 5 s tokenizer", SignalError,
      r"got 868 samples", r"takes 1000-sample windows \(5 s at 200 Hz\)")
def _(ctx):
    from sigformer.models import create_model

    create_model("tfm_classifier", n_chans=1, n_outputs=2, n_times=868,
                 tokenizer_weights="tfm-tokenizer-eeg-corpus")


@case("tfm-tokenizer-not-a-tokenizer", "a modulation bundle given as the TFM tokenizer",
      ValueError, r"holds a 'clst' model", r"expected a tfm_tokenizer bundle")
def _(ctx):
    from sigformer.models import create_model

    create_model("tfm_classifier", tokenizer_weights="amr-clst-modgen")


@case("sps-without-symbol-length", "--sps for an IQ bundle trained at no fixed symbol length",
      ValueError, r"this bundle has none", r"bundles trained at a fixed symbol length")
def _(ctx):
    from sigformer.streaming.app import OnlineSettings, build_online

    build_online("amr-clst-modgen", OnlineSettings(samples_per_symbol=8.0))


@case("format-1-downgrade", "a bundle's config edited to claim format 1 (no checksums)",
      CheckpointError, r"says format_version 1 but holds the format-2 fields",
      r"which no format-1 checkpoint has", before="silent")
def _(ctx):
    def downgrade(config):
        config.pop("files")
        config["format_version"] = 1

    Bundle.load(_edit_config(ctx.copy_bundle(), downgrade))


@case("labels-outputs-mismatch", "13 label names for a classifier with 11 outputs",
      CheckpointError, r"13 label names", r"must name the model's outputs, in order",
      before="silent")
def _(ctx):
    from sigformer.models import create_model
    from sigformer.spec import SignalSpec

    Bundle(model=create_model("kd_cnn", n_outputs=11), task="classify",
           input_spec=SignalSpec.iq(1.0, 128), labels=[f"c{i}" for i in range(13)])


@case("official-checkpoint-truncated", "an official .pt checkpoint cut in half",
      ConversionError, r"is truncated or corrupt \(", r"bytes", before="unclear")
def _(ctx):
    import torch

    from sigformer.models import create_model

    path = ctx.tmp / "official.pt"
    torch.save(create_model("ofdm_linear").state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    create_model("adafortitran", "small", weights=path)


@case("official-checkpoint-empty", "an empty official .pt checkpoint (0 bytes)",
      ConversionError, r"is empty \(0 bytes\)", r"interrupted download or copy", before="crash")
def _(ctx):
    from sigformer.models import create_model

    (ctx.tmp / "empty.pt").write_bytes(b"")
    create_model("adafortitran", "small", weights=ctx.tmp / "empty.pt")


@case("bundle-weights-as-official", "a bundle's model.safetensors given as official weights",
      ConversionError, r"is the weights file of a sigformer bundle", r"load the folder",
      before="unclear")
def _(ctx):
    from sigformer.models import create_model

    create_model("kd_cnn", weights=ctx.copy_bundle("iq_bundle") / "model.safetensors")


@pytest.mark.parametrize("case", CASES.params())
def test_bad_bundle(case, ctx):
    check(case, ctx)
