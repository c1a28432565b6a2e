"""Shipped OFDM estimators: the pipeline evaluates a bundle without training it
(``--pretrained`` / ``weights``), and ``scripts/package_ofdm.py`` writes its catalogue card."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml
from repo_scripts import load_script

from sigformer.checkpoint import load_checkpoint

TINY_GRID = {"pilot_subcarrier_step": 10}  # 12 x 2 pilots: a small sample-LMMSE fit


def run_pipeline(tmp_path: Path, name: str, ofdm: dict, *flags: str) -> tuple[int, Path]:
    from sigformer.cli import main

    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "task": "ofdm", "ofdm": {
        "n_train": 64, "n_test_per_point": 8, "grid": TINY_GRID, **ofdm}}))
    out = tmp_path / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(["run", str(path), "--out", str(out), *flags]), out


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny AdaFortiTran trained by the pipeline (its bundle and its report)."""
    tmp = tmp_path_factory.mktemp("trained")
    code, out = run_pipeline(tmp, "train", {"models": [
        {"name": "adafortitran", "preset": "tiny", "max_epochs": 1}]})
    assert code == 0
    return out / "models" / "adafortitran_tiny", json.loads((out / "metrics.json").read_text())


def test_pretrained_weights_are_evaluated_not_trained(tmp_path, trained):
    bundle, first = trained
    code, out = run_pipeline(tmp_path, "eval", {"models": [
        {"name": "adafortitran", "weights": str(bundle)}, {"name": "ofdm_linear"}]},
        "--pretrained")
    assert code == 0
    report = json.loads((out / "metrics.json").read_text())
    label = f"adafortitran ({bundle.name})"
    # the linear model has no shipped bundle: --pretrained leaves it out instead of training it
    assert set(report["sweeps"][0]["nmse_db"]) == {"LS", "LMMSE (sample)", label}
    assert report["histories"][label] == []
    # same seed, same test slots: the loaded weights give the trained model's numbers
    for before, after in zip(first["sweeps"], report["sweeps"]):
        assert after["nmse_db"][label] == pytest.approx(before["nmse_db"]["adafortitran:tiny"],
                                                        abs=1e-9)
    assert not (out / "models").exists()  # nothing trained, nothing re-saved


def test_pretrained_flag_finds_the_catalogue_bundle_that_fits(tmp_path, trained, monkeypatch,
                                                                capsys):
    import shutil

    import sigformer.catalogue as catalogue

    bundle, first = trained
    monkeypatch.setattr(catalogue, "CATALOGUE_DIR", tmp_path / "catalogue")
    shutil.copytree(bundle, tmp_path / "catalogue" / "ofdm-tiny-test")
    code, out = run_pipeline(tmp_path, "shipped", {"models": [
        {"name": "adafortitran", "preset": "tiny"}, {"name": "ofdm_linear"}]}, "--pretrained")
    assert code == 0
    report = json.loads((out / "metrics.json").read_text())
    label = "adafortitran (ofdm-tiny-test)"
    assert set(report["sweeps"][0]["nmse_db"]) == {"LS", "LMMSE (sample)", label}
    assert report["sweeps"][0]["nmse_db"][label] == pytest.approx(
        first["sweeps"][0]["nmse_db"]["adafortitran:tiny"], abs=1e-9)
    assert "ofdm_linear (preset None): no shipped bundle" in capsys.readouterr().out
    # another architecture (no preset = the paper configuration) is not a match: nothing fits
    code, _ = run_pipeline(tmp_path, "paper", {"models": [{"name": "adafortitran"}]},
                           "--pretrained")
    assert code == 2
    err = capsys.readouterr().err
    assert "no shipped bundle fits any model" in err and "ofdm-tiny-test" in err


@pytest.mark.parametrize("model, match", [
    ({"name": "fortitran"}, "holds a 'adafortitran' model, not 'fortitran'"),
    ({"name": "adafortitran", "preset": "small"}, "was not built with the preset/params"),
    ({"name": "adafortitran", "weights": "no-such-bundle"}, "no-such-bundle"),
])
def test_weights_that_do_not_fit_the_model_are_refused(tmp_path, trained, capsys, model,
                                                       match):
    bundle, _ = trained
    code, _ = run_pipeline(tmp_path, "bad", {"models": [{"weights": str(bundle), **model}]})
    assert code == 2
    assert match in capsys.readouterr().err


def test_the_same_bundle_twice_is_refused(tmp_path, trained, capsys):
    bundle, _ = trained
    twice = [{"name": "adafortitran", "weights": str(bundle)}] * 2
    code, _ = run_pipeline(tmp_path, "twice", {"models": twice})
    assert code == 2
    assert "load each bundle once" in capsys.readouterr().err


def test_pretrained_weights_for_another_pilot_pattern_are_refused(tmp_path, trained, capsys):
    bundle, _ = trained
    code, _ = run_pipeline(tmp_path, "bad", {"grid": {}, "models": [
        {"name": "adafortitran", "weights": str(bundle)}]})
    assert code == 2
    assert "another grid/pilot pattern" in capsys.readouterr().err


def test_pretrained_flag_is_refused_by_tasks_without_it(tmp_path, capsys):
    from sigformer.cli import main

    path = tmp_path / "amr.yaml"
    path.write_text(yaml.safe_dump({"task": "amr"}))
    assert main(["run", str(path), "--pretrained"]) == 2
    assert "--pretrained does not apply" in capsys.readouterr().err


def fake_results(folder: Path, model_db: float) -> dict:
    """The shape benchmarks/ofdm.py --pretrained writes, with chosen numbers."""
    points = []
    for sweep, value, bound in (("snr", 0, -11.0), ("snr", 25, -17.0)):
        nmse = {"LS": -2.0, "LMMSE (sample)": -10.0, "AdaFortiTran": model_db + bound}
        points.append({"sweep": sweep, "value": value, "bound_db": bound, "nmse_db": nmse,
                       "gap_to_bound_db": {k: v - bound for k, v in nmse.items()}})
    return {"pretrained": {"AdaFortiTran": {"folder": str(folder)}}, "points": points,
            "sample_lmmse_fit_slots": 5760}


@pytest.mark.parametrize("gap, met", [(0.5, True), (4.0, False)])
def test_package_writes_the_card_with_targets(tmp_path, gap, met):
    script = load_script("scripts/package_ofdm.py")
    train = load_script("scripts/train_ofdm.py")
    run = tmp_path / "run"
    assert train.main(["--preset", "tiny", "--n-train", "64", "--epochs", "1", "--out",
                       str(run), "--log-every", "0", "--no-attention-dropout"]) == 0
    results = tmp_path / "results.json"
    results.write_text(json.dumps(fake_results(run / "best", gap)))
    folder = script.package(run, "ofdm-test", results, tmp_path / "catalogue")
    model, config = load_checkpoint(folder)
    assert config["task"] == "estimate_channel"
    prov = config["provenance"]
    assert prov["results"]["mean_gap_to_bound_db"] == pytest.approx(gap)
    assert prov["results"]["targets"][
        "AdaFortiTran within 1 dB of the genie bound on average over the test sweep"] is met
    assert prov["recipe"]["attention_dropout"] is False
    card = (folder / "MODEL_CARD.md").read_text()
    assert "| snr=0 |" in card  # per-point results render as a table
    assert ("targets not met" in card) is not met


def test_package_refuses_results_of_another_run(tmp_path):
    script = load_script("scripts/package_ofdm.py")
    with pytest.raises(SystemExit, match="does not hold the run"):
        script.model_label(fake_results(tmp_path / "other", 0.5), tmp_path / "run" / "best",
                           "adafortitran")


def test_attention_dropout_benchmark_pairs_the_arms(tmp_path, monkeypatch, capsys):
    """The benchmark's collect step on two tiny runs per arm: per-seed paired differences of
    the common-test NMSE, and each run's own recorded switch."""
    train = load_script("scripts/train_ofdm.py")
    bench = load_script("benchmarks/attention_dropout.py")
    for folder, flags in (("ref_s0", []), ("noattn_s0", ["--no-attention-dropout"])):
        assert train.main(["--preset", "tiny", "--n-train", "64", "--epochs", "1", "--seed", "0",
                           "--out", str(tmp_path / folder), "--log-every", "0", *flags]) == 0
    out = tmp_path / "result.json"
    monkeypatch.setattr("sys.argv", ["attention_dropout.py", "--runs", str(tmp_path), "--seeds",
                                     "0", "1", "--collect", "--n-test", "32", "--threads", "1",
                                     "--out", str(out)])
    bench.main()
    report = json.loads(out.read_text())
    ref = report["results"]["reference"]["0"]
    fast = report["results"]["no attention dropout"]["0"]
    assert report["preset"] == "tiny" and "1" not in report["results"]["reference"]
    assert report["paired_difference_db"]["0"] == pytest.approx(
        fast["test_nmse_db"] - ref["test_nmse_db"])
    # same seed, same initial weights and data: the arms differ only by the switch
    assert ref["test_nmse_db"] != fast["test_nmse_db"]
    assert "not finished" in capsys.readouterr().out  # seed 1 was never trained


SHIPPED_OFDM = "ofdm-adafortitran-small-tdla"
SHIPPED_PAPER_OFDM = "ofdm-adafortitran-paper-tdla"  # the paper size, trained on a GPU


@pytest.mark.parametrize("name", [SHIPPED_OFDM, SHIPPED_PAPER_OFDM])
def test_shipped_estimator_beats_ls_out_of_the_box(tmp_path, name):
    from sigformer.bundle import Bundle
    from sigformer.catalogue import list_pretrained
    from sigformer.data.ofdm import simulate_ofdm
    from sigformer.rf.channel_estimation import LSInterpolation, nmse_db
    from sigformer.rf.ofdm import ModelEstimator

    if name not in [e["name"] for e in list_pretrained()]:
        pytest.fail(f"{name} is not in the catalogue")
    bundle = Bundle.load(name)
    assert bundle.task == "estimate_channel"
    data = simulate_ofdm(128, seed=99)  # the training mixture, a seed training never used
    model_db = nmse_db(ModelEstimator(bundle.model).predict(data), data.channels)
    ls_db = nmse_db(LSInterpolation().predict(data), data.channels)
    assert model_db < ls_db - 2.0, (model_db, ls_db)


def test_shipped_estimator_is_found_by_the_pipeline(tmp_path):
    from sigformer.catalogue import list_pretrained
    from sigformer.cli import main

    if SHIPPED_OFDM not in [e["name"] for e in list_pretrained()]:
        pytest.fail(f"{SHIPPED_OFDM} is not in the catalogue")
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "pipelines" /
                             "ofdm_adafortitran.yaml").read_text())
    # the shipped pipeline as it is, on small test sets and without the 64,000-slot LMMSE fit
    config["ofdm"].update(n_train=64, n_test_per_point=8, baselines=["ls"])
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", str(path), "--out", str(tmp_path / "out"), "--pretrained"]) == 0
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    label = f"adafortitran ({SHIPPED_OFDM})"
    assert set(report["sweeps"][0]["nmse_db"]) == {"LS", label}


def test_package_budget_names_the_devices_the_run_trained_on():
    """A GPU run's card says so (not "2-core CPU VM, no GPU"); a run resumed across devices
    says both; runs recorded before --device are CPU runs."""
    script = load_script("scripts/package_ofdm.py")
    assert script.default_budget({"threads": 2}) == "2 torch threads on a 2-core CPU VM, no GPU"
    gpu = script.default_budget({"device": "cuda", "threads": None}, ["cuda", "cuda"])
    assert gpu.startswith("one GPU (cuda;") and "no GPU" not in gpu
    mixed = script.default_budget({"device": "cuda", "threads": 2}, ["cpu", "cpu", "cuda:0"])
    assert mixed.startswith("mixed: 2 epoch(s) on 2 torch threads") and "1 on a GPU" in mixed
    old = {"args": {"threads": 2}, "epochs": [{"seconds": 1.0}, {"seconds": 1.0}]}
    assert script.epoch_devices(old) == ["cpu", "cpu"]
    moved = {"args": {"device": "cuda"}, "epochs": [{"device": "cpu"}, {}]}
    assert script.epoch_devices(moved) == ["cpu", "cuda"]


def test_pretrained_picks_the_bundle_of_the_asked_preset():
    """Two shipped AdaFortiTran bundles: --pretrained takes the one whose architecture the
    pipeline's preset asks for (no preset: the paper configuration)."""
    from sigformer.data.ofdm import OFDMConfig
    from sigformer.rf.ofdm import shipped_estimator
    from sigformer.tasks.config import OFDMModelConfig as OFDMModelSpec

    grid = OFDMConfig()
    assert shipped_estimator(OFDMModelSpec(name="adafortitran", preset="small"),
                             grid) == SHIPPED_OFDM
    assert shipped_estimator(OFDMModelSpec(name="adafortitran"), grid) == SHIPPED_PAPER_OFDM
    assert shipped_estimator(OFDMModelSpec(name="adafortitran", preset="tiny"), grid) is None


def train_tiny(train, out: Path, *flags: str) -> Path:
    assert train.main(["--preset", "tiny", "--n-train", "64", "--epochs", "1", "--out",
                       str(out), "--log-every", "0", *flags]) == 0
    return out


def test_init_starts_from_a_bundle_and_refuses_another_model(tmp_path):
    from sigformer.models import create_model

    train = load_script("scripts/train_ofdm.py")
    first = train_tiny(train, tmp_path / "first")
    model = create_model("adafortitran", "tiny")
    record = train.init_from_bundle(model, str(first / "best"))
    saved, _ = load_checkpoint(first / "best")
    for key, value in saved.state_dict().items():
        assert model.state_dict()[key].equal(value), key
    assert record["source"] == str(first / "best")
    assert record["attention_dropout"] is True
    with pytest.raises(SystemExit, match="another --preset"):
        train.init_from_bundle(create_model("adafortitran", "small"), str(first / "best"))
    with pytest.raises(SystemExit, match="this run trains a FortiTran"):
        train.init_from_bundle(create_model("fortitran", "tiny"), str(first / "best"))
    with pytest.raises(SystemExit, match="--init"):
        train.init_from_bundle(model, str(tmp_path / "missing"))


def test_a_fine_tune_records_its_start_through_a_resume_and_on_the_card(tmp_path):
    script = load_script("scripts/package_ofdm.py")
    train = load_script("scripts/train_ofdm.py")
    first = train_tiny(train, tmp_path / "first")
    results = tmp_path / "first.json"
    results.write_text(json.dumps(fake_results(first / "best", 2.0)))
    shipped = script.package(first, "ofdm-first", results, tmp_path / "catalogue")
    run = train_tiny(train, tmp_path / "ft", "--init", str(shipped), "--no-attention-dropout")
    # one more epoch as a resume: the checkpoint it writes still names the initial bundle
    assert train.main(["--preset", "tiny", "--n-train", "64", "--epochs", "2", "--out",
                       str(run), "--log-every", "0", "--no-attention-dropout", "--resume",
                       "--init", str(shipped)]) == 0
    _, config = load_checkpoint(run / "best")
    assert config["extra"]["init"]["source"] == str(shipped)
    assert config["extra"]["init"]["epochs_run"] == 1
    results.write_text(json.dumps(fake_results(run / "best", 0.5)))
    folder = script.package(run, "ofdm-ft", results, tmp_path / "catalogue")
    prov = load_checkpoint(folder)[1]["provenance"]
    assert prov["data"]["epochs_run"] == 3  # one before, two in the fine-tune
    summary = json.loads((run / "summary.json").read_text())
    assert prov["data"]["best_epoch"] == 1 + summary["best_epoch"] + 1  # after the first's
    assert prov["data"]["slots_seen"] == 3 * 64
    assert "attention dropout off" in prov["fine_tuned_from"]
    assert "the initial bundle:" in prov["budget"]
    assert "after the initial bundle's" in prov["training_time"]
