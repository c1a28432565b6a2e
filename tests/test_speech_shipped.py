"""The shipped enhancement bundle works out of the box: ``sigformer enhance`` by catalogue
name on an array recording of a room, a talker and a noise it never trained on returns audio
at the input's rate and length that is closer to the direct-path speech than the reference
microphone; its record names the split that keeps those speakers and noises unheard.

Nothing here pins the bundle's numbers (new versions replace it under the same name): the
scene is built from what the bundle records (rate, microphones, training split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from repo_scripts import cli_json

from sigformer.bundle import Bundle
from sigformer.catalogue import list_pretrained
from sigformer.data.mixtures import synthetic_voices
from sigformer.data.room import SceneConfig, simulate_scene
from sigformer.speech.audio import read_audio, write_audio
from sigformer.speech.metrics import si_sdr

# every shipped enhancement bundle (the 4-mic one at least; 8-mic since the thirteenth session)
ENHANCERS = sorted(e["name"] for e in list_pretrained() if e["task"] == "enhance")
SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_catalogue_ships_the_4_mic_enhancer():
    assert "enh-deftan2-small-4mic-16k" in ENHANCERS, ENHANCERS


@pytest.fixture(scope="module", params=ENHANCERS)
def enhancer(request) -> Bundle:
    return Bundle.load(request.param)


def test_record_keeps_test_speakers_and_noises_out_of_training(enhancer):
    training = enhancer.extra["training"]
    files, noises = training["files"], training["noise_files"]
    assert files["test"] and noises["test"]
    assert not set(files["test"]) & (set(files["train"]) | set(files["val"]))
    assert not set(noises["test"]) & set(noises["train"])
    assert enhancer.task == "enhance" and enhancer.input_spec.n_channels >= 4


def _unheard_scene(enhancer: Bundle, seed: int):
    rate = int(enhancer.input_spec.sfreq)
    n = 3 * rate
    training = enhancer.extra["training"]
    if SPEECH.is_dir():
        talker = read_audio(SPEECH / training["files"]["test"][seed % 2], rate)[0][0]
        noise = read_audio(SPEECH / training["noise_files"]["test"][0], rate)[0][0]
        start = int(np.random.default_rng(seed).integers(0, max(len(talker) - n, 1)))
        talker = talker[start:start + n]
    else:  # the data folder is optional: speech-like stand-ins and white noise
        talker = synthetic_voices(1, 3.0, rate, seed=seed)[0]
        noise = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    talker = np.pad(talker, (0, max(n - len(talker), 0)))[:n]
    config = SceneConfig(sample_rate=rate, n_mics=int(enhancer.input_spec.n_channels),
                         radius=(0.05, 0.10), snr_db=(5.0, 10.0), rt60=(0.2, 0.5))
    return simulate_scene(talker, np.resize(noise, n), config, seed=50_000 + seed)


def test_enhance_by_catalogue_name_improves_on_the_reference_microphone(enhancer, tmp_path,
                                                                       capsys):
    rate = int(enhancer.input_spec.sfreq)
    gains = []
    for seed in range(2):
        scene = _unheard_scene(enhancer, seed)
        mics = write_audio(tmp_path / f"mics{seed}.wav", scene.mixture, rate)
        out = tmp_path / f"enhanced{seed}.wav"
        report = cli_json(capsys, ["enhance", str(mics), "--model", Path(enhancer.path).name,
                                   "--out", str(out)])
        assert report["outputs"] == [str(out)]
        audio, out_rate = read_audio(out)
        assert out_rate == rate and audio.shape == (1, scene.mixture.shape[1])
        target = scene.target[0]
        gains.append(si_sdr(audio[0], target) - si_sdr(scene.mixture[0], target))
    # a working enhancer gains several dB here; an untrained or broken one loses
    assert np.mean(gains) > 1.0, gains
