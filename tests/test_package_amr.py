"""scripts/train_amr.py -> scripts/package_amr.py: a tiny run becomes a loadable catalogue
bundle whose card records the budget, the training time and (family mode) the target symbol
length that classify-iq conditions captures to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.repo_scripts import load_script

REPO = Path(__file__).resolve().parents[1]


def _script(name: str):
    return load_script(f"scripts/{name}.py")


@pytest.fixture(scope="module")
def family_run(tmp_path_factory):
    """One epoch of 512 frames, ClST small and KD-CNN with SKD, logged like a real run."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("amr")
    run, log = root / "run", root / "run.log"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert _script("train_amr").main([
            "--out", str(run), "--mode", "family", "--frames", "512", "--epochs", "1",
            "--batch-size", "128", "--test-per-condition", "2", "--threads", "1",
            "--clst-preset", "small", "--students", "kd_cnn", "--log-every", "1",
            "--captures", str(root / "no-captures")]) == 0
    log.write_text(buffer.getvalue())
    return run, log


def test_family_bundle_records_target_sps_budget_and_time(family_run, tmp_path):
    from sigformer.bundle import Bundle

    run, log = family_run
    folder = _script("package_amr").package(run, "clst", tmp_path, log)
    assert Path(folder).name == "amr-clst-family"
    bundle = Bundle.load(folder)
    assert bundle.labels == ["ASK", "FSK", "PSK", "QAM", "analog"]
    assert bundle.extra["target_sps"] == 8.0
    data = bundle.provenance["data"]
    assert data["frames_seen"] == 512
    assert "min wall time" in bundle.provenance["training_time"]
    report = json.loads((run / "report.json").read_text())
    assert bundle.provenance["results"]["clst"]["accuracy"] == pytest.approx(
        report["models"]["clst"]["accuracy"], abs=1e-4)
    # the packaged weights are the trained ones
    x = np.random.default_rng(0).standard_normal((4, 2, 128)).astype(np.float32)
    from sigformer.checkpoint import load_checkpoint

    trained, _ = load_checkpoint(run / "clst")
    import torch

    with torch.no_grad():
        assert torch.allclose(bundle.model(torch.as_tensor(x)), trained(torch.as_tensor(x)))


def test_family_bundle_records_its_decision_and_capture_results(family_run, tmp_path):
    """With --decision the bundle carries classify-iq's default; with captures at hand the
    card holds frame and burst accuracy per capture (here: one generated capture)."""
    from sigformer.bundle import Bundle
    from sigformer.data.modgen import generate_frames
    from sigformer.data.sigmf_io import SigMFAnnotation, write_sigmf

    run, log = family_run
    captures = tmp_path / "captures"
    captures.mkdir()
    burst = generate_frames(1, classes=("FSK2",), frame_length=4096, seed=1).iq[0]
    iq = np.concatenate([np.zeros(512), burst, np.zeros(512)]).astype(np.complex64)
    write_sigmf(captures / "gen", iq, sample_rate=1e6,
                annotations=[SigMFAnnotation(512, 4096, "FSK")])
    folder = _script("package_amr").package(run, "clst", tmp_path / "out", log, "burst",
                                            captures)
    bundle = Bundle.load(folder)
    assert bundle.extra["decision"] == "burst"
    real = bundle.provenance["results_real_captures"]
    assert set(real["frame_accuracy_per_capture"]) == {"gen"}
    assert set(real["burst_decision_accuracy_per_capture"]) == {"gen"}
    assert real["default_decision"] == "burst"
    assert "burst_decision_accuracy_per_capture" in (folder / "MODEL_CARD.md").read_text()


def test_training_time_reads_only_its_model_and_crosses_midnight(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("23:59:00 [clst] epoch 1/2 step 1\n"
                   "23:59:30 [kd_cnn] unrelated\n"
                   "00:01:00 [clst] epoch 2/2 done\n")
    text = _script("package_amr").training_time(log, "clst")
    assert text.startswith("2.0 min")
    assert _script("package_amr").training_time(log, "vtcnn2") is None


def test_compare_adds_same_budget_rows_and_refuses_another_budget(family_run, tmp_path):
    """--compare puts another run's models (e.g. baselines beside an earlier teacher) in the
    card, named after their run, only when the budget and test grid are the same."""
    import shutil

    from sigformer.bundle import Bundle

    run, log = family_run
    other = tmp_path / "baselines"
    other.mkdir()
    report = json.loads((run / "report.json").read_text())
    same = {"args": report["args"], "models": {"mcldnn": {
        "accuracy": 0.25, "high_snr_accuracy": 0.5, "parameters": 406199}}}
    (other / "report.json").write_text(json.dumps(same))
    folder = _script("package_amr").package(run, "clst", tmp_path / "out", log,
                                            compare=[other])
    results = Bundle.load(folder).provenance["results"]
    assert results["mcldnn (baselines)"] == {"accuracy": 0.25, "accuracy_at_>=10dB": 0.5,
                                             "parameters": 406199}
    assert "clst" in results
    shutil.rmtree(tmp_path / "out")
    (other / "report.json").write_text(json.dumps({**same, "args": {**same["args"],
                                                                     "epochs": 99}}))
    with pytest.raises(SystemExit, match="not the same budget"):
        _script("package_amr").package(run, "clst", tmp_path / "out", log, compare=[other])
    (other / "report.json").write_text(json.dumps({"models": same["models"]}))
    with pytest.raises(SystemExit, match="without its command line"):
        _script("package_amr").package(run, "clst", tmp_path / "out", log, compare=[other])


def test_card_rows_join_only_a_card_of_the_same_budget_and_test_grid():
    """--compare-bundle: a shipped card's rows (e.g. the students trained without SKD beside
    an earlier teacher) join the new card only when its budget and test grid are this run's."""
    script = load_script("scripts/package_amr.py")
    args = {"frames": 150000, "epochs": 8, "batch_size": 256, "lr": 2e-3,
            "test_per_condition": 100}
    rows = script.card_rows({"args": args, "models": {}}, "amr-kd_cnn-skd-modgen")
    plain = rows["kd_cnn (amr-kd_cnn-skd-modgen, earlier card)"]
    assert set(plain) == {"accuracy", "high_snr_accuracy", "parameters"}
    assert plain["parameters"] == 9867
    assert not any("T=4" in k for k in rows)  # comparison rows of that card are left out
    for key, value in (("frames", 1000), ("test_per_condition", 200), ("lr", 1e-3)):
        with pytest.raises(SystemExit, match="not the same budget/test grid"):
            script.card_rows({"args": {**args, key: value}, "models": {}},
                             "amr-kd_cnn-skd-modgen")
