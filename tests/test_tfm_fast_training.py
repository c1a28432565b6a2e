"""TFM tokenizer fast path in training (issue 13): the same function as the reference path.

Tolerances (float32): losses within 1e-5 relative; every parameter gradient within 1e-4 of the
largest entry of that gradient; eval embeddings and reconstructions within 1e-5 absolute; token
ids and usage counts identical. The batches span several chunks of the fast frequency path
(``FREQ_CHUNK_FRAMES`` frames), so chunking and the pre-drawn dropout masks are exercised.
"""

from __future__ import annotations

import copy

import pytest
import torch

from sigformer.models.eeg import tfm_tokenizer as tfm
from sigformer.models.eeg.tfm_tokenizer import TFMTokenizer
from sigformer.nn.vq import VectorQuantizer

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny work; see conftest


def _tokenizer(n_codes: int = 512, **kwargs) -> TFMTokenizer:
    # the released attention widths (64 wide, 8 heads of 8) with a smaller codebook and decoder
    torch.manual_seed(0)
    return TFMTokenizer(n_codes=n_codes, decoder_depth=2, **kwargs)


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch):
    """Chunks of 64 frames, so the small test batches span several of them."""
    monkeypatch.setattr(tfm, "FREQ_CHUNK_FRAMES", 64)


def _signals(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1000, generator=torch.Generator().manual_seed(seed))


def _train(tok: TFMTokenizer, x: torch.Tensor, steps: int, lr: float = 1e-3):
    """Fixed-seed pretraining steps (both views, backward, AdamW): losses and first grads."""
    tok.train()
    opt = torch.optim.AdamW(tok.parameters(), lr=lr)
    torch.manual_seed(1)  # dropout draws
    losses, first_grads = [], None
    for step in range(steps):
        out = tok.reconstruction_loss(x, generator=torch.Generator().manual_seed(step))
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        if first_grads is None:
            first_grads = {n: p.grad.clone() for n, p in tok.named_parameters()
                           if p.grad is not None}
        opt.step()
        losses.append(out["loss"].detach())
    return torch.stack(losses), first_grads


def _assert_grads_close(fast: dict, ref: dict) -> None:
    assert fast.keys() == ref.keys()
    for name, g in ref.items():
        bound = 1e-4 * float(g.abs().max()) + 1e-9
        diff = float((fast[name] - g).abs().max())
        assert diff <= bound, f"{name}: gradient differs by {diff:.3g} (bound {bound:.3g})"


def _assert_same_training(init: TFMTokenizer, x: torch.Tensor, steps: int) -> None:
    ref, fast = copy.deepcopy(init), copy.deepcopy(init).set_fast(True)
    ref_losses, ref_grads = _train(ref, x, steps)
    fast_losses, fast_grads = _train(fast, x, steps)
    torch.testing.assert_close(fast_losses, ref_losses, rtol=1e-5, atol=0)
    _assert_grads_close(fast_grads, ref_grads)
    # EMA codebook and counts: same ids every step, sums up to float summation order
    torch.testing.assert_close(fast.quantizer.codebook, ref.quantizer.codebook,
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(fast.quantizer.usage, ref.quantizer.usage, rtol=0, atol=0)
    # AdamW normalises each update, so entries with float-noise gradients may move by up to
    # lr apiece: compare the whole parameter vector instead of single entries
    p_ref = torch.cat([p.detach().flatten() for p in ref.parameters()])
    p_fast = torch.cat([p.detach().flatten() for p in fast.parameters()])
    assert float((p_fast - p_ref).norm() / p_ref.norm()) < 1e-6


def test_frequency_path_runs_in_several_chunks_here(monkeypatch):
    frames = 16 * 9  # 16 windows of 5 s, 9 frames each
    assert frames > 2 * tfm.FREQ_CHUNK_FRAMES
    calls = []
    tok = _tokenizer().set_fast(True)
    gates = tok._gates
    monkeypatch.setattr(tok, "_gates", lambda x: calls.append(x.shape[0]) or gates(x))
    tok.reconstruction_loss(_signals(16))
    assert calls == [64, 64, 16] * 2  # both views, in chunks


def test_one_training_step_equals_the_reference():
    _assert_same_training(_tokenizer(), _signals(16), steps=1)


def test_a_few_training_steps_equal_the_reference():
    _assert_same_training(_tokenizer(), _signals(16, seed=3), steps=3)


def test_catalogue_switches_train_like_the_reference():
    """The shipped tokenizer's switches: k-means initialisation and dead-code restarts. Fewer
    codes than vectors: with more codes than vectors k-means copies vectors into the codebook,
    and a code equal to a vector makes float-rounding ties that either path may break either
    way (as would the reference path run with another thread count)."""
    init = _tokenizer(n_codes=64, codebook_init="kmeans", dead_code_threshold=0.1)
    _assert_same_training(init, _signals(16, seed=5), steps=2)


def test_other_active_dropout_falls_back_and_still_matches():
    """A dropout the chunked path cannot pre-draw (here the residual one) -> whole batch,
    module dropouts, still the reference function."""
    init = _tokenizer()
    for block in init.freq_transformer.blocks:
        block.drop1.p = 0.1
    masks = tfm._attention_dropout_masks(init.train().freq_transformer, (4, 20, 64),
                                         torch.zeros(1))
    assert masks is None
    _assert_same_training(init, _signals(16, seed=7), steps=1)


def test_pre_drawn_masks_are_the_dropout_draws():
    tok = _tokenizer().train()
    shape = (150, 20, 64)
    torch.manual_seed(4)
    masks = tfm._attention_dropout_masks(tok.freq_transformer, shape, torch.zeros(1))
    torch.manual_seed(4)
    ones = torch.ones(shape)
    drawn = [block.attn.out_dropout(ones) for block in tok.freq_transformer.blocks]
    assert len(masks) == len(drawn) == 2
    for mask, expected in zip(masks, drawn):
        assert torch.equal(mask, expected)
        assert 0.15 < float((mask == 0).float().mean()) < 0.25  # p = 0.2


def test_linear_attention_backward_is_the_gradient():
    """The hand-written backward against finite differences (float64)."""
    qkv = torch.randn(3, 5, 3 * 4 * 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: tfm._LinearAttention.apply(t, 4, 0.5), (qkv,))


def test_linear_attention_equals_the_reference_module():
    tok = _tokenizer()
    attn = tok.freq_transformer.blocks[0].attn.eval()
    x = torch.randn(7, 20, 64, requires_grad=True)
    ref = attn(x)
    (ref * torch.linspace(-1, 1, 64)).sum().backward()
    ref_grad, x.grad = x.grad.clone(), None
    fast = tfm._fast_linear_attention(attn, x)
    (fast * torch.linspace(-1, 1, 64)).sum().backward()
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(x.grad, ref_grad, rtol=0, atol=1e-6)


def test_bf16_autocast_training_step_runs_on_the_fast_path():
    """Autocast takes the plain autograd formulation (mixed dtypes); the loss stays near fp32."""
    init = _tokenizer()
    x = _signals(16)
    fp32, _ = _train(copy.deepcopy(init).set_fast(True), x, steps=1)
    tok = copy.deepcopy(init).set_fast(True).train()
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = tok.reconstruction_loss(x, generator=torch.Generator().manual_seed(0))["loss"]
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in tok.parameters() if p.grad is not None)
    torch.testing.assert_close(loss.detach().float(), fp32[0], rtol=5e-2, atol=0)


def test_blocked_nearest_codes_equal_the_one_matrix_form():
    torch.manual_seed(0)
    ref = VectorQuantizer(4096, 16)  # 2**18 / 4096 = 64 rows per block
    fast = copy.deepcopy(ref)
    fast.fast = True
    z = torch.randn(5, 61, 16, requires_grad=True)  # 305 vectors: 5 blocks, the last partial
    ids = fast.nearest(z)
    assert torch.equal(ids, ref.nearest(z))
    assert ids.shape == (5, 61) and ids.grad_fn is None
