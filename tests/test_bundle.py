"""Inference bundles: spec, chain, integrity checks, atomic publishing, locks, pretrained
loading, head swaps and collapse guardrails."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sigformer.atomic import OutputLock, OutputLockedError, published
from sigformer.bundle import Bundle
from sigformer.channels import ChannelSet
from sigformer.checkpoint import CheckpointError, load_checkpoint, read_config, save_checkpoint
from sigformer.models import create_model
from sigformer.spec import SignalSpec, SpecError

NAMES = ["Fp1", "C3", "Cz", "C4", "P3", "P4"]


def _eeg_bundle(chain, sfreq=160.0, window_s=1.0, names=NAMES, seed=0) -> Bundle:
    """A random-weight DBConformer bundle behind ``chain`` (its output spec sets the model)."""
    torch.manual_seed(seed)
    input_spec = SignalSpec.eeg(sfreq, names, window=int(window_s * sfreq))
    from sigformer.stages import Pipeline, stage_from_config

    model_spec = input_spec.through(Pipeline([stage_from_config(c) for c in chain]))
    model = create_model("dbconformer", spec=model_spec, n_outputs=2, emb_size=8, num_heads=2,
                         depth=1, spa_dim=4, patch_size=20, kernel_size=15).eval()
    return Bundle(model=model, task="classify", input_spec=input_spec, chain=chain,
                  model_spec=model_spec, input_scale=1e6, labels=["left", "right"])


CHAINS = {
    "resample": [{"stage": "resample", "sfreq": 128.0}],
    "bipolar": [{"stage": "bipolar", "pairs": [["C3", "Cz"], ["Cz", "C4"], ["P3", "P4"]]}],
    "notch_reref": [{"stage": "notch", "freq": 50.0}, {"stage": "rereference"},
                    {"stage": "bandpass", "l_freq": 4.0, "h_freq": 40.0}],
    "adapt": [{"stage": "adapt_channels", "target": ["C3", "Cz", "C4"], "fill": "zeros"}],
}


# --- spec -----------------------------------------------------------------------------------

def test_spec_round_trip_and_model_arguments():
    spec = SignalSpec.eeg(160, NAMES, window=320)
    assert SignalSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    model = create_model("dbconformer", spec=spec, n_outputs=2, preset="tiny")
    assert (model.n_chans, model.n_times, model.sfreq) == (6, 320, 160)
    assert [c["ch_name"] for c in model.chs_info] == NAMES
    audio = SignalSpec.audio(16000, n_mics=4)
    assert create_model("deftan2", spec=audio, preset="tiny").n_mics == 4
    with pytest.raises(SpecError, match="unknown spec field"):
        SignalSpec.from_dict({**spec.to_dict(), "rate": 3})
    with pytest.raises(SpecError, match="expects 6"):
        spec.check(np.zeros((2, 5, 320)))
    with pytest.raises(SpecError, match="layout must be one of"):
        SignalSpec(100, ["a"], layout="grid")


def test_spec_through_a_resampler_rescales_the_window():
    from sigformer.stages import Pipeline, Resample

    out = SignalSpec.eeg(250, NAMES, window=500).through(Pipeline([Resample(125)]))
    assert out.sfreq == 125 and out.window == 250


# --- bundles: chains stream exactly as they run offline -----------------------------------

@pytest.mark.parametrize("chain", list(CHAINS), ids=list(CHAINS))
def test_streamed_predictions_equal_offline(tmp_path, chain):
    from sigformer.streaming import ArraySource, ListSink, StreamRunner
    from sigformer.streaming.app import OnlineSettings, build_online
    from sigformer.windowing import frame_array

    bundle = _eeg_bundle(CHAINS[chain])
    loaded = Bundle.load(bundle.save(tmp_path / "b"))
    rng = np.random.default_rng(1)
    data = rng.standard_normal((len(NAMES), 160 * 6)) * 1e-5
    online = build_online(loaded, OnlineSettings(hop_s=0.25))
    sink = ListSink()
    StreamRunner(ArraySource(data, 160, NAMES, chunk_size=23), online, [sink]).run()
    streamed = np.stack([p.probabilities for p in sink.predictions])
    hop = max(1, int(round(0.25 * loaded.model_spec.sfreq)))
    windows = frame_array(loaded.preprocess(data), loaded.window, hop)
    np.testing.assert_allclose(streamed, loaded.predict_proba(windows), atol=1e-5)
    assert len(streamed) == len(windows) > 5


def test_stream_at_another_rate_is_resampled_not_refused(tmp_path):
    from sigformer.streaming import ArraySource, ListSink, StreamRunner
    from sigformer.streaming.app import OnlineSettings, build_online

    bundle = Bundle.load(_eeg_bundle(CHAINS["resample"]).save(tmp_path / "b"))
    online = build_online(bundle, OnlineSettings(hop_s=0.5))
    data = np.random.default_rng(0).standard_normal((len(NAMES), 250 * 4)) * 1e-5
    sink = ListSink()
    StreamRunner(ArraySource(data, 250, NAMES, chunk_size=50), online, [sink]).run()
    assert online.resampled_from == 250 and len(sink.predictions) > 0


def test_zero_phase_chain_refuses_to_stream(tmp_path):
    from sigformer.streaming.app import build_online
    from sigformer.tasks.config import PipelineConfigError

    chain = [{"stage": "bandpass", "l_freq": 4.0, "h_freq": 30.0, "phase": "zero"}]
    bundle = _eeg_bundle(chain)
    with pytest.raises(PipelineConfigError, match="zero-phase and cannot stream"):
        build_online(bundle)


def test_bundle_load_refuses_a_plain_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "c", create_model("kd_cnn"))
    with pytest.raises(CheckpointError, match="without an inference bundle"):
        Bundle.load(path)


def test_nonfinite_outputs_are_an_error_not_a_label(tmp_path):
    bundle = _eeg_bundle([])
    with torch.no_grad():
        next(bundle.model.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite"):
        bundle.predict(np.zeros((1, len(NAMES), bundle.window)))


# --- integrity --------------------------------------------------------------------------

def test_corrupted_weight_bytes_are_refused(tmp_path):
    path = _eeg_bundle([]).save(tmp_path / "b")
    weights = path / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-7] ^= 0xFF  # same size, one flipped byte inside a tensor
    weights.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="SHA-256 does not match"):
        Bundle.load(path)


def test_absurd_shapes_are_refused_before_any_allocation(tmp_path):
    path = save_checkpoint(tmp_path / "c", create_model("kd_cnn"))
    config = json.loads((path / "config.json").read_text())
    config["kwargs"]["n_chans"] = 10**9  # building this for real would need ~450 GB
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"shape mismatch.*1000000000"):
        load_checkpoint(path)


@pytest.mark.parametrize("change,field", [
    ({"colour": "blue"}, "colour"),
    ({"input_scale": "big"}, "input_scale"),
    ({"task": "dance"}, "task"),
    ({"head": {"kind": "classify", "labels": "ab"}}, "head.labels"),
    ({"files": {"model.safetensors": {"sha256": "xyz", "bytes": 1}}}, "sha256"),
])
def test_malformed_config_fields_are_named(tmp_path, change, field):
    path = _eeg_bundle([]).save(tmp_path / "b")
    config = json.loads((path / "config.json").read_text())
    config.update(change)
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=field.replace(".", r"\.")):
        read_config(path)


def test_format_1_checkpoints_still_load_with_a_warning(tmp_path):
    path = save_checkpoint(tmp_path / "c", create_model("kd_cnn"))
    config = json.loads((path / "config.json").read_text())
    for key in ("files", "format"):
        config.pop(key)
    config["format_version"] = 1
    (path / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="no checksums"):
        load_checkpoint(path)


def test_a_bundle_edited_down_to_format_1_is_refused(tmp_path):
    # format 1 has no checksums: claiming it must not skip the weights' or labels' checks
    path = _eeg_bundle([]).save(tmp_path / "b")
    config = json.loads((path / "config.json").read_text())
    config.pop("files")
    config["format_version"] = 1
    config["head"]["labels"] = ["right", "left"]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"format_version 1 but holds the format-2 "
                                              r"fields \[.*'head'.*'task'"):
        Bundle.load(path)


def _edit_labels(path: Path, labels: list[str]) -> None:
    config = json.loads((path / "config.json").read_text())
    config["head"]["labels"] = labels
    (path / "config.json").write_text(json.dumps(config, indent=2))


def test_edited_config_is_refused_and_unstamped_bundles_still_load(tmp_path):
    from sigformer.bundle import CONFIG_DIGEST_KEY, stamp_config

    path = _eeg_bundle([]).save(tmp_path / "b")
    loaded = Bundle.load(path)
    assert loaded.labels == ["left", "right"] and CONFIG_DIGEST_KEY not in loaded.extra
    loaded.save(tmp_path / "again")  # re-saving a loaded bundle records a fresh digest
    Bundle.load(tmp_path / "again")
    _edit_labels(path, ["left", "rihgt"])
    with pytest.raises(CheckpointError, match=r"config\.json was changed after it was saved.*"
                                              r"Restore the original file"):
        Bundle.load(path)
    stamp_config(path)  # an intended edit, recorded
    assert Bundle.load(path).labels == ["left", "rihgt"]
    config = json.loads((path / "config.json").read_text())
    del config["extra"][CONFIG_DIGEST_KEY]  # a bundle saved before the digest existed
    config["head"]["labels"] = ["a", "b"]
    (path / "config.json").write_text(json.dumps(config))
    assert Bundle.load(path).labels == ["a", "b"]


def test_shipped_bundles_carry_their_config_digest(tmp_path):
    import shutil

    from sigformer.bundle import CONFIG_DIGEST_KEY, config_digest
    from sigformer.catalogue import CATALOGUE_DIR

    folders = sorted(p for p in CATALOGUE_DIR.iterdir() if (p / "config.json").is_file())
    assert folders
    for folder in folders:
        config = read_config(folder)
        assert config["extra"].get(CONFIG_DIGEST_KEY) == config_digest(config), folder.name
    copy = Path(shutil.copytree(CATALOGUE_DIR / "amr-clst-family", tmp_path / "family"))
    labels = Bundle.load(copy).labels
    _edit_labels(copy, [("QAM17" if label == "QAM" else label) for label in labels])
    with pytest.raises(CheckpointError, match=r"family/config\.json was changed after it was "
                                              r"saved"):
        Bundle.load(copy)
    # the model-level loaders check it too (create_model(weights=...) reads the same folder)
    with pytest.raises(CheckpointError, match="changed after it was saved"):
        load_checkpoint(copy)
    load_checkpoint(copy, verify=False)  # the documented opt-out of every integrity check


def test_promoted_checkpoints_are_stamped(tmp_path):
    from sigformer.bundle import promote_to_bundle

    path = save_checkpoint(tmp_path / "c", create_model("kd_cnn"))
    promote_to_bundle(path, task="classify", input_spec=None, labels=[str(i) for i in range(11)])
    assert len(Bundle.load(path).labels) == 11
    _edit_labels(path, [str(i) for i in range(1, 12)])
    with pytest.raises(CheckpointError, match="changed after it was saved"):
        Bundle.load(path)


def test_input_in_the_wrong_unit_warns():
    from sigformer.estimators import ScaleWarning

    bundle = _eeg_bundle([])  # expects volts (input_scale 1e6 makes microvolts)
    volts = np.random.default_rng(0).standard_normal((2, len(NAMES), bundle.window)) * 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScaleWarning)
        bundle.predict_proba(volts)
        bundle.preprocess(volts[0])
    with pytest.warns(ScaleWarning, match=r"the windows look like uV .*this bundle expects V"):
        bundle.predict_proba(volts * 1e6)
    with pytest.warns(ScaleWarning, match=r"data given to preprocess look like uV"):
        bundle.preprocess(volts[0] * 1e6)


# --- atomic publishing and locks -----------------------------------------------------------

SAVER = textwrap.dedent("""
    import sys, torch
    from sigformer.checkpoint import save_checkpoint
    from sigformer.models import create_model
    path = sys.argv[1]
    i = 0
    while True:
        torch.manual_seed(i)
        save_checkpoint(path, create_model("kd_cnn"), extra={"generation": i})
        i += 1
        print(i, flush=True)
""")


@pytest.mark.slow
def test_sigkill_during_saves_never_leaves_a_broken_bundle(tmp_path):
    """Kill a process that saves over the same folder again and again, at arbitrary
    moments: what is on disk always loads (the previous or the new generation)."""
    path = tmp_path / "ckpt"
    save_checkpoint(path, create_model("kd_cnn"), extra={"generation": -1})
    rng = np.random.default_rng(0)
    generations = []
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)],
                                stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one save completed in this process
        time.sleep(float(rng.uniform(0.0, 0.3)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        model, config = load_checkpoint(path)  # verifies checksums and shapes
        generations.append(config["extra"]["generation"])
        leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ckpt"]
        assert all(name.startswith(".ckpt.staging-") for name in leftovers)
    assert all(g >= 0 for g in generations)


def test_failed_save_leaves_the_previous_bundle(tmp_path, monkeypatch):
    path = _eeg_bundle([]).save(tmp_path / "b")
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("sigformer.checkpoint_io.save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        _eeg_bundle([], seed=3).save(path)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_published_folder_appears_whole(tmp_path):
    target = tmp_path / "run"
    with published(target) as staging:
        (staging / "a.txt").write_text("1")
        assert not target.exists()  # nothing visible until the block ends
    with pytest.raises(RuntimeError), published(target) as staging:
        (staging / "a.txt").write_text("2")
        raise RuntimeError("crash")
    assert (target / "a.txt").read_text() == "1"


def test_second_run_into_the_same_folder_is_refused(tmp_path):
    code = textwrap.dedent(f"""
        import time
        from sigformer.atomic import OutputLock
        with OutputLock({str(tmp_path / 'out')!r}):
            print("locked", flush=True)
            time.sleep(30)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLockedError, match=f"pid {holder.pid}"):
            OutputLock(tmp_path / "out").acquire()
    finally:
        holder.kill()
        holder.wait()
    OutputLock(tmp_path / "out").acquire().release()  # free again once the holder is gone


# --- pretrained loading ------------------------------------------------------------------

def test_create_model_with_bundle_weights_is_strict(tmp_path):
    model = create_model("kd_cnn", n_outputs=5)
    path = save_checkpoint(tmp_path / "c", model)
    again = create_model("kd_cnn", weights=path)
    x = torch.randn(3, 2, 128)
    torch.testing.assert_close(again.eval()(x), model.eval()(x))
    with pytest.raises(CheckpointError, match="shape mismatch.*features"):
        create_model("kd_cnn", weights=path, filters=(8, 32, 64))
    with pytest.warns(UserWarning, match="partial load"):
        partial = create_model("kd_cnn", weights=path, filters=(8, 32, 64), strict=False)
    torch.testing.assert_close(partial.classifier[1].weight, model.classifier[1].weight)
    # another number of outputs: the pretrained body with a fresh head (timm's num_classes)
    with pytest.warns(UserWarning, match="head re-initialised"):
        seven = create_model("kd_cnn", weights=path, n_outputs=7)
    torch.testing.assert_close(seven.features[0][0].weight, model.features[0][0].weight)
    assert seven.eval()(x).shape == (3, 7)
    with pytest.raises(CheckpointError, match="holds a 'kd_cnn' model, not 'vtcnn2'"):
        create_model("vtcnn2", weights=path)


def test_unknown_weights_name_lists_the_catalogue(tmp_path):
    with pytest.raises(CheckpointError, match="neither a bundle folder nor a pretrained name"):
        create_model("kd_cnn", weights="no-such-entry")


def test_hub_convention_with_local_folders(tmp_path):
    from sigformer.models import KDCNN

    model = create_model("kd_cnn", n_outputs=4)
    folder = model.save_pretrained(tmp_path / "hub")
    loaded = KDCNN.from_pretrained(folder)
    assert isinstance(loaded, KDCNN) and loaded.n_outputs == 4
    from sigformer.models import VTCNN2

    with pytest.raises(TypeError, match="not a VTCNN2"):
        VTCNN2.from_pretrained(folder)


PARITY = Path(os.environ.get("SIGFORMER_SHARED_REFERENCE",
                             Path(__file__).resolve().parents[2] / "shared" / "reference"))


def test_official_checkpoint_file_loads_through_create_model(tmp_path):
    fixture = PARITY / "parity" / "dbconformer"
    if not (fixture / "official_state_dict.safetensors").is_file():
        pytest.skip(f"parity fixtures not found in {PARITY}")
    from safetensors.torch import load_file

    official = load_file(str(fixture / "official_state_dict.safetensors"))
    torch.save(official, tmp_path / "official.pt")  # a plain state dict, as releases ship
    model = create_model("dbconformer", weights=tmp_path / "official.pt",
                         preset="bnci2014001")
    io = load_file(str(fixture / "io.safetensors"))
    with torch.no_grad():
        logits = model.eval()(io["input.x"])
    torch.testing.assert_close(logits, io["output.logits"], atol=1e-5, rtol=0)


# --- head swap and freezing -------------------------------------------------------------------

def test_reset_head_and_freeze_for_fine_tuning(tmp_path):
    from sigformer.models.heads import freeze

    model = create_model("dbconformer", preset="tiny", n_chans=4, n_times=320, n_outputs=2)
    body = {k: v.clone() for k, v in model.state_dict().items() if "final_layer" not in k}
    model.reset_head(5)
    assert model.eval()(torch.randn(2, 4, 320)).shape == (2, 5)
    freeze(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("final_layer.") for n in trainable)
    # the new size is recorded: the model checkpoints and rebuilds
    path = save_checkpoint(tmp_path / "c", model)
    rebuilt, _ = load_checkpoint(path)
    assert rebuilt.n_outputs == 5
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in body.items())


# --- guardrails --------------------------------------------------------------------------

def test_collapse_warnings_name_symptom_and_cause():
    from sigformer.guardrails import (
        CollapseWarning,
        check_codebook,
        check_nmse,
        check_predictions,
        check_separation,
    )

    with pytest.warns(CollapseWarning, match="constant predictions.*Usual causes"):
        check_predictions(["a"] * 40)
    with pytest.warns(CollapseWarning, match="NMSE is -0.20 dB"):
        check_nmse(-0.2)
    with pytest.warns(CollapseWarning, match="uses 3 of its 512 codes"):
        check_codebook(3 / 512, 512, 2.5)
    with pytest.warns(CollapseWarning, match="no improvement"):
        check_separation([-0.5, 0.2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_predictions(["a", "b"] * 20) is None
        assert check_nmse(-15.0) is None and check_codebook(0.6, 512) is None
        assert check_separation([6.0]) is None


@settings(max_examples=20, deadline=None)
@given(st.lists(st.sampled_from(["x", "y", "z"]), min_size=10, max_size=60))
def test_constant_prediction_warning_iff_one_label(labels):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check = __import__("sigformer.guardrails", fromlist=["x"]).check_predictions(labels)
    assert (check is not None) == (len(set(labels)) == 1)
    assert len(caught) == (check is not None)


def test_channelset_round_trip_in_spec_keeps_types():
    spec = SignalSpec(8000, ChannelSet(("m0", "m1"), ("mic", "mic")), "waveform", None, "FS")
    assert SignalSpec.from_dict(spec.to_dict()).channels.types == ("mic", "mic")


# --- loading an untrusted bundle (security review, fourteenth session) --------------------

def _config(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())


def _write_config(path: Path, config: dict) -> None:
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("key, value", [("weights", "attacker-org/tracker"),
                                        ("strict", False), ("spec", "x")])
def test_a_config_cannot_make_loading_fetch_other_weights(tmp_path, monkeypatch, key, value):
    import sigformer.catalogue as catalogue
    from sigformer.pretrained import from_pretrained

    fetched = []
    monkeypatch.setattr(catalogue, "_download_from_hub", lambda name: fetched.append(name))
    path = save_checkpoint(tmp_path / "b", create_model("ofdm_linear"))
    config = _config(path)
    config["kwargs"][key] = value
    _write_config(path, config)
    for load in (load_checkpoint, from_pretrained):
        with pytest.raises(CheckpointError, match=f"kwargs.{key}: a bundle records constructor "
                                                  f"arguments only"):
            load(path)
    assert fetched == []


def test_checksums_cannot_be_skipped_by_editing_the_file_list(tmp_path):
    from sigformer.pretrained import from_pretrained

    path = save_checkpoint(tmp_path / "b", create_model("ofdm_linear"))
    config = _config(path)
    weights = config["files"].pop("model.safetensors")
    config["files"]["MODEL_CARD.md"] = weights
    _write_config(path, config)
    for load in (load_checkpoint, from_pretrained):
        with pytest.raises(CheckpointError, match="lists checksums but none for "
                                                  "model.safetensors"):
            load(path)
    config["files"] = {}
    _write_config(path, config)
    with pytest.raises(CheckpointError, match="lists no checksums, which every format-2"):
        load_checkpoint(path)


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/hostname", "sub/x.bin", ".."])
def test_listed_file_names_stay_inside_the_bundle(tmp_path, name):
    path = save_checkpoint(tmp_path / "b", create_model("ofdm_linear"))
    config = _config(path)
    config["files"][name] = {"sha256": "0" * 64, "bytes": 1}
    _write_config(path, config)
    with pytest.raises(CheckpointError, match="is not a plain file name"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="is not a plain file name"):
        save_checkpoint(tmp_path / "c", create_model("ofdm_linear"),
                        extra_files={name: b"x"})


def test_from_pretrained_checks_sizes_and_the_config_digest_before_building(tmp_path):
    from sigformer.pretrained import from_pretrained

    path = save_checkpoint(tmp_path / "b", create_model("adafortitran", "tiny"))
    config = _config(path)
    config["kwargs"]["num_layers"] = 400  # would build 400 layers before any check
    _write_config(path, config)
    with pytest.raises(CheckpointError, match="do not fit model"):
        from_pretrained(path)
    shipped = Path(__file__).resolve().parents[1] / "sigformer" / "catalogue" / \
        "ofdm-adafortitran-small-tdla"
    copy = tmp_path / "copy"
    shutil.copytree(shipped, copy)
    config = _config(copy)
    config["kwargs"]["normalize_statistics"] = not config["kwargs"].get(
        "normalize_statistics", False)
    _write_config(copy, config)
    with pytest.raises(CheckpointError, match="was changed after it was saved"):
        from_pretrained(copy)


def test_a_malformed_weights_header_is_a_clear_error(tmp_path):
    import struct

    path = save_checkpoint(tmp_path / "b", create_model("ofdm_linear"))
    header = json.dumps({"w": 1}).encode()
    (path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CheckpointError, match="header entry 'w' is not"):
        load_checkpoint(path, verify=False)


def test_a_bare_pretrained_name_loads_the_catalogue_even_beside_a_same_named_folder(
        tmp_path, monkeypatch):
    from sigformer.pretrained import resolve_bundle_path

    monkeypatch.chdir(tmp_path)
    save_checkpoint(tmp_path / "amr-clst-modgen", create_model("ofdm_linear"))
    with pytest.warns(UserWarning, match="also a folder here; loading the shipped bundle"):
        path = resolve_bundle_path("amr-clst-modgen")
    assert path.parent.name == "catalogue"
    assert resolve_bundle_path("./amr-clst-modgen").resolve() == tmp_path / "amr-clst-modgen"
    assert resolve_bundle_path(Path("amr-clst-modgen")) == tmp_path / "amr-clst-modgen"


def test_dot_slash_loads_the_local_folder_not_the_same_named_catalogue_bundle(
        tmp_path, monkeypatch):
    # every loader resolves again what resolve_bundle_path returns: Path("./x") is "x"
    from sigformer.pretrained import from_pretrained

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(1)
    local = create_model("kd_cnn", n_outputs=11)
    save_checkpoint(tmp_path / "amr-kd_cnn-skd-modgen", local)
    for source in ("./amr-kd_cnn-skd-modgen", Path("amr-kd_cnn-skd-modgen")):
        loaded = from_pretrained(source)
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                     local.state_dict().values()))
        assert all(torch.equal(a, b) for a, b in zip(
            type(local).from_pretrained(source).state_dict().values(),
            local.state_dict().values()))


def test_label_names_must_match_the_models_outputs():
    spec = SignalSpec.iq(1.0, 128)
    model = create_model("kd_cnn", n_outputs=11)
    for labels in ([f"c{i}" for i in range(13)], ["a", "b", "c"]):
        with pytest.raises(CheckpointError, match=rf"{len(labels)} label names .* with 11 "
                                                  r"outputs \(11 classes\)"):
            Bundle(model=model, task="classify", input_spec=spec, labels=labels)
    Bundle(model=model, task="classify", input_spec=spec, labels=[f"c{i}" for i in range(11)])
    # one output is a binary logit: two names
    binary = create_model("kd_cnn", n_outputs=1)
    Bundle(model=binary, task="classify", input_spec=spec, labels=["no", "yes"])
    with pytest.raises(CheckpointError, match="1 output \\(2 classes\\)"):
        Bundle(model=binary, task="classify", input_spec=spec, labels=["a", "b", "c"])
