"""Training through Lightning: CPU by default, progress bar, seeding, optional early stopping.

The same call scales out: ``train_classifier(..., accelerator="gpu", devices=4,
strategy="ddp")`` or ``num_nodes=2`` for several machines (launch one process per node with
``torchrun`` or SLURM, as Lightning documents). Use ``strategy="ddp"``, not ``ddp_spawn``:
spawn pickles the model, which fails for braindecode models with parametrized weights.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def seed_everything(seed: int | None) -> None:
    if seed is not None:
        L.seed_everything(int(seed), workers=True, verbose=False)


def logits_of(output: Any) -> torch.Tensor:
    """Models may return logits or ``(features, logits)`` (DBConformer's official API)."""
    return output[-1] if isinstance(output, (tuple, list)) else output


class ClassifierModule(L.LightningModule):
    """Cross-entropy classification around any ``nn.Module`` that maps a batch to logits."""

    def __init__(self, model: nn.Module, lr: float = 1e-3, weight_decay: float = 0.0,
                 optimizer: str = "adam", class_weights: torch.Tensor | None = None):
        super().__init__()
        self.model = model
        self.lr, self.weight_decay, self.optimizer_name = lr, weight_decay, optimizer
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(x))

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y, weight=self.class_weights)
        acc = (logits.argmax(-1) == y).float().mean()
        on_step = stage == "train"
        self.log(f"{stage}_loss", loss, prog_bar=True, on_step=False, on_epoch=True,
                 sync_dist=not on_step, batch_size=len(y))
        self.log(f"{stage}_acc", acc, prog_bar=True, on_step=False, on_epoch=True,
                 sync_dist=not on_step, batch_size=len(y))
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val")

    def configure_optimizers(self):
        optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                      "sgd": torch.optim.SGD}
        if self.optimizer_name not in optimizers:
            raise ValueError(f"optimizer must be one of {sorted(optimizers)}, got "
                             f"{self.optimizer_name!r}")
        return optimizers[self.optimizer_name](self.parameters(), lr=self.lr,
                                               weight_decay=self.weight_decay)


@dataclass
class History:
    """Per-epoch metrics collected during training (for learning curves)."""

    epochs: list[dict[str, float]] = field(default_factory=list)

    def series(self, key: str) -> list[float]:
        return [e[key] for e in self.epochs if key in e]


class _HistoryCallback(Callback):
    def __init__(self, history: History):
        self.history = history

    def on_train_epoch_end(self, trainer, pl_module):
        row = {"epoch": trainer.current_epoch}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        self.history.epochs.append(row)


@contextlib.contextmanager
def _quiet_lightning(enabled: bool):
    """Silence Lightning's per-fit banners (device summary, tips) and known-benign warnings."""
    if not enabled:
        yield
        return
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
        # frozen sub-modules (e.g. a pretrained tokenizer) are in eval mode on purpose
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def make_loader(X: np.ndarray, y: np.ndarray | None, batch_size: int, shuffle: bool,
                seed: int | None = None) -> DataLoader:
    tensors = [torch.as_tensor(np.ascontiguousarray(X), dtype=torch.float32)]
    if y is not None:
        tensors.append(torch.as_tensor(y, dtype=torch.long))
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=shuffle,
                      generator=generator)


def train_classifier(model: nn.Module, X: np.ndarray, y: np.ndarray, *,
                     X_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
                     max_epochs: int = 100, batch_size: int = 32, lr: float = 1e-3,
                     weight_decay: float = 0.0, optimizer: str = "adam",
                     class_weights: np.ndarray | None = None, seed: int | None = 0,
                     early_stopping_patience: int | None = None,
                     accelerator: str = "cpu", devices: int | str = 1,
                     strategy: str = "auto", num_nodes: int = 1,
                     progress_bar: bool = True, trainer_kwargs: dict | None = None
                     ) -> History:
    """Fit ``model`` on integer labels ``y`` with Lightning; returns the per-epoch history.

    Early stopping watches ``val_loss`` and needs ``X_val``/``y_val``.
    """
    seed_everything(seed)
    weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
    module = ClassifierModule(model, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
                              class_weights=weights)
    history = History()
    callbacks: list[Callback] = [_HistoryCallback(history)]
    has_val = X_val is not None and y_val is not None and len(X_val) > 0
    if early_stopping_patience is not None:
        if not has_val:
            raise ValueError("early stopping needs validation data (X_val, y_val)")
        callbacks.append(EarlyStopping("val_loss", patience=early_stopping_patience))
    with _quiet_lightning(not progress_bar):
        _fit(module, X, y, X_val, y_val, has_val, batch_size, seed, dict(
            max_epochs=max_epochs, accelerator=accelerator, devices=devices, strategy=strategy,
            num_nodes=num_nodes, callbacks=callbacks, enable_progress_bar=progress_bar,
            deterministic=seed is not None, **(trainer_kwargs or {})))
    model.eval()
    return history


def _fit(module, X, y, X_val, y_val, has_val, batch_size, seed, trainer_kwargs) -> None:
    trainer = L.Trainer(
        enable_model_summary=False, enable_checkpointing=False, logger=False,
        num_sanity_val_steps=0, **trainer_kwargs,
    )
    train_loader = make_loader(X, y, batch_size, shuffle=True, seed=seed)
    val_loader = make_loader(X_val, y_val, batch_size, shuffle=False) if has_val else None
    trainer.fit(module, train_loader, val_loader)


@torch.inference_mode()
def predict_logits(model: nn.Module, X: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits for ``X`` in eval mode, batch by batch, on whatever device the model sits."""
    model.eval()
    device = next(model.parameters()).device
    out = [logits_of(model(xb.to(device))).float().cpu()
           for (xb,) in make_loader(X, None, batch_size, False)]
    return torch.cat(out).numpy()


# --- generic objectives (pretraining stages, tokenizers) -------------------------------------

def warmup_cosine(step: int, total_steps: int, warmup_steps: int, base_lr: float,
                  final_lr: float) -> float:
    """Linear warm-up to ``base_lr``, then cosine from ``base_lr`` to ``final_lr``."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    return final_lr + 0.5 * (base_lr - final_lr) * (1 + np.cos(np.pi * progress))


class ObjectiveModule(L.LightningModule):
    """Train any module on a loss function ``loss_step(model, batch) -> {"loss": ..., ...}``
    with AdamW and a per-step warm-up + cosine learning-rate schedule. Every other entry of
    the returned dict is logged per epoch (e.g. reconstruction loss, codebook perplexity)."""

    def __init__(self, model: nn.Module, loss_step, lr: float = 1e-3,
                 weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                 warmup_epochs: int = 0, final_lr: float | None = None):
        super().__init__()
        self.model, self.loss_step = model, loss_step
        self.lr, self.weight_decay, self.betas = lr, weight_decay, betas
        self.warmup_epochs = warmup_epochs
        self.final_lr = lr if final_lr is None else final_lr

    def training_step(self, batch, batch_idx):
        out = self.loss_step(self.model, batch)
        for key, value in out.items():
            self.log(f"train_{key}", value.detach() if torch.is_tensor(value) else value,
                     on_step=False, on_epoch=True, prog_bar=key == "loss",
                     batch_size=len(batch[0]))
        return out["loss"]

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay,
                                betas=self.betas)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = max(1, total // max(1, self.trainer.max_epochs))
        warmup = self.warmup_epochs * per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: warmup_cosine(step, total, warmup, self.lr, self.final_lr) / self.lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def train_objective(model: nn.Module, loss_step, tensors: list, *, max_epochs: int = 10,
                    batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
                    betas: tuple[float, float] = (0.9, 0.999), warmup_epochs: int = 0,
                    final_lr: float | None = None, seed: int | None = 0,
                    accelerator: str = "cpu", devices: int | str = 1, strategy: str = "auto",
                    progress_bar: bool = False) -> History:
    """Optimise ``loss_step`` over ``tensors`` (equal-length arrays, batched together)."""
    seed_everything(seed)
    module = ObjectiveModule(model, loss_step, lr, weight_decay, betas, warmup_epochs, final_lr)
    history = History()
    data = [torch.as_tensor(np.ascontiguousarray(t)) for t in tensors]
    data = [d.float() if d.is_floating_point() else d for d in data]
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    loader = DataLoader(TensorDataset(*data), batch_size=batch_size, shuffle=True,
                        generator=generator)
    with _quiet_lightning(not progress_bar):
        trainer = L.Trainer(max_epochs=max_epochs, accelerator=accelerator, devices=devices,
                            strategy=strategy, callbacks=[_HistoryCallback(history)],
                            enable_progress_bar=progress_bar, enable_model_summary=False,
                            enable_checkpointing=False, logger=False)
        trainer.fit(module, loader)
    model.eval()
    return history
