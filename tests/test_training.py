import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sigformer.augment import Augmentation
from sigformer.models import create_model
from sigformer.training import (
    check_training_args,
    euclidean_align,
    predict_logits,
    reset_head,
    train_classifier,
    train_objective,
    warmup_cosine,
)


def _separable(rng, n=48):
    X = rng.standard_normal((n, 4, 101)).astype(np.float32)
    y = np.arange(n) % 2
    X[y == 1, 0] += np.sin(np.linspace(0, 20, 101)).astype(np.float32) * 3
    return X, y


def _tiny():
    return create_model("dbconformer", n_chans=4, n_outputs=2, n_times=101, emb_size=16,
                        num_heads=4, depth=1, spa_dim=8, patch_size=25, dropout=0.1)


def test_training_learns_and_records_history(rng):
    X, y = _separable(rng)
    model = _tiny()
    history = train_classifier(model, X, y, max_epochs=15, batch_size=16, lr=3e-3,
                               progress_bar=False)
    losses = history.series("train_loss")
    assert len(losses) == 15 and losses[-1] < losses[0]
    acc = (predict_logits(model, X).argmax(1) == y).mean()
    assert acc > 0.9


def test_seeding_makes_training_reproducible(rng):
    X, y = _separable(rng)
    weights = []
    for _ in range(2):
        torch.manual_seed(123)  # same initial weights
        model = _tiny()
        train_classifier(model, X, y, max_epochs=2, batch_size=16, seed=7, progress_bar=False)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1])


def test_early_stopping(rng):
    X, y = _separable(rng)
    with pytest.raises(ValueError, match="early_stopping_patience needs validation data"):
        train_classifier(_tiny(), X, y, max_epochs=2, early_stopping_patience=1,
                         progress_bar=False)
    history = train_classifier(_tiny(), X[:32], y[:32], X_val=X[32:], y_val=y[32:],
                               max_epochs=200, lr=0.5, optimizer="sgd",
                               early_stopping_patience=2, progress_bar=False)
    assert len(history.epochs) < 200
    assert "val_loss" in history.epochs[-1]


def _linear(n_chans=4, n_times=101, n_outputs=2):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(n_chans * n_times, n_outputs))


def _val_loss(model, X, y):
    logits = torch.from_numpy(predict_logits(model, X))
    return float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(y)))


@pytest.mark.parametrize("restore", [True, False])
def test_best_epoch_restore(rng, restore):
    X, y = _separable(rng, 64)
    model = _linear()
    # a large SGD step makes the validation loss jump around, so best != last epoch
    history = train_classifier(model, X[:40], y[:40], X_val=X[40:], y_val=y[40:],
                               max_epochs=12, batch_size=64, lr=2.0, optimizer="sgd",
                               restore_best_weights=restore, progress_bar=False)
    val = history.series("val_loss")
    final = _val_loss(model, X[40:], y[40:])
    if restore:
        assert history.best_epoch == int(np.argmin(val))
        assert final == pytest.approx(min(val), rel=1e-4)
    else:
        assert history.best_epoch is None
        assert final == pytest.approx(val[-1], rel=1e-4)


def test_cosine_schedule_follows_the_formula(rng):
    X, y = _separable(rng, 32)
    history = train_classifier(_linear(), X, y, max_epochs=6, batch_size=32, lr=0.1,
                               lr_schedule="cosine", progress_bar=False)
    lrs = np.array(history.series("lr"))
    # the rate logged at the end of epoch e is the one used during it
    expected = 0.1 * (1 + np.cos(np.pi * np.arange(6) / 6)) / 2
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)


def test_plateau_schedule_lowers_the_rate_when_validation_stalls(rng):
    X = rng.standard_normal((60, 4, 101)).astype(np.float32)
    y = rng.integers(0, 2, 60)  # unlearnable: validation loss cannot keep improving
    history = train_classifier(_linear(), X[:40], y[:40], X_val=X[40:], y_val=y[40:],
                               max_epochs=25, batch_size=40, lr=0.05, lr_schedule="plateau",
                               progress_bar=False)
    lrs = history.series("lr")
    assert lrs[0] == pytest.approx(0.05) and lrs[-1] < 0.05
    assert all(b <= a for a, b in zip(lrs, lrs[1:]))


def test_label_smoothing_keeps_predictions_less_confident(rng):
    X, y = _separable(rng, 48)
    confidence = {}
    for smoothing in (0.0, 0.3):
        model = _linear()
        train_classifier(model, X, y, max_epochs=30, batch_size=48, lr=0.05,
                         label_smoothing=smoothing, progress_bar=False)
        proba = torch.softmax(torch.from_numpy(predict_logits(model, X)), -1).numpy()
        confidence[smoothing] = proba.max(1).mean()
    # smoothed targets put 0.85 on the true class (0.3 spread over 2 classes)
    assert confidence[0.3] < confidence[0.0]
    assert confidence[0.3] < 0.9


class _Recorder(Augmentation):
    """Counts the batches it sees and flips the sign of every trial."""

    name = "recorder"

    def __init__(self):
        self.batches, self.prepared = [], None

    def prepare(self, X, y):
        self.prepared = len(X)

    def __call__(self, X, y, generator):
        self.batches.append(len(X))
        return -X, y


def test_augmentations_see_training_batches_only(rng):
    X, y = _separable(rng, 48)
    recorder = _Recorder()
    train_classifier(_linear(), X[:32], y[:32], X_val=X[32:], y_val=y[32:], max_epochs=3,
                     batch_size=16, augmentations=[recorder], progress_bar=False)
    assert recorder.prepared == 32
    assert recorder.batches == [16, 16] * 3  # validation batches (16 trials) never augmented


class _FlagProbe(Augmentation):
    """Records whether deterministic algorithms are on while training (optionally raises)."""

    name = "flag_probe"

    def __init__(self, fail: bool = False):
        self.seen, self.fail = [], fail

    def __call__(self, X, y, generator):
        self.seen.append((torch.are_deterministic_algorithms_enabled(),
                          os.environ.get("CUBLAS_WORKSPACE_CONFIG")))
        if self.fail:
            raise RuntimeError("probe failure")
        return X, y


def _torch_flags():
    return (torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))


@pytest.mark.parametrize("caller", ["defaults", "warn_only_and_workspace"])
def test_seeded_fit_leaves_the_process_flags_as_it_found_them(rng, monkeypatch, caller):
    """A seeded fit trains with deterministic kernels, then puts the caller's settings back
    (even when the fit fails): later code must not start raising on ops without one."""
    X, y = _separable(rng, 16)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    original = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        if caller != "defaults":
            torch.use_deterministic_algorithms(False, warn_only=True)
            monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
        before = _torch_flags()
        probe = _FlagProbe()
        train_classifier(_linear(), X, y, max_epochs=1, batch_size=16, seed=0,
                         augmentations=[probe], progress_bar=False)
        assert probe.seen and all(on and ws == ":4096:8" for on, ws in probe.seen)
        assert _torch_flags() == before
        with pytest.raises(RuntimeError, match="probe failure"):
            train_classifier(_linear(), X, y, max_epochs=1, batch_size=16, seed=0,
                             augmentations=[_FlagProbe(fail=True)], progress_bar=False)
        assert _torch_flags() == before
    finally:
        torch.use_deterministic_algorithms(original[0], warn_only=original[1])


def test_segment_recombination_adds_trials_to_each_batch(rng):
    from sigformer.augment import SegmentRecombination

    X, y = _separable(rng, 32)
    history = train_classifier(_linear(), X, y, max_epochs=1, batch_size=16,
                               augmentations=[SegmentRecombination(n_segments=4)],
                               progress_bar=False)
    assert np.isfinite(history.series("train_loss")).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_epochs=0), "max_epochs must be an integer >= 1"),
    (dict(max_epochs=-1), "max_epochs must be an integer >= 1"),
    (dict(max_epochs=2.5), "max_epochs must be an integer"),
    (dict(max_epochs=True), "max_epochs must be an integer"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(lr=0), r"lr must be a number in \(0, inf\)"),
    (dict(lr=float("nan")), "lr must be a number"),
    (dict(weight_decay=-1e-3), "weight_decay must be a number"),
    (dict(label_smoothing=1.0), r"label_smoothing must be a number in \[0, 1\)"),
    (dict(lr_schedule="step"), "lr_schedule must be one of"),
    (dict(optimizer="rmsprop"), "optimizer must be one of"),
    (dict(early_stopping_patience=-1), "early_stopping_patience must be an integer >= 0"),
    (dict(early_stopping_patience=3, has_validation=False), "needs validation data"),
])
def test_training_arguments_that_cannot_work_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_training_args(**kwargs)


def test_train_classifier_refuses_before_training(rng):
    X, y = _separable(rng, 8)
    with pytest.raises(ValueError, match="max_epochs"):
        train_classifier(_linear(), X, y, max_epochs=-1, progress_bar=False)


def test_progress_bar_per_epoch_and_no_lightning_tips(rng, capfd):
    X, y = _separable(rng, 16)
    train_classifier(_linear(), X, y, max_epochs=2, batch_size=8, progress_bar=True)
    err = capfd.readouterr()
    text = err.out + err.err
    assert "Epoch 1" in text  # tqdm bar of the second epoch
    assert "Tip" not in text and "GPU available" not in text


def test_euclidean_align_whitens_each_group(rng):
    X = rng.standard_normal((40, 3, 200))
    X[20:] *= 5  # second subject: another amplitude
    groups = np.repeat(["a", "b"], 20)
    aligned = euclidean_align(X, groups)
    for g in ("a", "b"):
        part = aligned[groups == g].astype(float)
        mean_cov = np.mean([np.cov(t) for t in part], axis=0)  # EA's covariance (np.cov)
        np.testing.assert_allclose(mean_cov, np.eye(3), atol=1e-4)
    with pytest.raises(ValueError, match="subjects has 3 entries for 40 trials"):
        euclidean_align(X, ["a", "b", "c"])


def test_euclidean_align_with_stored_references_ignores_the_groups_own_statistics(rng):
    from sigformer.stages import inverse_sqrtm, trial_covariances
    from sigformer.training import alignment_references

    X = rng.standard_normal((30, 3, 200))
    groups = np.repeat(["a", "b"], 15)
    refs = alignment_references(X, groups)
    assert set(refs) == {"a", "b"}
    np.testing.assert_allclose(refs["a"], trial_covariances(X[:15]).mean(0))
    stored = {"a": 4 * np.eye(3)}  # "b" has none: its own mean
    out = euclidean_align(X, groups, stored)
    np.testing.assert_allclose(out[:15], X[:15] / 2, rtol=1e-5)
    np.testing.assert_allclose(out[15:], np.einsum("cd,ndt->nct", inverse_sqrtm(refs["b"]),
                                                   X[15:]), rtol=1e-5, atol=1e-6)
    # one trial with a reference keeps its spatial structure; alone it would be whitened
    one = euclidean_align(X[:1], None, {None: refs["a"]})
    assert not np.allclose(np.cov(one[0].astype(float)), np.eye(3), atol=0.05)
    np.testing.assert_allclose(np.cov(euclidean_align(X[:1])[0].astype(float)), np.eye(3),
                               atol=1e-4)


def test_reset_head_reinitialises_only_the_head():
    model = _tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert reset_head(model)
    changed = {k for k, v in model.state_dict().items()
               if v.dtype.is_floating_point and not torch.equal(v, before[k])}
    assert changed and all(k.startswith("final_layer") for k in changed)
    assert not reset_head(_linear())


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    script = Path(__file__).parent / "scripts" / "ddp_train.py"
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in results)
    # DDP all-reduces gradients: both replicas end with identical weights
    assert results[0]["fingerprint"] == pytest.approx(results[1]["fingerprint"], rel=1e-6)


class _RecordingAdamW(torch.optim.AdamW):
    """AdamW that records the learning rate of every optimiser step."""

    rates: list[float] = []

    def step(self, closure=None):
        _RecordingAdamW.rates.append(self.param_groups[0]["lr"])
        return super().step(closure)


@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_train_objective_schedule_interval(monkeypatch, interval):
    """interval="epoch" moves the warm-up + cosine once per epoch (Du-IN's release), counted
    in epochs; "step" (default) moves it every batch, counted in batches."""
    monkeypatch.setattr(torch.optim, "AdamW", _RecordingAdamW)
    monkeypatch.setattr(_RecordingAdamW, "rates", [])
    X = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    model = torch.nn.Linear(3, 1)
    epochs, per_epoch, lr, final = 3, 2, 1e-2, 1e-3
    train_objective(model, lambda m, b: {"loss": m(b[0]).pow(2).mean()}, [X],
                    max_epochs=epochs, batch_size=len(X) // per_epoch, lr=lr, final_lr=final,
                    warmup_epochs=1, interval=interval)
    rates = _RecordingAdamW.rates
    if interval == "epoch":
        expected = [warmup_cosine(e, epochs, 1, lr, final) for e in range(epochs)
                    for _ in range(per_epoch)]
    else:
        total = epochs * per_epoch
        expected = [warmup_cosine(s, total, per_epoch, lr, final) for s in range(total)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    within_epoch_constant = all(rates[i] == rates[i + 1] for i in range(0, len(rates), 2))
    assert within_epoch_constant == (interval == "epoch")
    with pytest.raises(ValueError, match="interval must be one of"):
        train_objective(model, lambda m, b: {"loss": m(b[0]).sum()}, [X], interval="batch")
