"""Deployment export (sigformer.export): every model at a tiny preset through ONNX
(onnxruntime parity), TorchScript and torch.export, each checked against the eager model."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sigformer.export import (
    ConvISTFT,
    ConvSTFT,
    ExportError,
    deployable,
    export_bundle,
    export_model,
    percentile_scale,
    read_preprocess,
)
from sigformer.models import create_model

warnings.filterwarnings("ignore", category=DeprecationWarning)

# name -> create_model kwargs (tiny presets, short inputs)
MODELS = {
    "dbconformer": dict(preset="tiny", n_chans=4, n_times=129, n_outputs=2, sfreq=64),
    "duin": dict(preset="tiny", n_chans=4, n_times=300, n_outputs=3),
    "duin_vqvae": dict(preset="tiny", n_chans=4, n_times=300),
    "tfm_tokenizer": dict(preset="tiny"),
    "tfm_encoder": dict(preset="tiny"),
    "tfm_classifier": dict(preset="tiny", n_outputs=3),
    "mossformer": dict(preset="tiny"),
    "deftan2": dict(preset="tiny", n_mics=2, win=64),
    "adafortitran": dict(preset="tiny", pilot_shape=(12, 2)),
    "fortitran": dict(preset="tiny", pilot_shape=(12, 2)),
    "ofdm_linear": dict(pilot_shape=(12, 2)),
    "clst": dict(preset="tiny"),
    "kd_cnn": dict(),
    "kd_mobilenet": dict(),
    "amr_resnet": dict(),
    "mcldnn": dict(),
    "vtcnn2": dict(),
}
# Col2Im (nn.Fold, the patch un-embedding) exists from ONNX opset 18 on.
ONNX_OPSET = {"adafortitran": 18, "fortitran": 18}
# The TorchScript-based ONNX exporter cannot convert these (see docs/export.md); they go
# through the (slower) dynamo exporter, which writes opset 18.
DYNAMO_ONNX = {"mossformer", "deftan2"}
# Long torch.export traces (an LSTM, the speech stacks): still run in CI.
SLOW_EXPORT = {"mossformer", "deftan2", "mcldnn"}
# Exported with the time axis fixed (speech; see docs/export.md for which allow a dynamic one).
STATIC_TIME = {"mossformer": False, "deftan2": False}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny work; see conftest


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, **MODELS[name]).eval()


def _params(fmt: str) -> list:
    slow = DYNAMO_ONNX if fmt == "onnx" else SLOW_EXPORT if fmt == "torch.export" else set()
    return [pytest.param(n, marks=pytest.mark.slow) if n in slow else n for n in MODELS]


def _check_result(result: dict, fmt: str, tmp_path) -> None:
    assert result["format"] == fmt
    assert result["max_abs_diff"] <= 1e-4
    for path in result["files"]:
        assert (tmp_path / "out" / path.rsplit("/", 1)[-1]).is_file()
    meta = read_preprocess(tmp_path / "out")
    assert [i["name"] for i in meta["inputs"]] == [i["name"] for i in result["inputs"]]


@pytest.mark.parametrize("name", _params("onnx"))
def test_onnx_matches_eager(name, tmp_path):
    pytest.importorskip("onnx", reason="ONNX export needs `pip install onnx onnxruntime`")
    ort = pytest.importorskip("onnxruntime", reason="ONNX parity needs onnxruntime")
    model = _model(name)
    result = export_model(model, None, tmp_path / "out", "onnx", opset=ONNX_OPSET.get(name, 17),
                          dynamic_time=STATIC_TIME.get(name))
    _check_result(result, "onnx", tmp_path)
    if name not in DYNAMO_ONNX:
        assert result["opset"] == ONNX_OPSET.get(name, 17)
    # run the written file ourselves at another batch size: the batch axis is dynamic
    dep = deployable(model, batch=3, seed=5)
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    feed = {i["name"]: t.numpy() for i, t in zip(result["inputs"], dep.example_inputs)}
    got = session.run(None, feed)
    for expected, actual in zip(dep.reference(*dep.example_inputs), got):
        np.testing.assert_allclose(actual, expected.numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", _params("torchscript"))
def test_torchscript_matches_eager(name, tmp_path):
    result = export_model(_model(name), None, tmp_path / "out", "torchscript",
                          dynamic_time=STATIC_TIME.get(name))
    _check_result(result, "torchscript", tmp_path)
    loaded = torch.jit.load(str(tmp_path / "out" / "model.pt"))
    assert isinstance(loaded, torch.jit.ScriptModule)


@pytest.mark.parametrize("name", _params("torch.export"))
def test_torch_export_matches_eager(name, tmp_path):
    result = export_model(_model(name), None, tmp_path / "out", "torch.export",
                          dynamic_time=STATIC_TIME.get(name))
    _check_result(result, "torch.export", tmp_path)
    program = torch.export.load(str(tmp_path / "out" / "model.pt2"))
    assert isinstance(program, torch.export.ExportedProgram)


def test_dbconformer_traces_through_the_wrapper_only():
    """Tracing the braindecode-mixin model itself fails (the reason the wrapper exists)."""
    model = _model("dbconformer")
    with pytest.raises(ValueError, match="chs_info"):
        torch.jit.trace(model, (torch.randn(2, 4, 129),))
    dep = deployable(model)
    torch.jit.trace(dep.module, dep.example_inputs)
    assert model.n_chans == 4  # the model itself is untouched


def test_complex_pilots_wrapper_layout():
    """Real/imag pairs in and out, equal to the complex model's view_as_real."""
    model = _model("adafortitran")
    dep = deployable(model, batch=3)
    pilots, stats = dep.example_inputs
    assert pilots.shape == (3, 12, 2, 2) and stats.shape == (3, 3)
    out = dep.module(pilots, stats)
    expected = model(torch.view_as_complex(pilots.contiguous()), stats)
    assert out.shape == (3, 120, 14, 2)
    torch.testing.assert_close(torch.view_as_complex(out.contiguous()), expected)


@settings(max_examples=15, deadline=None)
@given(n_fft=st.sampled_from([16, 32, 64]), hop_div=st.sampled_from([2, 4]),
       frames=st.integers(2, 12), center=st.booleans(), seed=st.integers(0, 1000))
def test_conv_stft_equals_torch_stft(n_fft, hop_div, frames, center, seed):
    hop = n_fft // hop_div
    x = torch.randn(2, n_fft + hop * frames, generator=torch.Generator().manual_seed(seed))
    window = torch.hann_window(n_fft)
    expected = torch.stft(x, n_fft, hop, window=window, center=center, return_complex=True)
    real, imag = ConvSTFT(n_fft, hop, window, center=center)(x)
    torch.testing.assert_close(torch.complex(real, imag), expected, atol=1e-4, rtol=1e-4)


@settings(max_examples=15, deadline=None)
@given(n_fft=st.sampled_from([16, 32, 64]), hop_div=st.sampled_from([2, 4]),
       frames=st.integers(2, 12), seed=st.integers(0, 1000))
def test_conv_istft_equals_torch_istft(n_fft, hop_div, frames, seed):
    hop = n_fft // hop_div
    g = torch.Generator().manual_seed(seed)
    spec = torch.complex(torch.randn(2, n_fft // 2 + 1, frames, generator=g),
                         torch.randn(2, n_fft // 2 + 1, frames, generator=g))
    window = torch.hann_window(n_fft)
    expected = torch.istft(spec, n_fft, hop, window=window)
    got = ConvISTFT(n_fft, hop, window)(spec.real, spec.imag)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@settings(max_examples=20, deadline=None)
@given(length=st.integers(2, 300), seed=st.integers(0, 1000))
def test_percentile_scale_equals_quantile(length, seed):
    from sigformer.models.eeg.tfm_tokenizer import percentile_normalize

    x = torch.randn(2, 3, length, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(percentile_scale(x), percentile_normalize(x))


def test_export_bundle_writes_preprocessing_beside_the_model(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="ONNX parity needs onnxruntime")
    from sigformer.bundle import Bundle
    from sigformer.export import build_chain
    from sigformer.spec import SignalSpec
    from sigformer.stages import BandPass

    spec = SignalSpec.eeg(64.0, ["C3", "Cz", "C4", "Pz"], window=129)
    bundle = Bundle(model=_model("dbconformer"), task="classify", input_spec=spec,
                    chain=[BandPass(8, 30).get_config()], labels=["left", "right"],
                    input_scale=1e6)
    bundle.save(tmp_path / "bundle")
    result = export_bundle(str(tmp_path / "bundle"), tmp_path / "out", fmt="onnx")
    assert result["opset"] == 17 and result["max_abs_diff"] <= 1e-4
    assert result["inputs"][0]["shape"] == ["batch", 4, 129]
    assert result["outputs"] == [{"name": "output", "shape": ["batch", 2], "dtype": "float32"}]
    meta = json.loads((tmp_path / "out" / "preprocess.json").read_text())
    assert meta["task"] == "classify" and meta["labels"] == ["left", "right"]
    assert meta["input_scale"] == 1e6 and meta["input_spec"]["sfreq"] == 64.0
    assert meta["files"] == ["model.onnx", "preprocess.json"]
    # the chain written beside the model preprocesses exactly as the bundle's own
    raw = np.random.default_rng(0).standard_normal((4, 300)) * 1e-5
    chain = build_chain(tmp_path / "out")
    chain.configure(spec.sfreq, spec.channels)
    reference = bundle.build_chain()
    reference.configure(spec.sfreq, spec.channels)
    processed = chain.process(raw)
    np.testing.assert_array_equal(processed, reference.process(raw))
    # docs/export.md's recipe: chain -> windows -> input_scale -> onnxruntime == the bundle
    windows = np.stack([processed[:, i:i + 129] for i in (0, 129)])
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    (logits,) = session.run(None, {"input": (windows * meta["input_scale"]).astype(np.float32)})
    probs = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
    np.testing.assert_allclose(probs, bundle.predict_proba(windows), atol=1e-5)


def test_cli_export_prints_the_result(tmp_path, capsys):
    from sigformer.bundle import Bundle
    from sigformer.cli import main
    from sigformer.spec import SignalSpec

    spec = SignalSpec.iq(1e6, frame_length=128)
    Bundle(model=_model("kd_cnn"), task="classify", input_spec=spec,
           labels=[f"m{i}" for i in range(11)]).save(tmp_path / "b")
    assert main(["export", str(tmp_path / "b"), "--out", str(tmp_path / "o"), "--format",
                 "torchscript"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["format"] == "torchscript" and printed["max_abs_diff"] <= 1e-4
    assert (tmp_path / "o" / "model.pt").is_file()


def test_failed_check_leaves_nothing_behind(tmp_path):
    with pytest.raises(ExportError, match="differs from the eager model"):
        export_model(_model("kd_cnn"), None, tmp_path / "out", "torchscript", tolerance=-1.0)
    assert not (tmp_path / "out").exists()
    assert not any(tmp_path.iterdir())  # no staging folder left either


def test_bad_format_and_inputs_are_named(tmp_path):
    with pytest.raises(ExportError, match="unknown export format 'tflite'.*onnx"):
        export_model(_model("kd_cnn"), None, tmp_path / "out", "tflite")
    with pytest.raises(ExportError, match=r"takes 2 input\(s\) \['pilots', 'statistics'\]"):
        export_model(_model("adafortitran"), [torch.randn(2, 12, 2, 2)], tmp_path / "o",
                     "torchscript")


def test_explicit_complex_example_inputs(tmp_path):
    """Complex example pilots are accepted and exported as real/imag pairs."""
    pilots = torch.randn(3, 12, 2, dtype=torch.complex64)
    result = export_model(_model("ofdm_linear"), [pilots], tmp_path / "out", "torchscript")
    assert result["inputs"][0]["shape"] == ["batch", 12, 2, 2]
    assert result["outputs"][0]["shape"] == ["batch", 120, 14, 2]


def test_duin_mae_is_refused_as_a_pretraining_model(tmp_path):
    """The MAE's forward needs a token mask: say so instead of "cannot tell the input
    shape", and point at what can be deployed."""
    mae = create_model("duin_mae", "tiny", n_chans=4, n_times=300)
    with pytest.raises(ExportError, match=r"duin_mae is a pretraining model.*needs a token "
                                          r"mask.*'duin' classifier.*'duin_vqvae'"):
        export_model(mae, None, tmp_path / "out", "onnx")
    assert not (tmp_path / "out").exists()


def test_parity_check_never_calls_nan_outputs_equal():
    from sigformer.export import compare

    diff, _ = compare([torch.tensor([[1.0, 2.0]])], [np.array([[np.nan, np.nan]])])
    assert diff == float("inf")
    diff, _ = compare([torch.tensor([[1.0, np.inf]])], [np.array([[1.0, np.inf]])])
    assert diff == 0.0  # the same non-finite values in the same places agree


def test_export_records_the_steps_between_chain_and_model_and_keeps_the_models_mode(tmp_path):
    from sigformer.bundle import Bundle
    from sigformer.spec import SignalSpec

    spec = SignalSpec.eeg(64.0, ["C3", "Cz", "C4", "Pz"], window=129)
    ref = np.diag([1.0, 2.0, 3.0, 4.0])
    model = _model("dbconformer").train()
    bundle = Bundle(model=model, task="classify", input_spec=spec, labels=["left", "right"],
                    extra={"alignment": "online", "alignment_reference": ref.tolist()})
    export_bundle(bundle, tmp_path / "out", fmt="torchscript")
    meta = json.loads((tmp_path / "out" / "preprocess.json").read_text())
    assert meta["alignment"] == "online" and meta["alignment_reference"] == ref.tolist()
    assert meta["frame_normalization"] is None
    assert model.training  # the caller's model is back in training mode


def test_predict_proba_aligns_windows_as_the_stream_does_and_restores_the_mode():
    from sigformer.bundle import Bundle
    from sigformer.spec import SignalSpec
    from sigformer.streaming.runtime import ModelRunner

    spec = SignalSpec.eeg(64.0, ["C3", "Cz", "C4", "Pz"], window=129)
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((4, 4))
    ref = mix @ mix.T + np.eye(4)
    model = _model("dbconformer").train()
    bundle = Bundle(model=model, task="classify", input_spec=spec, labels=["left", "right"],
                    extra={"alignment": "online", "alignment_reference": ref.tolist()})
    windows = np.einsum("ij,njt->nit", mix, rng.standard_normal((6, 4, 129)))
    offline = bundle.predict_proba(windows)
    assert model.training  # predict_proba gives the model back in its own mode
    runner = ModelRunner(model, ["left", "right"], alignment="online", alignment_reference=ref)
    streamed = np.concatenate([runner(windows[i:i + 1]) for i in range(6)])
    np.testing.assert_allclose(offline, streamed, rtol=1e-5, atol=1e-6)


def test_speech_bundles_are_traced_at_their_chunk_length():
    from sigformer.bundle import Bundle
    from sigformer.export import _chunk_spec
    from sigformer.spec import SignalSpec

    spec = SignalSpec.audio(8000, 1)
    bundle = Bundle(model=torch.nn.Identity(), task="separate", input_spec=spec,
                    model_spec=spec, labels=["s1", "s2"],
                    extra={"chunk_s": 0.5, "overlap_s": 0.1})
    assert _chunk_spec(bundle).window == 4000
    eeg = SignalSpec.eeg(64.0, ["C3"], window=129)
    assert _chunk_spec(Bundle(model=torch.nn.Identity(), task="classify", input_spec=eeg,
                              labels=["a", "b"])).window == 129
