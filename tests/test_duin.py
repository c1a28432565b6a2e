"""Du-IN faithfulness (eeg_models.md §3) and its training stages on real sEEG at small size."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sigformer.models import create_model
from sigformer.models.eeg.duin import (
    DuINMAE,
    DuINRegionTokens,
    vqvae_targets,
    zscore_channels,
)
from sigformer.recipes.duin import pretrain_mae, pretrain_vqvae


def counts(m):
    total = sum(p.numel() for p in m.parameters())
    return total, sum(p.numel() for p in m.parameters() if p.requires_grad)


@pytest.mark.parametrize("name,total,trainable", [
    ("duin", 4_377_639, 4_239_709),
    ("duin_vqvae", 5_939_319, 5_801_386),
    ("duin_mae", 3_895_112, 3_890_304),
])
def test_parameter_counts_match_reference(name, total, trainable):
    assert counts(create_model(name, preset="he2023")) == (total, trainable)


def test_classifier_breakdown_and_shapes():
    m = create_model("duin", preset="he2023").eval()
    n = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert n(m.backbone.encoder) == 3_465_224 and n(m.backbone.tokenizer) == 95_024
    assert n(m.head) == 622_397 and n(m.vq_block) == 179_713 and n(m.contra_block) == 10_305
    x = torch.randn(2, 10, 3000)
    h = m.backbone.subject_layer(x.transpose(1, 2), torch.ones(2, 1))
    assert h.shape == (2, 3000, 16)
    assert m.backbone.region_tokens(x).shape == (2, 30, 160)
    assert m(x).shape == (2, 61)
    with pytest.raises(ValueError, match=r"expects \(batch, 10 channels, 3000 samples\)"):
        m(torch.randn(2, 9, 3000))


def test_sigmoid_head_quirk_switch():
    x = torch.randn(3, 10, 3000)
    torch.manual_seed(0)
    plain = create_model("duin", preset="he2023").eval()
    quirk = create_model("duin", preset="he2023", sigmoid_head=True).eval()
    quirk.load_state_dict(plain.state_dict())
    with torch.no_grad():
        a, b = plain(x), quirk(x)
    torch.testing.assert_close(b, torch.sigmoid(a))
    assert torch.equal(a.argmax(1), b.argmax(1))


def test_mae_masks_exactly_half_and_vqvae_reconstructs_shape():
    mae = create_model("duin_mae", preset="tiny", n_chans=4, n_times=1000)
    mask = mae.random_mask(5, 10, "cpu")
    assert (mask.sum(1) == 5).all()
    vq = create_model("duin_vqvae", preset="tiny", n_chans=4, n_times=1000).train()
    x = torch.randn(3, 4, 1000)
    recon, out = vq(x)
    assert recon.shape == x.shape and out.indices.shape == (3, 10)
    masked = vq.loss(x, channel_mask=torch.tensor([[1.0, 1, 0, 0]] * 3))
    assert torch.isfinite(masked["loss"])


@pytest.mark.slow
def test_three_stages_on_real_seeg(eegmmidb_dir):
    from sigformer.channels import read_electrodes_tsv
    from sigformer.data import read_recording

    seeg_dir = eegmmidb_dir.parents[1] / "seeg"
    table = read_electrodes_tsv(seeg_dir / "mne_misc_sample_seeg_electrodes.tsv")
    # region selection from the electrodes file: one frontal shaft, 10 contacts
    region = table.with_regions({"frontal": ["F'"]})
    contacts = region.select(regions=["frontal"])[:10]
    rec = read_recording(seeg_dir / "mne_misc_sample_seeg.edf").pick(contacts)
    assert rec.sfreq == 1000 and rec.n_channels == 10
    step = 500  # 3 s windows every 0.5 s
    X = np.stack([rec.data[:, s:s + 3000] for s in range(0, rec.n_times - 3000 + 1, step)])
    X = zscore_channels(X)
    assert X.shape == (35, 10, 3000)

    vqvae = create_model("duin_vqvae", preset="tiny", n_chans=10, n_times=3000)
    hist = pretrain_vqvae(vqvae, X, max_epochs=3, batch_size=8, warmup_epochs=0, lr=1e-3)
    rec_loss = hist.series("train_reconstruction")
    assert rec_loss[-1] < rec_loss[0]
    targets = vqvae_targets(vqvae, X)
    assert targets.shape == (35, 30) and len(np.unique(targets)) > 1

    mae = create_model("duin_mae", preset="tiny", n_chans=10, n_times=3000)
    hist = pretrain_mae(mae, vqvae, X, max_epochs=2, batch_size=8, warmup_epochs=0, lr=1e-3)
    assert np.isfinite(hist.series("train_loss")).all()

    clf = create_model("duin", preset="tiny", n_chans=10, n_times=3000, n_outputs=61)
    clf.load_pretrained(mae)
    torch.testing.assert_close(clf.backbone.encoder.blocks[0].attn.query.weight,
                               mae.backbone.encoder.blocks[0].attn.query.weight)
    assert clf(torch.as_tensor(X[:2])).shape == (2, 61)
    tokens = DuINRegionTokens(vqvae).encode(torch.as_tensor(X[:2]))
    assert tokens.ids.shape == (2, 30)


def test_per_subject_channel_adapters():
    m = create_model("duin", preset="tiny", n_chans=4, n_times=1000, n_outputs=3,
                     n_subjects=2).eval()
    with torch.no_grad():
        m.backbone.subject_layer.weight.weight[:, 1] += 1.0  # make subject 1's map differ
        x = torch.randn(2, 4, 1000)
        a = m(x, subject=torch.tensor([0, 0]))
        b = m(x, subject=torch.tensor([1, 1]))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="subject index 2 out of range for 2 subject"):
        m(x, subject=torch.tensor([2, 0]))


# --- training as released (issue 12): each switch pinned ----------------------------------

def _tiny(name, seed=0, **kw):
    torch.manual_seed(seed)
    return create_model(name, preset="tiny", n_chans=4, n_times=1000, **kw).eval()


def test_vqvae_decoder_adds_time_embedding_as_released():
    released = _tiny("duin_vqvae")
    assert released.decoder_time_embedding is True
    old = _tiny("duin_vqvae", decoder_time_embedding=False)
    old.load_state_dict(released.state_dict())
    x = torch.randn(2, 4, 1000)
    with torch.no_grad():
        a, b = released(x)[0], old(x)[0]
        z, _ = released.encode(x)
        h = released.decoder(z + released.backbone.time_encoding[None]).transpose(1, 2)
        manual = released.out_proj(released.regression_head(h).transpose(1, 2))
        manual = released.desubject(manual, torch.ones(2, 1)).transpose(1, 2)
    torch.testing.assert_close(a, manual)
    assert (a - b).abs().max() > 1e-3 * a.abs().max()


def test_mae_loss_is_one_cross_entropy_over_tokens():
    release = _tiny("duin_mae", n_codes=16)
    old = _tiny("duin_mae", n_codes=16, mae_loss="sum_of_views")
    old.load_state_dict(release.state_dict())
    x, targets = torch.randn(3, 4, 1000), torch.randint(0, 16, (3, 10))
    mask = release.random_mask(3, 10, "cpu")
    with torch.no_grad():
        logits = release.predict_codes(x, mask)
        single = release.loss(x, targets, mask=mask)["loss"]
        summed = old.loss(x, targets, mask=mask)["loss"]
        masked_view = release(x, mask)
    torch.testing.assert_close(logits[mask], masked_view[mask])  # each token from its masked view
    torch.testing.assert_close(single, torch.nn.functional.cross_entropy(
        logits.reshape(-1, 16), targets.reshape(-1)))
    torch.testing.assert_close(summed, 2 * single)  # 50 % mask: the old loss was twice as big
    with pytest.raises(ValueError, match="mae_loss must be one of"):
        _tiny("duin_mae", mae_loss="mean")


@settings(max_examples=40, deadline=None)
@given(n_tokens=st.integers(1, 64), ratio=st.floats(0.05, 0.95))
def test_mae_mask_count_follows_release(n_tokens, ratio):
    mae = DuINMAE.__new__(DuINMAE)  # only mask_ratio is needed
    mae.mask_ratio = ratio
    mask = DuINMAE.random_mask(mae, 3, n_tokens, "cpu")
    keep = int(n_tokens * (1.0 - ratio))  # the release truncates the kept count
    assert (mask.sum(1) == n_tokens - keep).all()


@pytest.mark.parametrize("init_from_vqvae", [False, True])
def test_mae_from_scratch_unless_asked(monkeypatch, init_from_vqvae):
    vqvae = _tiny("duin_vqvae", seed=1)
    mae = _tiny("duin_mae", init_from_vqvae=init_from_vqvae)
    fresh = mae.backbone.encoder.blocks[0].attn.query.weight.detach().clone()
    seen = {}

    def record_start(model, loss_step, tensors, **kwargs):
        seen["query"] = model.backbone.encoder.blocks[0].attn.query.weight.detach().clone()
        seen["targets"] = tensors[2]

    monkeypatch.setattr("sigformer.training.train_objective", record_start)
    X = np.random.default_rng(0).standard_normal((4, 4, 1000)).astype(np.float32)
    pretrain_mae(mae, vqvae, X, max_epochs=1)
    expected = vqvae.backbone.encoder.blocks[0].attn.query.weight if init_from_vqvae else fresh
    torch.testing.assert_close(seen["query"], expected)
    np.testing.assert_array_equal(seen["targets"], vqvae_targets(vqvae, X))
    assert not torch.equal(fresh, vqvae.backbone.encoder.blocks[0].attn.query.weight)


def test_heads_start_truncated_normal_as_released():
    released = _tiny("duin", n_outputs=5)
    default = _tiny("duin", n_outputs=5, head_init="default")
    w = released.head[1].weight.detach()  # Linear(1000 / 100 * 160 = 1600, 16)
    assert abs(float(w.std()) - 0.02) < 0.001 and not released.head[1].bias.any()
    assert not released.head[3].bias.any() and not released.contra_block.proj_z.bias.any()
    assert float(default.head[1].weight.detach().std()) < 0.016 and default.head[1].bias.any()
    mae, vq = _tiny("duin_mae"), _tiny("duin_vqvae")
    assert not mae.token_head.bias.any() and not vq.out_proj.bias.any()
    assert _tiny("duin_mae", head_init="default").token_head.bias.any()
    with pytest.raises(ValueError, match="head_init must be one of"):
        _tiny("duin", head_init="xavier")


def test_contrastive_block_runs_on_token_sequences():
    block = _tiny("duin").contra_block
    z, y = torch.randn(4, 10, 160), torch.randn(4, 10, 160)
    labels = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 2]), 3).float()
    t = 2.0  # the release's UniCL log-scale; the same logit scale is tau = exp(-t)
    with torch.no_grad():
        block.tau.fill_(float(np.exp(-t)))
        loss = block(z, y)
        unicl = block(z, y, labels)
        ez = torch.nn.functional.normalize(block.proj_z(z).flatten(1), dim=-1)
        ey = torch.nn.functional.normalize(block.proj_y(y).flatten(1), dim=-1)
    logits = ez @ ey.T * np.exp(t)
    target = torch.arange(4)
    expected = (torch.nn.functional.cross_entropy(logits, target)
                + torch.nn.functional.cross_entropy(logits.T, target)) / 2
    torch.testing.assert_close(loss, expected)
    same = labels @ labels.T
    soft = same / same.sum(-1, keepdim=True)
    expected = (torch.nn.functional.cross_entropy(logits, soft)
                + torch.nn.functional.cross_entropy(logits.T, soft.T)) / 2
    torch.testing.assert_close(unicl, expected)
    with pytest.raises(ValueError, match=r"expects \(batch, \.\.\., 160\)"):
        block(torch.randn(4, 10, 32), y)
