"""The shipped separation bundle works out of the box: it loads by catalogue name, records a
speaker split that keeps its test speakers unheard, separates mixtures of those speakers
better than the mixture itself (a test that fails with untrained weights), and runs through
``sigformer separate`` at the input's sample rate."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch

from sigformer.bundle import Bundle
from sigformer.catalogue import list_pretrained

NAME = "sep-mossformer-small-dm8k"
SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    names = [e["name"] for e in list_pretrained()]
    if NAME not in names:
        pytest.fail(f"{NAME} is not in the catalogue (found {names})")
    return Bundle.load(NAME)


def test_bundle_is_a_two_speaker_separator_with_a_training_record(bundle):
    assert bundle.task == "separate" and bundle.labels == ["s1", "s2"]
    assert bundle.input_spec.sfreq == bundle.model.sample_rate == 8000
    training = bundle.extra["training"]
    assert training["files"]["train"] and training["heard_speakers"]
    assert training["steps"] > 0 and training["train_seconds"] > 0
    card = (bundle.path / "MODEL_CARD.md").read_text()
    assert "never heard" in card and f"{training['steps']:,} steps" in card


@pytest.mark.realdata
@pytest.mark.skipif(not SPEECH.is_dir(), reason="speech recordings not found in "
                    "../shared/data/speech (real-data test)")
def test_mixtures_of_unheard_speakers_improve(bundle, one_thread):
    from sigformer.data.mixtures import (
        AudioPool,
        list_speech,
        make_mixture,
        unheard_utterances,
    )
    from sigformer.speech.metrics import evaluate_separation

    rate = int(bundle.input_spec.sfreq)
    unheard, roles = unheard_utterances(list_speech(SPEECH)[0],
                                        bundle.extra["training"]["files"], SPEECH)
    assert not set(roles) & set(bundle.extra["training"]["heard_speakers"])
    one_each = list({u.speaker: u for u in unheard}.values())
    pool = AudioPool(one_each, rate)
    voices = [pool.get(i)[: 2 * rate] for i in range(len(one_each))]
    scores = []
    bundle.model.eval()
    for i in range(len(voices)):
        for j in range(i + 1, len(voices)):
            n = min(len(voices[i]), len(voices[j]))
            mix, refs, _ = make_mixture([voices[i][:n], voices[j][:n]], overlap=1.0)
            with torch.inference_mode():
                est = bundle.model(torch.from_numpy(mix)[None])[0].numpy()
            scores.append(evaluate_separation(est, refs, mix, rate,
                                              perceptual=False)["si_sdri"])
    # untrained weights give <= 0 dB; the trained bundle several dB (model card)
    assert np.mean(scores) > 2.0, scores


def test_sigformer_separate_by_name_keeps_the_input_rate(bundle, tmp_path):
    import soundfile as sf

    from sigformer.cli import main
    from sigformer.speech.audio import write_audio

    t = np.arange(16000 * 3) / 16000
    mix = (0.1 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 330 * t)).astype(
        np.float32)
    write_audio(tmp_path / "mix.wav", mix, 16000)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["separate", str(tmp_path / "mix.wav"), "--model", NAME, "--out",
                     str(tmp_path / "out")]) == 0
    outputs = sorted((tmp_path / "out").glob("*.wav"))
    assert len(outputs) == 2
    for path in outputs:
        info = sf.info(str(path))
        assert info.samplerate == 16000 and abs(info.frames - len(mix)) <= 2
