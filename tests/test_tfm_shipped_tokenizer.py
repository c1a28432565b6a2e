"""The TFM classifier started from the shipped pretrained tokenizer (issue 15)."""

import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sigformer import SignalError
from sigformer.catalogue import CATALOGUE_DIR
from sigformer.estimators import SignalClassifier
from sigformer.models import create_model
from sigformer.recipes.tfm import pretrain_classifier_stages

SHIPPED = "tfm-tokenizer-eeg-corpus"
# a running count of assignments (for codebook reports), not a weight: every forward adds to it
USAGE_COUNTER = "quantizer.usage"


@pytest.fixture(scope="module")
def shipped_weights() -> dict[str, torch.Tensor]:
    path = CATALOGUE_DIR / SHIPPED / "model.safetensors"
    if not path.is_file():
        pytest.skip(f"{SHIPPED} is not installed in the catalogue ({path})")
    return load_file(str(path))


def _windows(n: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """5 s single-channel windows at 200 Hz: a 4 Hz or a 25 Hz rhythm in noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    t = np.arange(1000) / 200.0
    freqs = np.where(y == 1, 25.0, 4.0)[:, None]
    X = np.sin(2 * np.pi * freqs * t + rng.uniform(0, 6.3, (n, 1)))
    X = X + 0.3 * rng.standard_normal((n, 1000))
    return X[:, None].astype(np.float32), y


def _assert_tokenizer_is(tokenizer: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    state = tokenizer.state_dict()
    assert set(state) == set(weights)
    for key, value in weights.items():
        if key != USAGE_COUNTER:
            assert torch.equal(state[key], value), key


def _estimator(**model_params) -> SignalClassifier:
    params = dict(tokenizer_weights=SHIPPED, mtp_epochs=1, pretrain_batch_size=8,
                  encoder_params=dict(depth=1))
    return SignalClassifier(model="tfm_classifier", max_epochs=1, batch_size=8, lr=1e-3,
                            model_params={**params, **model_params})


def test_classifier_holds_exactly_the_shipped_tokenizer(shipped_weights):
    clf = create_model("tfm_classifier", n_chans=1, n_outputs=2, n_times=1000,
                       tokenizer_weights=SHIPPED)
    _assert_tokenizer_is(clf.tokenizer, shipped_weights)
    assert clf.tokenizer.n_codes == 1024 and clf.encoder.n_codes == 1024
    assert not any(p.requires_grad for p in clf.tokenizer.parameters())  # frozen by default
    codebook = shipped_weights["quantizer.codebook"]
    assert torch.equal(clf.encoder.token_embedding.weight[:1024], codebook)
    assert clf.encoder.token_embedding.weight[1024].abs().sum() == 0  # [MASK]


def test_frozen_shipped_tokenizer_is_unchanged_by_a_fit(shipped_weights):
    X, y = _windows()
    est = _estimator().fit(X, y)
    _assert_tokenizer_is(est.module_.tokenizer, shipped_weights)
    # the encoder did train (masked-token pretraining + fine-tuning moved its embeddings)
    codebook = shipped_weights["quantizer.codebook"]
    assert not torch.equal(est.module_.encoder.token_embedding.weight[:1024], codebook)
    assert est.predict(X).shape == (len(X),)
    # rebuilding (pickle) reads the bundle again, then the trained weights
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))


def test_unfrozen_tokenizer_codebook_adapts(shipped_weights):
    # the control of the test above: without freezing, the EMA codebook moves during a fit
    X, y = _windows()
    est = _estimator(freeze_tokenizer=False).fit(X, y)
    trained = est.module_.tokenizer.quantizer.codebook
    assert not torch.equal(trained, shipped_weights["quantizer.codebook"])


def test_bad_rate_or_window_is_refused(shipped_weights):
    with pytest.raises(SignalError, match="200 Hz"):
        create_model("tfm_classifier", n_chans=1, n_outputs=2, sfreq=173.61,
                     tokenizer_weights=SHIPPED)
    with pytest.raises(SignalError, match="1000-sample windows.*got 868 samples"):
        create_model("tfm_classifier", n_chans=1, n_outputs=2, n_times=868,
                     tokenizer_weights=SHIPPED)
    clf = create_model("tfm_classifier", n_chans=1, n_outputs=2, tokenizer_weights=SHIPPED)
    with pytest.raises(SignalError, match="1000-sample windows.*got 2000 samples"):
        clf(torch.randn(2, 1, 2000))
    X, y = _windows(8)
    with pytest.raises(SignalError, match="1000-sample windows.*got 868 samples"):
        _estimator().fit(X[..., :868], y)  # 5 s at Bonn's 173.61 Hz, not resampled


def test_pretrained_tokenizer_settings_that_cannot_work_are_refused(shipped_weights):
    with pytest.raises(ValueError, match="already pretrained"):
        create_model("tfm_classifier", tokenizer_weights=SHIPPED, tokenizer_epochs=2)
    with pytest.raises(ValueError, match="n_codes.*architecture comes from the bundle"):
        create_model("tfm_classifier", tokenizer_weights=SHIPPED,
                     tokenizer_params=dict(n_codes=512))
    with pytest.raises(ValueError, match="must equal the pretrained tokenizer's code_size"):
        create_model("tfm_classifier", tokenizer_weights=SHIPPED,
                     encoder_params=dict(emb_size=32))
    with pytest.raises(ValueError, match="expected a tfm_tokenizer bundle"):
        create_model("tfm_classifier", tokenizer_weights="amr-clst-modgen")
    fast = create_model("tfm_classifier", tokenizer_weights=SHIPPED,
                        tokenizer_params=dict(fast=True))
    assert fast.tokenizer.fast  # a runtime switch, not architecture: allowed
    clf = create_model("tfm_classifier", tokenizer_weights=SHIPPED)
    with pytest.raises(ValueError, match="tokenizer is pretrained"):
        pretrain_classifier_stages(clf, _windows(4)[0], tokenizer_epochs=1, mtp_epochs=0)
