"""IQ family bundles (trained at a fixed symbol length, ``extra["target_sps"]``) in the one
streaming runtime: ``--sps`` resamples the stream to the training symbol length; without it
the runtime says so instead of guessing; bad values are refused."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from repo_scripts import cli_json

from sigformer.bundle import Bundle
from sigformer.models import create_model
from sigformer.spec import SignalSpec
from sigformer.streaming.app import OnlineSettings, build_online


@pytest.fixture()
def capture(tmp_path) -> Path:
    from sigformer.data.sigmf_io import write_sigmf

    rng = np.random.default_rng(3)
    iq = (rng.standard_normal(128 * 40) + 1j * rng.standard_normal(128 * 40)).astype(np.complex64)
    return Path(write_sigmf(tmp_path / "cap", iq, sample_rate=1e6))


def _stream(capsys, bundle, capture, *extra) -> dict:
    return cli_json(capsys, ["stream", str(bundle), "--source", f"sigmf:{capture}", *extra])


def test_sps_resamples_the_stream_to_the_training_symbol_length(capsys, family_bundle,
                                                                 capture):
    # 32 samples per symbol in the stream, 8 in training: a quarter of the samples, so a
    # quarter of the 40 frames the raw stream would give
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # stating --sps leaves nothing to warn about
        resampled = _stream(capsys, family_bundle, capture, "--sps", "32")
    raw = _stream(capsys, family_bundle, capture, "--sps", "8")
    assert raw["predictions"] == 40
    assert resampled["predictions"] in (9, 10)


def test_without_sps_the_stream_runs_as_it_comes_and_says_so(family_bundle):
    with pytest.warns(Warning, match="samples per symbol"):
        online = build_online(family_bundle, OnlineSettings())
    assert online.symbol_factor is None


@pytest.mark.parametrize("sps, message", [(0.0, "> 0"), (-4.0, "> 0"), (float("nan"), "> 0")])
def test_bad_sps_is_refused(family_bundle, sps, message):
    with pytest.raises(ValueError, match=message):
        build_online(family_bundle, OnlineSettings(samples_per_symbol=sps))


def test_sps_for_a_bundle_without_a_symbol_length_is_refused(tmp_path):
    spec = SignalSpec.iq(1.0, 128)
    bundle = Bundle(model=create_model("kd_cnn", n_outputs=2).eval(), task="classify",
                    input_spec=spec, model_spec=spec, labels=["a", "b"],
                    extra={"normalization": "rms", "rate_agnostic": True})
    with pytest.raises(ValueError, match="target_sps"):
        build_online(bundle, OnlineSettings(samples_per_symbol=8.0))
