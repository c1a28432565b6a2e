import numpy as np
import pytest
import torch

from sigformer import SignalError
from sigformer.nn.vq import VectorQuantizer, kmeans
from sigformer.tokenizers import (
    ChannelIndependent,
    PatchTokenizer,
    STFTTokenizer,
    Tokens,
    VQTokenizer,
    codebook_report,
)


def test_patch_tokenizer_positions():
    tok = PatchTokenizer(patch_size=25, embed_dim=8)
    out = tok.encode(torch.randn(2, 3, 100))
    assert out.embeddings.shape == (2, 12, 8) and out.ids is None
    assert out.time_index.tolist() == [0, 1, 2, 3] * 3
    assert out.channel_index.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    with pytest.raises(SignalError, match="shorter than one patch"):
        tok.encode(torch.randn(1, 1, 10))


def test_stft_tokenizer_matches_torch_and_inverts():
    x = torch.randn(2, 2, 1000)
    tok = STFTTokenizer(n_fft=200, hop=100, n_bins=100)
    out = tok.encode(x)
    assert out.embeddings.shape == (2, 2 * 9, 100)  # 5 s at 200 Hz: 9 frames
    ref = torch.stft(x[0, 1], 200, 100, window=torch.hann_window(200), center=False,
                     return_complex=True).abs()[:100]
    torch.testing.assert_close(out.embeddings[0, 9:], ref.T)
    with pytest.raises(NotImplementedError, match="discard phase"):
        tok.decode(out)
    lossless = STFTTokenizer(n_fft=64, hop=16, center=True, magnitude=False)
    torch.testing.assert_close(lossless.decode(lossless.encode(x)), x, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("length", [512, 520, 1000])
@pytest.mark.parametrize("n_fft,hop", [(64, 16), (200, 100), (50, 25)])
def test_uncentred_complex_stft_tokens_invert_where_the_window_covers(length, n_fft, hop):
    covered = (length - n_fft) // hop * hop + n_fft
    tok = STFTTokenizer(n_fft=n_fft, hop=hop, center=False, magnitude=False)
    x = torch.randn(2, 3, length, dtype=torch.float64)  # exact up to the window's zero
    y = tok.decode(tok.encode(x))
    assert y.shape == x.shape
    torch.testing.assert_close(y[..., 1:covered], x[..., 1:covered], atol=1e-8, rtol=1e-8)
    assert torch.all(y[..., 0] == 0) and torch.all(y[..., covered:] == 0)
    # in float32 the near-zero window tails lose digits; one hop in, it is exact to 1e-5
    x32 = x.float()
    y32 = tok.decode(tok.encode(x32))
    torch.testing.assert_close(y32[..., hop:covered - hop], x32[..., hop:covered - hop],
                               atol=1e-5, rtol=1e-5)


def test_channel_independent_wrapper_regroups():
    single = STFTTokenizer(n_fft=200, hop=100, n_bins=10)
    wrapped = ChannelIndependent(single)
    x = torch.randn(3, 4, 600)
    out = wrapped.encode(x)
    per_channel = single.encode(x[:, 2:3])
    n = len(per_channel)
    torch.testing.assert_close(out.embeddings[:, 2 * n:3 * n], per_channel.embeddings)
    assert out.channel_index.tolist() == sum([[c] * n for c in range(4)], [])


def test_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[5.0, 0], [-5.0, 0], [0, 5.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2, generator=g) for c in centers])
    found = kmeans(x, 3, iters=20, generator=g)
    dists = torch.cdist(centers, found).min(1).values
    assert (dists < 0.5).all()


@pytest.mark.parametrize("ema,l2", [("average", False), ("normalized_mean", True)])
def test_vector_quantizer_learns_clusters(ema, l2):
    torch.manual_seed(0)
    centers = torch.cat([torch.eye(4), -torch.eye(4)]) * (1 if l2 else 3)  # well separated
    vq = VectorQuantizer(8, 4, ema=ema, l2_normalize=l2, init="kmeans", decay=0.8).train()
    for _ in range(30):
        z = centers[torch.randint(8, (256,))] + 0.05 * torch.randn(256, 4)
        out = vq(z)
    assert out.quantized.shape == z.shape and out.indices.shape == (256,)
    assert float(out.commitment) < 0.05
    assert float(out.perplexity) > 6  # all 8 clusters in use
    vq.reset_usage()
    vq.eval()(centers)
    assert vq.codebook_usage() == 1.0
    assert codebook_report(vq)["perplexity"] == pytest.approx(8, rel=0.01)
    # straight-through: gradients reach the input
    z = torch.randn(4, 4, requires_grad=True)
    vq(z).quantized.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_dead_code_restart_reseeds_unused_codes():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 2, init="uniform", decay=0.5, dead_code_threshold=0.5).train()
    for _ in range(10):
        vq(torch.randn(64, 2) * 3 + 10)  # data far from the initial codes
    vq.reset_usage()
    vq.eval()(torch.randn(512, 2) * 3 + 10)
    assert vq.codebook_usage() > 0.5


def test_vq_errors():
    with pytest.raises(ValueError, match="at least one code"):
        VectorQuantizer(0, 4)
    with pytest.raises(ValueError, match="width 4"):
        VectorQuantizer(8, 4)(torch.randn(2, 3))


def test_vq_tokenizer_fit_transform_decode():
    rng = np.random.default_rng(0)
    t = np.arange(400) / 100
    X = np.stack([np.sin(2 * np.pi * f * t)[None] for f in rng.choice([5, 20], 30)])
    base = STFTTokenizer(n_fft=50, hop=25, center=True, magnitude=False)
    tok = VQTokenizer(base, num_codes=8, l2_normalize=False).fit(X, epochs=3)
    ids = tok.transform(X)
    assert ids.shape[0] == 30 and ids.dtype.kind == "i"
    # the two frequencies map to different token ids in the middle of the signal
    five = ids[np.isclose(X[:, 0, 1], np.sin(2 * np.pi * 5 / 100))][:, 5]
    twenty = ids[np.isclose(X[:, 0, 1], np.sin(2 * np.pi * 20 / 100))][:, 5]
    assert set(five).isdisjoint(set(twenty))
    recon = tok.decode(tok.encode(torch.as_tensor(X[:2], dtype=torch.float32)))
    assert recon.shape == (2, 1, 400)
    with pytest.raises(RuntimeError, match="call fit"):
        VQTokenizer(base).encode(torch.randn(1, 1, 400))


def test_tokens_grid():
    tok = Tokens(None, torch.arange(12).view(1, 12), torch.arange(4).repeat(3),
                 torch.arange(3).repeat_interleave(4))
    assert tok.grid(3).shape == (1, 3, 4)


def test_tokenizer_rejects_wrong_rate_and_shape():
    tok = STFTTokenizer(200, 100, 100, sfreq=200.0)
    with pytest.raises(SignalError, match="expects signals sampled at 200 Hz, got 256 Hz"):
        tok.check_input(torch.randn(1, 1, 1000), sfreq=256)
    with pytest.raises(SignalError, match=r"expects \(batch, channels, times\)"):
        tok.encode(torch.randn(2, 2, 2, 100))
    with pytest.raises(SignalError, match="shorter than one STFT window"):
        tok.encode(torch.randn(1, 1, 150))


def test_token_transformer_rate_handling():
    from sigformer.tokenizers import TokenTransformer

    X = np.random.default_rng(0).standard_normal((6, 1, 1280)).astype(np.float32)
    tt = TokenTransformer(preset="tiny", sfreq=256, max_epochs=1).fit(X)  # resampled to 200 Hz
    assert tt.transform(X).shape == (6, 9)
    with pytest.raises(SignalError, match="fitted on 1 channels, got 2"):
        tt.transform(np.zeros((2, 2, 1280), np.float32))


def test_token_transformer_passes_fit_params_to_the_recipe():
    from sigformer.tokenizers import TokenTransformer

    X = np.random.default_rng(0).standard_normal((4, 1, 400)).astype(np.float32)
    tt = TokenTransformer(preset="tiny", sfreq=200, max_epochs=2, batch_size=4, lr=1e-3,
                          fit_params={"lr_schedule": "released", "warmup_epochs": 0}).fit(X)
    assert tt.tokenizer_.history_.series("lr")[-1] > 1e-3  # the released, rising schedule
    assert set(tt.codebook_report_) >= {"usage", "used_codes", "dead_codes", "perplexity"}


def test_token_transformer_uses_pretrained_weights_without_training(tmp_path):
    """A pretrained tokenizer (bundle or catalogue name) is used as is when no training is
    asked for: the same ids as the saved tokenizer, and its weights untouched."""
    import torch

    from sigformer.models import create_model
    from sigformer.tokenizers import TokenTransformer

    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 2, 1000)).astype(np.float32)
    trained = TokenTransformer("tfm_tokenizer", "tiny", sfreq=200, max_epochs=1).fit(X)
    folder = trained.tokenizer_.save_pretrained(tmp_path / "tok")
    again = TokenTransformer("tfm_tokenizer", "tiny", sfreq=200, weights=str(folder)).fit(X)
    np.testing.assert_array_equal(again.transform(X), trained.transform(X))
    reference = create_model("tfm_tokenizer", "tiny", weights=folder).state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in again.tokenizer_.state_dict().items()
               if "usage" not in k)
    with pytest.raises(ValueError, match="or 0 with pretrained weights"):
        TokenTransformer("tfm_tokenizer", "tiny", sfreq=200, max_epochs=-1).fit(X)


def test_shipped_tfm_tokenizer_is_the_default_without_training():
    """max_epochs=0 and no weights: the catalogue's pretrained TFM tokenizer, as shipped."""
    from sigformer.catalogue import default_pretrained
    from sigformer.tokenizers import TokenTransformer

    name = default_pretrained("tfm_tokenizer")
    if name is None:
        pytest.skip("no pretrained TFM tokenizer in this installation's catalogue")
    X = np.random.default_rng(1).standard_normal((3, 2, 1000)).astype(np.float32)
    tt = TokenTransformer("tfm_tokenizer", sfreq=200, max_epochs=0).fit(X)
    ids = tt.transform(X)
    assert tt.tokenizer_.quantizer.num_codes == 1024 and ids.max() < 1024
    assert getattr(tt.tokenizer_, "history_", None) is None  # nothing was trained


def test_token_transformer_needs_sfreq_for_a_fixed_rate_tokenizer():
    """Without sfreq a 256 Hz window would be tokenized as if sampled at 200 Hz (more
    tokens, wrong frequencies): refused, naming sfreq, before any training."""
    from sigformer.tokenizers import TokenTransformer

    X = np.random.default_rng(0).standard_normal((4, 1, 1280)).astype(np.float32)
    with pytest.raises(SignalError, match=r"tfm_tokenizer expects 200 Hz input and sfreq is "
                                          r"not set: pass sfreq="):
        TokenTransformer(preset="tiny", max_epochs=1).fit(X)


def test_token_transformer_unknown_name_is_named_before_max_epochs():
    from sigformer.tokenizers import TokenTransformer
    from sigformer.tokenizers.frontends import UnknownTokenizerError

    X = np.zeros((2, 1, 400), np.float32)
    with pytest.raises(UnknownTokenizerError, match=r"unknown tokenizer 'tfm'"):
        TokenTransformer("tfm", sfreq=256, max_epochs=0).fit(X)


def test_stft_decode_restores_the_length_of_the_tokens_own_signal():
    """The length came from the last encode call: decoding A after encoding B gave B's."""
    tok = STFTTokenizer(n_fft=50, hop=25, center=True, magnitude=False)
    a, b = torch.randn(1, 1, 512), torch.randn(1, 1, 256)
    tokens_a = tok.encode(a)
    tok.encode(b)
    torch.testing.assert_close(tok.decode(tokens_a), a, atol=1e-4, rtol=1e-4)


def test_unit_norm_vq_codes_refuse_to_decode():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 1, 400)) * 50
    base = STFTTokenizer(n_fft=50, hop=25, center=True, magnitude=False)
    tok = VQTokenizer(base, num_codes=4).fit(X, epochs=1)
    with pytest.raises(NotImplementedError, match="unit-norm"):
        tok.decode(tok.encode(torch.as_tensor(X[:1], dtype=torch.float32)))


def test_a_tokenizer_built_with_weights_is_in_eval_mode(tmp_path):
    from sigformer.checkpoint import save_checkpoint
    from sigformer.models import create_model
    from sigformer.tokenizers import create_tokenizer

    folder = save_checkpoint(tmp_path / "tok", create_model("tfm_tokenizer", "tiny"))
    tok = create_tokenizer("tfm_tokenizer", weights=str(folder))
    assert not tok.training
    assert create_tokenizer("stft", n_fft=50, hop=25).training  # no weights: as built


def test_channel_independent_tokens_keep_their_signal_length():
    from sigformer.tokenizers.base import ChannelIndependent

    tok = ChannelIndependent(STFTTokenizer(n_fft=50, hop=25, center=True, magnitude=False))
    a, b = torch.randn(1, 2, 512), torch.randn(1, 2, 256)
    tokens_a = tok.encode(a)
    tok.encode(b)
    assert tokens_a.length == 512
    torch.testing.assert_close(tok.decode(tokens_a), a, atol=1e-4, rtol=1e-4)
