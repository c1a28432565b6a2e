"""The shipped modulation-recognition bundles work out of the box: ``classify-iq`` and
``sigformer stream`` by catalogue name, accuracy well above chance on generated frames, and
``benchmarks/amr.py --pretrained``.

Nothing here pins the bundles' numbers: new versions replace them under the same names, so the
tests read labels, frame length and scaling from each bundle."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from repo_scripts import cli_json

from sigformer.bundle import Bundle
from sigformer.catalogue import list_pretrained
from sigformer.data.radioml import generate_radioml

REPO = Path(__file__).resolve().parents[1]
CLST = "amr-clst-modgen"
SHIPPED = [e["name"] for e in list_pretrained() if e["name"].startswith("amr-")]


_cli_json = cli_json


@pytest.fixture(scope="module")
def clst() -> Bundle:
    if CLST not in SHIPPED:
        pytest.fail(f"{CLST} is not in the catalogue (found {SHIPPED})")
    return Bundle.load(CLST)


def _frames(bundle: Bundle, n: int, snr: float, classes, seed: int):
    """Generated frames in the bundle's label order, length and per-frame scaling."""
    return generate_radioml(n, snrs=[snr], classes=classes, frame_length=bundle.window,
                            normalization=bundle.extra["normalization"], seed=seed)


@pytest.fixture(scope="module")
def capture(tmp_path_factory, clst):
    """A SigMF capture of two 18 dB bursts (QPSK then AM-DSB), four frames each, at 1 MS/s
    (the shipped bundles are rate-agnostic: no resampling); and the frames themselves."""
    from sigformer.data.sigmf_io import write_sigmf

    data = _frames(clst, 4, 18.0, ["QPSK", "AM-DSB"], seed=5)
    iq = (data.X[:, 0] + 1j * data.X[:, 1]).reshape(-1).astype(np.complex64)
    meta = write_sigmf(tmp_path_factory.mktemp("capture") / "cap", iq, sample_rate=1e6,
                       center_frequency=915e6)
    return Path(meta), data


def test_classify_iq_by_catalogue_name_labels_every_frame(tmp_path, capsys, clst, capture):
    meta, data = capture
    out = tmp_path / "pred.sigmf-meta"
    report = _cli_json(capsys, ["classify-iq", str(meta), "--model", CLST, "--out", str(out)])
    assert report["n_frames"] == len(data)
    assert sum(report["frame_labels"].values()) == len(data)
    assert set(report["frame_labels"]) <= set(clst.labels)
    written = json.loads(out.read_text())["annotations"]
    assert written and {a["core:label"] for a in written} <= set(clst.labels)
    # the CLI scales frames as the bundle records: the same labels as the bundle's own predict
    expected = clst.predict(data.X)
    values, counts = np.unique(expected, return_counts=True)
    assert report["frame_labels"] == dict(zip(values.tolist(), counts.tolist()))


def test_classify_iq_without_output_prints_runs_and_writes_nothing(capsys, clst, capture):
    meta, data = capture
    before = sorted(p.name for p in meta.parent.iterdir())
    report = _cli_json(capsys, ["classify-iq", str(meta), "--model", CLST])
    assert sorted(p.name for p in meta.parent.iterdir()) == before
    assert report["n_frames"] == len(data)
    runs = report["runs"]
    assert runs and {r["label"] for r in runs} <= set(clst.labels)
    assert sum(r["sample_count"] for r in runs) == len(data) * clst.window


def test_stream_by_catalogue_name_gives_one_label_per_frame(tmp_path, capsys, clst, capture):
    meta, data = capture
    out = tmp_path / "streamed.sigmf-meta"
    report = _cli_json(capsys, ["stream", CLST, "--source", f"sigmf:{meta}", "--out", str(out)])
    assert report["predictions"] == len(data)
    annotations = json.loads(out.read_text())["annotations"]
    # runs of frames with one label (as classify-iq writes them), back to back
    assert [a["core:sample_start"] for a in annotations] == \
        [sum(b["core:sample_count"] for b in annotations[:i]) for i in range(len(annotations))]
    assert all(a["core:sample_count"] == a["sigformer:frames"] * clst.window
               for a in annotations)
    labels = [a["core:label"] for a in annotations for _ in range(a["sigformer:frames"])]
    assert set(labels) <= set(clst.labels)
    assert labels == clst.predict(data.X).tolist()  # frame by frame as offline


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_bundle_is_a_rate_agnostic_iq_classifier(name):
    bundle = Bundle.load(name)
    assert bundle.task == "classify" and bundle.input_spec.layout == "iq"
    assert bundle.extra.get("rate_agnostic") is True  # any capture rate streams unresampled
    assert bundle.extra.get("normalization") in {"rms", "l1", "peak"}
    assert len(bundle.labels) == len(set(bundle.labels)) >= 2


def test_shipped_clst_beats_chance_clearly_at_high_snr(clst):
    """At 18 dB the trained ClST is far above chance; the same architecture with fresh random
    weights is not (so this fails if the shipped weights were never trained)."""
    from sigformer.checkpoint_io import kwargs_from_json, read_config
    from sigformer.models import create_model

    data = _frames(clst, 30, 18.0, clst.labels, seed=20_001)  # 330 frames, held-out seed
    chance = 1.0 / len(clst.labels)
    trained = float(np.mean(clst.predict_proba(data.X).argmax(1) == data.y))
    assert trained >= 2 * chance, f"shipped ClST: {trained:.3f} at 18 dB, chance {chance:.3f}"

    config = read_config(clst.path)
    torch.manual_seed(0)
    fresh = Bundle(model=create_model(config["model"], **kwargs_from_json(config["kwargs"])),
                   task="classify", input_spec=clst.input_spec, labels=clst.labels)
    untrained = float(np.mean(fresh.predict_proba(data.X).argmax(1) == data.y))
    assert untrained < 2 * chance <= trained


def _benchmark(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # for its `_table` helper
    spec = importlib.util.spec_from_file_location("amr_benchmark", REPO / "benchmarks" / "amr.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_pretrained_evaluates_shipped_bundles_without_training(tmp_path, monkeypatch,
                                                                         capsys):
    bench = _benchmark(monkeypatch)
    listed = bench.shipped_iq_classifiers()
    assert CLST in listed and "tfm-tokenizer-eeg-corpus" not in listed
    out = tmp_path / "amr_pretrained.json"
    bench.main(["--pretrained", CLST, "--n-per-condition", "2", "--out", str(out)])
    assert "accuracy by SNR" in capsys.readouterr().out
    result = json.loads(out.read_text())
    row = result["models"][CLST]
    snrs = result["held_out"]["snrs"]
    assert len(row["accuracy_by_snr"]) == len(snrs) == 20
    # 2 frames per class and SNR: the per-SNR accuracies average to the overall one
    assert np.isclose(np.mean(list(row["accuracy_by_snr"].values())), row["accuracy"])
    confusion = np.asarray(row["confusion_high_snr"])
    n_high = 2 * len(row["labels"]) * sum(s >= 10 for s in snrs)
    assert confusion.shape == (len(row["labels"]),) * 2 and confusion.sum() == n_high
    assert np.isclose(np.trace(confusion) / n_high, row["high_snr_accuracy"])
    # neither training, its test grid nor its validation grid
    assert result["held_out"]["seed"] not in (0, 10_000, 20_000)
    assert out.with_suffix(".png").is_file()


def test_benchmark_pretrained_refuses_a_non_iq_bundle(monkeypatch):
    if "tfm-tokenizer-eeg-corpus" not in [e["name"] for e in list_pretrained()]:
        pytest.skip("the catalogue has no tokenizer bundle to refuse")
    bench = _benchmark(monkeypatch)
    with pytest.raises(SystemExit, match="not a modulation-recognition bundle"):
        bench.load_amr_bundle("tfm-tokenizer-eeg-corpus")


RF_SIGMF = REPO.parent / "shared" / "data" / "rf_sigmf"


@pytest.mark.realdata
@pytest.mark.skipif(not (RF_SIGMF / "ask.sigmf-meta").is_file(), reason="URH captures not "
                    "found in ../shared/data/rf_sigmf (real-data test)")
def test_family_bundle_decides_per_burst_by_default(capsys):
    if "amr-clst-family" not in SHIPPED:
        pytest.fail(f"amr-clst-family is not in the catalogue (found {SHIPPED})")
    bundle = Bundle.load("amr-clst-family")
    assert bundle.extra["decision"] == "burst" and bundle.extra["target_sps"] == 8.0
    capture = str(RF_SIGMF / "ask.sigmf-meta")
    burst = _cli_json(capsys, ["classify-iq", capture, "--model", "amr-clst-family"])
    assert burst["decision"] == "burst" and set(burst["frame_labels"]) == {"ASK"}
    # the blind symbol-length estimate is printed: a live stream needs it as --sps
    assert burst["samples_per_symbol"] > 8.0 and 0 < burst["resample_factor"] < 1
    frame = _cli_json(capsys, ["classify-iq", capture, "--model", "amr-clst-family",
                               "--decision", "frame"])
    assert frame["decision"] == "frame" and frame["n_frames"] == burst["n_frames"]


def test_benchmark_tests_a_family_bundle_on_frames_like_its_training_ones(monkeypatch):
    if "amr-clst-family" not in SHIPPED:
        pytest.fail(f"amr-clst-family is not in the catalogue (found {SHIPPED})")
    bench = _benchmark(monkeypatch)
    bundle = bench.load_amr_bundle("amr-clst-family")
    grid = bench.held_out_grid(bundle, 1, 20_000)
    target = bundle.extra["target_sps"]
    sps = grid.params["sps"][np.isfinite(grid.params["sps"])]
    assert sps.min() >= target / 2 and sps.max() <= target * 2
    assert np.nanmax(np.abs(grid.params["cfo"])) <= 0.01  # centred, as after classify-iq
