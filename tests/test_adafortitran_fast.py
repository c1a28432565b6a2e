"""AdaFortiTran's fast inference path (``set_fast()``: eval batches in chunks) computes the
reference function: outputs equal within 1e-5 on random input (bitwise in practice), training
mode untouched. Speed is measured in ``benchmarks/inference.py``, not here."""

from __future__ import annotations

import copy

import pytest
import torch

from sigformer.models import create_model


def _pair(name: str, preset: str):
    torch.manual_seed(0)
    reference = create_model(name, preset=preset).eval().set_fast(False)
    return reference, copy.deepcopy(reference).set_fast()


@pytest.mark.parametrize("name, preset, n", [
    ("adafortitran", "small", 37),  # 3 chunks of 16, the last one partial
    ("adafortitran", "tiny", 16),   # exactly one chunk
    ("adafortitran", "tiny", 5),    # fewer slots than a chunk
    ("fortitran", "tiny", 33),      # no statistics
])
def test_fast_path_equals_reference_in_eval(name, preset, n, ofdm_inputs):
    reference, fast = _pair(name, preset)
    pilots, stats = ofdm_inputs(n, reference.pilot_shape)
    with torch.inference_mode():
        expected = reference(pilots, stats)
        out = fast(pilots, stats)
    assert fast.fast and not reference.fast
    assert out.shape == expected.shape == (n, *reference.grid)
    assert torch.allclose(torch.view_as_real(out), torch.view_as_real(expected), atol=1e-5,
                          rtol=0)


def test_fast_path_chunk_size_does_not_change_the_output(ofdm_inputs):
    reference, fast = _pair("adafortitran", "tiny")
    pilots, stats = ofdm_inputs(23, reference.pilot_shape, seed=3)
    with torch.no_grad():
        expected = torch.view_as_real(reference(pilots, stats))
        for chunk in (1, 4, 7):
            fast.fast_chunk_slots = chunk
            assert torch.allclose(torch.view_as_real(fast(pilots, stats)), expected,
                                  atol=1e-5, rtol=0), chunk


def test_fast_path_keeps_gradients_in_eval(ofdm_inputs):
    reference, fast = _pair("adafortitran", "tiny")
    pilots, stats = ofdm_inputs(20, reference.pilot_shape, seed=1)
    grads = []
    for model in (reference, fast):
        model.zero_grad()
        torch.view_as_real(model(pilots, stats)).square().sum().backward()
        grads.append(model.upsampler.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_training_mode_takes_the_reference_path(ofdm_inputs):
    """Chunking would reorder the dropout draws: in training the switch changes nothing."""
    reference, fast = _pair("adafortitran", "tiny")
    reference.train()
    fast.train()
    pilots, stats = ofdm_inputs(40, reference.pilot_shape, seed=2)
    torch.manual_seed(5)
    expected = reference(pilots, stats)
    torch.manual_seed(5)
    assert torch.equal(fast(pilots, stats), expected)


def test_set_fast_false_restores_the_reference():
    _, fast = _pair("adafortitran", "tiny")
    assert fast.set_fast(False) is fast and not fast.fast


def test_fast_path_is_the_default_for_new_models():
    # default on because it is bitwise equal (the tests above) and measured faster
    assert create_model("adafortitran", preset="tiny").fast


def test_a_trace_taken_at_a_large_batch_runs_any_batch(ofdm_inputs):
    # under a tracer the fast path keeps the one-batch form: a per-chunk loop would be baked
    # into the graph at the example's batch size
    model = create_model("adafortitran", preset="tiny").eval()
    example = ofdm_inputs(40, model.pilot_shape)
    with torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
        pilots, stats = ofdm_inputs(21, model.pilot_shape, seed=5)
        torch.testing.assert_close(traced(pilots, stats), model(pilots, stats), rtol=0,
                                   atol=1e-5)


def test_only_cpu_batches_run_in_chunks():
    """Chunking keeps activations in a CPU cache; on a GPU it serialised the batch (0.28x the
    whole batch at 256 slots on an H200), so a batch on any other device runs whole."""
    model = create_model("adafortitran", preset="tiny").eval()
    n = 3 * model.fast_chunk_slots
    on_cpu = torch.zeros(n, *model.pilot_shape, dtype=torch.complex64)
    elsewhere = torch.zeros(n, *model.pilot_shape, dtype=torch.complex64, device="meta")
    assert model._runs_in_chunks(on_cpu)
    assert not model._runs_in_chunks(elsewhere)
    assert not model._runs_in_chunks(on_cpu[:model.fast_chunk_slots])
    assert not model.train()._runs_in_chunks(on_cpu)
