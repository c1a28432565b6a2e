import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sigformer.models import create_model
from sigformer.training import predict_logits, train_classifier


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
    with pytest.raises(ValueError, match="early stopping needs validation data"):
        train_classifier(_tiny(), X, y, max_epochs=2, early_stopping_patience=1,
                         progress_bar=False)
    history = train_classifier(_tiny(), X[:32], y[:32], X_val=X[32:], y_val=y[32:],
                               max_epochs=200, lr=0.5, optimizer="sgd",
                               early_stopping_patience=2, progress_bar=False)
    assert len(history.epochs) < 200
    assert "val_loss" in history.epochs[-1]


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
