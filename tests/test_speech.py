"""Speech: MossFormer, PIT SI-SDR and metrics, chunked/streaming inference, audio I/O checks,
mixture maker, room simulation and the `separate` CLI."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs

from sigformer.data.io import DataError
from sigformer.data.mixtures import MixtureSet, make_mixture, write_mixtures
from sigformer.models import create_model
from sigformer.models.speech.mossformer import MossFormer
from sigformer.speech.audio import AudioWarning, check_audio, read_audio, write_audio
from sigformer.speech.chunked import ChunkedProcessor, best_alignment, process_array
from sigformer.speech.metrics import (
    best_permutation,
    pit_loss,
    reorder,
    sdr,
    si_sdr,
    si_sdr_improvement,
)

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
TINY = dict(n_filters=64, depth=2, group_size=32, query_key_dim=32)
needs_speech = pytest.mark.skipif(not SPEECH.is_dir(), reason="speech recordings not found in "
                                  "../shared/data/speech (real-data test)")


def _voiced(n: int, f0: float, rate: int = 8000, seed: int = 0) -> np.ndarray:
    """A harmonic 'voice' with a syllable envelope (stand-in when no recordings exist)."""
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 8))
    return (x * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + seed))).astype(np.float32)


# --- MossFormer ---------------------------------------------------------------------------

def test_mossformer_parameter_counts_match_reference():
    model = MossFormer()
    assert sum(p.numel() for p in model.parameters()) == 42_101_850  # 42.10 M (reference)
    block = model.masker.blocks[0]
    assert sum(p.numel() for p in block.parameters()) + model.masker.rotary.freqs.numel() \
        == 1_687_827
    assert sum(p.numel() for p in model.encoder.parameters()) == 8_192
    assert sum(p.numel() for p in model.decoder.parameters()) == 8_192
    assert sum(p.numel() for p in MossFormer(n_src=3).parameters()) == 42_364_506


@pytest.mark.parametrize("length", [16, 99, 800, 1203])
def test_mossformer_output_length_equals_input(length):
    model = create_model("mossformer", "tiny").eval()
    out = model(torch.randn(2, length))
    assert out.shape == (2, 2, length)
    assert model(torch.randn(1, 1, length)).shape == (1, 2, length)


@pytest.mark.parametrize("length", [99, 1203])
def test_mossformer_pad_end_separates_the_last_samples(length):
    torch.manual_seed(0)
    published = create_model("mossformer", "tiny").eval()
    padded = create_model("mossformer", "tiny", pad_end=True).eval()
    padded.load_state_dict(published.state_dict())
    x = torch.randn(1, length)
    with torch.no_grad():
        a, b = published(x), padded(x)
    tail = (length - 16) % 8  # samples the published encoder never sees
    assert tail and torch.all(a[..., length - tail:] == 0)  # the official module's zeros
    assert torch.all(b[..., length - tail:].abs().sum(-1) > 0)
    # the same weights on the mixture padded to whole hops, trimmed back (the masker sees
    # the whole sequence, so one more frame changes every output sample a little)
    with torch.no_grad():
        ref = published(torch.nn.functional.pad(x, (0, 8 - tail)))[..., :length]
    torch.testing.assert_close(b, ref)


def test_mossformer_bad_input():
    model = create_model("mossformer", "tiny")
    with pytest.raises(ValueError, match="mono audio"):
        model(torch.randn(1, 2, 800))
    with pytest.raises(ValueError, match="at least 16"):
        model(torch.randn(1, 8))
    with pytest.raises(ValueError, match="8000 Hz audio, got 16000"):
        model.check_rate(16000)


def test_tiny_mossformer_overfits_a_mixture():
    """The PIT SI-SNR objective trains the whole model (real speech when available)."""
    torch.manual_seed(0)
    if SPEECH.is_dir():
        a, _ = read_audio(SPEECH / "clean" / "dev1_female4_src_1.wav", 8000)
        b, _ = read_audio(SPEECH / "clean" / "dev1_male4_src_1.wav", 8000)
        srcs = [a[0, 8000:12000], b[0, 8000:12000]]
    else:
        srcs = [_voiced(4000, 210, seed=1), _voiced(4000, 110, seed=2)]
    mix, refs, _ = make_mixture(srcs, overlap=1.0)
    model = MossFormer(**TINY, dropout=0.0)
    x, r = torch.tensor(mix)[None], torch.tensor(refs)[None]
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    for _ in range(130):
        loss = pit_loss(model(x), r)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        est = model(x).double()
    _, perm = best_permutation(est, r.double())
    improvement = si_sdr_improvement(reorder(est, perm)[0], r[0].double(), x[0].double())
    assert improvement.mean() > 10


# --- metrics --------------------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(hs.floats(0.1, 10), hs.floats(-1, 1), hs.integers(0, 1000))
def test_si_sdr_ignores_scale_and_offset(gain, offset, seed):
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(400)
    est = ref + 0.1 * rng.standard_normal(400)
    base = float(si_sdr(est, ref))
    assert float(si_sdr(gain * est + offset, ref)) == pytest.approx(base, abs=1e-4)  # eps only


def test_pit_recovers_the_permutation_and_loss_is_swap_invariant():
    rng = np.random.default_rng(0)
    refs = torch.tensor(rng.standard_normal((1, 3, 800)))
    est = refs[:, [2, 0, 1]] + 0.01 * torch.randn(1, 3, 800, dtype=torch.float64)
    score, perm = best_permutation(est, refs)
    assert perm[0].tolist() == [1, 2, 0] and score.item() > 35
    torch.testing.assert_close(reorder(est, perm), est[:, [1, 2, 0]])
    torch.testing.assert_close(pit_loss(est, refs), pit_loss(est[:, [1, 0, 2]], refs))
    mix = refs.sum(1)
    assert si_sdr_improvement(refs[0], refs[0], mix[0]).min() > 50
    assert si_sdr_improvement(mix[0].expand(3, -1), refs[0], mix[0]).abs().max() < 1e-6
    np.testing.assert_array_less(20, sdr(est[0, [1, 2, 0]].numpy(), refs[0].numpy()))
    with pytest.raises(ValueError, match="batch, n_src, samples"):
        best_permutation(est[0], refs[0])


@pytest.mark.parametrize("which", ["estimate", "reference"])
def test_si_sdr_and_sdr_refuse_a_silent_signal(which):
    """A silent estimate scored 0 dB (torchmetrics' guard), so a model that outputs silence
    showed an SI-SDR improvement at negative input SNRs; a silent reference scored -196 dB."""
    from sigformer.speech.metrics import SpeechMetricError

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 800))
    mix = ref + 10 ** (5 / 20) * rng.standard_normal((2, 800))  # -5 dB
    est = ref + 0.1 * rng.standard_normal((2, 800))
    if which == "estimate":
        est[1] = 0.0
    else:
        ref[1] = 3.0  # constant: silent once the mean is removed
    with pytest.raises(SpeechMetricError, match=f"the {which} is silent at \\[1\\]"):
        si_sdr(est, ref)
    with pytest.raises(SpeechMetricError, match=f"the {which} is silent"):
        si_sdr_improvement(est, ref, mix)
    with pytest.raises(SpeechMetricError, match=f"the {which}s are silent"):
        best_permutation(est[None], ref[None])
    if which == "estimate":
        with pytest.raises(SpeechMetricError, match="the estimate is silent"):
            sdr(est, ref)
    # a training loss keeps its guard: no error, a finite value
    assert np.isfinite(si_sdr(est, ref, check_silence=False)).all()


def test_sdr_scores_each_estimate_against_its_own_reference():
    """fast_bss_eval solves the permutation when given all sources; sdr scores source i
    against reference i, like si_sdr (swapped estimates used to score as aligned ones)."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 8000))
    est = ref + 0.3 * rng.standard_normal((2, 8000))
    aligned, swapped = sdr(est, ref), sdr(est[::-1].copy(), ref)
    assert aligned.min() > 9 and swapped.max() < 0


def test_stoi_refuses_a_silent_reference_and_too_little_speech():
    from sigformer.speech.metrics import SpeechMetricError, stoi_score

    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000)
    with pytest.raises(SpeechMetricError, match="silent reference"):
        stoi_score(x, np.zeros(16000), 16000)
    with pytest.raises(SpeechMetricError, match="STOI needs more speech"):
        stoi_score(x[:3200], x[:3200] + 0.1, 16000)


@needs_speech
def test_pesq_and_stoi_rank_clean_above_noisy():
    from sigformer.speech.metrics import pesq_score, stoi_score

    clean, _ = read_audio(SPEECH / "clean" / "dev1_female4_src_2.wav", 16000)
    clean = clean[0, :48000] / np.abs(clean).max() * 0.5
    noisy = clean + 0.05 * np.random.default_rng(0).standard_normal(len(clean))
    assert stoi_score(estimate=clean, reference=clean, sample_rate=16000) > 0.99
    assert stoi_score(estimate=noisy, reference=clean, sample_rate=16000) < 0.99
    assert pesq_score(estimate=noisy, reference=clean, sample_rate=16000) < pesq_score(
        estimate=clean, reference=clean, sample_rate=16000)
    with pytest.raises(ValueError, match="8000 or 16000"):
        pesq_score(estimate=clean, reference=clean, sample_rate=44100)


def test_metrics_share_one_convention():
    """(estimate, reference) order, numpy in -> numpy out, torch in -> torch out,
    (samples, channels) transposed with a warning, PESQ's no-utterance error wrapped."""
    from sigformer.speech.metrics import (
        AudioLayoutWarning,
        SpeechMetricError,
        pesq_score,
        pit_si_sdr,
        stoi_score,
    )

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 4000))
    est = ref + 0.3 * rng.standard_normal((2, 4000))
    as_numpy = si_sdr(est, ref)
    assert isinstance(as_numpy, np.ndarray) and as_numpy.shape == (2,)
    as_torch = si_sdr(torch.tensor(est), torch.tensor(ref))
    assert torch.is_tensor(as_torch)
    np.testing.assert_allclose(as_torch.numpy(), as_numpy)
    assert isinstance(pit_si_sdr(est[None], ref[None]), np.ndarray)
    assert isinstance(sdr(est, ref), np.ndarray) and torch.is_tensor(sdr(torch.tensor(est), ref))
    with pytest.warns(AudioLayoutWarning, match="looks like \\(samples, channels\\)"):
        transposed = si_sdr(est.T, ref.T)
    np.testing.assert_allclose(transposed, as_numpy)
    speech = _voiced(16000, 150, 16000) * 0.3
    degraded = speech + 0.05 * rng.standard_normal(16000)
    keyword = stoi_score(estimate=degraded, reference=speech, sample_rate=16000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the documented positional order warns no more
        positional = stoi_score(degraded, speech, 16000)
        assert pesq_score(degraded, speech, 16000) == pesq_score(
            estimate=degraded, reference=speech, sample_rate=16000)
    assert positional == keyword
    # the order matters (PESQ is not symmetric): positional means (estimate, reference)
    assert pesq_score(degraded, speech, 16000) != pesq_score(speech, degraded, 16000)
    with pytest.raises(SpeechMetricError, match="no utterance"):
        pesq_score(estimate=np.zeros(16000), reference=np.zeros(16000), sample_rate=16000)


def test_metrics_refuse_nan_and_length_mismatches():
    """A NaN score says nothing about its cause: NaN input is named; SDR refuses different
    lengths as SI-SDR and PESQ do (fast_bss_eval would cut the longer one silently)."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(4000)
    est = ref + 0.1 * rng.standard_normal(4000)
    with pytest.raises(ValueError, match="estimate has 3995 samples, reference 4000"):
        sdr(est[:-5], ref)
    with pytest.raises(ValueError, match="estimate has 3995 samples, reference 4000"):
        si_sdr(est[:-5], ref)
    bad = est.copy()
    bad[[10, 20]] = np.nan
    for fn in (si_sdr, sdr):
        with pytest.raises(ValueError, match=r"estimate holds 2 NaN/Inf value\(s\); expected "
                                             r"finite audio"):
            fn(bad, ref)
        with pytest.raises(ValueError, match=r"reference holds 2 NaN/Inf"):
            fn(ref, bad)
    with pytest.raises(ValueError, match=r"estimate holds 2 NaN/Inf"):
        si_sdr(torch.tensor(bad), torch.tensor(ref))
    with pytest.raises(ValueError, match=r"mixture holds 2 NaN/Inf"):
        si_sdr_improvement(est, ref, bad)
    assert np.isfinite(si_sdr(est, ref)) and np.isfinite(sdr(est, ref)).all()


# --- chunked inference -------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(hs.integers(64, 400), hs.floats(0.0, 0.5), hs.integers(200, 3000), hs.integers(1, 500))
def test_chunked_identity_equals_whole_array(chunk, overlap_frac, length, block):
    """Linear cross-fades sum to one: an identity model gives the input back exactly, for any
    chunk, overlap and streaming block size."""
    overlap = int(chunk * overlap_frac)
    x = np.random.default_rng(length).standard_normal((1, length)).astype(np.float32)
    fn = lambda c: np.concatenate([c, -c])  # noqa: E731
    whole = process_array(fn, x, chunk, overlap)
    np.testing.assert_allclose(whole, np.concatenate([x, -x]), atol=1e-5)
    proc = ChunkedProcessor(fn, chunk, overlap)
    parts = [proc.process(x[:, i:i + block]) for i in range(0, length, block)] + [proc.flush()]
    streamed = np.concatenate([p for p in parts if p.size], axis=1)
    np.testing.assert_allclose(streamed, whole, atol=1e-6)


def test_chunked_separation_keeps_speaker_order():
    """A separator that returns its sources in a random order per chunk still yields
    consistently ordered outputs after alignment."""
    rng = np.random.default_rng(1)
    n = 8000
    sources = np.stack([_voiced(n, 200, seed=3), rng.standard_normal(n).astype(np.float32)])
    mixture = sources.sum(0, keepdims=True)
    position = {"start": 0}
    hop = 1000 - 250

    def shuffled_oracle(chunk):
        start = position["start"]
        position["start"] += hop
        out = sources[:, start:start + chunk.shape[1]]
        return out[rng.permutation(2)]

    out = process_array(shuffled_oracle, mixture, 1000, 250, align=True)
    direct = min(np.abs(out - sources).max(), np.abs(out[::-1] - sources).max())
    assert direct < 1e-4
    assert best_alignment(sources[:, :100], sources[::-1, :100]) == (1, 0)


def test_chunked_mossformer_matches_its_output_shape_on_long_audio():
    model = create_model("mossformer", "tiny")
    from sigformer.speech.chunked import model_function

    x = np.random.default_rng(0).standard_normal((1, 5000)).astype(np.float32)
    out = process_array(model_function(model), x, 1600, 400, align=True)
    assert out.shape == (2, 5000) and np.isfinite(out).all()


# --- audio I/O and checks -------------------------------------------------------------------

def test_audio_round_trip_and_checks(tmp_path):
    x = (0.1 * np.random.default_rng(0).standard_normal((2, 1600))).astype(np.float32)
    path = write_audio(tmp_path / "a.wav", x, 16000)
    back, rate = read_audio(path)
    np.testing.assert_allclose(back, x, atol=1e-7)
    assert rate == 16000
    assert read_audio(path, 8000)[0].shape == (2, 800)
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00")
    with pytest.raises(DataError, match="not readable audio"):
        read_audio(tmp_path / "bad.wav")
    with pytest.raises(DataError, match="expects 8000 Hz"):
        check_audio(x, 16000, expected_rate=8000)
    with pytest.raises(DataError, match="2-channel but the model expects 4"):
        check_audio(x, 16000, n_channels=4)
    with pytest.raises(DataError, match="mono but the model expects 4"):
        check_audio(x[:1], 16000, n_channels=4)
    bad = x.copy()
    bad[1, 7] = np.nan
    with pytest.raises(DataError, match="channel 1, sample 7"):
        check_audio(bad, 16000)
    with pytest.warns(AudioWarning, match="silent"):
        check_audio(np.zeros((1, 800)), 16000)
    with pytest.warns(AudioWarning, match="clipped"):
        check_audio(np.clip(10 * x, -1, 1), 16000)


# --- mixtures and rooms ---------------------------------------------------------------------

def test_mixture_overlap_levels_and_snr():
    a, b = _voiced(4000, 200, seed=1), _voiced(2000, 120, seed=2)
    mix, refs, _ = make_mixture([a, b], overlap=0.0)
    assert mix.shape == (6000,)
    mix, refs, _ = make_mixture([a, b], overlap=1.0, level_db=[0.0, -6.0])
    assert mix.shape == (4000,)
    active = refs[1, -len(b):]  # levels are utterance RMS, without the zero padding
    ratio = 20 * np.log10(np.sqrt(np.mean(active ** 2)) / np.sqrt(np.mean(refs[0] ** 2)))
    assert ratio == pytest.approx(-6.0, abs=0.05)
    noise = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    mix, refs, noise_ref = make_mixture([a, b], overlap=0.5, noise=noise, snr_db=5.0,
                                        rng=np.random.default_rng(0))
    np.testing.assert_allclose(mix, refs.sum(0) + noise_ref, atol=1e-6)
    snr = 10 * np.log10(np.mean(refs.sum(0) ** 2) / np.mean(noise_ref ** 2))
    assert snr == pytest.approx(5.0, abs=0.05)
    with pytest.raises(ValueError, match="2 or 3"):
        make_mixture([a])


def test_mixture_sets_in_librimix_and_wsj0_layouts(tmp_path):
    clean = tmp_path / "clean"
    for i, f0 in enumerate((110, 150, 210)):
        write_audio(clean / f"spk{i}.wav", _voiced(16000, f0, 16000, seed=i), 16000)
    manifest = write_mixtures(clean, tmp_path / "libri", 3, sample_rate=8000, seed=1)
    sets = MixtureSet.from_manifest(manifest)
    mix, refs = sets.load(0, 8000)
    assert len(sets) == 3 and refs.shape[0] == 2
    np.testing.assert_allclose(mix, refs.sum(0), atol=1e-5)  # no noise: exact sum
    write_mixtures(clean, tmp_path / "wsj", 2, n_src=3, layout="wsj0-2mix", sample_rate=8000)
    wsj = MixtureSet.from_folder(tmp_path / "wsj" / "test")
    assert len(wsj) == 2 and wsj.load(1, 8000)[1].shape[0] == 3
    two = tmp_path / "two"
    for f in sorted(clean.glob("*.wav"))[:2]:
        write_audio(two / f.name, read_audio(f)[0], 16000)
    with pytest.raises(DataError, match="at least 3"):
        write_mixtures(two, tmp_path / "x", 1, n_src=3, sample_rate=8000)


def test_room_scene_follows_the_deftan_recipe():
    from sigformer.data.room import SceneConfig, simulate_scene

    speech = _voiced(16000, 150, 16000, seed=4)
    noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    scene = simulate_scene(speech, noise, SceneConfig(max_order=6), seed=3)
    assert scene.mixture.shape == (4, 16000) and scene.target.shape == (1, 16000)
    assert 0.2 <= scene.info["rt60"] <= 1.2 and 0.75 <= scene.info["distance"] <= 2.1
    again = simulate_scene(speech, noise, SceneConfig(max_order=6), seed=3)
    np.testing.assert_array_equal(scene.mixture, again.mixture)
    # the direct path is the reverberant signal minus its reflections: less energy
    assert np.sum(scene.target[0] ** 2) < np.sum(scene.reverberant[0] ** 2)


# --- CLI ----------------------------------------------------------------------------------------

def _speech_bundle(path, model, task: str, n_mics: int = 1):
    from sigformer.bundle import Bundle
    from sigformer.spec import SignalSpec

    spec = SignalSpec.audio(model.sample_rate, n_mics)
    labels = [f"s{i + 1}" for i in range(model.n_src)] if task == "separate" else None
    return Bundle(model=model, task=task, input_spec=spec, model_spec=spec, labels=labels
                  ).save(path)


def test_separate_cli(tmp_path):
    from sigformer.cli import main

    _speech_bundle(tmp_path / "sep", create_model("mossformer", "tiny"), "separate")
    x = np.stack([_voiced(12000, 200, seed=1) + _voiced(12000, 110, seed=2)]) * 0.3
    write_audio(tmp_path / "mix.wav", x, 8000)
    assert main(["separate", str(tmp_path / "mix.wav"), "--model", str(tmp_path / "sep"),
                 "--out", str(tmp_path / "out"), "--chunk-s", "0.5", "--overlap-s", "0.1"]) == 0
    for i in (1, 2):
        audio, rate = read_audio(tmp_path / "out" / f"mix_s{i}.wav")
        assert audio.shape == (1, 12000) and rate == 8000
    write_audio(tmp_path / "mix16k.wav", x, 16000)  # other rates: resampled, output at 16 kHz
    assert main(["separate", str(tmp_path / "mix16k.wav"), "--model", str(tmp_path / "sep"),
                 "--out", str(tmp_path / "o2")]) == 0
    audio, rate = read_audio(tmp_path / "o2" / "mix16k_s1.wav")
    assert rate == 16000 and abs(audio.shape[1] - 12000) <= 32
    write_audio(tmp_path / "stereo.wav", np.concatenate([x, x]), 8000)
    assert main(["separate", str(tmp_path / "stereo.wav"), "--model", str(tmp_path / "sep"),
                 "--out", str(tmp_path / "o4")]) == 2
    assert main(["separate", str(tmp_path / "stereo.wav"), "--model", str(tmp_path / "sep"),
                 "--out", str(tmp_path / "o5"), "--channel", "1"]) == 0


def test_enhance_mics_picks_a_sub_array_of_a_larger_recording(tmp_path, capsys):
    """--mics 0,2,4,6 runs a 4-mic bundle on those microphones of an 8-channel file (enhance
    and stream): the same output as the 4-channel file of them; bad lists are refused before
    anything is written."""
    import json

    from sigformer.cli import main

    torch.manual_seed(0)
    _speech_bundle(tmp_path / "enh", create_model("deftan2", "tiny", n_mics=4), "enhance",
                   n_mics=4)
    x = 0.1 * np.random.default_rng(0).standard_normal((8, 16000))
    write_audio(tmp_path / "eight.wav", x, 16000)
    write_audio(tmp_path / "four.wav", x[[0, 2, 4, 6]], 16000)
    model = ["--model", str(tmp_path / "enh")]
    assert main(["enhance", str(tmp_path / "four.wav"), *model, "--out",
                 str(tmp_path / "a.wav")]) == 0
    capsys.readouterr()
    assert main(["enhance", str(tmp_path / "eight.wav"), *model, "--mics", "0,2,4,6", "--out",
                 str(tmp_path / "b.wav")]) == 0
    assert json.loads(capsys.readouterr().out)["microphones_used"] == [0, 2, 4, 6]
    np.testing.assert_array_equal(read_audio(tmp_path / "a.wav")[0],
                                  read_audio(tmp_path / "b.wav")[0])
    assert main(["enhance", str(tmp_path / "eight.wav"), *model, "--out",
                 str(tmp_path / "c.wav")]) != 0  # all 8 into a 4-mic bundle
    assert "that form such an array (--mics)" in capsys.readouterr().err
    assert main(["enhance", str(tmp_path / "eight.wav"), *model, "--mics", "0,2,4,9",
                 "--out", str(tmp_path / "d.wav")]) != 0
    assert "mics 0,2,4,9 (--mics): the stream has microphones 0..7 only" in \
        capsys.readouterr().err
    # sigformer stream takes the same flag (one runtime), and refuses it for other bundles
    assert main(["stream", str(tmp_path / "enh"), "--source", f"wav:{tmp_path / 'eight.wav'}",
                 "--mics", "0,2,4,6", "--out", str(tmp_path / "s.wav")]) == 0
    np.testing.assert_array_equal(read_audio(tmp_path / "s.wav")[0],
                                  read_audio(tmp_path / "a.wav")[0])
    _speech_bundle(tmp_path / "sep", create_model("mossformer", "tiny"), "separate")
    capsys.readouterr()
    assert main(["stream", str(tmp_path / "sep"), "--source", f"wav:{tmp_path / 'eight.wav'}",
                 "--mics", "0,1", "--out", str(tmp_path / "sep_out")]) != 0
    assert "this bundle is 'separate': choose its one input with --channel" in \
        capsys.readouterr().err
    for bad, why in (("0,2,x", "comma-separated microphone indices"),
                     ("0,2,2,4", "distinct and >= 0"), ("-1,0,1,2", "distinct and >= 0")):
        with pytest.raises(SystemExit):
            main(["enhance", str(tmp_path / "eight.wav"), *model, f"--mics={bad}", "--out",
                  str(tmp_path / "e.wav")])
        assert why in capsys.readouterr().err
    assert not any((tmp_path / f"{n}.wav").exists() for n in "cde")


def test_separation_pipeline_end_to_end(tmp_path):
    import yaml

    from sigformer.checkpoint import load_checkpoint
    from sigformer.cli import main

    cfg = {"name": "sep_tiny", "task": "separate",
           "speech": {"n_train": 4, "n_test": 2, "max_epochs": 1, "preset": "tiny",
                      "seconds": 1.0, "chunk_s": 0.6, "overlap_s": 0.2}}
    path = tmp_path / "sep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    import json

    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(report["summary"]) == {"si_sdr", "si_sdri", "sdr", "pesq", "stoi"}
    assert len(report["per_mixture"]) == 2
    model, _ = load_checkpoint(tmp_path / "out" / "model")
    assert model.n_src == 2 and model.sample_rate == 8000
    assert read_audio(tmp_path / "out" / "example_s1.wav")[0].shape == (1, 8000)
    path.write_text(yaml.safe_dump({"task": "separate", "speech": {"n_src": 5}}))
    assert main(["run", str(path)]) == 2


# --- DeFTAN-II ----------------------------------------------------------------------------

def test_deftan2_parameter_counts_match_reference():
    from sigformer.models.speech.deftan2 import DeFTAN2

    assert sum(p.numel() for p in DeFTAN2().parameters()) == 3_997_988  # 3,998 k
    assert sum(p.numel() for p in DeFTAN2(n_layers=12).parameters()) == 7_712_804  # 7.71 M


@pytest.mark.parametrize("n_mics, length", [(4, 1000), (4, 16001), (2, 3000), (8, 700)])
def test_deftan2_any_mic_count_and_length(n_mics, length):
    model = create_model("deftan2", "tiny", n_mics=n_mics).eval()
    with torch.no_grad():
        out = model(torch.randn(2, n_mics, length))
    assert out.shape == (2, 1, length) and torch.isfinite(out).all()


def test_deftan2_stft_path_is_an_identity_with_the_network_bypassed():
    """Std normalisation, STFT and inverse STFT round-trip when the network passes the
    reference microphone's spectrum straight through."""
    model = create_model("deftan2", "tiny").eval()
    model.encoder = torch.nn.Identity()
    model.blocks = torch.nn.ModuleList()

    class FirstMic(torch.nn.Module):
        def forward(self, h):
            return h[:, :2]

    model.decoder = FirstMic()
    x = 3.0 * torch.randn(2, 4, 5000)
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out[:, 0], x[:, 0], atol=1e-4, rtol=1e-4)


def test_deftan2_bad_input():
    model = create_model("deftan2", "tiny")
    with pytest.raises(ValueError, match="4 microphones.*got mono"):
        model(torch.randn(1, 1600))
    with pytest.raises(ValueError, match="got 2-microphone"):
        model(torch.randn(1, 2, 1600))
    with pytest.raises(ValueError, match="16000 Hz audio, got 8000"):
        model.check_rate(8000)


def test_deftan2_widened_to_a_larger_circular_array_starts_as_the_sub_array_model():
    """4 -> 8 microphones: the widened encoder on any 8-mic features equals the trained one on
    the even mics' (real, imaginary) channel pairs, whatever the odd mics carry (their weights
    start at zero); the whole model on an input whose odd mics copy the even ones (the same
    level) equals the trained model on the even mics."""
    from sigformer.models.speech.deftan2 import circular_subarray, load_subarray_weights

    torch.manual_seed(0)
    four = create_model("deftan2", "tiny", n_mics=4).eval()
    eight = load_subarray_weights(create_model("deftan2", "tiny", n_mics=8).eval(),
                                  four.state_dict(), circular_subarray(4, 8))
    feats = torch.randn(2, 16, 9, 33)  # (B, 2 x 8 mics, T, F): odd mics independent
    even = feats.view(2, 8, 2, 9, 33)[:, 0::2].reshape(2, 8, 9, 33)
    sub = torch.randn(2, 4, 3000)
    with torch.no_grad():
        torch.testing.assert_close(eight.encoder(feats), four.encoder(even))
        # the forward's (mic, re/im) layout: unbiased std over 2x the samples differs ~1e-5
        torch.testing.assert_close(eight(sub.repeat_interleave(2, dim=1)), four(sub),
                                   atol=1e-4, rtol=1e-3)
    assert circular_subarray(4, 4) == [0, 1, 2, 3] and circular_subarray(2, 8) == [0, 4]
    with pytest.raises(ValueError, match="sub-array of one of 6 only when 6 is a multiple"):
        circular_subarray(4, 6)
    with pytest.raises(ValueError, match="8 microphones is never a sub-array of one of 4"):
        circular_subarray(8, 4)
    with pytest.raises(ValueError, match="3 positions given for weights trained on 4"):
        load_subarray_weights(eight, four.state_dict(), [0, 2, 4])
    with pytest.raises(ValueError, match="must be 4 distinct microphones of the 8"):
        load_subarray_weights(eight, four.state_dict(), [0, 2, 4, 8])
    with pytest.raises(ValueError, match="not DeFTAN-II weights"):
        load_subarray_weights(eight, {"w": torch.zeros(1)}, [0])


def test_pcm_loss_is_zero_only_for_the_target():
    from sigformer.speech.metrics import pcm_loss

    rng = np.random.default_rng(0)
    target = torch.tensor(rng.standard_normal((2, 1, 4000)), dtype=torch.float32)
    mixture = target + 0.3 * torch.randn(2, 1, 4000)
    assert pcm_loss(mixture, target, target).item() < 1e-6
    assert pcm_loss(mixture, mixture, target).item() > 0.01
    estimate = target.clone().requires_grad_(True)
    pcm_loss(mixture, estimate * 0.5, target).backward()
    assert estimate.grad.abs().sum() > 0


def test_beamformers_improve_a_simulated_scene():
    from sigformer.data.room import SceneConfig, simulate_scene
    from sigformer.speech.beamforming import delay_and_sum, mvdr

    speech = _voiced(32000, 140, 16000, seed=5)
    noise = np.random.default_rng(1).standard_normal(32000).astype(np.float32)
    scene = simulate_scene(speech, noise, SceneConfig(max_order=4, snr_db=(0, 0)), seed=4)
    noisy = float(si_sdr(scene.mixture[0], scene.target[0]))
    assert float(si_sdr(mvdr(scene.mixture, 16000, noise=scene.mixture - scene.reverberant),
                        scene.target[0])) > noisy + 0.5
    assert delay_and_sum(scene.mixture, 16000).shape == (32000,)


def test_enhance_cli(tmp_path):
    from sigformer.cli import main

    _speech_bundle(tmp_path / "enh", create_model("deftan2", "tiny"), "enhance", n_mics=4)
    x = 0.1 * np.random.default_rng(0).standard_normal((4, 20000)).astype(np.float32)
    write_audio(tmp_path / "array.wav", x, 16000)
    assert main(["enhance", str(tmp_path / "array.wav"), "--model", str(tmp_path / "enh"),
                 "--out", str(tmp_path / "clean.wav"), "--chunk-s", "0.5",
                 "--overlap-s", "0.1"]) == 0
    out, rate = read_audio(tmp_path / "clean.wav")
    assert out.shape == (1, 20000) and rate == 16000
    write_audio(tmp_path / "mono.wav", x[:1], 16000)
    assert main(["enhance", str(tmp_path / "mono.wav"), "--model", str(tmp_path / "enh"),
                 "--out", str(tmp_path / "o.wav")]) == 2
    write_audio(tmp_path / "array8k.wav", x, 8000)  # resampled to the model's 16 kHz and back
    assert main(["enhance", str(tmp_path / "array8k.wav"), "--model", str(tmp_path / "enh"),
                 "--out", str(tmp_path / "o8k.wav")]) == 0
    assert read_audio(tmp_path / "o8k.wav")[1] == 8000


def test_enhancement_pipeline_end_to_end(tmp_path):
    import json

    import yaml

    from sigformer.cli import main

    cfg = {"name": "enh_tiny", "task": "enhance",
           "enhance": {"n_train": 2, "n_test": 2, "max_epochs": 1, "preset": "tiny",
                       "seconds": 0.5, "max_order": 3, "chunk_s": 0.4, "overlap_s": 0.1}}
    path = tmp_path / "enh.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    from sigformer.speech.pipeline import beamformer_systems

    assert set(report["results"]) == {"unprocessed", *beamformer_systems(16000), "deftan2"}
    # the textbook oracle MVDR beats the unprocessed microphone on every run
    assert report["results"]["MVDR Souden (oracle)"]["si_sdr"] > report["results"][
        "unprocessed"]["si_sdr"]
    assert all(set(r) == {"si_sdr", "pesq", "stoi"} for r in report["results"].values())
    assert read_audio(tmp_path / "out" / "example_deftan2.wav")[0].shape == (1, 8000)


# --- real recordings ------------------------------------------------------------------------

@needs_speech
def test_real_array_recording_through_the_channel_layer_and_enhancer():
    """The 8-mic MC-WSJ-AV recording: one file per mic, stacked into a microphone Recording
    with circular-array geometry; GCC-PHAT lags stay within the array's physical limit, and a
    tiny 8-mic DeFTAN-II runs over it chunk by chunk."""
    from sigformer.channels import circular_array, max_delay_samples
    from sigformer.speech.audio import read_audio_recording
    from sigformer.speech.beamforming import delay_and_sum, gcc_phat_delays
    from sigformer.speech.chunked import model_function

    files = sorted((SPEECH / "multichannel_array8").glob("*.wav"))
    assert len(files) == 8
    audio = np.concatenate([read_audio(f)[0] for f in files])
    geometry = circular_array(8, 0.1)
    limit = max_delay_samples(geometry, 16000)
    delays = gcc_phat_delays(audio, max_delay=int(np.ceil(limit)) + 2)
    assert np.abs(delays).max() <= limit + 2
    rec = read_audio_recording(files[0])
    assert rec.channels.names == ("mic0",) and rec.sfreq == 16000
    assert np.isfinite(delay_and_sum(audio, 16000)).all()
    model = create_model("deftan2", "tiny", n_mics=8)
    out = process_array(model_function(model, multichannel=True), audio[:, :24000], 8000, 2000)
    assert out.shape == (1, 24000)


@needs_speech
def test_metrics_on_the_reference_two_speaker_mixtures():
    """SpeechBrain's mixtures are g1*s1 + g2*s2 exactly: the references themselves score
    very high, the mixture near 0 dB, and PIT finds the order."""
    from sigformer.speech.metrics import evaluate_separation

    folder = SPEECH / "samples_mixed" / "separation"
    mix, _ = read_audio(folder / "mixture_0.wav")
    s1, _ = read_audio(folder / "source1_0.wav")
    s2, _ = read_audio(folder / "source2_0.wav")
    refs = np.concatenate([s1, s2])
    swapped = evaluate_separation(refs[::-1], refs, mix[0], 16000, perceptual=False)
    assert swapped["si_sdr"] > 60
    mixture_score = float(si_sdr(np.stack([mix[0], mix[0]]), refs).mean())
    assert -5 < mixture_score < 5


# --- corpus listing, speaker-disjoint splits, dynamic mixing, recipes, training script --------

def _write_corpus(root: Path, rate: int = 8000) -> Path:
    """A small corpus in several naming conventions, with noise and a mixture to skip."""
    from sigformer.data.mixtures import synthetic_voices

    voices = iter(synthetic_voices(16, 1.2, rate, seed=3))
    names = ["libri/84-121123-0000", "libri/84-121123-0001", "libri/174-50561-0000",
             "vctk/p225_001", "vctk/p226_002", "asr/spk1_snt1", "asr/spk1_snt2",
             "asr/spk2_snt1", "sisec/dev1_female4_src_1", "sisec/dev1_male4_src_2",
             "other/clipA", "other/clipB"]
    for name in names:
        write_audio(root / f"{name}.wav", next(voices), rate)
    write_audio(root / "other" / "mixture_0.wav", next(voices), rate)
    write_audio(root / "noise" / "hum.wav", next(voices), rate)
    return root


def test_speaker_rules_and_corpus_listing(tmp_path):
    from sigformer.data.mixtures import list_speech, speaker_of

    assert speaker_of("84-121123-0000") == "84"
    assert speaker_of("p225_001") == "p225"
    assert speaker_of("AMI_WSJ20-Array1-5_T10c0201") == "T10"
    assert speaker_of("spk2_snt4") == "spk2"
    assert speaker_of("dev1_female4_src_2") == "dev1_female4_src_2"
    assert speaker_of("example1") == "example1"
    speech, noise = list_speech(_write_corpus(tmp_path))
    assert [p.name for p in noise] == ["hum.wav"]
    assert len(speech) == 12 and not any("mixture" in u.path.name for u in speech)
    speakers = {u.speaker for u in speech}
    assert {"libri/84", "libri/174", "asr/spk1", "asr/spk2"} <= speakers and len(speakers) == 10
    with pytest.raises(DataError, match="no audio files"):
        list_speech(tmp_path / "noise" / "nothing")


@settings(max_examples=10, deadline=None)
@given(hs.integers(0, 10_000))
def test_speaker_splits_are_disjoint_and_cover_every_file(seed):
    from sigformer.data.mixtures import Utterance, speaker_splits

    utts = [Utterance(Path(f"{s}_{k}.wav"), f"spk{s}") for s in range(11) for k in range(3)]
    splits = speaker_splits(utts, seed=seed)
    sets = {k: {u.speaker for u in v} for k, v in splits.items()}
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"]
                or sets["val"] & sets["test"])
    assert min(len(s) for s in sets.values()) >= 2
    assert sum(len(v) for v in splits.values()) == len(utts)
    with pytest.raises(DataError, match="speaker-disjoint"):
        speaker_splits(utts[:12], seed=seed)


def test_dynamic_mixtures_in_dataloader_workers(tmp_path):
    from torch.utils.data import DataLoader

    from sigformer.data.mixtures import (
        DynamicMixConfig,
        DynamicMixtures,
        list_speech,
        speaker_splits,
    )

    speech, noise = list_speech(_write_corpus(tmp_path))
    train = speaker_splits(speech)["train"]
    config = DynamicMixConfig(seconds=0.5)
    ds = DynamicMixtures(train, noise, config, n_items=4, seed=1)
    mixes = torch.cat([m for m, _ in DataLoader(ds, batch_size=2, num_workers=2)])
    assert mixes.shape == (8, 4000)  # 4 per worker
    assert not torch.allclose(mixes[:2], mixes[4:6])  # workers draw different mixtures
    mix, refs = next(iter(ds))
    assert refs.shape == (2, 4000)
    torch.testing.assert_close(mix, refs.sum(0), atol=1e-5, rtol=0)  # no noise/reverb here
    fixed = DynamicMixtures(train, noise, config, n_items=2, seed=5, fixed=True)
    torch.testing.assert_close(torch.stack([m for m, _ in fixed]),
                               torch.stack([m for m, _ in fixed]))  # a stable val set
    noisy = DynamicMixtures(train, noise, DynamicMixConfig(seconds=0.5, noise_snr_db=(0, 0)),
                            n_items=1)
    mix, refs = next(iter(noisy))
    residual = (mix - refs.sum(0)).double()
    assert float(si_sdr(refs.sum(0).double(), mix.double())) < 5 and residual.abs().max() > 0


def test_enhancement_scenes_yield_array_and_direct_path(tmp_path):
    from sigformer.data.mixtures import list_speech
    from sigformer.data.room import EnhancementScenes, SceneConfig

    speech, noise = list_speech(_write_corpus(tmp_path, 16000))
    ds = EnhancementScenes(speech, noise, SceneConfig(n_mics=6, radius=(0.05, 0.1),
                                                      max_order=3), seconds=0.5, n_items=2)
    items = list(ds)
    assert [tuple(m.shape) for m, _ in items] == [(6, 8000)] * 2
    assert [tuple(t.shape) for _, t in items] == [(1, 8000)] * 2
    assert not torch.allclose(items[0][0][0], items[1][0][0])


def test_pit_loss_threshold_leaves_out_easy_examples():
    from sigformer.recipes.speech import MOSSFORMER
    from sigformer.speech.transforms import PITSISNRLoss

    assert (MOSSFORMER.lr, MOSSFORMER.clip_grad_norm, MOSSFORMER.loss_threshold,
            MOSSFORMER.plateau_factor) == (1.5e-4, 5.0, -30.0, 0.5)
    rng = np.random.default_rng(0)
    refs = torch.tensor(rng.standard_normal((2, 2, 800)))
    est = refs.clone()
    est[1] += torch.tensor(rng.standard_normal((2, 800)))  # item 0 perfect, item 1 ~0 dB
    hard = -pit_si_sdr_of(est[1:], refs[1:])
    assert float(pit_loss(est, refs, threshold=-30)) == pytest.approx(float(hard))
    assert float(pit_loss(est, refs)) < float(hard) - 20  # the easy item drags the mean
    assert float(PITSISNRLoss(-30)(est, refs)) == pytest.approx(float(hard))


def pit_si_sdr_of(est, refs):
    from sigformer.speech.metrics import pit_si_sdr

    return pit_si_sdr(est, refs).mean()


def test_train_speech_script_trains_checkpoints_and_resumes(tmp_path):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "train_speech", Path(__file__).resolve().parents[1] / "scripts" / "train_speech.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    data, out = _write_corpus(tmp_path / "corpus"), tmp_path / "run"
    common = ["--task", "separate", "--data", str(data), "--out", str(out), "--preset", "tiny",
              "--batch-size", "2", "--seconds", "0.25", "--n-val", "2", "--workers", "0",
              "--val-every", "2", "--checkpoint-every", "2", "--log-every", "1"]
    assert script.main(common + ["--steps", "2"]) == 0
    first = json.loads((out / "train_report.json").read_text())
    assert first["steps"] == 2 and len(first["history"]) == 1
    assert set(first["speakers"]["test"]).isdisjoint(first["speakers"]["train"])
    assert script.resumed_step(str(out)) == 2  # the resumed run reseeds its data by it
    resumed = script.build(script.parse_args(common + ["--steps", "3", "--resume"]))
    assert resumed[2].dataset.seed == 2 * 1000
    split = json.loads((tmp_path / "run-split.json").read_text())
    assert split["files"]["train"] and split["args"]["batch_size"] == 2
    # a resume keeps the split it started with, even where today's rules give another one
    reseeded = script.build(script.parse_args(common + ["--steps", "3", "--resume",
                                                        "--seed", "5"]))[4]
    assert {k: sorted(str(u.path.relative_to(data)) for u in v) for k, v in reseeded.items()} \
        == {k: sorted(v) for k, v in split["files"].items()}
    fresh = script.build(script.parse_args(common + ["--steps", "3", "--seed", "5"]))[4]
    assert {k: sorted(u.path.name for u in v) for k, v in fresh.items()} != \
        {k: sorted(u.path.name for u in v) for k, v in reseeded.items()}  # seed 5 differs
    assert script.resumed_step(str(tmp_path / "nowhere")) == 0
    assert script.main(common + ["--steps", "3", "--resume"]) == 0
    second = json.loads((out / "train_report.json").read_text())
    assert second["steps"] == 3 and [h["step"] for h in second["history"]] == [2, 3]
    best_step = max(second["history"], key=lambda h: h["si_sdri"])["step"]
    best = json.loads((tmp_path / "run-best" / "config.json").read_text())["extra"]
    assert best["step"] == best_step
    # the checkpoint records its recipe; a resume with another one is refused, naming it
    recorded = json.loads((out / "config.json").read_text())["extra"]["recipe"]
    assert (recorded["lr"], recorded["clip_grad_norm"]) == (1.5e-4, 5.0)
    with pytest.raises(SystemExit, match=r"lr 0\.00015 -> 0\.001, clip_grad_norm 5\.0 -> "
                                         r"None\..*new --out"):
        script.main(common + ["--steps", "4", "--resume", "--lr", "1e-3", "--clip", "0"])
    assert json.loads((out / "config.json").read_text())["extra"]["step"] == 3  # untouched
    assert 0 <= second["data_wait_share"] < 1
    # fine-tuning: the recorded splits (whatever the speaker rules say now), the weights of
    # the first run, a wider speed perturbation
    tuned_out = tmp_path / "tuned"
    tuned = [a if a != str(out) else str(tuned_out) for a in common]
    args = script.parse_args(tuned + ["--steps", "1", "--split-from",
                                      str(tmp_path / "run-split.json"), "--init", str(out),
                                      "--speed", "0.8", "1.25"])
    model, _, loader, _, splits, _ = script.build(args)
    assert {k: sorted(str(u.path.relative_to(data)) for u in v) for k, v in splits.items()} == \
        {k: sorted(v) for k, v in split["files"].items()}
    assert loader.dataset.config.speed == (0.8, 1.25)
    assert script.main(tuned + ["--steps", "1", "--split-from",
                                str(tmp_path / "run-split.json"), "--init", str(out)]) == 0
    record = json.loads((tmp_path / "tuned-split.json").read_text())
    assert record["files"] == split["files"] and record["args"]["init"] == str(out)


def test_noise_splits_hold_out_files_and_enhance_runs_record_them(tmp_path):
    import importlib.util
    import json

    from sigformer.data.mixtures import noise_splits

    files = [Path(f"n{i}.wav") for i in range(8)]
    split = noise_splits(files, 0.25, seed=0)
    assert len(split["test"]) == 2 and len(split["train"]) == 6
    assert set(split["test"]).isdisjoint(split["train"])
    assert set(split["test"]) | set(split["train"]) == set(files)
    assert noise_splits(files, 0.25, seed=0) == split  # seeded
    assert noise_splits(files[:2], 0.01)["test"] and noise_splits(files[:2], 0.01)["train"]
    assert noise_splits(files, 0.0)["test"] == []
    with pytest.raises(ValueError, match="test_share"):
        noise_splits(files, 1.0)

    spec = importlib.util.spec_from_file_location(
        "train_speech", Path(__file__).resolve().parents[1] / "scripts" / "train_speech.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    data = _write_corpus(tmp_path / "corpus")
    for name in ("fan", "street", "babble"):
        write_audio(data / "noise" / f"{name}.wav",
                    np.random.default_rng(len(name)).standard_normal(8000).astype(np.float32),
                    8000)
    out = tmp_path / "enh"
    common = ["--task", "enhance", "--data", str(data), "--out", str(out), "--preset", "tiny",
              "--batch-size", "1", "--seconds", "0.25", "--n-val", "1", "--workers", "0",
              "--sample-rate", "8000", "--val-every", "1", "--checkpoint-every", "1"]
    *_, noise = script.build(script.parse_args(common + ["--steps", "1"]))
    assert len(noise["test"]) == 1 and len(noise["train"]) == 3
    assert script.main(common + ["--steps", "1"]) == 0
    record = json.loads((tmp_path / "enh-split.json").read_text())
    assert sorted(record["noise_files"]["test"]) == sorted(
        str(f.relative_to(data)) for f in noise["test"])
    loader = script.build(script.parse_args(common + ["--steps", "2", "--resume"]))[2]
    held_out = {Path(f).name for f in record["noise_files"]["test"]}
    assert not held_out & {Path(f).name for f in loader.dataset.noises}  # never trained on


def _train_script():
    from tests.repo_scripts import load_script

    return load_script("scripts/train_speech.py")


def test_train_speech_init_keeps_the_split_of_the_run_it_starts_from(tmp_path, capsys):
    """--init without --split-from: the init run's record (a -best folder shares it) decides
    the split; without one a new split is refused unless --allow-new-split."""
    script = _train_script()
    data = _write_corpus(tmp_path / "corpus")
    common = ["--task", "separate", "--data", str(data), "--out", str(tmp_path / "tuned"),
              "--preset", "tiny", "--batch-size", "1", "--seconds", "0.25", "--n-val", "1",
              "--workers", "0", "--steps", "1"]
    with pytest.raises(SystemExit, match=r"split record .*first-split\.json is missing.*"
                                         r"--allow-new-split"):
        script.parse_args(common + ["--init", str(tmp_path / "first-best")])
    assert script.parse_args(common + ["--init", str(tmp_path / "first-best"),
                                       "--allow-new-split"]).split_from is None
    assert "making a new split" in capsys.readouterr().out
    # the first run's record: a split that today's seed would not make
    first = script.parse_args(common + ["--seed", "5"])
    splits = script.build(first)[4]
    record = script.write_split_record(
        script.parse_args([*common[:4], "--out", str(tmp_path / "first"), *common[6:],
                           "--seed", "5"]), splits)
    assert record == tmp_path / "first-split.json"
    for init in ("first", "first-best"):
        args = script.parse_args(common + ["--init", str(tmp_path / init)])
        assert args.split_from == str(record)
        assert f"keeping its run's split ({record})" in capsys.readouterr().out
    tuned = script.build(args)[4]
    assert {k: sorted(u.path.name for u in v) for k, v in tuned.items()} == \
        {k: sorted(u.path.name for u in v) for k, v in splits.items()}
    # an explicit --split-from wins; a resumed run keeps the record it started with
    other = tmp_path / "other-split.json"
    assert script.parse_args(common + ["--init", str(tmp_path / "nowhere"), "--split-from",
                                       str(other)]).split_from == str(other)
    (tmp_path / "tuned-split.json").write_text("{}")
    assert script.parse_args(common + ["--init", str(tmp_path / "nowhere"),
                                       "--resume"]).split_from is None


@pytest.mark.parametrize("task", ["enhance", "separate"])
def test_train_speech_init_from_a_packaged_bundle_keeps_its_split(task, tmp_path, capsys):
    """--init with a bundle written by package_speech.py: its recorded split (speakers and
    held-out noises, for either task) decides the run's; an enhancement bundle for 4 mics
    starts an 8-mic run with its weights on mics 0, 2, 4, 6."""
    import json

    from sigformer.checkpoint import load_checkpoint
    from tests.repo_scripts import load_script

    script = _train_script()
    package = load_script("scripts/package_speech.py")
    data = _write_corpus(tmp_path / "corpus")
    for name in ("fan", "street", "babble"):
        write_audio(data / "noise" / f"{name}.wav",
                    np.random.default_rng(len(name)).standard_normal(8000).astype(np.float32),
                    8000)
    common = ["--task", task, "--data", str(data), "--preset", "tiny", "--batch-size", "1",
              "--seconds", "0.25", "--n-val", "1", "--workers", "0", "--sample-rate", "8000",
              "--steps", "1", "--val-every", "1"]
    first = tmp_path / "first"
    assert script.main(common + ["--out", str(first), "--seed", "5",
                                 "--noise-test-share", "0.25"]) == 0
    record = json.loads((tmp_path / "first-split.json").read_text())
    assert record["noise_files"]["test"]  # one of four held out
    assert package.main([str(first), "--dest", str(tmp_path / "bundles"), "--name", "b"]) == 0
    bundle = tmp_path / "bundles" / "b"
    capsys.readouterr()
    tuned = ["--out", str(tmp_path / "tuned"), "--init", str(bundle)]
    if task == "enhance":
        tuned += ["--n-mics", "8"]
    assert script.main(common + tuned) == 0
    out = capsys.readouterr().out
    assert f"keeping its run's split ({bundle})" in out
    written = json.loads((tmp_path / "tuned-split.json").read_text())
    assert written["files"] == record["files"]
    assert written["noise_files"] == record["noise_files"]  # held-out noises stay out
    if task == "enhance":
        assert "its 4 microphones at positions [0, 2, 4, 6] of the 8-microphone" in out
        start, _ = load_checkpoint(bundle)
        model, _ = load_checkpoint(tmp_path / "tuned")
        assert model.n_mics == 8 and start.n_mics == 4
        with pytest.raises(SystemExit, match=r"trained for 4 microphones, this run has "
                                             r"--n-mics 6: .*multiple of 4"):
            script.main(common + ["--out", str(tmp_path / "six"), "--n-mics", "6", "--init",
                                  str(bundle)])
    else:
        with pytest.raises(SystemExit, match=r"--init .* is a MossFormer; this run trains a "
                                             r"DeFTAN2"):
            script.main([*common[:1], "enhance", *common[2:], "--out", str(tmp_path / "x"),
                         "--init", str(bundle)])
    from sigformer.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "bare", create_model("deftan2", "tiny"))  # records no split
    with pytest.raises(SystemExit, match="without a recorded split"):
        script.read_split_record(tmp_path / "bare")


def test_train_speech_init_from_a_bundle_packaged_before_the_noise_split(tmp_path, capsys):
    """A bundle whose record says noise_files: null (packaged from a run before the noise
    split) trains on every noise file, as that run did, and says so (it crashed)."""
    import json

    script = _train_script()
    record = tmp_path / "old"
    record.mkdir()
    (record / "config.json").write_text(json.dumps({"extra": {"training": {
        "files": {"train": [], "val": [], "test": []}, "noise_files": None}}}))
    noises = [tmp_path / "a.wav", tmp_path / "b.wav"]
    args = script.parse_args(["--task", "enhance", "--out", str(tmp_path / "r"),
                              "--split-from", str(record)])
    assert script.choose_noise_split(args, noises, str(record)) == {"train": noises,
                                                                    "test": []}
    assert "predates the noise split" in capsys.readouterr().out


def test_train_speech_noise_share_must_agree_with_the_record(tmp_path, capsys):
    """An explicit --noise-test-share is checked against a record's noise split; a record
    from before the noise split trains on every noise file, and says so."""
    import json

    script = _train_script()
    data = _write_corpus(tmp_path / "corpus")
    for name in ("fan", "street", "babble"):
        write_audio(data / "noise" / f"{name}.wav",
                    np.random.default_rng(len(name)).standard_normal(8000).astype(np.float32),
                    8000)
    common = ["--task", "enhance", "--data", str(data), "--out", str(tmp_path / "enh"),
              "--preset", "tiny", "--batch-size", "1", "--seconds", "0.25", "--n-val", "1",
              "--workers", "0", "--sample-rate", "8000", "--steps", "1"]
    first = script.parse_args(common)
    noises = sorted((data / "noise").glob("*.wav"))
    split = script.choose_noise_split(first, noises, None)
    assert len(split["test"]) == 1  # 0.25 of four
    from sigformer.data.mixtures import list_speech, speaker_splits

    record = script.write_split_record(first, speaker_splits(list_speech(data)[0]), split)
    again = ["--out", str(tmp_path / "more"), "--split-from", str(record)]
    for share in ("0.5", "0.6"):  # two of four held out: not what the record holds out
        with pytest.raises(SystemExit, match=rf"--noise-test-share {share} disagrees with "
                                             rf".*holds out 1 of 4 noise files"):
            script.build(script.parse_args(common + again + ["--noise-test-share", share]))
    for share in ("0.25", "0.3"):  # one of four, as recorded
        args = script.parse_args(common + again + ["--noise-test-share", share])
        assert script.choose_noise_split(args, noises, str(record)) == split
    # a record without noise_files: every noise file trains, and the run says so
    old = tmp_path / "old-split.json"
    old.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items()
                               if k != "noise_files"}))
    capsys.readouterr()
    noise = script.build(script.parse_args(common + ["--out", str(tmp_path / "o"),
                                                     "--split-from", str(old)]))[5]
    assert noise == {"train": noises, "test": []}
    assert "predates the noise split (no noise_files): its run trained on every noise file" \
        in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"--noise-test-share 0\.25: .*predates the noise "
                                         r"split.*would not make them unheard"):
        script.choose_noise_split(script.parse_args(common + ["--noise-test-share", "0.25"]),
                                  noises, str(old))
    assert script.choose_noise_split(script.parse_args(common + ["--noise-test-share", "0"]),
                                     noises, str(old))["test"] == []


def test_si_sdr_loss_option_is_the_negative_si_sdr():
    """loss="si_sdr" (a recipe switch; DeFTAN-II's README names PCM and SI-SDR losses) is the
    batch mean of -SI-SDR(estimate, target); an unknown loss is refused naming the choices."""
    from sigformer.recipes.speech import DEFTAN2, batch_loss
    from sigformer.speech.metrics import si_sdr

    rng = np.random.default_rng(0)
    target = torch.tensor(rng.standard_normal((3, 1, 800)), dtype=torch.float32)
    noisy = target + 0.5 * torch.tensor(rng.standard_normal((3, 2, 800)), dtype=torch.float32)

    def first_mic(x):
        return x[:, :1]

    loss = batch_loss(first_mic, (noisy, target), DEFTAN2.with_options(loss="si_sdr"))
    expected = -si_sdr(noisy[:, 0], target[:, 0]).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert float(batch_loss(lambda x: target, (noisy, target),
                            DEFTAN2.with_options(loss="si_sdr"))) < -50  # perfect estimate
    with pytest.raises(ValueError, match="expected one of"):
        batch_loss(first_mic, (noisy, target), DEFTAN2.with_options(loss="l2"))


def test_write_audio_transposes_a_samples_by_channels_array_with_a_warning(tmp_path):
    import soundfile as sf

    from sigformer.speech.audio import AudioWarning, write_audio

    stereo = np.random.default_rng(0).standard_normal((1000, 2)).astype(np.float32) * 0.1
    with pytest.warns(AudioWarning, match="looks like \\(samples, channels\\)"):
        write_audio(tmp_path / "st.wav", stereo, 8000)
    info = sf.info(str(tmp_path / "st.wav"))
    assert info.channels == 2 and info.frames == 1000


def test_process_file_refuses_another_rate_fewer_paths_and_extra_channels(tmp_path):
    import soundfile as sf

    from sigformer.windowing import model_function, process_file

    rng = np.random.default_rng(0)
    sf.write(str(tmp_path / "st44.wav"), 0.1 * rng.standard_normal((4410, 2)), 44100)
    sf.write(str(tmp_path / "mono8.wav"), 0.1 * rng.standard_normal(4000), 8000)
    two_sources = lambda chunk: np.concatenate([chunk[:1], -chunk[:1]])  # noqa: E731
    with pytest.raises(ValueError, match="sampled at 44100 Hz, the model at 8000 Hz"):
        process_file(two_sources, tmp_path / "st44.wav", [tmp_path / "a.wav"], 2000, 200,
                     model_rate=8000)
    with pytest.raises(ValueError, match="gives 2 outputs but 1 output path"):
        process_file(two_sources, tmp_path / "mono8.wav", [tmp_path / "a.wav"], 2000, 200)
    assert not list(tmp_path.glob("*a.wav*"))  # nothing half-written
    single = model_function(torch.nn.Identity())
    with pytest.raises(ValueError, match="single-channel model got 2 channels"):
        single(np.zeros((2, 100), np.float32))


def test_the_last_chunk_of_a_long_input_runs_at_a_whole_chunk():
    """With no overlap the remainder after the last full chunk was one sample here, too short
    for a model with a minimum length (MossFormer crashed at flush, after the whole file)."""
    from sigformer.windowing import process_array

    seen = []

    def needs_16(chunk):
        seen.append(chunk.shape[1])
        if chunk.shape[1] < 16:
            raise ValueError("too short")
        return chunk * 2

    audio = np.random.default_rng(0).standard_normal((1, 8001))
    out = process_array(needs_16, audio, 4000, 0)
    np.testing.assert_allclose(out, audio * 2)
    assert seen == [4000, 4000, 4000]
    short = np.ones((1, 10))
    with pytest.raises(ValueError, match="too short"):  # a single short input runs as is
        process_array(needs_16, short, 4000, 0)


def test_a_constant_estimate_is_silent_too():
    from sigformer.speech.metrics import SpeechMetricError

    ref = np.random.default_rng(0).standard_normal(8000)
    with pytest.raises(SpeechMetricError, match="the estimate is silent"):
        si_sdr(np.full(8000, 0.1), ref)
