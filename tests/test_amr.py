"""Modulation recognition: RadioML generator and loaders, ClST and baselines, SKD, pipeline."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
import torch
import yaml

from sigformer.data.io import DataError
from sigformer.data.radioml import (
    RML2016_CLASSES,
    RML2018_CLASSES,
    AMRDataset,
    generate_radioml,
    load_rml2016,
    load_rml2018,
    rrc_taps,
)
from sigformer.data.sigmf_io import read_sigmf, write_sigmf
from sigformer.models import create_model
from sigformer.rf.amr import (
    accuracy_by_parameter,
    accuracy_by_snr,
    count_flops,
    distillation_loss,
    evaluate_amr,
    train_amr,
)
from sigformer.training import predict_logits

# Our reconstructions (no official code for ClST and the students) - pinned so that an
# architecture change is a deliberate, documented act.
PARAMETERS = {"clst": 391_280, "vtcnn2": 2_830_427, "amr_resnet": 103_755,
              "mcldnn": 406_199, "kd_cnn": 9_867, "kd_mobilenet": 17_851}


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_model_shapes_and_parameter_counts(name):
    model = create_model(name).eval()
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[name]
    assert model(torch.randn(5, 2, 128)).shape == (5, 11)
    with pytest.raises(ValueError, match=r"\(batch, 2, 128\)"):
        model(torch.randn(5, 2, 100))


def test_clst_other_sizes_and_presets():
    assert create_model("clst", n_times=1024, n_outputs=24)(torch.randn(2, 2, 1024)).shape == (
        2, 24)
    tiny = create_model("clst", "tiny")
    assert sum(p.numel() for p in tiny.parameters()) < 20_000
    with pytest.raises(ValueError, match="one entry per stage"):
        create_model("clst", dims=(16, 32), depths=(1,))


def test_students_are_far_cheaper_than_the_teacher():
    teacher = count_flops(create_model("clst"), (2, 128))
    for student in ("kd_cnn", "kd_mobilenet"):
        flops = count_flops(create_model(student), (2, 128))
        assert 0 < flops < teacher / 2
    lstm_only = 2 * 124 * 4 * 128 * (100 + 128 + 128 + 128)  # recurrent layers are counted
    assert count_flops(create_model("mcldnn"), (2, 128)) > lstm_only


# --- generator -----------------------------------------------------------------------------

def test_rrc_is_a_nyquist_pulse_when_matched():
    taps = rrc_taps()
    raised = np.convolve(taps, taps)
    centre = len(raised) // 2
    at_symbols = raised[centre % 8::8]
    assert at_symbols.max() == pytest.approx(1.0, abs=1e-3)
    assert np.sort(np.abs(at_symbols))[-2] < 0.01  # no inter-symbol interference


def test_generator_layout_normalisation_and_seed():
    data = generate_radioml(3, snrs=[-20, 0, 18], seed=5)
    assert data.X.shape == (11 * 3 * 3, 2, 128) and data.classes == RML2016_CLASSES
    np.testing.assert_allclose(np.hypot(data.X[:, 0], data.X[:, 1]).sum(1), 1.0, rtol=1e-4)
    assert set(data.snr) == {-20, 0, 18}
    np.testing.assert_array_equal(generate_radioml(3, snrs=[0], seed=5).X,
                                  generate_radioml(3, snrs=[0], seed=5).X)
    with pytest.raises(ValueError, match="unknown classes"):
        generate_radioml(1, classes=["OFDM"])


@pytest.mark.parametrize("convention, expected", [("true", 1.1), ("rml2016", 1.01)])
def test_snr_conventions(convention, expected):
    data = generate_radioml(40, snrs=[10], classes=["QPSK"], normalization="none",
                            impairments=False, snr_convention=convention, seed=1)
    power = np.mean(data.X[:, 0] ** 2 + data.X[:, 1] ** 2)
    assert power == pytest.approx(expected, rel=0.03)


def test_constant_envelope_modulations_stay_constant():
    data = generate_radioml(20, snrs=[30], classes=["CPFSK", "GFSK", "WBFM", "QAM16"],
                            impairments=False, seed=2)
    iq = data.X[:, 0] + 1j * data.X[:, 1]
    spread = np.abs(iq).std(1) / np.abs(iq).mean(1)
    for c, name in enumerate(data.classes):
        if name == "QAM16":
            assert spread[data.y == c].mean() > 0.2
        else:
            assert spread[data.y == c].mean() < 0.08


# --- loaders --------------------------------------------------------------------------------

def test_rml2016_pickle_needs_an_explicit_opt_in(tmp_path):
    rng = np.random.default_rng(0)
    content = {(mod, snr): rng.standard_normal((4, 2, 128)).astype(np.float32)
               for mod in ("QPSK", "BPSK") for snr in (-2, 10)}
    path = tmp_path / "RML2016.10a_dict.pkl"
    path.write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(DataError, match="allow_pickle=True") as refused:
        load_rml2016(path)
    # the refusal names options that exist: the keyword and the pipeline field
    import inspect

    from sigformer.tasks.config import AMRTaskConfig

    assert "allow_pickle" in inspect.signature(load_rml2016).parameters
    assert "amr.allow_pickle" in str(refused.value) and "allow_pickle" in AMRTaskConfig.model_fields
    assert "--allow-pickle" not in str(refused.value)
    data = load_rml2016(path, allow_pickle=True)
    assert data.classes == ("BPSK", "QPSK") and len(data) == 16
    np.testing.assert_array_equal(data.X[data.y == 1][:4], content[("QPSK", -2)])
    path.write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="not a readable RML2016 pickle"):
        load_rml2016(path, allow_pickle=True)


def test_rml2018_hdf5_loader(tmp_path, monkeypatch):
    import h5py

    rng = np.random.default_rng(0)
    n = 48
    labels = rng.integers(0, 24, n)
    with h5py.File(tmp_path / "GOLD_XYZ_OSC.0001_1024.hdf5", "w") as f:
        f["X"] = rng.standard_normal((n, 1024, 2)).astype(np.float32)
        f["Y"] = np.eye(24)[labels]
        f["Z"] = rng.choice([-20, 0, 30], (n, 1))
    data = load_rml2018(tmp_path / "GOLD_XYZ_OSC.0001_1024.hdf5")
    assert data.X.shape == (n, 2, 1024) and data.classes == RML2018_CLASSES
    np.testing.assert_array_equal(data.y, labels)
    sub = load_rml2018(tmp_path / "GOLD_XYZ_OSC.0001_1024.hdf5", min_snr=0, max_frames=5)
    assert len(sub) == 5 and sub.snr.min() >= 0
    with h5py.File(tmp_path / "bad.hdf5", "w") as f:
        f["X"] = np.zeros((2, 1024, 2))
        f["Y"] = np.zeros((2, 11))
        f["Z"] = np.zeros((2, 1))
    with pytest.raises(DataError, match="one-hot over 24 classes"):
        load_rml2018(tmp_path / "bad.hdf5")
    # the file is larger than memory (the real one is ~21 GB): a clear refusal, not an OOM kill
    import sigformer.data.radioml as radioml

    with monkeypatch.context() as m:
        m.setattr(radioml, "_available_memory", lambda: 30 * 1024 * 2 * 4)  # 30 frames
        with pytest.raises(DataError, match=r"48 frames needs .* pass max_frames="):
            load_rml2018(tmp_path / "GOLD_XYZ_OSC.0001_1024.hdf5")
        assert len(load_rml2018(tmp_path / "GOLD_XYZ_OSC.0001_1024.hdf5", max_frames=20)) == 20
    (tmp_path / "trunc.hdf5").write_bytes(b"\x89HDF\r\n")
    with pytest.raises(DataError, match="not a readable HDF5"):
        load_rml2018(tmp_path / "trunc.hdf5")


def test_dataset_npz_round_trip_and_validation(tmp_path):
    data = generate_radioml(2, snrs=[0], seed=0)
    back = AMRDataset.load(data.save(tmp_path / "amr.npz"))
    np.testing.assert_array_equal(back.X, data.X)
    assert back.classes == data.classes
    with pytest.raises(DataError, match=r"\(n, 2, length\)"):
        AMRDataset(np.zeros((3, 128)), [0, 0, 0], [0, 0, 0])
    with pytest.raises(DataError, match="NaN"):
        AMRDataset(np.full((1, 2, 8), np.nan), [0], [0])


# --- training and distillation --------------------------------------------------------------

def test_distillation_loss_reduces_to_cross_entropy_and_matches_teacher():
    logits = torch.randn(6, 4, requires_grad=True)
    targets = torch.tensor([0, 1, 2, 3, 0, 1])
    ce = torch.nn.functional.cross_entropy(logits, targets)
    torch.testing.assert_close(distillation_loss(logits, None, targets), ce)
    torch.testing.assert_close(distillation_loss(logits, logits.detach() + 5.0, targets,
                                                 alpha=0.3), 0.3 * ce)  # same softmax: KL 0
    loss = distillation_loss(logits, torch.randn(6, 4), targets, temperature=2, alpha=0.5)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_training_distillation_and_per_snr_evaluation():
    torch.manual_seed(0)
    data = generate_radioml(80, snrs=[10, 18], classes=["BPSK", "QPSK", "CPFSK", "AM-SSB"],
                            normalization="rms", seed=3)
    train, test = data.split(0.3, seed=0)
    teacher = create_model("clst", "tiny", n_outputs=4)
    train_amr(teacher, train.X, train.y, max_epochs=12, lr=3e-3, batch_size=32)
    result = evaluate_amr(teacher, test)
    assert result["accuracy"] > 0.6  # chance is 0.25
    assert set(result["accuracy_by_snr"]) == {10.0, 18.0}
    assert result["confusion"].sum() == len(test)
    student = create_model("kd_cnn", n_outputs=4)
    hist = train_amr(student, train.X, train.y, teacher_logits=predict_logits(teacher, train.X),
                     max_epochs=4, lr=3e-3, batch_size=32)
    assert hist.series("train_loss")[-1] < hist.series("train_loss")[0]
    with pytest.raises(ValueError, match="teacher outputs"):
        train_amr(student, train.X, train.y, teacher_logits=np.zeros((3, 4)))
    by = accuracy_by_snr(np.array([0, 1, 1]), np.array([0, 0, 1]), np.array([0, 0, 5]))
    assert by == {0.0: 0.5, 5.0: 1.0}


def test_accuracy_by_parameter_bins_each_impairment_by_magnitude():
    rng = np.random.default_rng(0)
    n = 90
    cfo = rng.uniform(-0.02, 0.02, n)
    data = AMRDataset(np.zeros((n, 2, 8)), np.zeros(n, int), np.full(n, 10.0),
                      params={"cfo": cfo, "n_paths": np.ones(n), "label": np.array(["x"] * n),
                              "rolloff": np.where(np.arange(n) < 45, np.nan, 0.3)})
    # right exactly where |CFO| is small: the lowest tertile is perfect, the top one wrong
    pred = np.where(np.abs(cfo) < np.quantile(np.abs(cfo), 1 / 3), 0, 1)
    by = accuracy_by_parameter(data, pred)
    assert set(by) == {"cfo"}  # constant, non-numeric and too-sparse parameters left out
    bins = by["cfo"]
    assert [b["n"] for b in bins] == [30, 30, 30] and sum(b["n"] for b in bins) == n
    assert bins[0]["accuracy"] == 1.0 and bins[2]["accuracy"] == 0.0
    assert bins[0]["low"] >= 0 and bins[-1]["high"] == pytest.approx(np.abs(cfo).max())
    assert accuracy_by_parameter(data, pred, mask=np.arange(n) < 10) == {}
    with pytest.raises(ValueError, match="one prediction per frame"):
        accuracy_by_parameter(data, pred[:5])


# --- pipeline and CLI -------------------------------------------------------------------------

def test_amr_pipeline_and_classify_iq_cli(tmp_path):
    from sigformer.cli import main

    cfg = {"name": "amr_tiny", "task": "amr",
           "amr": {"n_per_condition": 6, "snrs": [0, 10],
                   "models": [{"name": "clst", "preset": "tiny", "max_epochs": 1},
                              {"name": "vtcnn2", "max_epochs": 1,
                               "params": {"filters": [8, 4], "hidden": 16}}],
                   "distill": {"teacher": "clst", "students": [{"name": "kd_cnn",
                                                                "max_epochs": 1}]}}}
    path = tmp_path / "amr.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(report["models"]) == {"clst:tiny", "vtcnn2", "kd_cnn+SKD", "kd_cnn"}
    for row in report["models"].values():
        assert 0 <= row["accuracy"] <= 1 and row["flops"] > 0 and row["parameters"] > 0
    assert (tmp_path / "out" / "accuracy_vs_snr.png").stat().st_size > 0
    assert (tmp_path / "out" / "confusion_kd_cnn_SKD.png").stat().st_size > 0

    rng = np.random.default_rng(0)
    iq = (rng.standard_normal(128 * 8) + 1j * rng.standard_normal(128 * 8)).astype(np.complex64)
    rec = write_sigmf(tmp_path / "capture", iq, sample_rate=200e3)
    original = rec.read_bytes()
    out_meta = tmp_path / "annotated.sigmf-meta"
    assert main(["classify-iq", str(rec), "--model", str(tmp_path / "out" / "models" /
                                                          "clst_tiny"), "--out",
                 str(out_meta)]) == 0
    assert rec.read_bytes() == original  # --out never modifies the input
    annotated = read_sigmf(out_meta)
    assert annotated.annotations and all(a.label in RML2016_CLASSES
                                         for a in annotated.annotations)
    assert sum(a.count for a in annotated.annotations) == 128 * 8
    burst_meta = tmp_path / "bursts.sigmf-meta"
    assert main(["classify-iq", str(rec), "--model", str(tmp_path / "out" / "models" /
                                                          "clst_tiny"), "--out",
                 str(burst_meta), "--decision", "burst"]) == 0
    # one loud burst of noise: one label for all of it
    assert len({a.label for a in read_sigmf(burst_meta).annotations}) == 1
    short = write_sigmf(tmp_path / "short", iq[:64], sample_rate=200e3)
    assert main(["classify-iq", str(short), "--model",
                 str(tmp_path / "out" / "models" / "clst_tiny")]) == 2
    bad = {"task": "amr", "amr": {"source": "rml2016", "path": str(tmp_path / "x.pkl")}}
    (tmp_path / "x.pkl").write_bytes(pickle.dumps({}))
    path.write_text(yaml.safe_dump(bad))
    assert main(["run", str(path), "--out", str(tmp_path / "o2")]) == 2


# --- foreign files, on-the-fly training, checkpoints -------------------------------------------

def test_foreign_npz_and_hdf5_layouts_with_named_arrays(tmp_path):
    import h5py

    rng = np.random.default_rng(0)
    iq = rng.standard_normal((6, 64)) + 1j * rng.standard_normal((6, 64))
    names = np.array(["bpsk", "qpsk", "bpsk", "fm", "qpsk", "fm"])
    np.savez(tmp_path / "mine.npz", signals=iq.astype(np.complex64), mods=names,
             snrs=np.arange(6.0))
    data = AMRDataset.load(tmp_path / "mine.npz", x_key="signals", y_key="mods", snr_key="snrs")
    assert data.classes == ("bpsk", "fm", "qpsk") and list(data.y) == [0, 2, 0, 1, 2, 1]
    np.testing.assert_allclose(data.X[:, 0] + 1j * data.X[:, 1], iq, rtol=1e-6)
    last = np.stack([iq.real, iq.imag], axis=-1)  # (n, L, 2)
    with h5py.File(tmp_path / "theirs.h5", "w") as f:
        f["data/iq"] = last
        f["data/onehot"] = np.eye(3)[[0, 1, 0, 2, 1, 2]]
        f["names"] = np.array([b"a", b"b", b"c"])
    data = AMRDataset.load(tmp_path / "theirs.h5", x_key="data/iq", y_key="data/onehot",
                           classes_key="names")
    assert data.classes == ("a", "b", "c") and data.X.shape == (6, 2, 64)
    np.testing.assert_allclose(data.X[:, 1], iq.imag, rtol=1e-6)
    with pytest.raises(DataError, match=r"no datasets \['X'\]; it holds"):
        AMRDataset.load(tmp_path / "theirs.h5", x_key="X", y_key="data/onehot")
    with pytest.raises(DataError, match="not in the classes"):
        AMRDataset.load(tmp_path / "mine.npz", x_key="signals", y_key="mods", classes=["bpsk"])
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 3, 8)), y=np.zeros(3))
    with pytest.raises(DataError, match=r"expected \(n, 2, length\)"):
        AMRDataset.load(tmp_path / "bad.npz", x_key="x", y_key="y")


def test_generated_stream_is_seeded_per_step_not_per_worker():
    from torch.utils.data import DataLoader

    from sigformer.recipes.amr import GeneratedFrames

    stream = GeneratedFrames(["BPSK", "QPSK", "WBFM"], batch_size=16, steps=4, seed=7)
    single = [x for x, _ in DataLoader(stream, batch_size=None, num_workers=0)]
    double = [x for x, _ in DataLoader(stream, batch_size=None, num_workers=2)]
    for a, b in zip(single, double):
        torch.testing.assert_close(a, b)
    assert not torch.equal(single[0], single[1])  # fresh frames every step
    stream.set_epoch(1)
    assert not torch.equal(next(iter(stream))[0], single[0])  # and every epoch


def test_fit_stream_checkpoints_every_epoch_and_resumes(tmp_path):
    from sigformer.checkpoint import load_checkpoint
    from sigformer.recipes.amr import GeneratedFrames, StreamRecipe, fit_stream, has_finished

    classes = ["BPSK", "CPFSK"]
    lines: list[str] = []
    recipe = StreamRecipe(epochs=2, frames_per_epoch=64, batch_size=32, lr=3e-3)
    test = generate_radioml(4, snrs=[10], classes=classes, normalization="rms", seed=9)

    def interrupt_in_epoch_2(line: str) -> None:
        lines.append(line)
        if "epoch 2/2 step 1/" in line:
            raise KeyboardInterrupt

    def run(epochs, resume, teacher=None, log=lines.append, **changes):
        torch.manual_seed(0)
        model = create_model("kd_cnn", n_outputs=2)
        stream = GeneratedFrames(classes, seed=1)
        rec = StreamRecipe(**{**recipe.__dict__, "epochs": epochs, **changes})
        hist = fit_stream(model, stream, rec, teacher=teacher, validation=test,
                          checkpoint_dir=tmp_path / "m", resume=resume, log=log,
                          log_every=1, extra={"classes": classes})
        return model, hist

    full, _ = run(2, False)
    assert has_finished(tmp_path / "m")
    assert any("frames/s ETA" in line for line in lines)
    assert not (tmp_path / "m" / "train_state.pt").exists()  # the final bundle is clean
    import shutil

    shutil.rmtree(tmp_path / "m")
    with pytest.raises(KeyboardInterrupt):
        run(2, False, log=interrupt_in_epoch_2)  # interrupted during the second epoch
    assert not has_finished(tmp_path / "m") and (tmp_path / "m" / "train_state.pt").is_file()
    # another recipe is refused, naming what changed (epochs reshape the cosine)
    from sigformer.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match=r"lr 0\.003 -> 0\.001\..*new --out"):
        run(2, True, lr=1e-3)
    with pytest.raises(CheckpointError, match="epochs 2 -> 3, frames_per_epoch 64 -> 96"):
        run(3, True, frames_per_epoch=96)
    # resume to two epochs: same weights as the uninterrupted run (same frames, same state)
    resumed, hist = run(2, True, num_workers=1)  # the worker count may change
    assert any("resumed after epoch 1" in line for line in lines)
    assert [e["epoch"] for e in hist.epochs] == [1, 2]
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    loaded, config = load_checkpoint(tmp_path / "m")
    assert config["extra"]["classes"] == classes and config["extra"]["training_done"]
    teacher = create_model("kd_cnn", n_outputs=2).eval()
    _, hist = run(1, False, teacher=teacher)  # SKD path runs
    assert np.isfinite(hist.epochs[-1]["train_loss"])
    with pytest.raises(ValueError, match="epochs must be positive"):
        StreamRecipe(epochs=0)


# --- per-burst decisions on captures -------------------------------------------------------

class _MeanIQ(torch.nn.Module):
    """Deterministic stand-in model: logits ``W [mean I, mean Q]`` - a real carrier is
    clearly class 0, an imaginary one weakly class 1."""

    n_times = 128

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))

    def forward(self, x):
        return self.linear(x.mean(-1))


# frames of the capture: A = real carrier, B = imaginary, "-" = silence. Burst 1 (with a
# one-frame fade) is mostly A, burst 2 mostly B; three silent frames lie between them.
TWO_BURSTS = "AABA-AB---BBABB"


def _two_burst_capture(tmp_path):
    value = {"A": 1.0, "B": 1j, "-": 0.0}
    iq = np.concatenate([np.full(128, value[c], np.complex64) for c in TWO_BURSTS])
    return write_sigmf(tmp_path / "two_bursts", iq, sample_rate=1e6)


def test_burst_decision_gives_one_label_per_burst(tmp_path):
    from sigformer.rf.amr import classify_sigmf, frame_bursts

    path = _two_burst_capture(tmp_path)
    model, classes = _MeanIQ(), ["A", "B"]
    kw = dict(normalization="rms", min_power_db=30.0)
    frame = classify_sigmf(path, model, classes, **kw)
    burst = classify_sigmf(path, model, classes, decision="burst", **kw)
    active = [i for i, c in enumerate(TWO_BURSTS) if c != "-"]

    def label_of_frame(result):  # the annotations keep each frame's sample position
        return {a.start // 128 + k: a.label for a in result["annotations"]
                for k in range(a.count // 128)}

    assert label_of_frame(frame) == {i: TWO_BURSTS[i] for i in active}  # frame by frame
    assert label_of_frame(burst) == {i: "A" if i < 7 else "B" for i in active}
    assert frame["decision"] == "frame" and burst["decision"] == "burst"
    assert [(b["start"], b["count"], b["frames"], b["label"]) for b in burst["bursts"]] == [
        (0, 7 * 128, 6, "A"), (10 * 128, 5 * 128, 5, "B")]
    assert burst["frame_labels"] == {"A": 6, "B": 5}
    for a in burst["annotations"]:  # confidence of the burst's decision, not of the frame
        assert 0.5 < a.extra["sigformer:confidence"] < 1
    # a gap of more than max_gap frames splits a burst
    np.testing.assert_array_equal(frame_bursts(np.array([0, 128, 384, 896]), 128),
                                  [0, 0, 0, 1])
    np.testing.assert_array_equal(frame_bursts(np.array([0, 128, 384]), 128, max_gap=0),
                                  [0, 0, 1])
    with pytest.raises(ValueError, match=r"decision must be one of \['frame', 'burst'\]"):
        classify_sigmf(path, model, classes, decision="capture", **kw)


def test_evaluate_by_capture_decisions():
    from sigformer.rf.amr import evaluate_by_capture

    frames = {"A": [1.0, 0.0], "B": [0.0, 1.0]}
    kinds = [c for c in TWO_BURSTS if c != "-"] * 2
    X = np.stack([np.repeat(np.array(frames[c], np.float32)[:, None], 128, 1)
                  for c in kinds])
    starts = np.array([i * 128 for i, c in enumerate(TWO_BURSTS) if c != "-"] * 2)
    truth = [0 if i < 7 * 128 else 1 for i in starts[:11]] + [0] * 11  # capture 2: all A
    data = AMRDataset(X, truth, np.zeros(22), ("A", "B"), {"captures": ["one", "two"],
                                                           "hop": 128},
                      {"capture": np.repeat([0, 1], 11), "start": starts})
    model = _MeanIQ()
    assert evaluate_by_capture(model, data) == pytest.approx({"one": 8 / 11, "two": 5 / 11})
    assert evaluate_by_capture(model, data, "burst") == {"one": 1.0, "two": 6 / 11}
    assert evaluate_by_capture(model, data, "capture") == {"one": 6 / 11, "two": 1.0}
    no_starts = AMRDataset(X, truth, np.zeros(22), ("A", "B"), {},
                           {"capture": np.repeat([0, 1], 11)})
    with pytest.raises(ValueError, match=r"params\['start'\]"):
        evaluate_by_capture(model, no_starts, "burst")
    with pytest.raises(ValueError, match="decision must be one of"):
        evaluate_by_capture(model, data, "majority")


def _frames(*signals: np.ndarray) -> np.ndarray:
    return np.stack([np.stack([s.real, s.imag]) for s in signals]).astype(np.float32)


def test_carrier_only_frames_are_the_steady_ones():
    from sigformer.rf.amr import carrier_only_frames

    k = np.arange(128)
    rng = np.random.default_rng(0)
    noise = 0.01 * (rng.standard_normal(128) + 1j * rng.standard_normal(128))
    tone = np.exp(2j * np.pi * 0.01 * k) + noise  # an OOK "on" run, or one FSK tone held
    ook = np.repeat(rng.integers(0, 2, 16), 8) * np.exp(2j * np.pi * 0.01 * k) + noise
    bits = np.repeat(np.array([0, 1] * 8), 8) * 2 - 1
    fsk = np.exp(2j * np.pi * np.cumsum(0.06 * bits)) + noise
    qpsk = np.repeat(np.exp(1j * np.pi / 2 * rng.integers(0, 4, 16)), 8) + noise
    assert carrier_only_frames(_frames(tone, ook, fsk, qpsk)).tolist() == [
        True, False, False, False]


def test_carrier_only_frames_do_not_vote_in_a_burst():
    from sigformer.rf.amr import burst_decision

    # three steady-carrier frames lean "analog" (1), one informative frame says "ASK" (0):
    # the informative frame decides; a burst with no informative frame votes with them all
    k = np.arange(128)
    tone = np.exp(2j * np.pi * 0.01 * k)
    qpsk = np.repeat(np.exp(1j * np.pi / 2 * np.random.default_rng(0).integers(0, 4, 16)), 8)
    logits = np.log(np.array([[0.3, 0.7], [0.3, 0.7], [0.3, 0.7], [0.6, 0.4]]))
    voted = burst_decision(logits, _frames(tone, tone, tone, qpsk))
    assert voted.argmax() == 0 and voted[0] == pytest.approx(0.6)
    every_frame = burst_decision(logits[:3], _frames(tone, tone, tone))
    np.testing.assert_allclose(every_frame, [0.3, 0.7])
    # with every frame voting, the mean log-probability: (0.3^3 0.6)^(1/4) vs (0.7^3 0.4)^(1/4)
    mixed = burst_decision(logits, _frames(qpsk, qpsk, qpsk, qpsk))
    expected = np.array([(0.3 ** 3 * 0.6) ** 0.25, (0.7 ** 3 * 0.4) ** 0.25])
    np.testing.assert_allclose(mixed, expected / expected.sum())


def test_bundle_training_monitors_a_validation_grid_never_the_test_grid(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    import sigformer.recipes.amr as recipe_module

    seen = []

    def fake_fit_stream(model, stream, recipe, *, validation=None, **kwargs):
        seen.append(validation)

    monkeypatch.setattr(recipe_module, "fit_stream", fake_fit_stream)
    spec = importlib.util.spec_from_file_location(
        "train_amr", Path(__file__).resolve().parents[1] / "scripts" / "train_amr.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    grids = {}
    real_train_bundles = script.train_bundles

    def keep_grids(out, **kwargs):
        grids.update(test=kwargs["test"], validation=kwargs["validation"])
        return real_train_bundles(out, **kwargs)

    monkeypatch.setattr(script, "train_bundles", keep_grids)
    args = ["--out", str(tmp_path / "run"), "--frames", "64", "--epochs", "1",
            "--batch-size", "32", "--students", "", "--baselines", "",
            "--clst-preset", "tiny", "--test-per-condition", "2", "--val-per-condition", "1",
            "--threads", "1"]
    assert script.main(args) == 0
    test, validation = grids["test"], grids["validation"]
    assert len(seen) == 1 and seen[0] is validation and validation is not test
    assert len(validation) == len(test) // 2 == 11 * 20
    assert validation.info["seed"] != test.info["seed"]
    assert not np.isin(validation.X[:, 0, 0], test.X[:, 0, 0]).any()  # other frames
    seen.clear()
    assert script.main(args + ["--val-per-condition", "0"]) == 0
    assert seen == [None]  # no curve rather than one on the test grid
