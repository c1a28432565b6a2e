"""The export parity probe of an amplitude_input TFM classifier exercises the amplitude path
inside its linear range, for a model calibrated in any unit (review 11, finding 6)."""

from __future__ import annotations

import math

import pytest
import torch

from sigformer.export import deployable
from sigformer.models import create_model
from sigformer.models.eeg.tfm_tokenizer import channel_scale


@pytest.mark.parametrize("mean, std", [(3.5, 0.8), (-10.3, 0.5)])  # calibrated in uV, in V
def test_amplitude_probe_sits_inside_the_linear_range(mean, std):
    torch.manual_seed(0)
    model = create_model("tfm_classifier", preset="tiny", n_outputs=2, amplitude_input=True)
    amplitude = model.amplitude
    amplitude.mean.fill_(mean)
    amplitude.var.fill_(std ** 2)
    amplitude.count.fill_(float(amplitude.calibration))  # calibrated: statistics frozen
    (probe,) = deployable(model.eval(), batch=2).example_inputs
    z = amplitude.normalized(channel_scale(probe).squeeze(-1))
    assert z.abs().max() < 0.5 * amplitude.clip  # never on the clipped, constant branch
    assert z.max() - z.min() > 1.0  # channels probe different points of the linear range
    assert math.isclose(float(channel_scale(probe).log().mean()), mean, abs_tol=0.05)


def test_probe_of_the_published_model_is_unchanged():
    torch.manual_seed(0)
    model = create_model("tfm_classifier", preset="tiny", n_outputs=2).eval()
    (probe,) = deployable(model, batch=2).example_inputs
    assert 1.0 < float(channel_scale(probe).mean()) < 3.0  # a unit-amplitude randn probe
