"""benchmarks/speech_pretrained.py judges the issue-16 separation targets on mixtures of
test-role speakers only (validation-role speakers steered training decisions), gives the
same lines on every unheard mixture beside them, says "not evaluated" when fewer than two
test-role speakers exist, and scripts/package_speech.py's separation card reads both."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.repo_scripts import load_script

BENCH = "benchmarks/speech_pretrained.py"
PACKAGE = "scripts/package_speech.py"
TALKERS = [f"talker{i}" for i in range(5)]


def _row(si_sdri: float, speakers: tuple[str, str], overlap: float = 1.0,
         pair: str = "FM") -> dict:
    return {"si_sdri": si_sdri, "si_sdr": si_sdri - 1.0,
            "info": {"speakers": list(speakers), "overlap": overlap, "gender_pair": pair}}


def test_assess_judges_the_mean_and_every_class():
    bench = load_script(BENCH)
    rows = [_row(9.0, ("a", "b"), 1.0, "FM"), _row(7.0, ("a", "b"), 0.3, "FM"),
            _row(8.0, ("a", "c"), 1.0, "FF")]
    block = bench.assess(rows)
    assert block["n"] == 3 and block["si_sdri"] == pytest.approx(8.0)
    assert block["min_si_sdri"] == 7.0
    assert set(block["classes"]) == {"overlap 1.0", "overlap 0.3", "gender pair FM",
                                     "gender pair FF"}
    assert block["classes"]["overlap 1.0"] == {"n": 2, "si_sdri": pytest.approx(8.5)}
    assert block["met"] == {"si_sdri_ge_6db": True, "never_below_mixture_per_class": True}
    # a mean above 6 dB with one class below the mixture: the second target fails
    rows.append(_row(-30.0, ("b", "c"), 0.6, "MM"))
    rows += [_row(20.0, ("a", "b"), 0.6, "FM")] * 3
    block = bench.assess(rows)
    assert block["si_sdri"] > 6.0 and block["classes_below_mixture"] == ["gender pair MM"]
    assert block["met"] == {"si_sdri_ge_6db": True, "never_below_mixture_per_class": False}
    # a NaN score meets nothing; no rows, no verdict
    nan = bench.assess([_row(math.nan, ("a", "b"))])
    assert nan["met"] == {"si_sdri_ge_6db": False, "never_below_mixture_per_class": False}
    assert bench.assess([]) is None


def test_headline_uses_test_role_pairs_only():
    """Validation-role speakers separate well, test-role ones do not: the headline fails
    where every unheard mixture would pass."""
    bench = load_script(BENCH)
    roles = {"v1": "validation", "v2": "validation", "t1": "test", "t2": "test"}
    rows = [_row(12.0, ("v1", "v2")), _row(10.0, ("v1", "t1")), _row(10.0, ("t2", "v2")),
            _row(2.0, ("t1", "t2"))]
    only = bench.test_role_rows(rows, roles)
    assert [r["info"]["speakers"] for r in only] == [["t1", "t2"]]
    head, every = bench.assess(only), bench.assess(rows)
    assert head["n"] == 1 and head["met"]["si_sdri_ge_6db"] is False
    assert every["n"] == 4 and every["met"]["si_sdri_ge_6db"] is True
    targets = bench.headline_targets(head, {"rtf": 0.2})
    assert targets == {"si_sdri_ge_6db": False, "never_below_mixture_per_class": True,
                       "rtf_lt_0.5": True}
    # one test-role speaker: no such pair, nothing judged, and the note says why
    roles["t2"] = "validation"
    assert bench.test_role_rows(rows, roles) == []
    assert bench.headline_targets(None, None) == {"si_sdri_ge_6db": None,
                                                  "never_below_mixture_per_class": None}
    note = bench.not_evaluated_note(roles)
    assert "only 1 test-role speaker " in note and "(t1)" in note


@pytest.fixture(scope="module")
def corpus_and_bundle(tmp_path_factory):
    """Five generated talkers and an untrained tiny MossFormer separation bundle (the
    verdicts are not the point: which mixtures they are judged on is)."""
    from sigformer.bundle import Bundle
    from sigformer.data.mixtures import synthetic_voices
    from sigformer.models import create_model
    from sigformer.spec import SignalSpec
    from sigformer.speech.audio import write_audio

    root = tmp_path_factory.mktemp("sep-roles")
    data = root / "data"
    for name, voice in zip(TALKERS, synthetic_voices(len(TALKERS), 1.0, 8000, 4)):
        write_audio(data / f"{name}.wav", voice / np.abs(voice).max() * 0.5, 8000)
    torch.manual_seed(0)
    model = create_model("mossformer", "tiny")
    spec = SignalSpec.audio(8000, 1)
    folder = Bundle(model=model, task="separate", input_spec=spec, model_spec=spec,
                    labels=["s1", "s2"], extra={"chunk_s": 0.5, "overlap_s": 0.1}
                    ).save(root / "bundle")
    return data, folder


def _benchmark(data: Path, folder: Path, files: dict, out: Path) -> tuple[dict, str]:
    """The benchmark (--quick, 0.5 s sources) on the bundle with ``files`` as its record."""
    from sigformer.bundle import Bundle

    bundle = Bundle.load(folder)
    bundle.extra["training"] = {"files": files}
    bundle.save(folder)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert load_script(BENCH).main([
            "--model", str(folder), "--data", str(data), "--quick", "--seconds", "0.5",
            "--threads", "1", "--out", str(out)]) == 0
    return json.loads(out.read_text()), printed.getvalue()


def test_benchmark_headline_on_test_role_mixtures(corpus_and_bundle, tmp_path):
    data, folder = corpus_and_bundle
    files = {"train": ["talker0.wav", "talker1.wav"], "val": ["talker2.wav"],
             "test": ["talker3.wav", "talker4.wav"]}
    report, printed = _benchmark(data, folder, files, tmp_path / "r.json")
    roles = sorted(v["role"] for v in report["test_speakers"].values())
    assert roles == ["test", "test", "validation"]
    head, every = report["targets_test_role"], report["targets_all_unheard"]
    assert head["n"] == 3 and every["n"] == 9 == report["n_mixtures"]  # 1 and 3 pairs x 3
    model = report["results"][str(folder)]
    assert head["si_sdri"] == pytest.approx(model["test_role_only"]["si_sdri"])
    assert every["si_sdri"] == pytest.approx(model["mean"]["si_sdri"])
    assert {k for k in head["classes"] if k.startswith("overlap")} == {
        "overlap 1.0", "overlap 0.6", "overlap 0.3"}
    assert report["targets"] == head["met"] and report["targets_on"] == "test-role speakers"
    assert report["targets_note"] is None and report["rtf"] is None
    assert "test-role speakers only" in printed and "every unheard mixture" in printed
    # the card shows the headline and the all-unheard line from this report
    lines = "\n".join(load_script(PACKAGE).separation_targets_lines(report))
    assert "test-role speakers only (never used for any training decision): 3 mixtures" in lines
    assert "every unheard mixture" in lines and "9 mixtures" in lines
    assert "not evaluated" not in lines
    # and the whole separation card reads the new report
    facts = {"preset": "tiny", "data": "generated talkers", "train_seconds_of_speech": 2.0,
             "speakers": {"train": ["talker0", "talker1"], "val": ["talker2"]},
             "heard_speakers": ["talker0", "talker1"], "steps": 1, "steps_trained": 1,
             "batch_size": 1, "segment_seconds": 0.5, "lr": None, "recipe": "r", "n_val": 1,
             "validation": []}
    card = load_script(PACKAGE).model_card(str(folder), 1, 8000, facts, report)
    assert lines in card and "| oracle IRM (ceiling) |" in card
    assert "Mixtures of test-role speakers only" not in card  # said once, in the targets


def test_benchmark_headline_not_evaluated_with_one_test_role_speaker(corpus_and_bundle,
                                                                     tmp_path):
    data, folder = corpus_and_bundle
    files = {"train": ["talker0.wav", "talker1.wav"], "val": ["talker2.wav", "talker3.wav"],
             "test": ["talker4.wav"]}
    report, printed = _benchmark(data, folder, files, tmp_path / "r.json")
    assert report["targets_test_role"] is None and report["targets_on"] == "not evaluated"
    assert report["targets"] == {"si_sdri_ge_6db": None,
                                 "never_below_mixture_per_class": None}
    assert "1 test-role speaker " in report["targets_note"]
    assert report["targets_all_unheard"]["n"] == 9
    assert report["results"][str(folder)]["test_role_only"] == {"n": 0, "si_sdri": None}
    assert "test-role speakers only (never used for any training decision): NOT EVALUATED: " \
        "only 1 test-role speaker" in printed
    card = load_script(PACKAGE).separation_targets_lines(report)
    assert "**not evaluated**" in card[0] and "1 test-role speaker" in card[0]
    assert " met" not in card[0]  # no verdict claimed
    assert "9 mixtures" in card[2]


def test_card_reads_reports_from_before_the_test_role_headline():
    lines = load_script(PACKAGE).separation_targets_lines(
        {"targets": {"si_sdri_ge_6db": False, "never_below_mixture_per_class": True}})
    assert len(lines) == 1 and "every unheard mixture" in lines[0]
    assert "si_sdri_ge_6db NOT met, never_below_mixture_per_class met" in lines[0]
