"""scripts/train_speech.py -> scripts/package_speech.py -> `sigformer separate`: a tiny run on
generated voices becomes a loadable separation bundle whose card and extra record the budget,
the speaker split and the training time, and benchmarks/speech_pretrained.py refuses test
speakers the bundle heard."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.repo_scripts import load_script

REPO = Path(__file__).resolve().parents[1]


def _script(path: str):
    return load_script(path)


@pytest.fixture(scope="module")
def speech_run(tmp_path_factory):
    """Eight generated talkers (one file each), four training steps of the tiny preset."""
    from sigformer.data.mixtures import synthetic_voices
    from sigformer.speech.audio import write_audio

    root = tmp_path_factory.mktemp("speech")
    data, run, log = root / "data", root / "run", root / "run.log"
    data.mkdir()
    for i, voice in enumerate(synthetic_voices(8, 2.0, 8000, 0)):
        write_audio(data / f"talker{i}.wav", voice / np.abs(voice).max() * 0.5, 8000)
    buffer = io.StringIO()
    torch.manual_seed(0)
    with contextlib.redirect_stdout(buffer):
        assert _script("scripts/train_speech.py").main([
            "--task", "separate", "--preset", "tiny", "--steps", "4", "--batch-size", "2",
            "--seconds", "0.5", "--val-every", "2", "--n-val", "2", "--log-every", "2",
            "--checkpoint-every", "2", "--workers", "0", "--data", str(data),
            "--out", str(run)]) == 0
    log.write_text(buffer.getvalue())
    return data, run, log


def test_bundle_records_budget_split_and_time(speech_run, tmp_path):
    from sigformer.bundle import Bundle
    from sigformer.checkpoint import load_checkpoint

    data, run, log = speech_run
    assert _script("scripts/package_speech.py").main([
        str(run), "--log", str(log), "--dest", str(tmp_path), "--name", "sep-test"]) == 0
    bundle = Bundle.load(tmp_path / "sep-test")
    assert bundle.task == "separate" and bundle.labels == ["s1", "s2"]
    assert bundle.input_spec.sfreq == 8000
    facts = bundle.extra["training"]
    assert facts["steps"] == 4 and facts["logged_steps"] == 4
    assert facts["train_seconds"] >= 0 and facts["recipe"].startswith("SpeechRecipe(")
    split = facts["speakers"]
    assert not set(split["train"]) & set(split["test"])
    assert facts["heard_speakers"] == split["train"]  # one file per generated talker
    assert facts["batch_size"] == 2 and facts["segment_seconds"] == 0.5  # from the run
    assert facts["preset"] == "tiny" and facts["lr"] is None
    assert sorted(facts["files"]) == ["test", "train", "val"]
    assert len(facts["validation"]) == 2  # validations at steps 2 and 4
    card = (tmp_path / "sep-test" / "MODEL_CARD.md").read_text()
    assert "4 steps of 2 x 0.5 s" in card and "`tiny` preset" in card and "talker" in card
    # the packaged weights are the trained ones
    trained, _ = load_checkpoint(run)
    x = torch.randn(1, 4000)
    with torch.inference_mode():
        assert torch.allclose(bundle.model.eval()(x), trained.eval()(x))


def test_packaged_bundle_runs_through_sigformer_separate(speech_run, tmp_path):
    import soundfile as sf

    from sigformer.cli import main as cli_main
    from sigformer.speech.audio import write_audio

    data, run, log = speech_run
    _script("scripts/package_speech.py").main([
        str(run), "--dest", str(tmp_path), "--name", "sep-test"])
    mix = np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32) * 0.05
    write_audio(tmp_path / "mix.wav", mix, 16000)  # another rate: resampled in and out
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["separate", str(tmp_path / "mix.wav"), "--model",
                         str(tmp_path / "sep-test"), "--out", str(tmp_path / "out")]) == 0
    outputs = sorted((tmp_path / "out").glob("*.wav"))
    assert len(outputs) == 2
    info = sf.info(str(outputs[0]))
    assert info.samplerate == 16000 and abs(info.frames - len(mix)) <= 2


def test_results_of_another_model_are_refused(speech_run, tmp_path):
    data, run, _ = speech_run
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"model": "something-else"}))
    with pytest.raises(SystemExit, match="something-else"):
        _script("scripts/package_speech.py").main([
            str(run), "--dest", str(tmp_path), "--results", str(results)])


def test_read_log_sums_windows_across_a_resume(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("\n".join([
        "separate: MossFormer (1,000 parameters), recipe SpeechRecipe(lr=0.001)",
        "step 50/200  0.50 steps/s  loss 1.000  lr 1e-3",
        "step 100/200  0.25 steps/s  loss 0.500  lr 1e-3",
        "separate: MossFormer (1,000 parameters), recipe SpeechRecipe(lr=0.001)",
        "resumed from runs/x at step 100",
        "step 150/200  1.00 steps/s  loss 0.100  lr 1e-3"]))
    facts = _script("scripts/package_speech.py").read_log(log)
    assert facts == {"logged_steps": 150, "train_seconds": 100 + 200 + 50,
                     "recipe": "SpeechRecipe(lr=0.001)"}


def test_benchmark_refuses_when_every_speaker_was_heard(speech_run, tmp_path):
    from sigformer.bundle import Bundle

    data, run, _ = speech_run
    _script("scripts/package_speech.py").main([
        str(run), "--dest", str(tmp_path), "--name", "sep-test"])
    folder = tmp_path / "sep-test"
    bundle = Bundle.load(folder)
    files = bundle.extra["training"]["files"]
    files["train"] = files["train"] + files["val"] + files["test"]
    bundle.save(folder)
    with pytest.raises(SystemExit, match="not heard in training"):
        _script("benchmarks/speech_pretrained.py").main([
            "--model", str(folder), "--data", str(data), "--quick",
            "--out", str(tmp_path / "r.json")])


def test_a_speaker_rule_added_later_still_counts_grouped_files_as_heard(tmp_path):
    """``source7_0`` trained, ``source7_1`` later grouped with it by a speaker rule: the
    benchmark must not test on ``source7_1``."""
    from sigformer.data.mixtures import list_speech, synthetic_voices
    from sigformer.speech.audio import write_audio

    names = ["source7_0", "source7_1", "talkerA", "talkerB", "talkerC"]
    for name, voice in zip(names, synthetic_voices(len(names), 1.0, 8000, 1)):
        write_audio(tmp_path / f"{name}.wav", voice / np.abs(voice).max() * 0.5, 8000)
    from sigformer.data.mixtures import unheard_utterances

    files = {"train": ["source7_0.wav", "talkerA.wav"], "val": ["talkerB.wav"]}
    test, roles = unheard_utterances(list_speech(tmp_path)[0], files, tmp_path)
    assert sorted(u.path.name for u in test) == ["talkerB.wav", "talkerC.wav"]
    assert roles == {f"{tmp_path.name}/talkerB": "validation",
                     f"{tmp_path.name}/talkerC": "test"}
    # a record whose files are not under the folder (another layout) is refused: nothing
    # would match, and the trained talkers would count as unheard
    from sigformer.data.io import DataError

    moved = {"train": ["clean/source7_0.wav", "clean/talkerA.wav"], "val": ["talkerB.wav"]}
    with pytest.raises(DataError, match="2 of the 3 training and validation files"):
        unheard_utterances(list_speech(tmp_path)[0], moved, tmp_path)


def test_benchmark_scores_floor_ceiling_and_model(speech_run, tmp_path):
    data, run, _ = speech_run
    _script("scripts/package_speech.py").main([
        str(run), "--dest", str(tmp_path), "--name", "sep-test"])
    out = tmp_path / "r.json"
    with contextlib.redirect_stdout(io.StringIO()):
        assert _script("benchmarks/speech_pretrained.py").main([
            "--model", str(tmp_path / "sep-test"), "--data", str(data), "--quick",
            "--seconds", "1.0", "--threads", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    results = report["results"]
    assert results["mixture (floor)"]["mean"]["si_sdri"] == pytest.approx(0.0, abs=1e-6)
    assert results["oracle IRM (ceiling)"]["mean"]["si_sdri"] > 5.0
    assert set(results[str(tmp_path / "sep-test")]["by_overlap"]) == {"1.0", "0.6", "0.3"}
    assert report["rtf"] is None  # --quick skips the CLI timing
    roles = {v["role"] for v in report["test_speakers"].values()}
    assert roles == {"test", "validation"}  # unheard speakers of both roles are tested
    only = results[str(tmp_path / "sep-test")]["test_role_only"]
    assert only["n"] >= 1 and only["si_sdri"] is not None


def test_packaging_needs_the_runs_split_record(speech_run, tmp_path):
    import shutil

    _, run, _ = speech_run
    copy = tmp_path / "copied-run"
    shutil.copytree(run, copy)  # without its sibling -split.json
    with pytest.raises(SystemExit, match="split.json is missing"):
        _script("scripts/package_speech.py").main([str(copy), "--dest", str(tmp_path)])


def test_card_names_the_loss_the_run_used():
    """The enhancement card named the PCM loss whatever the run trained with."""
    pkg = _script("scripts/package_speech.py")
    assert pkg.loss_name("SpeechRecipe(loss='si_sdr', lr=0.0005)") == "negative SI-SDR loss"
    assert pkg.loss_name("SpeechRecipe(loss='pcm', lr=0.0001)") == "PCM loss"
    assert pkg.loss_name(None) == "loss not recorded"
    facts = {"n_val": 2, "segment_seconds": 2.0,
             "validation": [{"step": 250, "si_sdr": -0.61, "si_sdri": 0.85, "lr": 5e-4}]}
    lines = pkg.validation_lines(facts, "scenes", "; note")
    assert lines[0] == ("Validation (2 fixed 2 s scenes of the validation speakers; note), "
                        "last entries:")
    assert lines[-1] == "| 250 | -0.61 | 0.85 | 5.0e-04 |"


def test_runs_recorded_before_the_array_field_get_the_array_they_trained_on():
    package = load_script("scripts/package_speech.py")
    old = {"args": {"task": "enhance", "n_mics": 6}}
    array = package.training_array(old)
    assert array["n_mics"] == 6 and array["radius_m"] == [0.05, 0.1]
    assert array["geometry"].startswith("uniform circular") and array["reference_mic"] == 0
    recorded = {**old, "array": {**array, "radius_m": 0.08}}
    assert package.training_array(recorded)["radius_m"] == 0.08


def test_card_of_a_widened_fine_tune_names_its_start_and_that_runs_budget(tmp_path):
    """A run started from a 4-mic bundle (--init) and trained on 8 mics: the card says where
    the weights started, how the array was widened and the first run's own budget."""
    import json

    package = load_script("scripts/package_speech.py")
    start = tmp_path / "enh-4mic"
    start.mkdir()
    (start / "config.json").write_text(json.dumps({
        "kwargs": {"n_mics": 4},
        "extra": {"training": {"steps": 6000, "steps_trained": 7250,
                               "train_seconds": 15300}}}))
    facts = {"init": str(start), "init_training": package.init_training(str(start)),
             "n_mics": 8}
    assert package.init_lines(facts) == [
        "- Fine-tuned from `enh-4mic`, widened from its 4 microphones to 8 (its microphones "
        "at positions 0, 2, 4, 6 of this array, the new ones' weights starting at zero); "
        "its own training: 7,250 steps (weights of step 6,000), 255 min on a 2-core CPU."]
    same = {**facts, "n_mics": 4}
    assert package.init_lines(same) == [
        "- Fine-tuned from `enh-4mic`; its own training: 7,250 steps (weights of step 6,000), "
        "255 min on a 2-core CPU."]
    assert "at positions 0, 3, 6, 9 of this array" in package.init_lines(
        {**facts, "n_mics": 12})[0]
    gone = {"init": str(tmp_path / "runs" / "old-best"),
            "init_training": package.init_training(str(tmp_path / "runs" / "old-best"))}
    assert package.init_lines(gone) == [
        f"- Fine-tuned from `old-best` (`{tmp_path / 'runs' / 'old-best'}`; its own budget is "
        f"in its training log)."]
    assert package.init_lines({"init": None}) == []


def test_card_says_what_the_extra_microphones_buy_over_the_sub_array_bundle():
    package = load_script("scripts/package_speech.py")
    sub = "enh-4 (mics 0, 2, 4, 6)"
    scenes = [{"role": role, "systems": {"run": {"si_sdri": ours}, sub: {"si_sdri": theirs}}}
              for role, ours, theirs in (("test", 5.0, 4.0), ("test", 3.0, 3.5),
                                         ("validation", 2.0, 1.0))]
    results = {"model_system": "run", "scenes": scenes, "results": {
        "run": {"kind": "model (sigformer enhance)"},
        sub: {"kind": "model on a sub-array (sigformer enhance)"}}}
    assert package.subarray_lines(results, "enh-8") == [
        "", "Against enh-4 (mics 0, 2, 4, 6) on the same scenes (what the other microphones "
            "buy): enh-8 +0.25 dB on the 2 test-role scenes (better on 1); +0.50 dB on all 3 "
            "scenes (better on 2)."]
    assert package.subarray_lines({**results, "results": {"run": {}}}, "enh-8") == []
    assert [package._a(n) for n in (4, 6, 8, 11, 16, 18)] == ["a", "a", "an", "an", "a", "an"]
