"""Every model's front-end as a registered tokenizer: tokens equal the model's own activation
at that stage (captured with forward hooks during the model's forward), index fields,
shared weights, decode, the registry and its errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sigformer.models import create_model
from sigformer.tokenizers import (
    DBConformerChannels,
    DBConformerPatches,
    DeFTAN2STFT,
    IQConvEmbedding,
    MossFormerFrames,
    OFDMGridPatches,
    SEEGRegionEmbeddings,
    SEEGRegionTokens,
    Tokenizer,
    UnknownTokenizerError,
    create_tokenizer,
    list_tokenizers,
)
from sigformer.validation import SignalError

FRONT_ENDS = ["dbconformer_patches", "dbconformer_channels", "mossformer_encoder",
              "deftan2_stft", "ofdm_grid_patches", "iq_conv", "seeg_regions"]
DOCS = Path(__file__).resolve().parents[1] / "docs" / "tokenizers.md"


def capture(module: torch.nn.Module, model: torch.nn.Module, *args, inputs: bool = False):
    """Run ``model(*args)`` and return what ``module`` produced (or received, ``inputs``)."""
    seen = []
    if inputs:
        handle = module.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    else:
        handle = module.register_forward_hook(lambda m, a, out: seen.append(out))
    try:
        with torch.no_grad():
            model(*args)
    finally:
        handle.remove()
    return seen[0]


def randn(*shape: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dbconformer():
    torch.manual_seed(0)
    return create_model("dbconformer", preset="bnci2014001").eval()


@pytest.fixture(scope="module")
def mossformer():
    torch.manual_seed(0)
    return create_model("mossformer", preset="tiny").eval()


@pytest.fixture(scope="module")
def deftan2():
    torch.manual_seed(0)
    return create_model("deftan2", preset="tiny").eval()


@pytest.fixture(scope="module")
def adafortitran():
    torch.manual_seed(0)
    return create_model("adafortitran", preset="tiny").eval()


@pytest.fixture(scope="module")
def clst():
    torch.manual_seed(0)
    return create_model("clst", preset="tiny").eval()


@pytest.fixture(scope="module")
def duin_vqvae():
    torch.manual_seed(0)
    return create_model("duin_vqvae", preset="tiny").eval()


STATISTICS = torch.tensor([[10.0, 100.0, 200.0], [20.0, 250.0, 900.0]])


# --- DBConformer ---------------------------------------------------------------------------


def test_dbconformer_patches_equal_temporal_stem_output(dbconformer):
    x = randn(2, 22, 1001)
    expected = capture(dbconformer.temporal_embedding, dbconformer, x)
    tokens = create_tokenizer("dbconformer_patches", model=dbconformer).encode(x)
    assert tokens.embeddings.shape == (2, 8, 40)
    assert torch.equal(tokens.embeddings, expected)
    assert torch.equal(tokens.time_index, torch.arange(8))
    assert tokens.channel_index is None and tokens.ids is None


def test_dbconformer_channels_equal_spatial_embedding_output(dbconformer):
    x = randn(2, 22, 1001, seed=1)
    expected = capture(dbconformer.spatial_embedding, dbconformer, x)
    tokens = create_tokenizer("dbconformer_channels", model=dbconformer).encode(x)
    assert tokens.embeddings.shape == (2, 22, 40)
    assert torch.equal(tokens.embeddings, expected)
    assert torch.equal(tokens.channel_index, torch.arange(22))
    assert torch.equal(tokens.time_index, torch.zeros(22, dtype=torch.long))


@pytest.mark.parametrize("name, transformer", [("dbconformer_patches", "temporal_transformer"),
                                               ("dbconformer_channels", "spatial_transformer")])
def test_dbconformer_tokens_with_positions_are_the_transformer_input(dbconformer, name,
                                                                     transformer):
    x = randn(2, 22, 1001, seed=2)
    expected = capture(getattr(dbconformer, transformer), dbconformer, x, inputs=True)
    tokens = create_tokenizer(name, model=dbconformer, add_positions=True).encode(x)
    assert torch.equal(tokens.embeddings, expected)


def test_dbconformer_front_ends_share_the_model_weights(dbconformer):
    patches = DBConformerPatches.from_model(dbconformer, add_positions=True)
    names = {id(p) for p in dbconformer.parameters()}
    assert all(id(p) in names for p in patches.parameters())
    assert patches.positions is dbconformer.pos_embedding_temporal
    assert DBConformerChannels.from_model(dbconformer).embedding is \
        dbconformer.spatial_embedding


def test_dbconformer_front_ends_name_bad_input(dbconformer):
    patches = DBConformerPatches.from_model(dbconformer)
    with pytest.raises(SignalError, match="expects 22 channels"):
        patches.encode(randn(1, 21, 1001))
    with pytest.raises(SignalError, match="no complete patch"):
        patches.encode(randn(1, 22, 100))
    with pytest.raises(SignalError, match="sampled at 250 Hz, got 128 Hz"):
        patches.check_input(randn(1, 22, 1001), sfreq=128)
    with_positions = DBConformerChannels.from_model(dbconformer, add_positions=True)
    with pytest.raises(SignalError, match="expects 22 channels"):
        with_positions.encode(randn(1, 20, 1001))


@settings(max_examples=8, deadline=None)
@given(perm_seed=st.integers(0, 2**16), n_chans=st.integers(2, 6))
def test_dbconformer_channel_tokens_follow_a_channel_permutation(perm_seed, n_chans):
    # without positions the spatial embedding is shared across channels: permuting the input
    # channels permutes the tokens (any montage size)
    torch.manual_seed(0)
    model = create_model("dbconformer", preset="tiny", n_chans=4, n_times=200, sfreq=100,
                         n_outputs=2).eval()
    tokenizer = DBConformerChannels.from_model(model)
    x = randn(2, n_chans, 200, seed=perm_seed)
    perm = torch.randperm(n_chans, generator=torch.Generator().manual_seed(perm_seed))
    with torch.no_grad():
        base, permuted = tokenizer.encode(x), tokenizer.encode(x[:, perm])
    torch.testing.assert_close(permuted.embeddings, base.embeddings[:, perm])


# --- speech --------------------------------------------------------------------------------


def test_mossformer_frames_equal_encoder_output(mossformer):
    x = randn(2, 800)
    expected = capture(mossformer.masker, mossformer, x, inputs=True)  # ReLU(encoder(x))
    tokens = create_tokenizer("mossformer_encoder", model=mossformer).encode(x)
    frames = (800 - 16) // 8 + 1
    assert tokens.embeddings.shape == (2, frames, 64)
    assert torch.equal(tokens.embeddings, expected.transpose(1, 2))
    assert torch.equal(tokens.time_index, torch.arange(frames))
    assert torch.equal(tokens.channel_index, torch.zeros(frames, dtype=torch.long))


@settings(max_examples=8, deadline=None)
@given(n_chans=st.integers(1, 3), length=st.integers(16, 300))
def test_mossformer_frames_encode_channels_independently(mossformer, n_chans, length):
    tokenizer = MossFormerFrames.from_model(mossformer)
    x = randn(2, n_chans, length, seed=length)
    with torch.no_grad():
        tokens = tokenizer.encode(x)
        for c in range(n_chans):
            single = tokenizer.encode(x[:, c]).embeddings
            assert torch.equal(tokens.embeddings[:, tokens.channel_index == c], single)


def test_mossformer_decode_is_the_models_synthesis(mossformer):
    # with every mask forced to one the model's output is its decoder on the encoder frames
    x = randn(1, 803, seed=3)
    handle = mossformer.masker.register_forward_hook(lambda m, a, out: torch.ones_like(out))
    try:
        with torch.no_grad():
            expected = mossformer(x)  # (1, n_src, 803)
    finally:
        handle.remove()
    tokenizer = MossFormerFrames.from_model(mossformer)
    with torch.no_grad():
        wave = tokenizer.decode(tokenizer.encode(x), length=803)
        natural = tokenizer.decode(tokenizer.encode(x))
    assert wave.shape == (1, 1, 803)
    torch.testing.assert_close(wave[:, 0], expected[:, 0])
    assert natural.shape[-1] == ((803 - 16) // 8) * 8 + 16  # (frames - 1) * hop + kernel


def test_mossformer_frames_reject_too_short_audio(mossformer):
    with pytest.raises(SignalError, match="shorter than one encoder frame"):
        MossFormerFrames.from_model(mossformer).encode(randn(1, 10))


def test_deftan2_stft_tokens_equal_encoder_output(deftan2):
    x = randn(2, 4, 2000)
    expected = capture(deftan2.encoder, deftan2, x)  # (B, D, T, F)
    tokenizer = create_tokenizer("deftan2_stft", model=deftan2)
    tokens = tokenizer.encode(x)
    b, d, t, f = expected.shape
    assert f == 257 and tokens.embeddings.shape == (2, t * f, d)
    # each token sits at its (time_index, freq_index) cell of the model's map
    cells = expected[:, :, tokens.time_index, tokens.freq_index].transpose(1, 2)
    assert torch.equal(tokens.embeddings, cells)
    assert tokens.channel_index is None
    assert torch.equal(tokens.time_index.unique(), torch.arange(t))
    assert tokenizer.last_scale_.shape == (2, 1, 1)


def test_deftan2_stft_rejects_another_array(deftan2):
    with pytest.raises(SignalError, match="expects 4 microphones"):
        DeFTAN2STFT.from_model(deftan2).encode(randn(1, 2, 2000))


# --- RF ------------------------------------------------------------------------------------


def pilots(seed: int = 0) -> torch.Tensor:
    return torch.complex(randn(2, 40, 2, seed=seed), randn(2, 40, 2, seed=seed + 1))


@pytest.mark.parametrize("add_positions", [False, True])
def test_ofdm_grid_patches_equal_the_encoder_input(adafortitran, add_positions):
    x = pilots()
    if add_positions:
        expected = capture(adafortitran.encoder, adafortitran, x, STATISTICS, inputs=True)
    else:
        expected = capture(adafortitran.input_projection, adafortitran, x, STATISTICS)
    tokens = create_tokenizer("ofdm_grid_patches", model=adafortitran,
                              add_positions=add_positions).encode(x, STATISTICS)
    n = 280  # (120 / 3) x (14 / 2)
    assert tokens.embeddings.shape == (2, 2 * n, 32)
    # real parts are the first half of the model's stacked batch, imaginary the second
    assert torch.equal(tokens.embeddings[:, :n], expected[:2])
    assert torch.equal(tokens.embeddings[:, n:], expected[2:])
    assert torch.equal(tokens.channel_index, torch.arange(2).repeat_interleave(n))
    # patches are subcarrier-major: patch p covers subcarrier patch p // 7, symbol patch p % 7
    assert torch.equal(tokens.freq_index[:n] * 7 + tokens.time_index[:n], torch.arange(n))
    assert int(tokens.freq_index.max()) == 39 and int(tokens.time_index.max()) == 6


def test_ofdm_grid_patches_of_fortitran_and_bad_statistics(adafortitran):
    torch.manual_seed(0)
    fortitran = create_model("fortitran", preset="tiny").eval()
    x = pilots(seed=4)
    expected = capture(fortitran.input_projection, fortitran, x)
    tokens = create_tokenizer("ofdm_grid_patches", model=fortitran).encode(x)
    assert torch.equal(tokens.embeddings[:, :280], expected[:2])
    adaptive = OFDMGridPatches.from_model(adafortitran)
    with pytest.raises(ValueError, match="need the channel statistics"):
        adaptive.encode(x)
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        adaptive.encode(x, STATISTICS[:, :2])
    with pytest.raises(ValueError, match="pilot pattern differs"):
        adaptive.encode(torch.zeros(2, 12, 2, dtype=torch.complex64), STATISTICS)


def test_ofdm_grid_patches_transform_takes_numpy_pilots(adafortitran):
    tokenizer = OFDMGridPatches.from_model(adafortitran)
    x = pilots(seed=6)
    real_last = np.stack([x.real.numpy(), x.imag.numpy()], axis=-1)
    out = tokenizer.transform(real_last, statistics=STATISTICS)
    with torch.no_grad():
        direct = tokenizer.encode(x, STATISTICS).embeddings.numpy()
    np.testing.assert_allclose(out, direct, rtol=0, atol=0)


def test_iq_conv_tokens_equal_first_block_input(clst):
    x = randn(2, 2, 128)
    expected = capture(clst.stages[0].blocks[0], clst, x, inputs=True)
    tokens = create_tokenizer("iq_conv", model=clst).encode(x)
    assert tokens.embeddings.shape == (2, 64, 16)
    assert torch.equal(tokens.embeddings, expected)
    assert torch.equal(tokens.time_index, torch.arange(64))
    out = IQConvEmbedding.from_model(clst).transform(x.numpy())
    np.testing.assert_array_equal(out, expected.numpy())
    with pytest.raises(SignalError, match="expects 2 rows"):
        IQConvEmbedding.from_model(clst).encode(randn(1, 3, 128))


# --- sEEG ----------------------------------------------------------------------------------


def test_seeg_region_tokens_equal_the_vqvae_codes(duin_vqvae):
    x = randn(2, 10, 3000)
    expected = capture(duin_vqvae.vq.quantizer, duin_vqvae, x)
    tokenizer = create_tokenizer("seeg_regions", model=duin_vqvae)
    assert isinstance(tokenizer, SEEGRegionTokens) and tokenizer.discrete
    with torch.no_grad():
        tokens = tokenizer.encode(x)
    assert tokens.ids.shape == (2, 30) and tokens.embeddings.shape == (2, 30, 64)
    assert torch.equal(tokens.ids, expected.indices)
    torch.testing.assert_close(tokens.embeddings, expected.quantized)
    assert torch.equal(tokens.time_index, torch.arange(30))
    assert torch.equal(tokens.ids, duin_vqvae.code_indices(x))


def test_seeg_region_decode_is_the_vqvae_reconstruction(duin_vqvae):
    x = randn(1, 10, 3000, seed=5)
    tokenizer = SEEGRegionTokens.from_model(duin_vqvae)
    with torch.no_grad():
        expected, _ = duin_vqvae(x)
        recon = tokenizer.decode(tokenizer.encode(x))
    assert recon.shape == (1, 10, 3000)
    torch.testing.assert_close(recon, expected)


def test_seeg_regions_of_a_classifier_are_continuous():
    torch.manual_seed(0)
    model = create_model("duin", preset="tiny").eval()
    x = randn(2, 10, 3000, seed=7)
    expected = capture(model.backbone.tokenizer, model, x)
    tokenizer = create_tokenizer("seeg_regions", model=model)
    assert isinstance(tokenizer, SEEGRegionEmbeddings) and not tokenizer.discrete
    tokens = tokenizer.encode(x)
    assert tokens.embeddings.shape == (2, 30, 160) and tokens.ids is None
    assert torch.equal(tokens.embeddings, expected)
    with pytest.raises(TypeError, match="reads a DuINVQVAE"):
        SEEGRegionTokens.from_model(model)


# --- registry ------------------------------------------------------------------------------


def test_registry_lists_every_front_end_and_the_existing_tokenizers():
    names = list_tokenizers()
    assert set(FRONT_ENDS) <= set(names)
    assert {"patch", "stft", "vq", "channel_independent", "tfm_tokenizer"} <= set(names)


@pytest.mark.parametrize("name, kwargs, expected_type, x_shape, tokens_shape", [
    # tiny DBConformer: patch 32 on 100 samples (last one dropped) -> 3 patches of 16
    ("dbconformer_patches", dict(preset="tiny", n_chans=3, n_times=100, n_outputs=2, sfreq=100),
     DBConformerPatches, (1, 3, 100), (1, 3, 16)),
    ("iq_conv", dict(preset="small"), IQConvEmbedding, (1, 2, 128), (1, 64, 16)),
])
def test_front_ends_build_by_name(name, kwargs, expected_type, x_shape, tokens_shape):
    torch.manual_seed(0)
    tokenizer = create_tokenizer(name, **kwargs)
    assert isinstance(tokenizer, expected_type)
    with torch.no_grad():
        assert tuple(tokenizer.encode(randn(*x_shape)).embeddings.shape) == tokens_shape


def test_model_free_tokenizers_build_by_name():
    stft = create_tokenizer("stft", n_fft=32, hop=16)
    vq = create_tokenizer("vq", base="stft", base_kwargs={"n_fft": 32, "hop": 16}, num_codes=4)
    per_channel = create_tokenizer("channel_independent", tokenizer=stft)
    x = randn(2, 3, 128)
    assert torch.equal(per_channel.encode(x).embeddings, stft.encode(x).embeddings)
    vq.fit(x.numpy(), epochs=1)
    assert vq.encode(x).ids.shape == (2, 3 * 7)
    assert isinstance(create_tokenizer("tfm_tokenizer", preset="tiny"), Tokenizer)


def test_unknown_tokenizer_names_close_matches():
    with pytest.raises(UnknownTokenizerError, match=r"did you mean \['dbconformer_patches'"):
        create_tokenizer("dbconformer_patchs")
    with pytest.raises(UnknownTokenizerError, match="known tokenizers"):
        create_tokenizer("wavelet_packets")


def test_front_ends_refuse_the_wrong_model_or_ignored_arguments(clst, mossformer):
    with pytest.raises(TypeError, match="reads the front-end of a DBConformer, got a ClST"):
        DBConformerPatches.from_model(clst)
    with pytest.raises(TypeError, match=r"ignored: \[\"preset='tiny'\"\]"):
        create_tokenizer("mossformer_encoder", model=mossformer, preset="tiny")
    with pytest.raises(ValueError, match="front-end of \\['clst'\\], not 'vtcnn2'"):
        create_tokenizer("iq_conv", model="vtcnn2")


def test_docs_table_lists_every_tokenizer():
    text = DOCS.read_text()
    rows = set(re.findall(r"^\| `([a-z0-9_]+)` \|", text, flags=re.M))
    assert rows == set(list_tokenizers())
