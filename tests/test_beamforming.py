"""Beamformers against closed-form cases (plane wave in white noise: the M-fold array gain;
a directional interferer: MVDR's null), DOA estimation, estimated statistics, the
reverberant-scene comparison with the former GEV-steered MVDR, and the nn.Module transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs

from sigformer.speech import beamforming as bf

RATE = 16000


def _circular(n_mics: int, radius: float = 0.1) -> np.ndarray:
    angles = 2 * np.pi * np.arange(n_mics) / n_mics
    return radius * np.c_[np.cos(angles), np.sin(angles), np.zeros(n_mics)]


def _plane_wave(signal: np.ndarray, azimuth: float, positions: np.ndarray) -> np.ndarray:
    """Far-field plane wave from ``azimuth``: exact fractional delays in the FFT domain."""
    advance = positions @ np.array([np.cos(azimuth), np.sin(azimuth), 0.0]) / bf.SPEED_OF_SOUND
    spec = np.fft.rfft(signal)
    f = np.fft.rfftfreq(len(signal), 1 / RATE)
    return np.fft.irfft(spec[None] * np.exp(2j * np.pi * f[None] * advance[:, None]),
                        len(signal))


def _speech_like(n: int, seed: int) -> np.ndarray:
    """Band-limited noise bursts with pauses (speech-like activity, flat-ish spectrum)."""
    rng = np.random.default_rng(seed)
    x = np.convolve(rng.standard_normal(n), np.hanning(5), "same")
    gate = np.repeat(rng.random(n // 1600 + 1) > 0.35, 1600)[:n]
    gate[: n // 4] = True  # at least a quarter active
    return x * gate


def _snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    return 10 * np.log10(np.sum(signal ** 2) / np.sum(noise ** 2))


def _gain_db(weights: torch.Tensor, speech: np.ndarray, noise: np.ndarray) -> float:
    """Output SNR minus the reference microphone's SNR, the weights applied per component."""
    out_s, out_n = bf.apply_weights(weights, speech), bf.apply_weights(weights, noise)
    return _snr_db(out_s, out_n) - _snr_db(speech[0], noise[0])


def _scene(n_mics: int, azimuth: float, seed: int = 0, seconds: float = 2.0):
    rng = np.random.default_rng(seed)
    pos = _circular(n_mics)
    speech = _plane_wave(_speech_like(int(seconds * RATE), seed), azimuth, pos)
    noise = 0.5 * rng.standard_normal(speech.shape)
    return pos, speech, noise


# --- closed form: plane wave in spatially white noise --------------------------------------

@pytest.mark.parametrize("n_mics", [4, 6, 8])
def test_delay_and_sum_gives_the_m_fold_snr_gain(n_mics):
    pos, speech, noise = _scene(n_mics, azimuth=1.1)
    w = bf.delay_and_sum_weights(speech + noise, RATE, mic_positions=pos, azimuth=1.1)
    assert _gain_db(w, speech, noise) == pytest.approx(10 * np.log10(n_mics), abs=0.4)


@pytest.mark.parametrize("n_mics", [4, 8])
def test_oracle_mvdr_forms_reach_the_white_noise_array_gain(n_mics):
    """In spatially white noise MVDR = delay-and-sum: every form gets ~10 log10 M dB."""
    pos, speech, noise = _scene(n_mics, azimuth=2.4, seed=1)
    x = speech + noise
    expected = 10 * np.log10(n_mics)
    forms = {
        "souden": bf.souden_weights(x, speech=speech, noise=noise),
        "rtf-evd": bf.rtf_mvdr_weights(x, speech=speech, noise=noise),
        "rtf-power": bf.rtf_mvdr_weights(x, speech=speech, noise=noise, rtf="power"),
        "doa": bf.doa_mvdr_weights(x, RATE, pos, azimuth=2.4, noise=noise),
    }
    for name, w in forms.items():
        assert _gain_db(w, speech, noise) == pytest.approx(expected, abs=0.6), name


def test_mvdr_nulls_a_directional_interferer_and_keeps_the_target_undistorted():
    n_mics, target_az, interferer_az = 6, 0.5, 2.6
    pos = _circular(n_mics)
    rng = np.random.default_rng(2)
    speech = _plane_wave(_speech_like(2 * RATE, 2), target_az, pos)
    noise = (_plane_wave(rng.standard_normal(2 * RATE), interferer_az, pos)
             + 0.01 * rng.standard_normal((n_mics, 2 * RATE)))
    x = speech + noise
    mvdr_gain = _gain_db(bf.souden_weights(x, speech=speech, noise=noise), speech, noise)
    ds_gain = _gain_db(bf.delay_and_sum_weights(x, RATE, mic_positions=pos,
                                                azimuth=target_az), speech, noise)
    assert mvdr_gain > 20 and mvdr_gain > ds_gain + 15
    # distortionless: the speech part of the output is the reference microphone's speech
    from sigformer.speech.metrics import si_sdr

    w = bf.doa_mvdr_weights(x, RATE, pos, azimuth=target_az, noise=noise)
    assert float(si_sdr(bf.apply_weights(w, speech), speech[0])) > 25


# --- DOA ------------------------------------------------------------------------------------

@settings(max_examples=6, deadline=None)
@given(hs.floats(0.0, 2 * np.pi - 0.01), hs.sampled_from(["SRP", "MUSIC"]))
def test_doa_estimate_recovers_the_plane_wave_direction(azimuth, method):
    pos, speech, noise = _scene(6, azimuth, seconds=1.0)
    estimate = bf.estimate_doa(speech + 0.1 * noise, RATE, pos, method)
    error = np.angle(np.exp(1j * (estimate - azimuth)))
    assert abs(np.rad2deg(error)) <= 3


def test_steered_beamformers_with_an_estimated_doa_match_the_true_doa():
    pos, speech, noise = _scene(6, azimuth=4.0, seed=3)
    x = speech + noise
    true_w = bf.delay_and_sum_weights(x, RATE, mic_positions=pos, azimuth=4.0)
    est_w = bf.delay_and_sum_weights(x, RATE, mic_positions=pos)  # SRP-PHAT inside
    assert _gain_db(est_w, speech, noise) == pytest.approx(_gain_db(true_w, speech, noise),
                                                           abs=0.3)


# --- estimated statistics ------------------------------------------------------------------

def test_vad_and_mask_statistics_approach_the_oracle_gain():
    pos, speech, noise = _scene(4, azimuth=0.8, seed=4, seconds=3.0)
    x = speech + noise
    oracle = _gain_db(bf.souden_weights(x, speech=speech, noise=noise), speech, noise)
    vad = _gain_db(bf.souden_weights(x), speech, noise)  # energy VAD inside
    s_pow = bf.stft(speech[0]).abs() ** 2
    irm = (s_pow / (s_pow + bf.stft(noise[0]).abs() ** 2)).numpy()
    masked = _gain_db(bf.rtf_mvdr_weights(x, mask=irm), speech, noise)
    assert oracle - 1.5 < vad <= oracle + 0.5
    assert oracle - 1.5 < masked <= oracle + 0.5
    assert vad > 3 and masked > 3  # and well above the unprocessed microphone


def test_energy_vad_finds_the_active_frames():
    _, speech, noise = _scene(4, azimuth=0.0, seed=5)
    truth = (bf.stft(speech[0]).abs() ** 2).sum(0).numpy()
    truth = truth > 0.1 * np.median(truth[truth > 0])
    active = bf.energy_vad(speech + 0.05 * noise)
    assert np.mean(active == truth) > 0.85


# --- reverberant scene: the textbook oracle vs the former GEV-steered MVDR -------------------

def test_textbook_oracle_mvdr_beats_the_gev_mvdr_on_a_reverberant_scene():
    pytest.importorskip("pyroomacoustics")
    from sigformer.data.mixtures import synthetic_voices
    from sigformer.data.room import SceneConfig, simulate_scene
    from sigformer.speech.metrics import si_sdr

    speech = synthetic_voices(1, 1.5, RATE, seed=0)[0]
    noise = np.random.default_rng(0).standard_normal(len(speech)).astype(np.float32)
    scene = simulate_scene(speech, noise, SceneConfig(rt60=(0.5, 0.6), snr_db=(5, 5),
                                                      max_order=8), seed=1)
    x, target = scene.mixture, scene.target[0]
    interference = x - scene.direct  # late reverberation + noise
    unprocessed = float(si_sdr(x[0], target))
    gev = float(si_sdr(bf.mvdr(x, RATE, noise=scene.noise), target))
    souden = float(si_sdr(bf.souden_mvdr(x, speech=scene.direct, noise=interference), target))
    rtf = float(si_sdr(bf.rtf_mvdr(x, speech=scene.direct, noise=interference), target))
    assert souden > gev + 3 and souden > unprocessed + 3
    assert rtf == pytest.approx(souden, abs=1.0)
    pos, az = np.array(scene.info["mic_positions"]), scene.info["source_azimuth"]
    ds_true = float(si_sdr(bf.delay_and_sum(x, RATE, mic_positions=pos, azimuth=az,
                                            colatitude=scene.info["source_colatitude"]),
                           target))
    assert ds_true > unprocessed


# --- input checks and transforms -----------------------------------------------------------

def test_bad_input_is_named():
    pos, speech, noise = _scene(4, azimuth=0.0, seconds=0.5)
    x = speech + noise
    with pytest.raises(ValueError, match=r"\(n_mics, samples\), e.g. x.T"):
        bf.souden_mvdr(x.T)
    with pytest.raises(ValueError, match="at least 2 microphones"):
        bf.delay_and_sum(x[:1], RATE)
    with pytest.raises(ValueError, match="mask has shape"):
        bf.souden_mvdr(x, mask=np.ones((10, 10)))
    with pytest.raises(ValueError, match="every frame the same"):
        bf.souden_mvdr(x, vad=np.ones(bf.stft(x[0]).shape[-1], bool))
    with pytest.raises(ValueError, match="mic_positions must be"):
        bf.delay_and_sum(x, RATE, mic_positions=pos[:3], azimuth=0.0)
    with pytest.raises(ValueError, match="unknown DOA method"):
        bf.estimate_doa(x, RATE, pos, "NOPE")
    with pytest.raises(ValueError, match="needs mic_positions"):
        bf.delay_and_sum(x, RATE, azimuth=0.3)
    broken = x.copy()
    broken[2, 100] = np.nan  # one NaN used to turn every output sample into NaN
    with pytest.raises(ValueError, match=r"x holds 1 NaN/Inf value\(s\), the first at "
                                         r"microphone 2, sample 100; expected finite audio"):
        bf.souden_mvdr(broken, speech=speech, noise=noise)
    with pytest.raises(ValueError, match=r"speech holds 1 NaN/Inf"):
        bf.souden_mvdr(x, speech=np.where(broken == broken, speech, np.inf), noise=noise)


def test_transform_modules_match_the_functions():
    from sigformer.speech.transforms import DelayAndSum, SoudenMVDR

    pos, speech, noise = _scene(4, azimuth=1.0, seconds=0.5)
    x = speech + noise
    module = DelayAndSum(RATE, mic_positions=pos, azimuth=1.0)
    out = module(torch.as_tensor(x, dtype=torch.float32))
    assert torch.is_tensor(out) and out.shape == (x.shape[1],)
    np.testing.assert_allclose(out.numpy(), bf.delay_and_sum(x, RATE, mic_positions=pos,
                                                             azimuth=1.0), atol=1e-5)
    batch = SoudenMVDR()(np.stack([x, x]))
    assert isinstance(batch, np.ndarray) and batch.shape == (2, x.shape[1])
    np.testing.assert_allclose(batch[1], bf.souden_mvdr(x), atol=1e-5)


def test_old_rate_keyword_still_works_with_a_warning():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 4000))
    positions = np.array([[0.05 * i, 0.0, 0.0] for i in range(4)])
    new = bf.delay_and_sum(x, sample_rate=8000, mic_positions=positions, azimuth=0.3)
    with pytest.warns(FutureWarning, match="renamed sample_rate"):
        old = bf.delay_and_sum(x, rate=8000, mic_positions=positions, azimuth=0.3)
    np.testing.assert_array_equal(new, old)
    with pytest.raises(TypeError, match="both rate= and sample_rate="):
        bf.delay_and_sum(x, rate=8000, sample_rate=8000)
