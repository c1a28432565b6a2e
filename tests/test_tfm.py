"""TFM-Tokenizer faithfulness (eeg_models.md §2) and its training stages at tiny size."""

import numpy as np
import pytest
import torch

from sigformer import SignalError
from sigformer.models import create_model
from sigformer.models.eeg.tfm_tokenizer import (
    TFMEncoder,
    TFMTokenizer,
    freq_time_mask,
    tfm_prepare,
    tfm_spectrogram,
)
from sigformer.training import warmup_cosine


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def test_tokenizer_parameter_count_and_breakdown():
    tok = TFMTokenizer()
    assert n_params(tok) == 1_166_100
    assert n_params(tok.freq_patch) == 9_088
    assert n_params(tok.freq_transformer) == n_params(tok.temporal_transformer) == 99_584
    assert n_params(tok.temporal_embed) == 19_424
    assert n_params(tok.freq_gate) + n_params(tok.freq_value) == 5_136
    assert tok.quantizer.codebook.numel() == 524_288
    assert n_params(tok.decoder) == 398_336 and n_params(tok.decoder_head) == 10_660


@pytest.mark.parametrize("n_outputs,expected", [(6, 725_014), (1, 724_689), (None, 1_257_104)])
def test_encoder_parameter_counts(n_outputs, expected):
    enc = TFMEncoder(n_outputs=n_outputs)
    assert n_params(enc) == expected
    trainable = sum(p.numel() for p in enc.parameters() if p.requires_grad)
    assert n_params(enc) - trainable == 16  # the frozen channel-index parameter


@pytest.mark.parametrize("seconds,frames", [(5, 9), (10, 19), (30, 59)])
def test_token_shapes(seconds, frames):
    x = torch.randn(2 * 16, 200 * seconds)
    assert tfm_spectrogram(x).shape == (32, 100, frames)
    if seconds <= 10:
        tok = TFMTokenizer().eval()
        tokens = tok.encode(x.view(2, 16, -1))
        assert tokens.ids.shape == (2, 16 * frames)
        enc = TFMEncoder(n_outputs=6).eval()
        assert enc.tokens(tokens.grid(16)).shape == (2, 16 * frames + 1, 64)  # 145 / 305


def test_prepare_resamples_and_normalises():
    x = np.random.default_rng(0).standard_normal((3, 2, 256 * 5)) * 50
    out = tfm_prepare(x, sfreq=256)
    assert out.shape == (3, 2, 1000)
    np.testing.assert_allclose(np.quantile(np.abs(out), 0.95, axis=-1), 1.0, rtol=1e-4)


def test_masks_are_complementary_views():
    visible = freq_time_mask(100, 20, generator=torch.Generator().manual_seed(0))
    assert visible.float().mean() == pytest.approx(0.25)
    bands = visible.view(20, 5, 20).all(1) | ~visible.view(20, 5, 20).any(1)
    assert bands.all()  # masking works on whole 5-bin bands
    assert (~visible).float().mean() == pytest.approx(0.75)


def test_lr_schedule_switch(monkeypatch):
    assert warmup_cosine(100, 100, 10, 1e-3, 5e-3) == pytest.approx(5e-3)  # released: rises
    assert warmup_cosine(100, 100, 10, 1e-3, 5e-6) == pytest.approx(5e-6)  # intended: decays
    captured = {}

    def fake_train(model, loss_step, tensors, **kwargs):
        captured.update(kwargs)

    monkeypatch.setattr("sigformer.training.train_objective", fake_train)
    tok = TFMTokenizer(**create_model("tfm_tokenizer", preset="tiny").sigformer_config["kwargs"])
    tok.fit(np.zeros((2, 400), np.float32), lr_schedule="released")
    assert captured["final_lr"] == 0.005
    tok.fit(np.zeros((2, 400), np.float32))
    assert captured["final_lr"] == pytest.approx(0.005 * 1e-3)
    with pytest.raises(ValueError, match="lr_schedule"):
        tok.fit(np.zeros((2, 400), np.float32), lr_schedule="warm")


def _motifs(n=48, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(1000) / 200
    freqs = rng.choice([4.0, 11.0, 25.0], n)
    X = np.sin(2 * np.pi * freqs[:, None] * t)[:, None] + 0.2 * rng.standard_normal((n, 1, 1000))
    return tfm_prepare(X, 200), freqs


def test_tokenizer_pretraining_learns_motifs():
    X, freqs = _motifs()
    tok = create_model("tfm_tokenizer", preset="tiny")
    tok.fit(X, max_epochs=20, batch_size=16, lr=1e-2, warmup_epochs=1)
    losses = tok.history_.series("train_reconstruction")
    assert losses[-1] < 0.85 * losses[0]
    ids = tok.transform(X)

    def most_common(values):
        return np.bincount(values).argmax()

    # signals with different dominant frequencies get different typical tokens
    assert most_common(ids[freqs == 4.0, 4]) != most_common(ids[freqs == 25.0, 4])


def test_mtp_and_classifier_through_estimator():
    from sigformer.estimators import SignalClassifier

    X, freqs = _motifs(40)
    y = (freqs > 10).astype(int)
    clf = SignalClassifier(model="tfm_classifier", preset="tiny", max_epochs=8, lr=3e-3,
                           batch_size=16,
                           model_params=dict(tokenizer_epochs=4, mtp_epochs=2,
                                             pretrain_batch_size=16, pretrain_lr=3e-3))
    clf.fit(X, y)
    assert clf.score(X, y) > 0.6
    enc = TFMEncoder(n_outputs=None, emb_size=16, n_codes=64, depth=1, heads=2)
    out = enc.mtp_loss(torch.randint(0, 64, (4, 2, 9)))
    assert torch.isfinite(out["loss"]) and 0 <= float(out["token_accuracy"]) <= 1


def test_token_transformer_in_sklearn_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from sigformer.tokenizers import TokenTransformer

    X, freqs = _motifs(40)
    y = (freqs > 10).astype(int)

    def bag_of_tokens(ids):
        return np.stack([np.bincount(row, minlength=64) for row in ids])

    pipe = make_pipeline(TokenTransformer(preset="tiny", sfreq=200, max_epochs=4,
                                          batch_size=16, lr=3e-3),
                         FunctionTransformer(bag_of_tokens), LogisticRegression(max_iter=500))
    pipe.fit(X, y)
    assert pipe.score(X, y) > 0.8
    tt = pipe[0]
    assert 0 < tt.codebook_usage_ <= 1 and tt.codebook_perplexity_ >= 1


def test_tfm_bad_input():
    with pytest.raises(SignalError, match="at least 200 samples"):
        TFMTokenizer().encode(torch.randn(1, 1, 150))
    with pytest.raises(ValueError, match="at most 16 channels"):
        TFMEncoder()(torch.zeros(1, 17, 9, dtype=torch.long))
    with pytest.raises(SignalError, match="200 Hz"):
        create_model("tfm_classifier", n_chans=2, n_outputs=2, sfreq=256)
    with pytest.raises(ValueError, match="does not fit"):
        TFMEncoder().init_from_codebook(torch.zeros(10, 64))


def test_classifier_loads_a_pretrained_tokenizer():
    from sigformer.models.eeg.tfm_tokenizer import TFMClassifier

    tiny = create_model("tfm_classifier", preset="tiny").sigformer_config["kwargs"]
    pretrained = create_model("tfm_tokenizer", preset="tiny")
    with torch.no_grad():
        pretrained.quantizer.codebook.normal_()
    clf = TFMClassifier(**tiny)
    clf.load_tokenizer(pretrained)
    torch.testing.assert_close(clf.tokenizer.quantizer.codebook, pretrained.quantizer.codebook)
    torch.testing.assert_close(clf.encoder.token_embedding.weight[:64],
                               pretrained.quantizer.codebook)
    assert clf.encoder.token_embedding.weight[64].abs().sum() == 0  # [MASK] row
    clf.train()  # training the classifier leaves the frozen tokenizer's codebook alone
    assert clf.encoder.training and not clf.tokenizer.training
    before = clf.tokenizer.quantizer.codebook.clone()
    clf(torch.randn(2, 1, 1000))
    torch.testing.assert_close(clf.tokenizer.quantizer.codebook, before)
