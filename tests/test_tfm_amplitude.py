"""TFMClassifier(amplitude_input=True) (issue 15): the per-channel scale that percentile
scaling removes goes back to the head; the default stays the published model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sigformer.models import create_model
from sigformer.models.eeg.tfm_tokenizer import (
    LogScaleInput,
    channel_scale,
    percentile_normalize,
    tfm_prepare,
)
from sigformer.recipes.tfm import finetune

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny work; see conftest

N_TIMES = 400  # 2 s at 200 Hz: 3 tokens per channel (the tiny tokenizer takes any length)


def _classifier(amplitude_input: bool, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return create_model("tfm_classifier", preset="tiny", n_outputs=2,
                        amplitude_input=amplitude_input, **kwargs)


def _paired(n_pairs: int, seed: int, base: float = 20.0,
            n_times: int = N_TIMES) -> tuple[np.ndarray, np.ndarray]:
    """Two classes that differ ONLY in amplitude: every random waveform (two channels, a few
    sinusoids plus noise, microvolt-like) appears once at 1x (class 0) and once at 5x
    (class 1)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_times) / 200
    freqs = rng.uniform(2, 30, (n_pairs, 2, 3, 1))
    phases = rng.uniform(0, 2 * np.pi, (n_pairs, 2, 3, 1))
    shapes = np.sin(2 * np.pi * freqs * t + phases).sum(2)
    shapes += 0.3 * rng.standard_normal(shapes.shape)
    X = np.concatenate([shapes, 5 * shapes]) * base
    y = np.repeat([0, 1], n_pairs)
    return X.astype(np.float32), y


def _train(model, X, y, epochs: int = 8):
    finetune(model, X, y, max_epochs=epochs, batch_size=16, lr=3e-3, warmup_epochs=0, seed=0)
    return model.eval()


@torch.no_grad()
def _accuracy(model, X, y) -> float:
    return float((model(torch.as_tensor(X)).argmax(-1).numpy() == y).mean())


def test_default_is_the_published_model():
    x = torch.randn(3, 2, N_TIMES, generator=torch.Generator().manual_seed(1)) * 30
    default = _classifier(False).eval()
    torch.manual_seed(0)  # the switch left out: the same model
    explicit = create_model("tfm_classifier", preset="tiny", n_outputs=2).eval()
    keys = list(default.state_dict())
    assert keys == list(explicit.state_dict())
    assert all(k.startswith(("tokenizer.", "encoder.")) for k in keys)
    with torch.no_grad():
        # the published forward: percentile scaling, token ids, TFM-Encoder
        ids = default.tokenizer.encode(percentile_normalize(x)).ids.reshape(3, 2, -1)
        torch.testing.assert_close(default(x), default.encoder(ids), rtol=0, atol=0)
        torch.testing.assert_close(default(x), explicit(x), rtol=0, atol=0)
        # the encoder's pooled features + head are its forward
        enc = default.encoder
        torch.testing.assert_close(enc.logits(enc.forward_features(ids)), enc(ids),
                                   rtol=0, atol=0)
    # the switch adds its own modules only; untrained, the zero projection adds nothing
    amp = _classifier(True).eval()
    extra = [k for k in amp.state_dict() if k not in keys]
    assert extra and all(k.startswith("amplitude.") for k in extra)
    with torch.no_grad():
        torch.testing.assert_close(amp(x), default(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="amplitude_input=True"):
        default.classify_tokens(ids, torch.ones(3, 2))


def test_amplitude_input_learns_what_the_published_model_cannot():
    X, y = _paired(24, seed=0)
    X_test, y_test = _paired(16, seed=1)
    published = _train(_classifier(False), X, y)
    amplitude = _train(_classifier(True), X, y)
    acc_published = _accuracy(published, X_test, y_test)
    acc_amplitude = _accuracy(amplitude, X_test, y_test)
    # the published model sees the same scaled windows for both classes of a pair
    assert acc_published <= 0.6
    assert acc_amplitude >= 0.9
    assert acc_amplitude - acc_published >= 0.3


def test_the_data_unit_does_not_matter():
    """Data in volts (x 1e-6) train as well: the calibration absorbs the log offset."""
    X, y = _paired(24, seed=0)
    X_test, y_test = _paired(16, seed=1)
    micro = _train(_classifier(True), X, y)
    volts = _train(_classifier(True), X * 1e-6, y)
    assert _accuracy(volts, X_test * 1e-6, y_test) >= 0.9
    assert _accuracy(micro, X_test, y_test) >= 0.9
    a, b = micro.amplitude, volts.amplitude
    assert float(b.mean - a.mean) == pytest.approx(math.log(1e-6), abs=1e-2)
    assert float(b.var) == pytest.approx(float(a.var), rel=1e-2)
    # the normalised inputs of the projection are the same in both units
    s = channel_scale(torch.as_tensor(X_test))[..., 0]
    torch.testing.assert_close(b.normalized(s * 1e-6), a.normalized(s), atol=1e-2, rtol=0)


def test_calibration_is_exact_then_frozen():
    layer = LogScaleInput(max_channels=4, dim=8, calibration=10)
    g = torch.Generator().manual_seed(0)
    first, second, later = (torch.rand(n, 2, generator=g) * 50 + 1 for n in (3, 3, 4))
    layer.eval()
    layer.normalized(first)  # eval never calibrates
    assert float(layer.count) == 0
    layer.train()
    layer.normalized(first)
    layer.normalized(second)
    seen = torch.cat([first, second]).log()
    assert float(layer.count) == 12
    assert float(layer.mean) == pytest.approx(float(seen.mean()), abs=1e-5)
    assert float(layer.var) == pytest.approx(float(seen.var(unbiased=False)), rel=1e-4)
    before = (layer.mean.clone(), layer.var.clone())
    layer.normalized(later)  # calibration is over: the statistics stay
    assert torch.equal(layer.mean, before[0]) and torch.equal(layer.var, before[1])
    # one single-channel window (a last batch of one) calibrates without failing
    lone = LogScaleInput(max_channels=1, dim=8).train()
    assert torch.isfinite(lone(torch.tensor([[3.0]]))).all()
    with pytest.raises(ValueError, match="at most 4 channels"):
        layer(torch.ones(1, 5))


def _trained_like(model):
    """Calibrated statistics and a non-zero projection, so the amplitude path matters."""
    with torch.no_grad():
        model.train()
        model(torch.as_tensor(_paired(8, seed=3)[0]))  # calibrates on 32 values
        model.amplitude.proj.weight.normal_(generator=torch.Generator().manual_seed(0))
        model.amplitude.proj.bias.normal_(generator=torch.Generator().manual_seed(1))
    return model.eval()


def test_checkpoint_round_trip(tmp_path):
    from sigformer.checkpoint import load_checkpoint, save_checkpoint

    model = _trained_like(_classifier(True))
    x = torch.as_tensor(_paired(4, seed=5)[0])
    save_checkpoint(tmp_path / "c", model)
    loaded, config = load_checkpoint(tmp_path / "c")
    assert config["kwargs"]["amplitude_input"] is True and loaded.amplitude_input
    assert float(loaded.amplitude.count) == float(model.amplitude.count) > 0
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
        assert not torch.allclose(model(x[:4]), model(x[4:]))  # 1x vs 5x of the same shapes


def test_export_matches_eager(tmp_path):
    from sigformer.export import export_model

    model = _trained_like(_classifier(True))
    result = export_model(model, None, tmp_path / "ts", "torchscript")
    assert result["max_abs_diff"] <= 1e-4
    loaded = torch.jit.load(str(tmp_path / "ts" / "model.pt"))
    x = torch.as_tensor(_paired(4, seed=6, n_times=1000)[0])  # the traced window length
    with torch.no_grad():
        eager = model(x)
        torch.testing.assert_close(loaded(x), eager, atol=1e-4, rtol=0)
        assert not torch.allclose(eager[:4], eager[4:])  # the export keeps the amplitude cue
    pytest.importorskip("onnx", reason="ONNX export needs `pip install onnx onnxruntime`")
    pytest.importorskip("onnxruntime", reason="ONNX parity needs onnxruntime")
    onnx = export_model(model, None, tmp_path / "onnx", "onnx")
    assert onnx["max_abs_diff"] <= 1e-4


def test_prepare_without_scaling_resamples_only():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 2, 512)) * 40
    raw = tfm_prepare(X, 256.0, scale=False)
    scaled = tfm_prepare(X, 256.0)
    assert raw.shape == scaled.shape == (3, 2, 400) and raw.dtype == np.float32
    percentile = np.quantile(np.abs(raw.astype(np.float64)), 0.95, axis=-1, keepdims=True)
    np.testing.assert_allclose(raw / (percentile + 1e-8), scaled, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tfm_prepare(X, 200.0, scale=False), X.astype(np.float32))


def test_amplitude_probe_puts_the_logistic_regression_into_the_logits():
    """LP-FT: after the probe, the amplitude path adds exactly the probe's decision function
    to the logits, so the untrained classifier already separates amplitude classes."""
    from sklearn.linear_model import LogisticRegression

    from sigformer.recipes.tfm import fit_amplitude_probe

    X, y = _paired(24, seed=0)
    X_test, y_test = _paired(16, seed=1)
    for n_classes in (2, 3):
        yk = y if n_classes == 2 else np.where(np.arange(len(y)) % 3 == 0, 2, y)
        torch.manual_seed(0)
        model = create_model("tfm_classifier", preset="tiny", n_outputs=n_classes,
                             amplitude_input=True, amplitude_probe=True)
        coef = fit_amplitude_probe(model, X, yk)
        model.eval()
        x = torch.as_tensor(X_test)
        with torch.no_grad():
            with_path = model(x).double()
            zeroed = create_model("tfm_classifier", preset="tiny", n_outputs=n_classes,
                                  amplitude_input=True)
            zeroed.load_state_dict(model.state_dict())
            zeroed.amplitude.proj.weight.zero_()
            zeroed.amplitude.proj.bias.zero_()
            added = with_path - zeroed.eval()(x).double()
            z = model.amplitude.normalized(channel_scale(x)[..., 0]).double().numpy()
        probe = LogisticRegression(max_iter=2000).fit(
            model.amplitude.normalized(channel_scale(torch.as_tensor(X))[..., 0]).numpy(), yk)
        decision = z @ probe.coef_.T + probe.intercept_
        if n_classes == 2:  # one decision function: the logit difference
            np.testing.assert_allclose((added[:, 1] - added[:, 0]).numpy(), decision[:, 0],
                                       atol=1e-4)
        else:
            np.testing.assert_allclose(added.numpy(), decision, atol=1e-4)
        assert coef.shape == (n_classes, 2)
    # with the probe, the amplitude classes are told apart before any fine-tuning
    torch.manual_seed(0)
    model = create_model("tfm_classifier", preset="tiny", n_outputs=2, amplitude_input=True,
                         amplitude_probe=True)
    fit_amplitude_probe(model, X, y)
    assert _accuracy(model.eval(), X_test, y_test) >= 0.9
    assert _accuracy(_classifier(True).eval(), X_test, y_test) <= 0.6  # zero start: chance
    wide = np.zeros((4, model.amplitude.proj.in_features + 1, N_TIMES), np.float32) + 1
    with pytest.raises(ValueError, match="at most 16 channels, got 17"):
        fit_amplitude_probe(model, wide, np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="amplitude_probe=True needs amplitude_input"):
        create_model("tfm_classifier", preset="tiny", amplitude_probe=True)


def test_estimator_fits_the_probe_on_the_training_split_only():
    from sigformer.estimators import SignalClassifier

    X, y = _paired(24, seed=0)
    seen = []
    import sigformer.recipes.tfm as recipe

    original = recipe.fit_amplitude_probe

    def spy(model, X_fit, y_fit, **kw):
        seen.append(len(X_fit))
        return original(model, X_fit, y_fit, **kw)

    recipe.fit_amplitude_probe = spy
    try:
        est = SignalClassifier(model="tfm_classifier", preset="tiny",
                               model_params=dict(amplitude_input=True, amplitude_probe=True),
                               max_epochs=1, batch_size=16, validation_split=0.25,
                               random_state=0).fit(X, y)
    finally:
        recipe.fit_amplitude_probe = original
    assert seen == [len(X) - round(0.25 * len(X))]  # validation windows never reach it
    assert est.score(*_paired(16, seed=1)) >= 0.9
