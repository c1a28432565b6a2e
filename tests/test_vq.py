"""VectorQuantizer: what each loss setting optimises (autograd), fast vs reference path,
autocast safety and codebook health reporting."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sigformer.nn.vq import VectorQuantizer
from sigformer.tokenizers import codebook_report


def _grad_of_loss(vq: VectorQuantizer, z: torch.Tensor):
    z = z.clone().requires_grad_(True)
    out = vq(z)
    (grad,) = torch.autograd.grad(out.loss, z)
    q = vq.lookup(out.indices).detach()
    return out, grad, q


@pytest.mark.parametrize("beta", [1.0, 0.25, 2.0])
def test_codebook_term_after_ste_cancels_commitment(beta):
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4, beta=beta, codebook_loss_after_ste=True).eval()
    with torch.no_grad():
        vq.codebook.normal_()
    z = torch.randn(32, 4)
    out, grad, q = _grad_of_loss(vq, z)
    mse = float(((z - q) ** 2).mean())
    assert float(out.loss.detach()) == pytest.approx((1 + beta) * mse, rel=1e-5)
    # the codebook term's gradient (q - z) cancels the commitment's beta (z - q)
    expected = 2 * (beta - 1) * (z - q) / z.numel()
    torch.testing.assert_close(grad, expected, atol=1e-7, rtol=1e-5)
    if beta == 1.0:
        assert float(grad.abs().max()) < 1e-8  # the release: no VQ gradient at all
    assert not vq.codebook.requires_grad  # the codebook only moves by EMA


def test_commitment_only_pulls_towards_codes():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4, beta=0.5).eval()
    with torch.no_grad():
        vq.codebook.normal_()
    z = torch.randn(32, 4)
    out, grad, q = _grad_of_loss(vq, z)
    assert float(out.loss.detach()) == pytest.approx(0.5 * float(((z - q) ** 2).mean()),
                                                     rel=1e-5)
    torch.testing.assert_close(grad, 2 * 0.5 * (z - q) / z.numel())


@given(n=st.integers(1, 300), k=st.integers(1, 64), seed=st.integers(0, 1000))
@settings(max_examples=30, deadline=None)
def test_fast_counting_equals_one_hot(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 3, generator=g)
    ref = VectorQuantizer(k, 3, init="unit").eval()
    fast = VectorQuantizer(k, 3, init="unit", fast=True).eval()
    fast.load_state_dict(ref.state_dict())
    a, b = ref(z), fast(z)
    assert torch.equal(a.indices, b.indices)
    assert torch.equal(ref.usage, fast.usage)
    torch.testing.assert_close(a.perplexity, b.perplexity)


@pytest.mark.parametrize("ema,l2", [("average", False), ("normalized_mean", True)])
def test_fast_ema_update_matches_reference(ema, l2):
    torch.manual_seed(0)
    ref = VectorQuantizer(32, 8, ema=ema, l2_normalize=l2, init="unit", decay=0.8,
                          dead_code_threshold=0.0).train()
    fast = VectorQuantizer(32, 8, ema=ema, l2_normalize=l2, init="unit", decay=0.8,
                           fast=True).train()
    fast.load_state_dict(ref.state_dict())
    for _ in range(5):
        z = torch.randn(200, 8)
        assert torch.equal(ref(z).indices, fast(z).indices)
    torch.testing.assert_close(fast.codebook, ref.codebook, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fast.counts, ref.counts)


def test_autocast_does_not_change_code_choice():
    torch.manual_seed(0)
    vq = VectorQuantizer(512, 16, init="unit").eval()
    z = torch.randn(256, 16)
    plain = vq(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = vq(z)
        low = vq(z.bfloat16())  # a bf16 input is quantised in float32 too
    assert torch.equal(auto.indices, plain.indices)
    assert auto.quantized.dtype == torch.float32 and low.quantized.dtype == torch.float32
    assert torch.equal(low.indices, vq(z.bfloat16().float()).indices)


def test_codebook_report_counts_dead_codes():
    vq = VectorQuantizer(8, 2, init="unit").eval()
    vq.reset_usage()
    codes = vq.codebook.detach()
    vq(codes[[0, 0, 1, 2]])  # three codes in use, 1:1 nearest neighbours of themselves
    report = codebook_report(vq)
    assert report["codebook_size"] == 8 and report["used_codes"] == 3
    assert report["dead_codes"] == 5 and report["usage"] == pytest.approx(3 / 8)
    p = torch.tensor([0.5, 0.25, 0.25])
    assert report["perplexity"] == pytest.approx(float(torch.exp(-(p * p.log()).sum())))
