"""TFM-Tokenizer faithfulness (eeg_models.md §2) and its training stages at tiny size."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sigformer import SignalError
from sigformer.models import create_model
from sigformer.models.eeg.tfm_tokenizer import (
    TFMEncoder,
    TFMTokenizer,
    freq_time_mask,
    masked_count,
    tfm_prepare,
    tfm_spectrogram,
)
from sigformer.recipes import pretrain
from sigformer.recipes.tfm import cosine_schedule, schedule_end_lr
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


def test_lr_schedule_switch():
    assert warmup_cosine(100, 100, 10, 1e-3, 5e-3) == pytest.approx(5e-3)  # released: rises
    assert warmup_cosine(100, 100, 10, 1e-3, 5e-6) == pytest.approx(5e-6)  # intended: decays
    assert schedule_end_lr(1e-3, 0.005, "released") == 0.005
    assert schedule_end_lr(1e-3, 0.005, "intended") == pytest.approx(5e-6)
    rates = cosine_schedule(1e-3, 0.005, epochs=4, steps_per_epoch=5, warmup_epochs=1)
    assert len(rates) == 20 and rates[0] == 0 and rates[4] == pytest.approx(1e-3)  # linspace
    assert np.all(np.diff(rates[5:]) > 0)  # the released cosine rises towards final_lr
    tok = create_model("tfm_tokenizer", preset="tiny")
    X = np.random.default_rng(0).standard_normal((8, 400)).astype(np.float32)
    pretrain(tok, X, max_epochs=2, batch_size=4, warmup_epochs=0, lr_schedule="released")
    assert tok.history_.series("lr")[-1] > 1e-3  # the rate applied in the last step
    pretrain(tok, X, max_epochs=2, batch_size=4, warmup_epochs=0)
    assert tok.history_.series("lr")[-1] < 1e-3
    with pytest.raises(ValueError, match="lr_schedule"):
        pretrain(tok, X, lr_schedule="warm")


def _motifs(n=48, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(1000) / 200
    freqs = rng.choice([4.0, 11.0, 25.0], n)
    X = np.sin(2 * np.pi * freqs[:, None] * t)[:, None] + 0.2 * rng.standard_normal((n, 1, 1000))
    return tfm_prepare(X, 200), freqs


def test_tokenizer_pretraining_learns_motifs():
    X, freqs = _motifs()
    tok = create_model("tfm_tokenizer", preset="tiny")
    pretrain(tok, X, max_epochs=20, batch_size=16, lr=1e-2, warmup_epochs=1)
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
    report = tt.codebook_report_
    assert report["used_codes"] + report["dead_codes"] == 64
    assert report["usage"] == pytest.approx(report["used_codes"] / 64)


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


# --- training as released (issue 12) -----------------------------------------------------

def _tiny_tokenizer(**kwargs) -> TFMTokenizer:
    return create_model("tfm_tokenizer", preset="tiny", **kwargs)


def _temporal_inputs(tok: TFMTokenizer, signal: torch.Tensor, visible: torch.Tensor):
    """What the temporal branch contributes to the fused transformer for both views."""
    seen = []
    handle = tok.temporal_transformer.register_forward_pre_hook(
        lambda module, args: seen.append(args[0][..., tok.emb_size // 2:].detach()))
    spec = tfm_spectrogram(signal)
    with torch.no_grad():
        for view in (visible, ~visible):
            tok.embed(signal, spec, view)
        tok.embed(signal, spec)  # unmasked
    handle.remove()
    return seen


def test_temporal_branch_sees_unmasked_input_as_released():
    signal = torch.randn(3, 1000)
    visible = freq_time_mask(100, 9, generator=torch.Generator().manual_seed(0))
    released = _tiny_tokenizer().eval()
    masked_view, complement, full = _temporal_inputs(released, signal, visible)
    torch.testing.assert_close(masked_view, full)  # the raw signal is never masked
    torch.testing.assert_close(complement, full)
    old = _tiny_tokenizer(mask_temporal_branch=True).eval()
    old.load_state_dict(released.state_dict())
    masked_view, complement, full = _temporal_inputs(old, signal, visible)
    hidden = ~visible.any(0)  # frames whose spectrogram is fully masked in the first view
    assert hidden.any() and (masked_view[:, hidden] == 0).all()
    torch.testing.assert_close(masked_view[:, ~hidden], full[:, ~hidden])


def test_frame_mask_count_truncates_as_released():
    g = torch.Generator().manual_seed(0)
    visible = freq_time_mask(100, 19, generator=g)  # 10 s: 19 frames
    assert int((~visible.any(0)).sum()) == 9  # int(19 * 0.5) frames masked
    assert int((~visible.any(1)).sum()) == 50  # 10 of 20 bands
    rounded = freq_time_mask(100, 19, generator=g, rounding="round")
    assert int((~rounded.any(0)).sum()) == 10
    with pytest.raises(ValueError, match="rounding"):
        freq_time_mask(100, 19, rounding="ceil")
    with pytest.raises(ValueError, match="mask_rounding"):
        TFMTokenizer(mask_rounding="ceil")


@given(n_frames=st.integers(1, 80), ratio=st.floats(0.0, 1.0), seed=st.integers(0, 10))
@settings(max_examples=40, deadline=None)
def test_mask_counts_property(n_frames, ratio, seed):
    visible = freq_time_mask(100, n_frames, time_ratio=ratio,
                             generator=torch.Generator().manual_seed(seed))
    masked_frames = int((~visible.any(0)).sum())
    assert masked_frames == masked_count(n_frames, ratio) == int(n_frames * ratio)
    # visible = kept bands x kept frames, and the complement covers the rest exactly
    assert int(visible.sum()) == 50 * (n_frames - masked_frames)


def test_encoder_feed_forward_dropout_default_is_released():
    ffn_dropouts = [b.ffn[2].p for b in TFMEncoder().transformer.blocks]
    assert ffn_dropouts == [0.0] * 4
    assert TFMEncoder(ff_dropout=0.2).transformer.blocks[0].ffn[2].p == 0.2
    assert TFMEncoder().transformer.blocks[0].attn.out_dropout.p == 0.2  # attn-layer dropout


def _encoder_params(tok: TFMTokenizer) -> list[torch.nn.Parameter]:
    return [p for name, p in tok.named_parameters()
            if p.requires_grad and not name.startswith(("decoder", "quantizer"))]


@pytest.mark.parametrize("after_ste", [True, False])
def test_what_the_vq_loss_optimises_in_the_tokenizer(after_ste):
    tok = _tiny_tokenizer(codebook_loss_after_ste=after_ste).train()
    with torch.no_grad():
        tok.quantizer.codebook.normal_()  # codes away from the encoder outputs
    signal = torch.randn(4, 1000)
    z = tok.embed(signal, tfm_spectrogram(signal))
    tok.quantizer.eval()  # no EMA step inside this check
    out = tok.quantizer(z)
    grads = torch.autograd.grad(out.loss, _encoder_params(tok), allow_unused=True)
    largest = max(float(g.abs().max()) for g in grads if g is not None)
    loss, commitment = float(out.loss.detach()), float(out.commitment.detach())
    if after_ste:  # release: codebook term cancels the commitment term (beta = 1)
        assert largest < 1e-6
        assert loss == pytest.approx(2 * commitment, rel=1e-5)
    else:  # commitment only: the encoder is pulled towards its codes
        assert largest > 1e-4
        assert loss == pytest.approx(commitment, rel=1e-6)


def test_tokenizer_defaults_are_the_release():
    tok = TFMTokenizer(n_codes=64, decoder_depth=1)
    assert tok.codebook_loss_after_ste and tok.quantizer.codebook_loss_after_ste
    assert not tok.mask_temporal_branch and tok.mask_rounding == "truncate"
    assert tok.quantizer.init == "uniform" and not tok.fast
    with pytest.raises(ValueError, match="codebook_init"):
        TFMTokenizer(codebook_init="random")


def test_kmeans_init_and_dead_code_restart_switches():
    tok = _tiny_tokenizer(codebook_init="kmeans", dead_code_threshold=0.5)
    assert tok.quantizer.initted.item() == 0
    X = np.random.default_rng(0).standard_normal((8, 1000)).astype(np.float32)
    pretrain(tok, X, max_epochs=1, batch_size=8, warmup_epochs=0)
    assert tok.quantizer.initted.item() == 1
    norms = tok.quantizer.codebook.norm(dim=-1)  # centroids of L2-normalised vectors
    assert float(norms.min()) > 0.3 and float(norms.max()) <= 1.0 + 1e-5


# --- fast path (issue 13) ----------------------------------------------------------------

def _released_width_tokenizer() -> TFMTokenizer:
    # emb 64 / 8 heads of 8 (the released attention shapes), smaller codebook and decoder
    torch.manual_seed(0)
    return TFMTokenizer(n_codes=512, decoder_depth=2)


# 24 windows x 2 channels = 432 frames: several chunks of the fast frequency path
@pytest.mark.parametrize("n_windows", [6, 24])
def test_fast_path_gives_identical_ids_and_outputs(n_windows):
    tok = _released_width_tokenizer().eval()
    x = torch.randn(n_windows, 2, 1000)
    with torch.no_grad():
        ref = tok.encode(x)
        ref_usage = tok.quantizer.usage.clone()
        ref_spec = tok.decode(ref)
        tok.set_fast(True)
        tok.quantizer.reset_usage()
        fast = tok.encode(x)
        fast_spec = tok.decode(fast)
    assert torch.equal(fast.ids, ref.ids)
    torch.testing.assert_close(fast.embeddings, ref.embeddings, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast_spec, ref_spec, atol=1e-5, rtol=0)
    assert torch.equal(tok.quantizer.usage, ref_usage)  # bincount == one-hot counts
    enc = TFMEncoder(n_codes=512).eval()
    ids = torch.randint(0, 513, (2, 16, 9))
    with torch.no_grad():
        logits = enc(ids)
        enc.fast = True
        torch.testing.assert_close(enc(ids), logits, atol=1e-5, rtol=0)


def test_fast_path_trains_like_the_reference():
    x = torch.randn(4, 1, 1000)
    results = []
    for fast in (False, True):
        tok = _released_width_tokenizer().set_fast(fast).train()
        torch.manual_seed(1)  # same dropout draws: the fast path calls the same modules
        out = tok.reconstruction_loss(x, generator=torch.Generator().manual_seed(0))
        out["loss"].backward()
        grad = tok.freq_patch[0].weight.grad.clone()
        results.append((out["loss"].detach(), grad, tok.quantizer.codebook.clone()))
    (loss_a, grad_a, codes_a), (loss_b, grad_b, codes_b) = results
    torch.testing.assert_close(loss_b, loss_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad_b, grad_a, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(codes_b, codes_a, atol=1e-6, rtol=0)  # EMA by index_add


def test_bf16_autocast_inference_keeps_the_quantizer_in_float32():
    tok = _tiny_tokenizer().eval().set_fast(True)
    x = torch.randn(2, 3, 1000)
    with torch.no_grad():
        z = tok.embed(x[:, 0], tfm_spectrogram(x[:, 0]))
        plain = tok.quantizer(z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = tok.quantizer(z)
            tokens = tok.encode(x)
    assert torch.equal(auto.indices, plain.indices)
    assert auto.quantized.dtype == torch.float32
    assert tokens.ids.shape == (2, 27) and int(tokens.ids.max()) < tok.n_codes


# --- recipes: checkpoint/resume, MTP, fine-tuning as released ------------------------------

def _signals(n=12, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 400)).astype(np.float32)


def test_pretraining_checkpoints_every_epoch_and_resumes_exactly(tmp_path):
    from sigformer.checkpoint import CheckpointError, load_checkpoint
    from sigformer.recipes.tfm import latest_checkpoint, pretrain_tokenizer

    X = _signals()
    settings_ = dict(max_epochs=3, batch_size=4, warmup_epochs=1, lr=3e-3, seed=7)
    straight = _tiny_tokenizer()
    start = {k: v.clone() for k, v in straight.state_dict().items()}
    full = pretrain_tokenizer(straight, X, **settings_)

    interrupted = _tiny_tokenizer()
    interrupted.load_state_dict(start)
    pretrain_tokenizer(interrupted, X, **settings_, checkpoint_dir=tmp_path, stop_after=2)
    assert latest_checkpoint(tmp_path).name == "epoch_0002"
    with pytest.raises(CheckpointError, match="settings differ"):
        pretrain_tokenizer(_tiny_tokenizer(), X, **dict(settings_, lr=1e-3),
                           checkpoint_dir=tmp_path)
    resumed = _tiny_tokenizer()  # a fresh process: weights, optimiser, RNG come from disk
    history = pretrain_tokenizer(resumed, X, **settings_, checkpoint_dir=tmp_path)
    assert [row["epoch"] for row in history.epochs] == [0, 1, 2]
    for key, value in straight.state_dict().items():  # same weights as an uninterrupted run
        torch.testing.assert_close(resumed.state_dict()[key], value, atol=1e-6, rtol=1e-5)
    assert history.series("train_loss") == pytest.approx(full.series("train_loss"), rel=1e-5)
    saved, config = load_checkpoint(latest_checkpoint(tmp_path))
    assert config["model"] == "tfm_tokenizer" and config["extra"]["epochs_done"] == 3
    torch.testing.assert_close(saved.quantizer.codebook, resumed.quantizer.codebook)
    assert sorted(p.name for p in tmp_path.glob("epoch_*")) == ["epoch_0002", "epoch_0003"]


def test_finetune_returns_the_best_epoch_across_an_interruption_and_a_rerun(tmp_path,
                                                                         monkeypatch):
    """The best epoch before an interruption (kept in best/) wins over the epochs after it,
    and re-running the finished call returns the best epoch, not the last."""
    import json

    import sigformer.recipes.tfm as tfm
    from sigformer.checkpoint import load_checkpoint

    scores = iter([0.1, 0.9, 0.2, None, 0.3, 0.4])  # None: the run is interrupted there
    snapshots: list[dict] = []

    def scripted(model, *args):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        score = next(scores)
        if score is None:
            raise KeyboardInterrupt
        return score

    monkeypatch.setattr(tfm, "_validation_score", scripted)
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 64, (32, 2, 9)), rng.integers(0, 3, 32)
    Xv, yv = rng.integers(0, 64, (8, 2, 9)), rng.integers(0, 3, 8)
    kw = dict(X_val=Xv, y_val=yv, max_epochs=5, batch_size=8, lr=5e-3, warmup_epochs=1,
              checkpoint_dir=tmp_path)

    def encoder():
        torch.manual_seed(0)
        return create_model("tfm_encoder", "tiny", n_outputs=3, n_codes=64)

    with pytest.raises(KeyboardInterrupt):
        tfm.finetune(encoder(), X, y, **kw)  # epochs 0-2 saved, stopped in epoch 3
    resumed = encoder()
    history = tfm.finetune(resumed, X, y, **kw)  # epoch 3 again (0.3), then epoch 4 (0.4)
    assert history.series("val_score") == [0.1, 0.9, 0.2, 0.3, 0.4]
    for key, value in snapshots[1].items():  # the weights of epoch 1, from before resuming
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)
    state = json.loads((tfm.latest_checkpoint(tmp_path) / "trainer_state.json").read_text())
    assert (state["best_epoch"], state["best_score"]) == (1, 0.9)
    assert load_checkpoint(tmp_path / "best")[1]["extra"]["epoch"] == 1
    rerun = encoder()  # the same call once more: nothing to train, still the best epoch
    assert len(tfm.finetune(rerun, X, y, **kw).epochs) == 5
    for key, value in snapshots[1].items():
        torch.testing.assert_close(rerun.state_dict()[key], value, rtol=0, atol=0)
    assert not torch.equal(snapshots[-1]["head.weight"], snapshots[1]["head.weight"])

def test_finetune_losses_are_the_released_ones():
    from sigformer.recipes.tfm import finetune_loss, focal_loss

    logits, y = torch.randn(16, 6), torch.randint(0, 6, (16,))
    logp = logits.log_softmax(-1)
    smoothed = 0.9 * -logp[torch.arange(16), y] - 0.1 * logp.mean(-1)  # timm's formula
    torch.testing.assert_close(finetune_loss(logits, y), smoothed.mean())
    one, yb = torch.randn(16) * 3, torch.randint(0, 2, (16,)).float()
    p = torch.sigmoid(one)
    torch.testing.assert_close(finetune_loss(one, yb), -(yb * p.log() + (1 - yb) *
                                                         (1 - p).log()).mean())
    released_focal = (-0.8 * (1 - p) ** 0.7 * yb * p.log()
                      - 0.2 * p ** 0.7 * (1 - yb) * (1 - p).log()).mean()
    torch.testing.assert_close(focal_loss(one, yb), released_focal)
    torch.testing.assert_close(finetune_loss(one, yb, "focal"), released_focal)
    with pytest.raises(ValueError, match="one output"):
        finetune_loss(logits, y, "bce")
    with pytest.raises(ValueError, match="at least 2 outputs"):
        finetune_loss(one, yb, "label_smoothing")
    with pytest.raises(ValueError, match="loss must be one of"):
        finetune_loss(logits, y, "hinge")


def test_tuab_preset_trains_end_to_end_with_bce():
    from sigformer.recipes.tfm import finetune

    torch.manual_seed(0)  # the initial weights: unseeded, the test depended on earlier tests
    enc = create_model("tfm_encoder", preset="tuab", emb_size=16, n_codes=64, depth=1, heads=2)
    assert enc.n_outputs == 1 and enc(torch.zeros(2, 2, 9, dtype=torch.long)).shape == (2,)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 32, (64, 2, 9))
    y = rng.integers(0, 2, 64)
    ids[y == 1] += 32  # class 1 uses the upper half of the vocabulary
    history = finetune(enc, ids[:48], y[:48], X_val=ids[48:], y_val=y[48:], max_epochs=15,
                       batch_size=16, lr=3e-3, warmup_epochs=1)
    assert history.series("train_loss")[-1] < 0.5 * history.series("train_loss")[0]
    assert max(history.series("val_score")) > 0.95  # validation AUROC (model selection)
    with pytest.raises(ValueError, match="binary labels"):
        finetune(enc, ids, y + 1, max_epochs=1)
    # raw signals through the frozen tokenizer: the one-output classifier trains too
    clf = create_model("tfm_classifier", preset="tiny", n_outputs=1)
    X, freqs = _motifs(16)
    before = clf.encoder.head.weight.clone()
    h = finetune(clf, X, (freqs > 10).astype(int), max_epochs=2, batch_size=8,
                 warmup_epochs=0)
    assert np.isfinite(h.series("train_loss")).all()
    assert not torch.equal(clf.encoder.head.weight, before)


def test_mtp_recipe_transfers_everything_but_the_head():
    from sigformer.recipes.tfm import pretrain_mtp

    enc = TFMEncoder(n_outputs=3, emb_size=16, n_codes=64, depth=1, heads=2)
    head, blocks = enc.head.weight.clone(), enc.transformer.blocks[0].ffn[0].weight.clone()
    ids = np.random.default_rng(0).integers(0, 64, (16, 2, 9))
    history = pretrain_mtp(enc, ids, max_epochs=2, batch_size=8, warmup_epochs=0)
    assert len(history.series("train_token_accuracy")) == 2
    assert torch.equal(enc.head.weight, head)
    assert not torch.equal(enc.transformer.blocks[0].ffn[0].weight, blocks)
    clf = create_model("tfm_classifier", preset="tiny")  # raw signals, tokenized inside
    assert len(pretrain_mtp(clf, _signals(4, 1), max_epochs=1, batch_size=4,
                            warmup_epochs=0).series("train_loss")) == 1
    with pytest.raises(ValueError, match="token ids must be integers"):
        pretrain_mtp(enc, ids.astype(float))


PARITY = Path(__file__).resolve().parents[2] / "shared" / "reference" / "parity"


def _official_weights(fixture: Path) -> dict[str, torch.Tensor]:
    """Official-format weights mapped by keys.txt (this model only uses ``copy``/``ignore``)."""
    from safetensors.torch import load_file

    official, mapped = load_file(fixture / "official_state_dict.safetensors"), {}
    for line in (fixture / "keys.txt").read_text().splitlines():
        if not line.strip() or line.startswith(("#", "-")):
            continue
        key, _, _, ours, rule = line.split("\t")
        if rule == "copy":
            mapped[ours] = official[key]
    return mapped


@pytest.mark.parametrize("fast", [False, True])
def test_reference_and_fast_paths_match_the_official_outputs(fast):
    import json

    from safetensors.torch import load_file

    fixture = PARITY / "tfm_tokenizer"
    if not (fixture / "io.safetensors").is_file():
        pytest.skip(f"parity fixtures not found in {PARITY} (../shared/reference)")
    kwargs = json.loads((fixture / "official_config.json").read_text())["sigformer"]["kwargs"]
    tok = create_model("tfm_tokenizer", **kwargs, fast=fast).eval()
    result = tok.load_state_dict(_official_weights(fixture), strict=False)
    assert sorted(result.missing_keys) == ["quantizer.initted", "quantizer.usage"]
    io = load_file(fixture / "io.safetensors")
    with torch.no_grad():
        signal = io["input.signal"]
        quant_in = tok.embed(signal, tfm_spectrogram(signal))
        rec = tok.reconstruct(tok.quantizer(quant_in).quantized)
        ids = tok.encode(signal[:, None]).ids
    assert torch.equal(ids, io["output.indices"])
    torch.testing.assert_close(quant_in, io["output.quant_in"], atol=1e-5, rtol=0)
    torch.testing.assert_close(rec, io["output.reconstruction"], atol=1e-5, rtol=0)
