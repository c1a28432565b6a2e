"""Du-IN faithfulness (eeg_models.md §3) and its training stages on real sEEG at small size."""

import numpy as np
import pytest
import torch

from sigformer.models import create_model
from sigformer.models.eeg.duin import (
    DuINRegionTokens,
    pretrain_mae,
    pretrain_vqvae,
    vqvae_targets,
    zscore_channels,
)


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
