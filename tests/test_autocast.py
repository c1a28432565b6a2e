"""bf16 autocast on CPU: the models that build complex tensors (``torch.complex``) or run
``istft`` take the autocast outputs (bf16) by casting them to float32 first (issue 13: they
crashed with 'Expected both inputs to be Half, Float or Double').

Tolerances. bf16 keeps 8 significant bits (unit roundoff 2^-9, about 0.2 %); under autocast
every matmul/conv rounds its inputs and weights to it, so the output error grows with depth.
The bounds are relative L2 errors ``||y_bf16 - y_fp32|| / ||y_fp32||`` over the batch:

* ``ofdm_linear`` (one bf16 GEMM over 80 pilots): 1 % (measured 0.28 %).
* DeFTAN-II ``tiny`` (encoder, attention blocks, decoder, then istft): 3 % (measured 0.8-1.3 %).
* AdaFortiTran / FortiTran ``tiny``: 5 % (measured 0.3-0.6 %, but up to 3.5 % per slot for
  ``small`` at Doppler near 1,000 Hz: the statistics enter raw - Hz, ns - and lose precision
  in bf16 before the adapter MLPs).

Each test also asserts the error is non-zero, so it fails if autocast stopped reaching the
network (and the cast would no longer be exercised).
"""

from __future__ import annotations

import pytest
import torch

from sigformer.models import create_model
from sigformer.tokenizers.base import Tokens
from sigformer.tokenizers.simple import STFTTokenizer


def _relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = (torch.view_as_real(t) if t.is_complex() else t for t in (out, ref))
    return float((out - ref).norm() / ref.norm())


def _fp32_and_bf16(model: torch.nn.Module, *inputs) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        ref = model(*inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(*inputs)
    return ref, out


# name, smallest preset, takes statistics, relative L2 bound (see the module docstring)
OFDM_CASES = [
    ("adafortitran", "tiny", True, 0.05),
    ("fortitran", "tiny", False, 0.05),
    ("ofdm_linear", "repo_default", False, 0.01),
]


@pytest.mark.parametrize("name, preset, adaptive, bound", OFDM_CASES)
def test_ofdm_estimators_run_under_bf16_autocast(name, preset, adaptive, bound, ofdm_inputs):
    torch.manual_seed(0)
    model = create_model(name, preset=preset).eval()
    pilots, stats = ofdm_inputs(6, model.pilot_shape)
    inputs = (pilots, stats) if adaptive else (pilots,)
    ref, out = _fp32_and_bf16(model, *inputs)
    assert out.dtype == torch.complex64 and out.shape == ref.shape == (6, *model.grid)
    assert torch.isfinite(torch.view_as_real(out)).all()
    assert 0 < _relative_error(out, ref) <= bound


def test_adafortitran_fast_path_runs_under_bf16_autocast(ofdm_inputs):
    """The chunked fast path concatenates complex chunks built from bf16 network outputs."""
    torch.manual_seed(0)
    model = create_model("adafortitran", preset="tiny").eval()
    pilots, stats = ofdm_inputs(2 * model.fast_chunk_slots + 3, model.pilot_shape)
    ref, out = _fp32_and_bf16(model.set_fast(), pilots, stats)
    assert out.dtype == torch.complex64 and out.shape == ref.shape
    assert 0 < _relative_error(out, ref) <= 0.05


@pytest.mark.parametrize("n_samples", [2048, 2000])  # 2000: the unpadding after istft
def test_deftan2_istft_path_runs_under_bf16_autocast(n_samples):
    torch.manual_seed(0)
    model = create_model("deftan2", preset="tiny").eval()
    decoded = []
    hook = model.decoder.register_forward_hook(lambda m, i, o: decoded.append(o.dtype))
    x = torch.randn(2, model.n_mics, n_samples, generator=torch.Generator().manual_seed(1))
    ref, out = _fp32_and_bf16(model, x)
    hook.remove()
    # the decoder really produced bf16 (what istft cannot take) and the wave is float32
    assert decoded == [torch.float32, torch.bfloat16]
    assert out.dtype == torch.float32 and out.shape == ref.shape == (2, 1, n_samples)
    assert torch.isfinite(out).all()
    assert 0 < _relative_error(out, ref) <= 0.03


def test_stft_tokens_from_bf16_decode_to_float32():
    """Embeddings a bf16 model produced (e.g. a transformer over STFT tokens) decode back."""
    tokenizer = STFTTokenizer(n_fft=64, hop=32, magnitude=False, center=True)
    x = torch.randn(2, 3, 512, generator=torch.Generator().manual_seed(0))
    tokens = tokenizer.encode(x)
    exact = tokenizer.decode(tokens)
    assert torch.allclose(exact, x, atol=1e-5)  # the fp32 round trip is unchanged
    half = Tokens(tokens.embeddings.to(torch.bfloat16), None, time_index=tokens.time_index,
                  channel_index=tokens.channel_index)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tokenizer.decode(half)
    assert out.dtype == torch.float32 and out.shape == x.shape
    # bf16 rounds each STFT coefficient by <= 2^-9 relative; istft is linear
    assert 0 < _relative_error(out, x) <= 0.01
