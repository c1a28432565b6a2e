"""Review of the speech signal processing (fifteenth session): MVDR outputs that follow the
input scale, clear errors for bad masks / VADs / noise / reference / short signals, and SDR of
an exact estimate."""

from __future__ import annotations

import numpy as np
import pytest

from sigformer.speech import beamforming as bf
from sigformer.speech.metrics import sdr

FS, M = 16000, 4
POS = np.array([[0.05 * np.cos(2 * np.pi * m / M), 0.05 * np.sin(2 * np.pi * m / M)]
                for m in range(M)])
AZ = np.deg2rad(60)


def plane_wave_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gated noise-like speech from AZ on a 4-mic circle, white noise: (x, speech, noise)."""
    rng = np.random.default_rng(seed)
    s = rng.standard_normal(FS) * np.repeat(rng.random(FS // 400) > 0.5, 400)
    spectrum, freqs = np.fft.rfft(s), np.fft.rfftfreq(FS, 1 / FS)
    advance = POS @ np.array([np.cos(AZ), np.sin(AZ)]) / bf.SPEED_OF_SOUND
    speech = np.stack([np.fft.irfft(spectrum * np.exp(2j * np.pi * freqs * a), FS)
                       for a in advance])
    noise = 0.3 * rng.standard_normal((M, FS))
    return speech + noise, speech, noise


@pytest.mark.parametrize("method", ["rtf_vad", "rtf_oracle", "rtf_power", "doa_mpdr",
                                    "doa_noise"])
def test_mvdr_output_follows_the_input_scale(method):
    """A linear beamformer of k * x is k times its output of x (int16-range input drove the
    RTF / steered MVDR weights towards zero: -87 to -101 dB at k = 32768)."""
    x, speech, noise = plane_wave_scene()

    def run(k: float) -> np.ndarray:
        if method == "rtf_vad":
            return bf.rtf_mvdr(k * x)
        if method == "rtf_oracle":
            return bf.rtf_mvdr(k * x, speech=k * speech, noise=k * noise)
        if method == "rtf_power":
            return bf.rtf_mvdr(k * x, speech=k * speech, noise=k * noise, rtf="power")
        if method == "doa_mpdr":
            return bf.doa_mvdr(k * x, FS, POS, azimuth=AZ)
        return bf.doa_mvdr(k * x, FS, POS, azimuth=AZ, noise=k * noise)

    base = run(1.0)
    for k in (1e-3, 1e3, 32768.0):  # quiet float audio to int16 ranges
        np.testing.assert_allclose(run(k) / k, base, rtol=1e-6, atol=1e-9 * np.abs(base).max())


def test_mvdr_gain_in_white_noise_is_still_the_number_of_mics():
    x, speech, noise = plane_wave_scene()
    weights = bf.doa_mvdr_weights(x, FS, POS, azimuth=AZ, noise=noise)
    out_s, out_n = bf.apply_weights(weights, speech), bf.apply_weights(weights, noise)
    gain = (np.sum(out_s ** 2) / np.sum(out_n ** 2)) / (np.sum(speech[0] ** 2)
                                                          / np.sum(noise[0] ** 2))
    assert gain == pytest.approx(M, rel=0.1)


def test_a_nan_in_the_mask_is_refused():
    x, _, _ = plane_wave_scene()
    frames = bf.stft(x).shape[-1]
    mask = np.full((bf.N_FFT // 2 + 1, frames), 0.5)
    mask[10, 5] = np.nan
    with pytest.raises(ValueError, match=r"mask holds 1 NaN/Inf value"):
        bf.souden_mvdr(x, mask=mask)
    with pytest.raises(ValueError, match=r"3 per-microphone masks for 4 microphones"):
        bf.souden_mvdr(x, mask=np.full((3, bf.N_FFT // 2 + 1, frames), 0.5))


def test_doa_vad_is_checked():
    x, _, _ = plane_wave_scene()
    frames = bf.stft(x, bf.N_FFT, bf.N_FFT // 2).shape[-1]
    with pytest.raises(ValueError, match=rf"vad has shape \(3,\); expected \({frames},\)"):
        bf.estimate_doa(x, FS, POS, vad=np.ones(3, bool))
    with pytest.raises(ValueError, match="marks no frame active"):
        bf.estimate_doa(x, FS, POS, vad=np.zeros(frames, bool))
    assert np.rad2deg(bf.estimate_doa(x, FS, POS, vad=np.ones(frames, bool))) == \
        pytest.approx(60, abs=2)


def test_noise_of_another_array_reference_and_short_signals_are_refused():
    x, _, noise = plane_wave_scene()
    with pytest.raises(ValueError, match="noise has 3 microphones, x 4"):
        bf.doa_mvdr(x, FS, POS, azimuth=AZ, noise=noise[:3])
    with pytest.raises(ValueError, match="noise has 3 microphones, x 4"):
        bf.mvdr(x, FS, noise=noise[:3])
    with pytest.raises(ValueError, match=r"reference microphone 4 does not exist"):
        bf.rtf_mvdr(x, reference=4)
    with pytest.raises(ValueError, match=r"reference microphone 7 does not exist"):
        bf.doa_mvdr(x, FS, POS, azimuth=AZ, reference=7)
    with pytest.raises(ValueError, match=r"has 200 samples; a 512-point STFT needs more "
                                         r"than 256"):
        bf.souden_mvdr(x[:, :200])


def test_sdr_of_an_exact_or_scaled_estimate_is_infinite_or_huge():
    """fast_bss_eval fails (zero-size reduction) on some exact estimates: those pairs are inf;
    others it scores > 100 dB itself. Never an exception."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((3, 16000))
    for est, r in ((ref[:1], ref[:1]), (0.5 * ref[0], ref[0]),
                   (ref[:1].astype(np.float32), ref[:1].astype(np.float32))):
        assert sdr(est, r)[0] > 100
    mixed = np.stack([ref[0], ref[2] + 0.1 * rng.standard_normal(16000),
                      ref[1] + 0.1 * rng.standard_normal(16000)])
    values = sdr(mixed, ref)
    assert values[0] > 100 and (values[1:] < 0).all()  # pairs as given, not re-permuted
    assert 20 < sdr(np.roll(ref[0], 3), ref[0])[0] < 100


def test_a_failing_perceptual_metric_keeps_the_rows_si_sdr(monkeypatch):
    """PESQ finding no utterance left out PESQ only; before, the whole row (its SI-SDR too)
    was dropped as 'silent', so systems whose worst scenes failed PESQ got a better mean."""
    import sigformer.speech.metrics as metrics
    from sigformer.speech.pipeline import mean_of_rows, perceptual_scores

    def no_utterance(**_):
        raise metrics.SpeechMetricError("PESQ found no utterance")

    monkeypatch.setattr(metrics, "pesq_score", no_utterance)
    rng = np.random.default_rng(1)
    reference = rng.standard_normal(16000)
    estimate = reference + rng.standard_normal(16000)
    notes: list[str] = []
    row = perceptual_scores(estimate, reference, 16000, "scene 0", notes.append)
    assert "pesq" not in row and 0 < row["stoi"] <= 1
    assert any("scene 0: pesq undefined" in n for n in notes)
    rows = [{"si_sdr": -30.0, **row}, {"si_sdr": 10.0, "pesq": 3.0, "stoi": 0.9},
            {"silent": True}]
    summary = mean_of_rows(rows)
    assert summary["si_sdr"] == pytest.approx(-10.0)  # the failing scene still counts
    assert summary["pesq"] == 3.0 and summary["pesq_undefined"] == 1.0
    assert summary["silent_estimates"] == 1.0 and "stoi_undefined" not in summary


def test_separation_keeps_its_si_sdr_when_pesq_is_undefined(monkeypatch):
    import sigformer.speech.metrics as metrics

    def no_utterance(**_):
        raise metrics.SpeechMetricError("PESQ found no utterance")

    monkeypatch.setattr(metrics, "pesq_score", no_utterance)
    rng = np.random.default_rng(2)
    refs = rng.standard_normal((2, 8000))
    est = refs + 0.3 * rng.standard_normal((2, 8000))
    row = metrics.evaluate_separation(est, refs, refs.sum(0), 8000, skip_undefined=True)
    assert "pesq" not in row and row["si_sdr"] > 5 and 0 < row["stoi"] <= 1
    with pytest.raises(metrics.SpeechMetricError):
        metrics.evaluate_separation(est, refs, refs.sum(0), 8000)
