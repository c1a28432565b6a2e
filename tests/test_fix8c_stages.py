"""Review 12 items 4, 6, 7, 9, 11, 12: stage parameters after set_params, NotFittedError,
Du-IN's sampling rate, DBConformer's length check, speech-metric input checks, stage dtypes."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import (
    check_do_not_raise_errors_in_init_or_set_params,
    check_no_attributes_set_in_init,
)

import sigformer.stages as st
from sigformer.models import create_model
from sigformer.speech.metrics import best_permutation, pairwise_si_sdr, pit_si_sdr, si_sdr
from sigformer.validation import SignalError


@pytest.fixture
def trials():
    return np.random.default_rng(0).standard_normal((4, 3, 400))


# --- item 4: parameters are read when the stage is configured, not in __init__ ----------------

@pytest.mark.parametrize("stage", [st.BandPass(8, 30), st.Notch(), st.Resample(100),
                                   st.Standardize()], ids=lambda s: type(s).__name__)
def test_sklearn_init_and_set_params_checks_pass(stage):
    name = type(stage).__name__
    check_no_attributes_set_in_init(name, stage)
    check_do_not_raise_errors_in_init_or_set_params(name, stage)


def test_set_params_phase_zero_refuses_to_stream_like_the_constructor():
    stage = clone(st.BandPass(8, 30)).set_params(phase="zero")
    assert stage.streamable is False
    stage.configure(250, 2)
    with pytest.raises(RuntimeError, match="cannot run chunk by chunk"):
        stage.process(np.zeros((2, 10)))
    assert st.Resample(100).set_params(phase="zero").streamable is False
    assert st.Standardize().set_params(mode="recording").streamable is False
    assert st.Pipeline([st.Notch(), st.BandPass(1, 40)]).streamable is True
    assert st.Pipeline([st.Notch(), st.BandPass(1, 40).set_params(phase="zero")]).streamable \
        is False


@pytest.mark.parametrize("stage,params,match", [
    (st.BandPass(8, 30), dict(phase="bogus"), "phase must be one of"),
    (st.BandPass(8, 30), dict(l_freq=40), r"0 < l_freq < h_freq"),
    (st.BandPass(8, 30), dict(l_freq=None, h_freq=None), "needs l_freq, h_freq or both"),
    (st.Notch(), dict(phase="forward"), "phase must be one of"),
    (st.Resample(100), dict(phase="bogus"), "phase must be one of"),
    (st.Standardize(), dict(mode="bogus"), "mode must be 'running' or 'recording'"),
    (st.Standardize(), dict(bias_correction="yes"), "bias_correction must be true or false"),
])
def test_bad_parameters_from_set_params_fail_at_fit_with_the_stage_message(
        trials, stage, params, match):
    stage.set_params(**params)  # sklearn: no error here
    with pytest.raises(ValueError, match=match):
        stage.fit(trials, sfreq=250)


def test_set_params_on_a_configured_stage_redesigns_it(trials):
    stage = st.BandPass(8, 30).fit(trials, sfreq=250)
    stage.set_params(l_freq=2, order=2)
    fresh = st.BandPass(2, 30, order=2).fit(trials, sfreq=250)
    np.testing.assert_allclose(stage.transform(trials), fresh.transform(trials))
    chunk = trials[0, :, :50]
    stage.set_params(h_freq=20)
    fresh = st.BandPass(2, 20, order=2).fit(trials, sfreq=250)
    np.testing.assert_allclose(stage.process(chunk), fresh.process(chunk))
    # a bad value set on a configured stage is reported at first use, not by set_params/clone
    stage.set_params(phase="bogus")
    twin = clone(stage)
    for s in (stage, twin):
        with pytest.raises(ValueError, match="phase must be one of"):
            s.transform(trials)


def test_configs_are_still_checked_when_loaded():
    with pytest.raises(st.StageConfigError, match="phase must be one of"):
        st.stage_from_config({"stage": "notch", "phase": "bogus"})
    with pytest.raises(st.StageConfigError, match="mode must be"):
        st.stage_from_config({"stage": "standardize", "mode": "bogus"})


# --- item 7: unfitted stages raise sklearn's NotFittedError (still a RuntimeError) ------------

def test_unconfigured_stages_and_alignment_raise_not_fitted(trials):
    calls = [lambda: st.Notch().process(np.zeros((1, 10))),
             lambda: st.BandPass(8, 30).transform(trials),
             lambda: st.EuclideanAlignment().transform(trials)]
    for call in calls:
        with pytest.raises(NotFittedError) as info:
            call()
        assert isinstance(info.value, RuntimeError)  # older `except RuntimeError` still works
        assert isinstance(info.value, st.NotConfiguredError)


# --- item 6: Du-IN is a 1000 Hz model -------------------------------------------------------

@pytest.mark.parametrize("name", ["duin", "duin_vqvae", "duin_mae"])
def test_duin_refuses_other_sampling_rates(name):
    with pytest.raises(SignalError, match=r"Du-IN takes 1000 Hz.*sfreq=2048.*Resample\(1000\)"):
        create_model(name, preset="tiny", sfreq=2048)
    create_model(name, preset="tiny", sfreq=1000)  # the model's own rate is fine


def test_duin_sfreq_none_means_1000_hz():
    assert create_model("duin", preset="tiny", sfreq=None).sfreq == 1000.0


# --- item 9: DBConformer names the expected length -----------------------------------------

def test_dbconformer_refuses_a_wrong_length_with_its_message():
    m = create_model("dbconformer", preset="tiny", n_chans=4, n_times=256, n_outputs=2,
                     sfreq=128).eval()
    with pytest.raises(ValueError, match=r"\(batch, 4 channels, 256 samples\), got \(2, 4, 263\)"):
        m(torch.randn(2, 4, 263))
    assert m(torch.randn(2, 4, 256)).shape == (2, 2)
    # without learned positions other lengths are allowed, as before
    free = create_model("dbconformer", preset="tiny", n_chans=4, n_times=256, n_outputs=2,
                        sfreq=128, pos_emb=False).eval()
    assert free(torch.randn(2, 4, 263)).shape == (2, 2)


# --- item 12: speech metrics refuse NaN and name mismatched shapes ----------------------------

def test_pit_metrics_refuse_nan_inputs():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((2, 2, 300))
    est = ref + 0.1 * rng.standard_normal(ref.shape)
    assert np.isfinite(pit_si_sdr(est, ref)).all()
    est[1, 0, 7] = np.nan
    for metric in (pit_si_sdr, best_permutation, pairwise_si_sdr):
        with pytest.raises(ValueError, match="estimates holds 1 NaN"):
            metric(est, ref)
    with pytest.raises(ValueError, match="references holds 1 NaN"):
        pit_si_sdr(ref, est)


def test_si_sdr_names_mismatched_source_counts():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match=r"\(3, 200\) and \(2, 200\)"):
        si_sdr(rng.standard_normal((3, 200)), rng.standard_normal((2, 200)))
    with pytest.raises(ValueError, match=r"\(1, 3, 200\) and \(1, 2, 200\)"):
        si_sdr(torch.randn(1, 3, 200), torch.randn(1, 2, 200))
    assert si_sdr(rng.standard_normal((3, 200)), rng.standard_normal(200)).shape == (3,)


# --- item 11: stages keep the input's float dtype --------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: st.BandPass(8, 30), lambda: st.BandPass(8, 30, phase="zero"),
    lambda: st.Notch(50), lambda: st.Resample(100), lambda: st.Resample(100, phase="zero"),
    lambda: st.Standardize(), lambda: st.Standardize(mode="recording"),
    lambda: st.Pipeline([st.Notch(50), st.BandPass(1, 40), st.Resample(125)]),
], ids=["bandpass", "bandpass_zero", "notch", "resample", "resample_zero", "standardize",
        "standardize_recording", "pipeline"])
def test_stages_keep_float32(trials, make):
    x32 = trials.astype(np.float32)
    out32 = make().fit(x32, sfreq=250).transform(x32)
    out64 = make().fit(trials, sfreq=250).transform(trials)
    assert out32.dtype == np.float32 and out64.dtype == np.float64
    np.testing.assert_allclose(out32, out64, rtol=1e-3, atol=1e-3 * np.abs(out64).max())
    stage = make()
    if stage.streamable:
        stage.configure(250, 3)
        assert stage.process(x32[0, :, :100]).dtype == np.float32


def test_containers_keep_float32(trials):
    from sigformer import Epochs, Recording

    x32 = trials.astype(np.float32)
    rec = st.BandPass(8, 30).transform(Recording(x32[0], 250, ["a", "b", "c"]))
    assert rec.data.dtype == np.float32
    ep = st.Resample(125).transform(Epochs(x32, [0, 1, 0, 1], 250, ["a", "b", "c"],
                                           {"x": 0, "y": 1}))
    assert ep.data.dtype == np.float32


@pytest.mark.parametrize("mode", ["fit", "batch", "online"])
def test_euclidean_alignment_keeps_float32(trials, mode):
    x32 = trials.astype(np.float32)
    out = st.EuclideanAlignment(mode=mode).fit(x32).transform(x32)
    ref = st.EuclideanAlignment(mode=mode).fit(trials).transform(trials)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-3)
