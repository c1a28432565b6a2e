"""DBConformer faithfulness: parameter counts and token shapes of the reference (eeg_models.md §1)."""

import pytest
import torch

from sigformer.models import DBConformer, create_model


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("kwargs,expected", [
    (dict(preset="bnci2014001"), 93_747),
    (dict(preset="bnci2014001", n_outputs=4), 93_813),
    (dict(preset="bnci2014004"), 92_267),
    (dict(preset="zhou2016"), 93_187),
    (dict(preset="zhou2016", depth=6), 250_947),
    (dict(n_chans=59, n_times=750, n_outputs=2, drop_last_sample=False), 96_627),
    (dict(n_chans=59, n_times=750, n_outputs=2, drop_last_sample=False, depth=6), 254_387),
    (dict(preset="bnci2014002"), 172_547),
])
def test_parameter_counts_match_reference(kwargs, expected):
    assert n_params(create_model("dbconformer", **kwargs)) == expected


def test_per_module_breakdown():
    m = create_model("dbconformer", preset="bnci2014001")
    assert n_params(m.temporal_embedding) == 3_560
    assert n_params(m.spatial_embedding) == 1_096
    assert n_params(m.temporal_transformer) == n_params(m.spatial_transformer) == 39_440
    assert n_params(m.final_layer) == 7_330
    assert n_params(m.spatial_attn_pool) == 1_681
    assert m.pos_embedding_temporal.numel() + m.pos_embedding_spatial.numel() == 1_200


def test_token_and_output_shapes():
    m = create_model("dbconformer", preset="bnci2014001", return_features=True).eval()
    x = torch.randn(3, 22, 1001)
    temporal, spatial = m.tokens(x)
    assert temporal.shape == (3, 8, 40) and spatial.shape == (3, 22, 40)
    features, logits = m(x)
    assert features.shape == (3, 80) and logits.shape == (3, 2)
    # the official scripts feed (B, 1, C, T)
    torch.testing.assert_close(m(x.unsqueeze(1))[1], logits)


@pytest.mark.parametrize("switches", [
    dict(branch="temporal"), dict(branch="spatial"), dict(gate=True), dict(chn_atten=False),
    dict(pos_emb=False), dict(attn_scale="head"), dict(radix=2),
])
def test_switches_build_and_run(switches):
    m = create_model("dbconformer", preset="bnci2014001", **switches).eval()
    assert m(torch.randn(2, 22, 1001)).shape == (2, 2)


def test_switches_change_structure_as_released():
    base = n_params(create_model("dbconformer", preset="bnci2014001"))
    no_attn = n_params(create_model("dbconformer", preset="bnci2014001", chn_atten=False))
    assert base - no_attn == 1_681
    no_pos = n_params(create_model("dbconformer", preset="bnci2014001", pos_emb=False))
    assert base - no_pos == 1_200
    # single-branch variants: head on D features plus the released (unused) gate layer
    temporal = n_params(create_model("dbconformer", preset="bnci2014001", branch="temporal"))
    assert temporal == base - 1_681 - 40 * 64 + (80 * 40 + 40)


def test_attention_scale_switch_changes_output():
    torch.manual_seed(0)
    a = create_model("dbconformer", preset="bnci2014001", attn_scale="embed").eval()
    b = create_model("dbconformer", preset="bnci2014001", attn_scale="head").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 22, 1001)
    assert not torch.allclose(a(x), b(x))


def test_wrong_input_shape_is_named():
    m = create_model("dbconformer", preset="bnci2014001")
    with pytest.raises(ValueError, match=r"expects input \(batch, 22 channels, 1001 samples\)"):
        m(torch.randn(2, 21, 1001))
    with pytest.raises(ValueError, match="shorter than one patch"):
        DBConformer(n_chans=4, n_outputs=2, n_times=100)
    with pytest.raises(ValueError, match="branch must be one of"):
        DBConformer(n_chans=4, n_outputs=2, n_times=1001, branch="both")


def test_braindecode_signal_args_inference():
    from sigformer.channels import ChannelSet

    chs = ChannelSet.from_names(["C3", "Cz", "C4"]).with_montage().to_chs_info()
    m = DBConformer(chs_info=chs, n_outputs=2, sfreq=250, input_window_seconds=4.004)
    assert m.n_chans == 3 and m.n_times == 1001
