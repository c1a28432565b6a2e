"""Stage behaviour, and the streaming invariant: chunked processing equals whole-array."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst
from scipy import signal

from sigformer import ChannelSet, Recording, SignalError
from sigformer import stages as st


def _chunks(x: np.ndarray, cuts: list[int]):
    edges = [0, *sorted(c % (x.shape[1] + 1) for c in cuts), x.shape[1]]
    return [x[:, a:b] for a, b in zip(edges[:-1], edges[1:])]


def _stream(stage, x, sfreq, cuts):
    stage.configure(sfreq, [f"ch{i}" for i in range(x.shape[0])])
    out = [stage.process(c) for c in _chunks(x, cuts)]
    return np.concatenate(out, axis=1)


def _whole(stage, x, sfreq):
    stage.configure(sfreq, [f"ch{i}" for i in range(x.shape[0])])
    return stage.process(x)


STAGE_FACTORIES = {
    "bandpass": lambda sf: st.BandPass(1.0, min(40.0, sf / 3)),
    "highpass": lambda sf: st.BandPass(0.5, None, order=2),
    "notch": lambda sf: st.Notch(sf / 5),
    "resample_down": lambda sf: st.Resample(sf * 2 / 3),
    "resample_up": lambda sf: st.Resample(sf * 5 / 4),
    "resample_same": lambda sf: st.Resample(sf),
    "resample_same_padded": lambda sf: st.Resample(sf, delay_pad=3),
    "standardize": lambda sf: st.Standardize(window_s=0.5),
    "standardize_uncorrected": lambda sf: st.Standardize(window_s=0.5, bias_correction=False),
    "rereference": lambda sf: st.Rereference(),
    "adapt_channels": lambda sf: st.AdaptChannels(["ch0", "missing", "ch0"][:2]),
    "chain": lambda sf: st.Pipeline([st.Notch(sf / 5), st.BandPass(1.0, sf / 4),
                                     st.Resample(sf / 2)]),
}


@settings(max_examples=25, deadline=None)
@given(
    name=hst.sampled_from(sorted(STAGE_FACTORIES)),
    n_ch=hst.integers(1, 5),
    n=hst.integers(1, 700),
    sfreq=hst.sampled_from([100.0, 160.0, 250.0, 512.0]),
    cuts=hst.lists(hst.integers(0, 10_000), max_size=8),
    dtype=hst.sampled_from([np.float64, np.float32]),
    seed=hst.integers(0, 2**16),
)
def test_chunked_equals_whole(name, n_ch, n, sfreq, cuts, dtype, seed):
    x = np.random.default_rng(seed).standard_normal((n_ch, n)).astype(dtype)
    whole = _whole(STAGE_FACTORIES[name](sfreq), x, sfreq)
    chunked = _stream(STAGE_FACTORIES[name](sfreq), x, sfreq, cuts)
    assert chunked.shape == whole.shape
    tol = 1e-9 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(chunked, whole, rtol=tol, atol=tol)


def test_bandpass_passes_band_and_blocks_outside():
    sfreq, t = 250.0, np.arange(5000) / 250.0
    x = np.stack([np.sin(2 * np.pi * 12 * t), np.sin(2 * np.pi * 60 * t)])
    for phase in ("causal", "zero"):
        out = st.BandPass(8, 32, phase=phase).transform(Recording(x, sfreq, ["a", "b"])).data
        assert 0.9 < out[0, 1000:-1000].std() / x[0].std() < 1.1
        assert out[1, 1000:-1000].std() / x[1].std() < 0.03  # > 30 dB down almost 2x the edge


def test_zero_phase_matches_sosfiltfilt_and_refuses_streaming():
    x = np.random.default_rng(1).standard_normal((2, 800))
    stage = st.BandPass(4, 30, phase="zero")
    out = stage.transform(Recording(x, 200, ["a", "b"])).data
    sos = signal.butter(4, [4, 30], "bandpass", fs=200, output="sos")
    np.testing.assert_allclose(out, signal.sosfiltfilt(sos, x, axis=-1))
    with pytest.raises(RuntimeError, match="cannot run chunk by chunk"):
        stage.process(x[:, :10])


def test_resample_zero_phase_is_resample_poly_and_causal_is_delayed():
    sfreq = 160.0
    t = np.arange(1600) / sfreq
    x = np.sin(2 * np.pi * 7 * t)[None]
    zero = st.Resample(250, phase="zero").transform(Recording(x, sfreq, ["a"]))
    assert zero.sfreq == 250 and zero.n_times == 2500
    np.testing.assert_allclose(zero.data, signal.resample_poly(x, 25, 16, axis=-1))
    causal = st.Resample(250).transform(Recording(x, sfreq, ["a"])).data[0]
    # causal output = ideal output delayed by half the FIR: 10*max(up, down) = 250 upsampled
    # samples = 10 input samples; it ends at the last input sample (no look-ahead)
    assert len(causal) == 2499
    t_out = np.arange(len(causal)) / 250.0
    ideal = np.sin(2 * np.pi * 7 * (t_out - 10 / sfreq))
    np.testing.assert_allclose(causal[100:], ideal[100:], atol=5e-3)


def test_notch_removes_line_noise():
    sfreq, t = 250.0, np.arange(5000) / 250.0
    x = (np.sin(2 * np.pi * 50 * t) + np.sin(2 * np.pi * 10 * t))[None]
    out = st.Notch(50, phase="zero").transform(Recording(x, sfreq, ["a"])).data[0]
    np.testing.assert_allclose(out[500:-500], np.sin(2 * np.pi * 10 * t)[500:-500], atol=0.05)
    with pytest.raises(SignalError, match="notch frequency 150"):
        st.Notch(150).configure(250, ["a"])


def test_pick_rereference_standardize():
    x = np.random.default_rng(2).standard_normal((3, 5000)) * 5 + 3
    rec = Recording(x, 100, ChannelSet(("Fc5.", "C3..", "Cz..")))
    picked = st.PickChannels(["Cz", "FC5"], normalize=True).transform(rec)
    assert picked.ch_names == ["Cz", "FC5"]
    np.testing.assert_allclose(picked.data, x[[2, 0]])
    car = st.Rereference().transform(rec).data
    np.testing.assert_allclose(car.mean(0), 0, atol=1e-12)
    ref = st.Rereference(["Cz.."]).transform(rec).data
    np.testing.assert_allclose(ref[2], 0)
    z = st.Standardize(mode="recording").transform(rec).data
    np.testing.assert_allclose(z.mean(1), 0, atol=1e-9)
    np.testing.assert_allclose(z.std(1), 1, atol=1e-6)
    running = st.Standardize(window_s=5).transform(rec).data
    assert abs(running[:, 2000:].std() - 1) < 0.15 and abs(running[:, 2000:].mean()) < 0.15


def test_stage_errors_name_the_problem():
    with pytest.raises(ValueError, match="0 < l_freq < h_freq"):  # checked when configured
        st.BandPass(30, 8).configure(250, ["a"])
    with pytest.raises(SignalError, match="below Nyquist"):
        st.BandPass(8, 60).configure(100, ["a"])
    stage = st.BandPass(8, 30)
    stage.configure(250, ["a", "b"])
    with pytest.raises(SignalError, match=r"expects chunks of shape \(2, n_samples\)"):
        stage.process(np.zeros((3, 10)))
    with pytest.raises(RuntimeError, match="configure"):
        st.Notch().process(np.zeros((1, 10)))


def _mi_trials(rng, n=40, c=6, t=300):
    mixing = rng.standard_normal((c, c))
    return np.einsum("cd,ndt->nct", mixing, rng.standard_normal((n, c, t)))


def test_euclidean_alignment_whitens_mean_covariance(rng):
    X = _mi_trials(rng)
    aligned = st.EuclideanAlignment().fit_transform(X)
    mean_cov = st.trial_covariances(aligned).mean(0)
    np.testing.assert_allclose(mean_cov, np.eye(X.shape[1]), atol=1e-8)
    batch = st.EuclideanAlignment(mode="batch").fit(X[:5]).transform(X)
    np.testing.assert_allclose(batch, aligned, atol=1e-10)  # batch uses the call's own mean


def test_online_euclidean_alignment_is_incremental(rng):
    X = _mi_trials(rng, n=20)
    ea = st.EuclideanAlignment(mode="online")
    split = np.concatenate([ea.transform(X[:7]), ea.transform(X[7:])])
    whole = st.EuclideanAlignment(mode="online").transform(X)
    np.testing.assert_allclose(split, whole)
    # trial k is whitened by the mean covariance of trials 0..k
    k = 11
    ref = st.trial_covariances(X[:k + 1]).mean(0)
    expected = st.inverse_sqrtm(ref) @ X[k]
    np.testing.assert_allclose(whole[k], expected, atol=1e-10)
    with pytest.raises(SignalError, match="fitted on 6 channels, got 5"):
        st.EuclideanAlignment().fit(X).transform(X[:, :5])


@pytest.mark.parametrize("sfreq_in,sfreq_out", [(100.0, 125.0), (160.0, 250.0), (1000.0, 250.0)])
def test_resample_one_sample_chunks(sfreq_in, sfreq_out):
    # upsampling leaves outputs pending whose inputs are older than the newest sample
    x = np.random.default_rng(0).standard_normal((2, 300))
    whole = _whole(st.Resample(sfreq_out), x, sfreq_in)
    single = _stream(st.Resample(sfreq_out), x, sfreq_in, list(range(300)))
    np.testing.assert_allclose(single, whole, rtol=1e-12, atol=1e-12)


# --- configs: every registered stage round-trips through JSON ----------------------------

_TARGET = ChannelSet(("C3", "Cz", "C4", "Pz"), positions=np.eye(4, 3) * 0.08 + 0.01)
CONFIGURED_STAGES = {
    "bandpass": st.BandPass(np.float64(1.0), 30.0, order=3, phase="zero"),
    "notch": st.Notch(50.0, quality=25, harmonics=True),
    "resample": st.Resample(np.int64(125), phase="causal"),
    "rereference": st.Rereference(("C3", "C4")),
    "pick": st.PickChannels(("Cz", "C3")),
    "scale": st.Scale(1e6),
    "standardize": st.Standardize(mode="recording", window_s=2.0),
    "adapt_channels": st.AdaptChannels(_TARGET, fill="zeros", min_match=0.5),
    "bipolar": st.Bipolar((("C3", "Cz"), ("Cz", "C4"))),
}


def test_registry_names_every_yaml_stage():
    assert set(st.STAGES) == set(CONFIGURED_STAGES)
    for name, stage in CONFIGURED_STAGES.items():
        assert st.STAGES[name] is type(stage)


@pytest.mark.parametrize("name", sorted(CONFIGURED_STAGES))
def test_stage_config_round_trip(name):
    import json

    stage = CONFIGURED_STAGES[name]
    config = stage.get_config()
    assert config["stage"] == name
    assert json.loads(json.dumps(config)) == config  # JSON-serialisable as is
    rebuilt = st.stage_from_config(json.loads(json.dumps(config)))
    assert type(rebuilt) is type(stage)
    assert rebuilt.get_config() == config
    x = np.random.default_rng(5).standard_normal((4, 600))
    rec = Recording(x, 250.0, ["C3", "Cz", "C4", "Pz"])
    np.testing.assert_array_equal(rebuilt.transform(rec).data, stage.transform(rec).data)


def test_pipeline_config_round_trip_and_nesting():
    inner = st.Pipeline([st.Notch(50), st.BandPass(1, 40)])
    pipe = st.Pipeline([inner, st.Resample(125), st.Scale(1e6)], sfreq=250.0,
                       channels=["a", "b"])
    config = pipe.get_config()
    assert config["stage"] == "pipeline" and config["stages"][0]["stage"] == "pipeline"
    rebuilt = st.Pipeline.from_config(config)
    assert rebuilt.get_config() == config
    x = np.random.default_rng(6).standard_normal((2, 1000))
    np.testing.assert_array_equal(rebuilt.fit_transform(x), pipe.fit_transform(x))
    bare = st.Pipeline.from_config([{"stage": "scale", "factor": 2.0}])
    assert bare.get_config() == {"stage": "pipeline", "stages": [{"stage": "scale",
                                                                  "factor": 2.0}]}


@pytest.mark.parametrize("config,match", [
    ({"stage": "bandpas", "l_freq": 1}, r"unknown stage 'bandpas'; known stages: \["),
    ({"stage": "bandpass", "l_freq": 1, "h_freq": 30, "ordr": 4}, r"no argument\(s\) \['ordr'\]"),
    ({"stage": "scale"}, r"needs the argument\(s\) \['factor'\]"),
    ({"stage": "bandpass", "l_freq": 30, "h_freq": 8}, "0 < l_freq < h_freq"),
    ({"l_freq": 1}, "'stage' key"),
    ({"stage": "pipeline", "stages": "bandpass"}, "list of stage configs"),
])
def test_bad_stage_config_names_the_problem(config, match):
    with pytest.raises(st.StageConfigError, match=match):
        st.stage_from_config(config)


def test_fused_filter_has_no_config_but_pipelines_of_filters_do():
    pipe = st.Pipeline([st.Notch(50), st.BandPass(1, 40)])
    pipe.configure(250, ["a"])
    fused = pipe._plan[0]
    assert type(fused).__name__ == "_FusedSOS"
    with pytest.raises(st.StageConfigError, match="not a registered stage"):
        fused.get_config()
    assert [s["stage"] for s in pipe.get_config()["stages"]] == ["notch", "bandpass"]


# --- sklearn and MNE citizens ------------------------------------------------------------

def test_stages_inside_sklearn_pipeline_with_cross_validation(rng):
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import FunctionTransformer, make_pipeline

    n, sfreq = 60, 100.0
    t = np.arange(200) / sfreq
    y = np.arange(n) % 2
    X = rng.standard_normal((n, 2, 200))
    X[y == 1, 0] += 2 * np.sin(2 * np.pi * 10 * t)  # class 1: a 10 Hz rhythm on channel 0
    prep = st.Pipeline([st.BandPass(8, 12, phase="zero"), st.Resample(50, phase="zero")],
                       sfreq=sfreq)
    power = FunctionTransformer(lambda Z: np.log(Z.var(axis=-1)))
    model = make_pipeline(prep, power, LogisticRegression())
    assert cross_val_score(model, X, y, cv=3).mean() > 0.9
    Z = clone(prep).fit_transform(X)
    assert Z.shape == (n, 2, 100)
    # configure() instead of a declared rate also survives sklearn's clone
    stage = st.BandPass(8, 12)
    stage.configure(sfreq, 2)
    np.testing.assert_array_equal(clone(stage).fit_transform(X), stage.fit_transform(X))


def test_plain_array_without_rate_is_refused_with_a_hint():
    with pytest.raises(SignalError, match="sampling rate is unknown"):
        st.BandPass(8, 12).fit(np.zeros((3, 2, 100)))
    stage = st.BandPass(8, 12).fit(np.zeros((3, 2, 100)), sfreq=100)
    with pytest.raises(SignalError, match="configured for 2 channels"):
        stage.transform(np.zeros((3, 4, 100)))


def test_fitted_stage_reports_a_rate_mismatch(rng):
    rec = Recording(rng.standard_normal((2, 500)), 250.0, ["a", "b"])
    stage = st.BandPass(8, 30).fit(rec)
    other = Recording(rng.standard_normal((2, 400)), 200.0, ["a", "b"])
    with pytest.raises(SignalError, match="sampling-rate mismatch.*250 Hz.*200 Hz"):
        stage.transform(other)


def test_stages_accept_mne_raw_and_epochs(rng):
    import mne

    info = mne.create_info(["C3", "Cz", "C4"], 160.0, "eeg")
    raw = mne.io.RawArray(rng.standard_normal((3, 1600)) * 1e-5, info, verbose="error")
    raw.set_annotations(mne.Annotations([1.0, 4.0], [1.0, 1.0], ["left", "right"]))
    pipe = st.Pipeline([st.BandPass(8, 30), st.Resample(80)])
    out = pipe.transform(raw)
    assert isinstance(out, mne.io.BaseRaw)
    assert out.info["sfreq"] == 80 and out.ch_names == ["C3", "Cz", "C4"]
    assert list(out.annotations.description) == ["left", "right"]
    expected = pipe.transform(Recording.from_mne(raw)).data
    np.testing.assert_allclose(out.get_data(), expected)

    events = np.array([[200, 0, 1], [800, 0, 2]])
    epochs = mne.Epochs(raw, events, {"left": 1, "right": 2}, tmin=0, tmax=1.0,
                        baseline=None, preload=True, verbose="error")
    ep_out = st.BandPass(8, 30, phase="zero").transform(epochs)
    assert isinstance(ep_out, mne.BaseEpochs)
    np.testing.assert_array_equal(ep_out.events[:, 2], [1, 2])
    direct = signal.sosfiltfilt(signal.butter(4, [8, 30], "bandpass", fs=160.0, output="sos"),
                                epochs.get_data(), axis=-1)
    np.testing.assert_allclose(ep_out.get_data(), direct)


def test_units_follow_the_stages(rng):
    rec = Recording(rng.standard_normal((2, 500)) * 1e-5, 250.0, ["a", "b"])
    assert st.Scale(1e6).transform(rec).unit == "uV"
    assert st.Pipeline([st.Scale(1e6), st.Scale(1e-6)]).transform(rec).unit == "V"
    assert st.Standardize(mode="recording").transform(rec).unit == "a.u."
    with pytest.raises(SignalError, match="MNE objects hold volts"):
        st.Scale(1e6).transform(rec).to_mne()


def test_one_resampler_for_eeg_audio_iq_and_tfm():
    """resample_array is the Resample stage's filter: equal to scipy's resample_poly offline,
    for real and complex data, and used by audio files, IQ conditioning and TFM preparation."""
    from scipy.signal import resample_poly

    from sigformer.models.eeg.tfm_tokenizer import tfm_prepare
    from sigformer.speech.audio import resample
    from sigformer.stages import resample_array

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 1000))
    np.testing.assert_allclose(resample_array(x, 1000, 250), resample_poly(x, 1, 4, axis=-1))
    z = rng.standard_normal(600) + 1j * rng.standard_normal(600)
    np.testing.assert_allclose(resample_array(z, 3, 2), resample_poly(z, 2, 3))
    np.testing.assert_allclose(resample(x.astype(np.float32), 16000, 8000),
                               resample_poly(x, 1, 2, axis=-1), atol=1e-5)
    prepared = tfm_prepare(x, 250, resampler="polyphase")
    expected = resample_poly(x, 4, 5, axis=-1)
    np.testing.assert_allclose(prepared, expected / np.quantile(np.abs(expected), 0.95, axis=-1,
                                                                keepdims=True), rtol=1e-5)


# --- running statistics from the first sample, rate ratios, short epochs --------------------

def _old_running_standardize(x: np.ndarray, sfreq: float, window_s: float, eps: float = 1e-8):
    """What ``standardize`` (running) computed before bias correction: EW averages with the
    mean started at the first sample and the mean square at its square (variance 0)."""
    a = 1.0 - np.exp(-1.0 / (window_s * sfreq))
    zi_m, zi_s = x[:, :1] * (1 - a), x[:, :1] ** 2 * (1 - a)
    mean = signal.lfilter([a], [1.0, -(1.0 - a)], x, axis=-1, zi=zi_m)[0]
    sq = signal.lfilter([a], [1.0, -(1.0 - a)], x**2, axis=-1, zi=zi_s)[0]
    return (x - mean) / np.sqrt(np.maximum(sq - mean**2, 0.0) + eps)


def test_running_standardize_is_unit_variance_from_the_start():
    sfreq = 250.0
    x = np.random.default_rng(0).standard_normal((2, int(sfreq * 20))) * 10 + 3
    rec = Recording(x, sfreq, ["a", "b"])
    z = st.Standardize(window_s=10).transform(rec).data
    old = st.Standardize(window_s=10, bias_correction=False).transform(rec).data
    for a, b in [(1, 25), (25, 250), (250, 1000)]:
        assert 0.8 < z[:, a:b].std() < 1.25, (a, b, z[:, a:b].std())
    assert old[:, 1:25].std() > 5 and old[:, 25:250].std() > 3  # the start-up transient
    # a 4-s epoch standardised on its own (fresh state per trial) is now usable throughout
    trial = st.Standardize(window_s=10).fit(rec).transform(x[None, :, :1000])[0]
    assert 0.8 < trial.std() < 1.25


def test_a_saved_standardize_config_without_the_switch_keeps_its_old_output():
    sfreq = 100.0
    x = np.random.default_rng(1).standard_normal((3, 700)) * 4 - 2
    rec = Recording(x, sfreq, ["a", "b", "c"])
    saved = {"stage": "standardize", "mode": "running", "window_s": 2.0}  # a pre-switch bundle
    for stage in (st.stage_from_config(saved),
                  st.Pipeline.from_config([saved]).stages[0]):
        assert stage.bias_correction is False
        np.testing.assert_allclose(stage.transform(rec).data,
                                   _old_running_standardize(x, sfreq, 2.0), rtol=1e-10,
                                   atol=1e-10)
    # configs written now carry the switch; a YAML list read as new objects gets the default
    assert st.Standardize(window_s=2.0).get_config()["bias_correction"] is True
    assert st.stage_from_config(saved, legacy_defaults=False).bias_correction is True
    assert st.stage_from_config({**saved, "bias_correction": True}).bias_correction is True
    with pytest.raises(st.StageConfigError, match="bias_correction must be true or false"):
        st.stage_from_config({**saved, "bias_correction": "yes"})


def test_resample_2048_to_250_hz():
    sfreq_in, t = 2048.0, np.arange(2048 * 4) / 2048.0
    x = np.stack([np.sin(2 * np.pi * 10 * t), np.sin(2 * np.pi * 300 * t)])
    for phase in ("causal", "zero"):
        out = st.Resample(250, phase=phase).transform(Recording(x, sfreq_in, ["a", "b"]))
        assert out.sfreq == 250 and out.data.shape == (2, 1000)
        middle = out.data[:, 200:-200]
        assert 0.65 < middle[0].std() < 0.75  # 10 Hz passes (sine std 0.707)
        assert middle[1].std() < 0.01  # 300 Hz, above the new Nyquist, does not alias in
    with pytest.raises(SignalError, match="terms exceed 4096.*taps"):
        st.Resample(250).configure(4099.0, ["a"])  # 250/4099: 4099 is prime


def test_zero_phase_filter_on_a_too_short_epoch_names_the_stage_and_length():
    epochs_like = np.zeros((3, 2, 20))
    stage = st.BandPass(8, 30, phase="zero").fit(epochs_like, sfreq=250)
    with pytest.raises(SignalError, match=r"BandPass\(phase='zero'\) needs more than 27 "
                                          r"samples.*got 20.*phase='causal'"):
        stage.transform(epochs_like)
    with pytest.raises(SignalError, match=r"Notch\(phase='zero'\) needs more than 9 "):
        st.Notch(50, phase="zero").fit(epochs_like, sfreq=250).transform(epochs_like[..., :5])
    assert stage.transform(np.zeros((3, 2, 28))).shape == (3, 2, 28)  # 28 > 27 works


def test_online_alignment_starts_from_the_training_reference(rng):
    X = _mi_trials(rng, n=30)
    ref = st.trial_covariances(X).mean(0)
    cold = st.EuclideanAlignment(mode="online").transform(X[:1])
    # one trial alone is whitened by itself: identity covariance, its spatial power gone
    np.testing.assert_allclose(st.trial_covariances(cold)[0], np.eye(6), atol=1e-8)
    ea = st.EuclideanAlignment(mode="online").fit(X)
    first = ea.transform(X[:1])
    weight = 6 + 1  # n_channels + 1
    expected = st.inverse_sqrtm((weight * ref + st.trial_covariances(X[:1])[0]) / (weight + 1))
    np.testing.assert_allclose(first[0], expected @ X[0], atol=1e-10)
    assert not np.allclose(st.trial_covariances(first)[0], np.eye(6), atol=0.05)
    # reset returns to the prior; from_reference is fit from a stored covariance
    np.testing.assert_allclose(ea.reset().transform(X[:3]),
                               st.EuclideanAlignment.from_reference(ref).transform(X[:3]))
    np.testing.assert_allclose(  # prior_trials=0: start from nothing, as before
        st.EuclideanAlignment(mode="online", prior_trials=0).fit(X).transform(X[:1]), cold)
    with pytest.raises(SignalError, match="square"):
        st.EuclideanAlignment.from_reference(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="prior_trials"):
        st.EuclideanAlignment(mode="online", prior_trials=-1).fit(X)


@pytest.mark.parametrize("pad", [1, 3, 7])
def test_resample_delay_pad_delays_by_ticks_of_the_upsampled_grid(pad):
    """delay_pad zeros in front of the causal filter delay the output by delay_pad ticks of
    the upsampled grid: upsampling 2x, a tick is one output sample."""
    from sigformer.stages import Resample

    x = np.random.default_rng(0).standard_normal((1, 400))
    plain, padded = Resample(200.0), Resample(200.0, delay_pad=pad)
    for stage in (plain, padded):
        stage.configure(100.0, ("a",))
    assert padded.up == 2 and padded.delay_ticks == plain.delay_ticks + pad
    y0, y1 = plain.process(x), padded.process(x)
    n = min(y0.shape[1], y1.shape[1]) - pad
    np.testing.assert_allclose(y1[:, pad:pad + n], y0[:, :n], atol=1e-12)
    with pytest.raises(st.NotConfiguredError, match="once configured"):
        _ = Resample(200.0).up
    with pytest.raises(ValueError, match="delay_pad must be a non-negative integer"):
        Resample(200.0, delay_pad=-1).configure(100.0, ("a",))
    with pytest.raises(ValueError, match="causal"):
        Resample(200.0, phase="zero", delay_pad=1).configure(100.0, ("a",))


@pytest.mark.parametrize("phase", ["causal", "zero"])
def test_resampling_to_the_rate_the_data_has_is_the_identity(phase):
    """Resample(250) on 250 Hz data (the simulator's default rate) crashed inside scipy's
    firwin (a cut-off at Nyquist); it is the identity, with no delay."""
    x = np.random.default_rng(0).standard_normal((2, 300))
    stage = st.Resample(250, phase=phase)
    out = stage.transform(Recording(x, 250.0, ["a", "b"]))
    assert out.sfreq == 250.0
    np.testing.assert_array_equal(out.data, x)
    if phase == "causal":
        assert stage.delay_ticks == 0


def test_a_padded_identity_resampler_delays_by_its_pad():
    x = np.random.default_rng(1).standard_normal((1, 50))
    stage = st.Resample(100, delay_pad=3)
    stage.configure(100.0, ["a"])
    out = stage.process(x)
    assert stage.delay_ticks == 3
    np.testing.assert_array_equal(out[:, 3:], x[:, :-3])
    np.testing.assert_array_equal(out[:, :3], 0)
