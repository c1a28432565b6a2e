"""scripts/train_speech.py --task enhance -> benchmarks/speech_enhance_pretrained.py and
scripts/package_speech.py -> `sigformer enhance`: a one-step tiny DeFTAN-II run on generated
voices and noises is scored on unheard speakers and held-out noises only, next to every
beamformer, and packages into an enhancement bundle the CLI runs."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.repo_scripts import load_script

BENCH = "benchmarks/speech_enhance_pretrained.py"
PACKAGE = "scripts/package_speech.py"
SYSTEMS = {"unprocessed (mic 0)", "DS (true DOA)", "DS (SRP-PHAT DOA)", "MVDR Souden (VAD)",
           "RTF-MVDR (VAD)", "MVDR (SRP-PHAT DOA, VAD noise)", "MVDR Souden (oracle, ceiling)"}


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _train_args(data: Path, out: Path) -> list[str]:
    return ["--task", "enhance", "--data", str(data), "--out", str(out), "--preset", "tiny",
            "--n-mics", "4", "--sample-rate", "8000", "--batch-size", "1", "--seconds", "0.25",
            "--n-val", "1", "--workers", "0", "--val-every", "1", "--checkpoint-every", "1",
            "--log-every", "1", "--steps", "1"]


@pytest.fixture(scope="module")
def enhance_run(tmp_path_factory):
    """Eight generated talkers (one file each), four noise files (one held out), one
    training step of the tiny DeFTAN-II preset for a 4-mic array at 8 kHz."""
    from sigformer.data.mixtures import synthetic_voices
    from sigformer.speech.audio import write_audio

    root = tmp_path_factory.mktemp("enh")
    data, run, log = root / "data", root / "run", root / "run.log"
    for i, voice in enumerate(synthetic_voices(8, 1.5, 8000, 0)):
        write_audio(data / f"talker{i}.wav", voice / np.abs(voice).max() * 0.5, 8000)
    rng = np.random.default_rng(7)
    for k, name in enumerate(("fan", "street", "babble", "hum")):
        noise = np.cumsum(rng.standard_normal(12000)) if k % 2 else rng.standard_normal(12000)
        write_audio(data / "noise" / f"{name}.wav", 0.1 * noise / np.abs(noise).max(), 8000)
    torch.manual_seed(0)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert load_script("scripts/train_speech.py").main(_train_args(data, run)) == 0
    log.write_text(buffer.getvalue())
    record = json.loads((root / "run-split.json").read_text())
    assert len(record["noise_files"]["test"]) == 1  # a quarter of four held out
    return data, run, log, record


@pytest.fixture(scope="module")
def checkpoint_report(enhance_run, tmp_path_factory):
    """The benchmark on the run's best checkpoint (no packaging), 4 scenes of 0.5 s: one per
    unheard speaker (two test-role, two validation-role), not a --quick run."""
    _, run, _, _ = enhance_run
    out = tmp_path_factory.mktemp("report") / "r.json"
    assert _quiet(load_script(BENCH).main, [
        "--model", str(run.with_name("run-best")), "--n-scenes", "4", "--seconds", "0.5",
        "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_benchmark_scores_every_system_on_unheard_speakers_and_held_out_noise(
        enhance_run, checkpoint_report):
    from sigformer.checkpoint import load_checkpoint

    data, run, _, record = enhance_run
    report = checkpoint_report
    name = "run-best"
    assert set(report["results"]) == SYSTEMS | {name}
    assert report["results"][name]["kind"] == "model (sigformer enhance)"
    assert report["bundle"]["kind"] == "checkpoint" and report["bundle"]["n_mics"] == 4
    assert report["bundle"]["sample_rate"] == 8000
    # the digest is that of the checkpoint's weights (what packaging checks results against)
    trained, _ = load_checkpoint(run.with_name("run-best"))
    assert report["bundle"]["weights_sha256"] == load_script(PACKAGE).weights_digest(trained)

    cond = report["conditions"]
    assert cond["n_scenes"] == 4 and cond["seconds"] == 0.5 and cond["perceptual"] is False
    assert cond["quick"] is False
    assert cond["data"] == str(data) and cond["seed"] == 30_000
    assert cond["scene_seeds"] == [30_000, 30_001, 30_002, 30_003]
    assert cond["scene_config"]["n_mics"] == 4 and cond["scene_config"]["radius"] == [0.05, 0.1]
    # only speakers and noises the run never trained on
    heard = set(record["speakers"]["train"])
    trained_files = set(record["files"]["train"])
    assert cond["speakers"] and not heard & set(cond["speakers"])
    assert {cond["speakers"][s] for s in record["speakers"]["val"]} == {"validation"}
    assert {cond["speakers"][s] for s in record["speakers"]["test"]} == {"test"}
    assert cond["noise_held_out"] is True and cond["allow_heard_noise"] is False
    assert cond["noise_files"] == record["noise_files"]["test"]
    rows = report["scenes"]
    assert len(rows) == 4
    # test-role speakers take the first turns (a short run still has some), then validation
    assert [r["role"] for r in rows] == ["test", "test", "validation", "validation"]
    assert len({r["speaker"] for r in rows}) == 4
    for row in rows:
        assert row["speaker"] not in heard and row["speech_file"] not in trained_files
        assert row["noise_file"] in record["noise_files"]["test"]
        assert row["noise_file"] not in record["noise_files"]["train"]
        assert set(row["systems"]) == SYSTEMS | {name}
        assert row["systems"]["unprocessed (mic 0)"]["si_sdri"] == pytest.approx(0.0, abs=1e-9)
        assert 0.2 <= row["rt60"] <= 1.2 and 0.0 <= row["snr_db"] <= 15.0
    # the summaries are those of the rows
    ours = report["results"][name]
    scores = [r["systems"][name]["si_sdri"] for r in rows]
    assert ours["mean"]["si_sdri"] == pytest.approx(np.mean(scores))
    assert ours["min_si_sdri"] == pytest.approx(min(scores))
    assert sum(b["n"] for b in ours["by_rt60"].values()) == 4
    assert sum(b["n"] for b in ours["by_snr"].values()) == 4
    ceiling = report["results"]["MVDR Souden (oracle, ceiling)"]["mean"]["si_sdri"]
    assert ceiling > 0  # the oracle statistics beat the unprocessed microphone
    # the issue-16 targets: on the test-role scenes (headline), and on every unheard scene
    estimated = ("MVDR Souden (VAD)", "RTF-MVDR (VAD)", "MVDR (SRP-PHAT DOA, VAD noise)")
    for key, subset in (("targets", [r for r in rows if r["role"] == "test"]),
                        ("targets_all_unheard", rows)):
        block = report[key]
        assert block["n"] == len(subset)
        mine = np.mean([r["systems"][name]["si_sdri"] for r in subset])
        assert block["si_sdri"] == pytest.approx(mine)
        theirs = {s: np.mean([r["systems"][s]["si_sdri"] for r in subset]) for s in estimated}
        comp = block["comparison"]
        assert comp["best_estimated"] == max(theirs, key=theirs.get)
        assert comp["si_sdri_difference_db"] == pytest.approx(mine - max(theirs.values()))
        assert comp["wins"] == sum(r["systems"][name]["si_sdri"] >
                                   r["systems"][comp["best_estimated"]]["si_sdri"] for r in subset)
        assert block["met"] == {"si_sdri_ge_5db_over_mic0": mine >= 5.0,
                                "ahead_of_mvdr_with_estimated_statistics":
                                    comp["si_sdri_difference_db"] > 0}
    assert report["targets"]["n"] == 2 and report["targets_all_unheard"]["n"] == 4


def test_benchmark_draws_scenes_from_the_training_family(enhance_run):
    data, run, _, _ = enhance_run
    script = load_script("scripts/train_speech.py")
    loader = script.build(script.parse_args(_train_args(data, run.with_name("family"))))[2]
    assert loader.dataset.config == load_script(BENCH).scene_config(8000, 4)
    # the record states the array, and the benchmark draws the same family from it
    array = json.loads(script.split_path(run).read_text())["array"]
    assert array["n_mics"] == 4 and array["radius_m"] == [0.05, 0.1]
    assert loader.dataset.config == load_script(BENCH).scene_config(8000, 4, array)


def test_benchmark_refuses_a_record_without_held_out_noise(enhance_run, tmp_path):
    from sigformer.bundle import Bundle

    data, run, _, _ = enhance_run
    _quiet(load_script(PACKAGE).main, [str(run), "--dest", str(tmp_path), "--name", "enh-t"])
    folder = tmp_path / "enh-t"
    bundle = Bundle.load(folder)
    bundle.extra["training"]["noise_files"] = None  # a run from before the noise split
    bundle.save(folder)
    out = tmp_path / "r.json"
    bench = load_script(BENCH)
    with pytest.raises(SystemExit, match="no held-out noise files.*--allow-heard-noise"):
        bench.main(["--model", str(folder), "--quick", "--seconds", "0.5", "--n-scenes", "1",
                    "--out", str(out)])
    assert not out.exists()
    assert _quiet(bench.main, ["--model", str(folder), "--quick", "--seconds", "0.5",
                               "--n-scenes", "1", "--allow-heard-noise", "--out",
                               str(out)]) == 0
    cond = json.loads(out.read_text())["conditions"]
    assert cond["noise_held_out"] is False and cond["allow_heard_noise"] is True
    assert cond["quick"] is True
    assert sorted(cond["noise_files"]) == sorted(
        str(p.relative_to(data)) for p in (data / "noise").glob("*.wav"))


def test_packaged_enhance_bundle_runs_through_sigformer_enhance(enhance_run, tmp_path):
    import soundfile as sf

    from sigformer.bundle import Bundle
    from sigformer.checkpoint import load_checkpoint
    from sigformer.cli import main as cli_main
    from sigformer.speech.audio import write_audio

    data, run, log, record = enhance_run
    assert _quiet(load_script(PACKAGE).main, [str(run), "--log", str(log),
                                              "--dest", str(tmp_path)]) == 0
    folder = tmp_path / "enh-deftan2-tiny-4mic-8k"  # the default enhancement name
    bundle = Bundle.load(folder)
    assert bundle.task == "enhance" and bundle.labels == ["enhanced"]
    assert (bundle.input_spec.sfreq, bundle.input_spec.n_channels) == (8000, 4)
    assert (bundle.extra["chunk_s"], bundle.extra["overlap_s"]) == (4.0, 0.5)
    facts = bundle.extra["training"]
    assert facts["task"] == "enhance" and facts["n_mics"] == 4 and facts["steps"] == 1
    assert bundle.extra["array"] == record["array"] == facts["array"]  # the geometry trained on
    assert facts["noise_files"] == record["noise_files"] and facts["data_root"] == str(data)
    assert facts["files"] == record["files"] and facts["segment_seconds"] == 0.25
    card = (folder / "MODEL_CARD.md").read_text()
    assert "DeFTAN-II (`tiny` preset" in card and "4-microphone" in card
    assert record["noise_files"]["test"][0] in card  # the held-out noise is named
    trained, _ = load_checkpoint(run)
    x = torch.randn(1, 4, 4000)
    with torch.inference_mode():
        assert torch.allclose(bundle.model.eval()(x), trained.eval()(x))
    rng = np.random.default_rng(0)
    # at the model's rate the length is exact; another rate goes through the streaming
    # resampler, which keeps the rate but may drop a sample at the end (as for separation)
    for rate, n, slack in ((8000, 9000, 0), (16000, 20000, 2)):
        path = tmp_path / f"array{rate}.wav"
        write_audio(path, 0.05 * rng.standard_normal((4, n)), rate)
        out = tmp_path / f"clean{rate}.wav"
        assert _quiet(cli_main, ["enhance", str(path), "--model", str(folder),
                                 "--out", str(out)]) == 0
        info = sf.info(str(out))
        assert (info.samplerate, info.channels) == (rate, 1)
        assert abs(info.frames - n) <= slack


def test_card_reports_the_benchmark_of_these_weights_only(enhance_run, checkpoint_report,
                                                          tmp_path):
    data, run, log, _ = enhance_run
    results = tmp_path / "r.json"
    results.write_text(json.dumps(checkpoint_report))
    package = load_script(PACKAGE)
    assert _quiet(package.main, [str(run.with_name("run-best")), "--log", str(log), "--dest",
                                 str(tmp_path), "--name", "enh-t", "--results",
                                 str(results)]) == 0
    card = (tmp_path / "enh-t" / "MODEL_CARD.md").read_text()
    assert "Measured on unheard speakers, rooms and noises" in card
    assert "| MVDR Souden (oracle, ceiling) |" in card and "| enh-t |" in card
    assert "Measured on `" + str(run.with_name("run-best")) + "`" in card
    # the headline targets are those of the test-role scenes; every unheard scene beside them
    test_role = checkpoint_report["targets"]
    assert (f"Targets of issue 16 on the scenes of test-role speakers (never used for any "
            f"training decision): {test_role['n']} scenes, SI-SDRi "
            f"{test_role['si_sdri']:.2f} dB") in card
    assert (f"The same on every unheard scene (validation-role speakers included: they steered "
            f"the schedule and, for a -best checkpoint, its selection): "
            f"{checkpoint_report['targets_all_unheard']['n']} scenes") in card
    assert "si_sdri_ge_5db_over_mic0" in card and "Caution" not in card
    # validation speakers picked this -best checkpoint: the card does not call them independent
    assert "learning-rate schedule only" not in card
    assert "for a -best checkpoint, its selection, so they are not independent" in card
    other = dict(checkpoint_report, bundle=dict(checkpoint_report["bundle"],
                                                weights_sha256="0" * 64))
    results.write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="measured other weights"):
        package.main([str(run.with_name("run-best")), "--dest", str(tmp_path), "--name",
                      "enh-u", "--results", str(results)])
    assert not (tmp_path / "enh-u").exists()


def test_benchmark_refuses_data_in_another_layout(enhance_run, tmp_path):
    """The same files under another layout match none of the record's paths: every speaker
    would count as unheard, so the run is refused, naming the files and the expected root."""
    from sigformer.data.mixtures import list_speech
    from sigformer.speech.audio import read_audio, write_audio

    data, run, _, record = enhance_run
    moved = tmp_path / "moved"
    for path in data.rglob("*.wav"):  # talkers one folder down, noises where they were
        rel = path.relative_to(data)
        target = moved / (rel if rel.parts[0] == "noise" else Path("speech") / rel)
        write_audio(target, *read_audio(path))
    bench = load_script(BENCH)
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit, match=rf"not speech files under {re.escape(str(moved))}.*"
                                         rf"relative to {re.escape(str(data))}: pass --data"):
        bench.main(["--model", str(run.with_name("run-best")), "--data", str(moved),
                    "--n-scenes", "1", "--seconds", "0.5", "--out", str(out)])
    assert not out.exists()
    training = {"files": record["files"], "data_root": str(data)}
    bench.check_data_root(training, list_speech(data)[0], data)  # the recorded root passes


@pytest.mark.parametrize("n_speakers, n_noises", [(3, 2), (2, 4), (4, 2), (6, 4), (3, 3),
                                                  (5, 1), (1, 3)])
def test_scene_plan_gives_every_speaker_every_noise(n_speakers, n_noises):
    plan = load_script(BENCH).scene_plan(2 * n_speakers * n_noises, n_speakers, n_noises)
    first = plan[:n_speakers * n_noises]
    assert sorted(first) == [(s, n) for s in range(n_speakers) for n in range(n_noises)]
    assert [s for s, _ in plan] == [i % n_speakers for i in range(len(plan))]  # in turns
    assert plan[n_speakers * n_noises:] == first  # then the same again


def test_scenes_pair_every_speaker_with_every_noise(enhance_run):
    """Three speakers, two noises, six scenes: each (speaker, noise) pair once (a rotation
    by the scene index alone gave one speaker a single noise)."""
    from sigformer.data.mixtures import list_speech

    data, _, _, _ = enhance_run
    speakers = sorted({u.speaker for u in list_speech(data)[0]})[:3]
    speech = [u for u in list_speech(data)[0] if u.speaker in speakers]
    roles = dict(zip(speakers, ("validation", "test", "test"), strict=True))
    noises = sorted((data / "noise").glob("*.wav"))[:2]
    bench = load_script(BENCH)
    scenes = bench.draw_scenes(speech, roles, noises, bench.scene_config(8000, 4), 0.25, 6,
                               30_000, data)
    pairs = [(sc.info["speaker"], sc.info["noise_file"]) for sc in scenes]
    assert sorted(pairs) == sorted((s, f"noise/{n.name}") for s in roles for n in noises)
    assert [sc.info["role"] for sc in scenes[:2]] == ["test", "test"]  # test-role first


def test_card_refuses_quick_or_other_chunking_and_flags_heard_noise(enhance_run,
                                                                     checkpoint_report, tmp_path):
    _, run, _, _ = enhance_run
    best = str(run.with_name("run-best"))
    package = load_script(PACKAGE)
    results = tmp_path / "r.json"

    def card_with(report: dict, *extra: str) -> str:
        results.write_text(json.dumps(report))
        assert _quiet(package.main, [best, "--dest", str(tmp_path), "--name", "enh-t",
                                     "--results", str(results), *extra]) == 0
        return (tmp_path / "enh-t" / "MODEL_CARD.md").read_text()

    def refused(report: dict, match: str, *extra: str) -> None:
        results.write_text(json.dumps(report))
        with pytest.raises(SystemExit, match=match):
            package.main([best, "--dest", str(tmp_path), "--name", "enh-u", "--results",
                          str(results), *extra])
        assert not (tmp_path / "enh-u").exists()

    cond, bundle = checkpoint_report["conditions"], checkpoint_report["bundle"]
    # a --quick smoke run (or a report that does not say) is no card material
    refused(dict(checkpoint_report, conditions=dict(cond, quick=True)),
            "a --quick smoke run.*without --quick")
    refused(dict(checkpoint_report, conditions={k: v for k, v in cond.items() if k != "quick"}),
            "does not say whether it was a --quick")
    # measured with 4 s / 0.5 s chunks: a bundle streaming with others is refused, and so is a
    # report that does not record its chunking
    assert (bundle["chunk_s"], bundle["overlap_s"]) == (4.0, 0.5)
    refused(checkpoint_report, r"chunk_s, overlap_s = \(4\.0, 0\.5\).*\(2\.0, 0\.5\)",
            "--chunk-s", "2")
    refused(checkpoint_report, r"\(4\.0, 0\.5\).*\(4\.0, 0\.25\)", "--overlap-s", "0.25")
    refused(dict(checkpoint_report, bundle={k: v for k, v in bundle.items()
                                            if k not in ("chunk_s", "overlap_s")}),
            r"chunk_s, overlap_s = \(None, None\)")
    # noise it heard (--allow-heard-noise) is accepted, with the card saying so up front
    heard = dict(checkpoint_report, conditions=dict(cond, noise_held_out=False,
                                                    allow_heard_noise=True))
    card = card_with(heard)
    section = card[card.index("## Measured"):]
    assert section.startswith("## Measured on unheard speakers and rooms, with noises it HEARD")
    assert section.splitlines()[2].startswith("**Caution: these scenes use noise files the "
                                              "model HEARD in training")
    assert section.count("**Caution") == 2  # again after the target lines
    assert "**Caution" not in card_with(checkpoint_report)


def test_plot_enhance_draws_every_system_and_leaves_empty_bins_blank(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "plot_enhance", Path(__file__).resolve().parents[1] / "scripts" / "plot_enhance.py")
    plot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot)
    bins = ["<0.5 s", "0.5-0.8 s", ">0.8 s"]

    def row(gain, n_short):
        by_rt60 = {b: {"n": 0, "si_sdri": None} for b in bins}
        by_rt60["<0.5 s"] = {"n": n_short, "si_sdri": gain + 1}
        by_rt60[">0.8 s"] = {"n": 2, "si_sdri": gain - 1}
        return {"mean": {"si_sdri": gain}, "by_rt60": by_rt60}

    report = {"model": "m", "rt60_bins": bins, "conditions": {"n_scenes": 4},
              "results": {"unprocessed (mic 0)": row(0.0, 2), "model": row(3.0, 2)}}
    systems, groups, values = plot.bars(report)
    assert systems == ["unprocessed (mic 0)", "model"] and groups == ["all", *bins]
    np.testing.assert_array_equal(values[1], [3.0, 4.0, np.nan, 2.0])
    out = plot.plot(report, tmp_path / "f.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="not an enhancement benchmark report"):
        (tmp_path / "bad.json").write_text("{}")
        plot.main([str(tmp_path / "bad.json"), "--out", str(tmp_path / "g.png")])


def test_benchmark_runs_a_smaller_arrays_bundle_on_its_sub_array(enhance_run, tmp_path):
    """An 8-mic run started from the 4-mic one (--init widens it): --subarray-model puts the
    4-mic model on mics 0, 2, 4, 6 of every scene as its own row; a bundle that is not a
    sub-array, or that heard a test speaker, is refused."""
    data, run, _, record = enhance_run
    train = load_script("scripts/train_speech.py")
    wide = tmp_path / "wide"
    args = _train_args(data, wide)
    args[args.index("--n-mics") + 1] = "8"
    assert _quiet(train.main, args + ["--init", str(run.with_name("run-best"))]) == 0
    assert json.loads((tmp_path / "wide-split.json").read_text())["files"] == record["files"]
    bench = load_script(BENCH)
    seen = []
    enhance = bench.enhance_like_cli

    def recording(model, mixture, workdir):
        seen.append((model.name, mixture.shape[0]))
        return enhance(model, mixture, workdir)

    bench.enhance_like_cli = recording
    out = tmp_path / "r.json"
    small = str(run.with_name("run-best"))
    assert _quiet(bench.main, ["--model", str(wide), "--subarray-model", small,
                               "--n-scenes", "2", "--seconds", "0.5", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    row = "run-best (mics 0, 2, 4, 6)"
    assert report["results"][row]["kind"] == "model on a sub-array (sigformer enhance)"
    assert list(report["results"])[-3:] == [row, "wide", "MVDR Souden (oracle, ceiling)"]
    assert report["conditions"]["subarray_models"][0]["positions"] == [0, 2, 4, 6]
    assert seen == [("wide", 8), ("run-best", 4)] * 2
    for scene in report["scenes"]:
        assert np.isfinite(scene["systems"][row]["si_sdri"])
    # the run's own targets are still judged on the model under test alone
    assert report["targets"]["si_sdri"] == pytest.approx(np.mean(
        [s["systems"]["wide"]["si_sdri"] for s in report["scenes"] if s["role"] == "test"]))
    with pytest.raises(SystemExit, match="--subarray-model .* takes 8 microphones: not a "
                                         "smaller array than the 4"):
        bench.main(["--model", small, "--subarray-model", str(wide), "--quick",
                    "--out", str(tmp_path / "x.json")])
    # a 4-mic run on another split heard some of this run's test speakers
    other = tmp_path / "other"
    assert _quiet(train.main, _train_args(data, other) + ["--seed", "3"]) == 0
    heard = set(json.loads((tmp_path / "other-split.json").read_text())["speakers"]["train"])
    assert heard & set(record["speakers"]["test"] + record["speakers"]["val"])
    with pytest.raises(SystemExit, match="--subarray-model .* heard speakers of these scenes"):
        bench.main(["--model", str(wide), "--subarray-model", str(other), "--quick",
                    "--out", str(tmp_path / "y.json")])
