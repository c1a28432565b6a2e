"""Fast paths compute the reference function: eval outputs, fixed-seed training losses,
view-based patchify, shared positional encodings, bf16 autocast (no timing here: speed is
measured in benchmarks/training.py and benchmarks/inference.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sigformer.models import create_model
from sigformer.nn import (
    REFERENCE,
    FastPath,
    MultiHeadAttention,
    RotaryEmbedding,
    current_fast_path,
    fast_path,
    learnable_positions,
    patchify_1d,
    patchify_2d,
    set_fast_path,
    sinusoidal_table,
    unpatchify_2d,
)

PARITY = Path(os.environ.get("SIGFORMER_PARITY",
                             Path(__file__).resolve().parents[2] / "shared" / "reference"
                             / "parity"))

# name, preset, dropout-free kwargs, input maker, loss
MODELS = {
    "mossformer": ("tiny", {"dropout": 0.0}, lambda g: torch.randn(2, 800, generator=g)),
    "deftan2": ("tiny", {"dropout": 0.0}, lambda g: torch.randn(2, 4, 2048, generator=g)),
    "dbconformer": ("tiny", {"dropout": 0.0},
                    lambda g: torch.randn(4, 3, 257, generator=g)),
    "clst": ("tiny", {"dropout": 0.0}, lambda g: torch.randn(4, 2, 128, generator=g)),
}
EXTRA_KWARGS = {"dbconformer": dict(n_chans=3, n_times=257, n_outputs=2, sfreq=128)}


def build(name: str, seed: int = 0, **kwargs) -> nn.Module:
    preset, _, _ = MODELS[name]
    torch.manual_seed(seed)
    return create_model(name, preset=preset, **EXTRA_KWARGS.get(name, {}), **kwargs)


def batch(name: str, seed: int = 1) -> torch.Tensor:
    return MODELS[name][2](torch.Generator().manual_seed(seed))


# --- switches -------------------------------------------------------------------------------
def test_fast_path_context_restores_the_reference_even_on_error():
    assert current_fast_path() == REFERENCE
    with pytest.raises(RuntimeError), fast_path(attention_dropout=False) as config:
        assert current_fast_path() is config and not config.attention_dropout
        raise RuntimeError("boom")
    assert current_fast_path() == REFERENCE


def test_set_fast_path_rejects_other_types():
    with pytest.raises(TypeError, match="FastPath"):
        set_fast_path({"fused_projections": True})


# --- patchify -------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 3), c=st.integers(1, 4), length=st.integers(1, 24),
       kernel=st.integers(1, 5), stride=st.integers(1, 3))
def test_patchify_1d_equals_unfold(b, c, length, kernel, stride):
    x = torch.randn(b, c, length + kernel - 1)
    expected = F.unfold(x[..., None], (kernel, 1), stride=(stride, 1))
    assert torch.equal(patchify_1d(x, kernel, stride), expected)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 3), c=st.integers(1, 3), ph=st.integers(1, 4), pw=st.integers(1, 4),
       nh=st.integers(1, 5), nw=st.integers(1, 5))
def test_patchify_2d_equals_unfold_and_fold(b, c, ph, pw, nh, nw):
    size = (ph * nh, pw * nw)
    x = torch.randn(b, c, *size)
    patches = patchify_2d(x, (ph, pw))
    assert torch.equal(patches, nn.Unfold((ph, pw), stride=(ph, pw))(x))
    folded = nn.Fold(size, (ph, pw), stride=(ph, pw))(patches)
    assert torch.equal(unpatchify_2d(patches, size, (ph, pw)), folded)
    assert torch.equal(folded, x)


# --- attention ------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    {}, {"qk_norm": True, "head_dim": 8, "scale": "embed"}, {"bias": False},
    {"attention": "linear"},
])
def test_fused_projections_match_reference(kwargs):
    torch.manual_seed(0)
    attn = MultiHeadAttention(24, 4, **kwargs).eval()
    x = torch.randn(3, 7, 24)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[0, -2:] = True
    with torch.no_grad():
        expected = attn(x, mask)
        with fast_path():
            got = attn(x, mask)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_fused_weights_are_cached_for_inference_and_refreshed_when_they_change():
    torch.manual_seed(0)
    attn = MultiHeadAttention(24, 4).eval()
    x = torch.randn(2, 5, 24)
    with fast_path(), torch.no_grad():
        first = attn(x)
        cached = attn._fused_cache["value"][0]
        assert attn(x).equal(first) and attn._fused_cache["value"][0] is cached
        attn.key.weight.mul_(2.0)  # an in-place update (optimizer step, load_state_dict)
        changed = attn(x)
        assert attn._fused_cache["value"][0] is not cached
    with torch.no_grad():
        torch.testing.assert_close(changed, attn(x), atol=1e-6, rtol=1e-5)  # the reference
    assert not changed.equal(first)
    attn.train()  # with autograd the weights are concatenated afresh: gradients reach them
    with fast_path(attention_dropout=False):
        attn(x).sum().backward()
    assert all(p.grad is not None for p in (attn.query.weight, attn.key.weight,
                                            attn.value.weight))


def test_attention_dropout_switch_only_skips_the_attention_dropout():
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 2, dropout=0.5).train()
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        clean = attn.eval()(x)
        attn.train()
        torch.manual_seed(3)
        dropped = attn(x)
        with fast_path(attention_dropout=False):
            skipped = attn(x)
    assert not torch.allclose(dropped, clean, atol=1e-3)  # the reference does drop
    torch.testing.assert_close(skipped, clean)


# --- whole models ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODELS))
def test_fast_equals_reference_in_eval(name):
    model = build(name).eval()
    x = batch(name)
    with torch.no_grad():
        expected = model(x)
        with fast_path():
            got = model(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def _train_losses(name: str, fast: FastPath | None, steps: int = 3) -> list[float]:
    _, no_dropout, _ = MODELS[name]
    model = build(name, **no_dropout).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    x = batch(name)
    losses = []
    for _ in range(steps):
        set_fast_path(fast or REFERENCE)
        try:
            loss = model(x).float().pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        finally:
            set_fast_path(REFERENCE)
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fast_training_loss_matches_reference(name):
    reference = _train_losses(name, None)
    fast = _train_losses(name, FastPath(fused_projections=True))
    assert reference[-1] != reference[0]  # the steps did train
    torch.testing.assert_close(torch.tensor(fast), torch.tensor(reference), atol=1e-5,
                               rtol=1e-4)


def test_state_dict_keys_unchanged_for_clst_attention():
    keys = set(build("clst").state_dict())
    for proj in ("q", "k", "v"):
        for part in ("conv.weight", "norm.weight", "norm.running_mean", "linear.weight"):
            assert f"stages.0.blocks.0.attn.{proj}.{part}" in keys
    assert "stages.0.blocks.0.attn.out.weight" in keys


def test_deftan2_bf16_autocast_runs_and_stays_close():
    model = build("deftan2").eval()
    x = batch("deftan2")
    with torch.no_grad():
        expected = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(x)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert torch.isfinite(got).all()
    relative = (got - expected).norm() / expected.norm()
    assert relative < 0.1, f"bf16 output {relative:.3f} away from fp32 (relative L2)"


# --- positional encodings -------------------------------------------------------------------
def test_sinusoidal_table_matches_the_tfm_and_duin_tables():
    from sigformer.models.eeg.duin import sincos_table
    from sigformer.models.eeg.tfm_tokenizer import sinusoidal_encoding

    assert torch.equal(sinusoidal_table(50, 16), sinusoidal_encoding(50, 16))
    assert torch.equal(sinusoidal_table(30, 160), sincos_table(30, 160))
    with pytest.raises(ValueError, match="even"):
        sinusoidal_table(4, 5)


def test_learnable_positions_draw_like_the_releases():
    torch.manual_seed(0)
    normal = learnable_positions(5, 4)
    torch.manual_seed(0)
    assert torch.equal(normal.data, torch.randn(1, 5, 4))
    trunc = learnable_positions(5, 4, init="trunc_normal", std=0.02)
    assert trunc.shape == (1, 5, 4) and trunc.abs().max() <= 0.04
    with pytest.raises(ValueError, match="init"):
        learnable_positions(5, 4, init="zeros")


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 12), stacked=st.integers(1, 4), rest=st.integers(0, 6))
def test_rotary_on_a_stacked_tensor_equals_one_by_one(n, stacked, rest):
    rotary = RotaryEmbedding(8)
    x = torch.randn(2, n, stacked, 8 + rest)
    together = rotary.rotate(x, seq_dim=-3)
    one_by_one = torch.stack([rotary.rotate(t) for t in x.unbind(-2)], dim=-2)
    assert torch.equal(together, one_by_one)
    # rotation preserves each pair's norm and leaves the tail alone
    torch.testing.assert_close(together[..., :8].norm(dim=-1), x[..., :8].norm(dim=-1))
    assert torch.equal(together[..., 8:], x[..., 8:])


# --- parity fixtures on the fast path -------------------------------------------------------
def _converted_state_dict(name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    official = load_file(PARITY / name / "official_state_dict.safetensors")
    converted = {}
    for line in (PARITY / name / "keys.txt").read_text().splitlines():
        if not line.strip() or line[0] in "#-":
            continue
        key, _, _, target, rule = line.split("\t")[:5]
        if rule.startswith("ignore"):
            continue
        if rule.startswith("split"):
            converted.update(zip(target.split("|"), official[key].chunk(3)))
        else:
            converted[target] = official[key]
    return converted


@pytest.mark.parametrize("name", ["mossformer", "deftan2", "dbconformer"])
def test_fast_path_reproduces_the_official_outputs(name):
    if not (PARITY / name).is_dir():
        pytest.skip(f"parity fixtures not found in {PARITY / name}")
    from safetensors.torch import load_file

    config = json.loads((PARITY / name / "official_config.json").read_text())["sigformer"]
    model = create_model(config["name"], **config["kwargs"]).eval()
    model.load_state_dict(_converted_state_dict(name))
    io = load_file(PARITY / name / "io.safetensors")
    with torch.no_grad(), fast_path():
        if name == "mossformer":
            got = {"est_source": model(io["input.mix"]).permute(0, 2, 1)}
        elif name == "deftan2":
            got = {"y": model(io["input.x"])}
        else:
            features, logits = model(io["input.x"])
            got = {"features": features, "logits": logits}
    for key, value in got.items():
        torch.testing.assert_close(value, io[f"output.{key}"], atol=1e-5, rtol=0)


def test_a_module_can_opt_out_of_fused_projections():
    # Du-IN's wide projections stay three GEMMs on the fast path (fusing measured slower)
    from sigformer.models import create_model

    torch.manual_seed(0)
    attn = MultiHeadAttention(24, 4, fuse_projections=False).eval()
    with fast_path(), torch.no_grad():
        attn(torch.randn(2, 5, 24))
    assert attn._fused_cache == {}  # the fused path never ran
    duin = create_model("duin", preset="tiny", n_chans=4, n_times=1000, n_outputs=3)
    assert not [m for m in duin.modules()
                if isinstance(m, MultiHeadAttention) and m.fuse_projections]
