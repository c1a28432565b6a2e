"""Training through Lightning: CPU by default, progress bar, seeding, and the recipe options
small EEG datasets need: early stopping on a validation set with best-epoch restore, cosine or
plateau learning-rate schedules, label smoothing and on-the-fly augmentation
(:mod:`sigformer.augment`).

The same call scales out: ``train_classifier(..., accelerator="gpu", devices=4,
strategy="ddp")`` or ``num_nodes=2`` for several machines (launch one process per node with
``torchrun`` or SLURM, as Lightning documents). Use ``strategy="ddp"``, not ``ddp_spawn``:
spawn pickles the model, which fails for braindecode models with parametrized weights.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .augment import Augmentation, apply_augmentations

LR_SCHEDULES = (None, "cosine", "plateau")
PLATEAU_FACTOR, PLATEAU_PATIENCE = 0.5, 5


def seed_everything(seed: int | None) -> None:
    if seed is not None:
        L.seed_everything(int(seed), workers=True, verbose=False)


def logits_of(output: Any) -> torch.Tensor:
    """Models may return logits or ``(features, logits)`` (DBConformer's official API)."""
    return output[-1] if isinstance(output, (tuple, list)) else output


class ClassifierModule(L.LightningModule):
    """Cross-entropy classification around any ``nn.Module`` that maps a batch to logits.

    ``augmentations`` transform each training batch (never validation batches);
    ``lr_schedule`` is ``None``, ``"cosine"`` (per epoch, to 0 at ``max_epochs``) or
    ``"plateau"`` (halve the rate once 6 epochs in a row bring no ``val_loss`` improvement,
    PyTorch's ``patience=5``; ``train_loss`` without validation data).
    """

    def __init__(self, model: nn.Module, lr: float = 1e-3, weight_decay: float = 0.0,
                 optimizer: str = "adam", class_weights: torch.Tensor | None = None,
                 label_smoothing: float = 0.0, lr_schedule: str | None = None,
                 augmentations: list[Augmentation] | None = None, seed: int | None = None,
                 monitor: str = "train_loss"):
        super().__init__()
        self.model = model
        self.lr, self.weight_decay, self.optimizer_name = lr, weight_decay, optimizer
        self.label_smoothing, self.lr_schedule = label_smoothing, lr_schedule
        self.augmentations = list(augmentations or [])
        self.monitor = monitor
        self.augment_generator = torch.Generator()
        if seed is not None:
            self.augment_generator.manual_seed(int(seed))
        else:  # an unseeded generator always starts at one fixed state: unseeded fits would
            self.augment_generator.seed()  # all draw the same augmentations
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(x))

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        if stage == "train" and self.augmentations:
            x, y = apply_augmentations(self.augmentations, x, y, self.augment_generator)
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y, weight=self.class_weights,
                                           label_smoothing=self.label_smoothing)
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
        opt = optimizers[self.optimizer_name](self.parameters(), lr=self.lr,
                                              weight_decay=self.weight_decay)
        if self.lr_schedule is None:
            return opt
        if self.lr_schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(
                opt, T_max=max(1, int(self.trainer.max_epochs)))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        if self.lr_schedule == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="min", factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch",
                                                       "monitor": self.monitor}}
        raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got "
                         f"{self.lr_schedule!r}")


@dataclass
class History:
    """Per-epoch metrics collected during training (for learning curves)."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None  # epoch whose weights were restored (None: the last one)

    def series(self, key: str) -> list[float]:
        return [e[key] for e in self.epochs if key in e]


class _HistoryCallback(Callback):
    def __init__(self, history: History):
        self.history = history

    def on_train_epoch_start(self, trainer, pl_module):
        # the rate used during this epoch (schedulers step before on_train_epoch_end)
        self.lr = float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers \
            else None

    def on_train_epoch_end(self, trainer, pl_module):
        row = {"epoch": trainer.current_epoch}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        if getattr(self, "lr", None) is not None:
            row["lr"] = self.lr
        self.history.epochs.append(row)


class _BestWeights(Callback):
    """Keep a copy of the weights of the epoch with the lowest ``monitor`` and load it back
    when training ends (early stopping's "restore best weights")."""

    def __init__(self, history: History, monitor: str = "val_loss"):
        self.history, self.monitor = history, monitor
        self.best: float = float("inf")
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if value < self.best:
            self.best = value
            self.history.best_epoch = trainer.current_epoch
            self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_fit_end(self, trainer, pl_module):
        if self.state is not None:
            pl_module.load_state_dict(self.state)


@contextlib.contextmanager
def _quiet_lightning(enabled: bool = True):
    """Silence Lightning's per-fit banners (device summary, tips), its upgrade/deprecation
    notices and known-benign warnings (on by default; the progress bar is separate)."""
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
        warnings.filterwarnings("ignore", message=".*litlogger.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="lightning")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


@contextlib.contextmanager
def _restoring_torch_flags():
    """Put back the process-wide flags a seeded fit changes: Lightning's ``deterministic=True``
    switches on ``torch.use_deterministic_algorithms`` (and cuDNN benchmark off) and sets
    ``CUBLAS_WORKSPACE_CONFIG`` for the whole process; the caller's code after the fit must
    run as before (no surprise errors from ops without a deterministic kernel)."""
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    try:
        yield
    finally:
        enabled, warn_only, benchmark, cudnn_deterministic, cublas = saved
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        torch.backends.cudnn.deterministic = cudnn_deterministic
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas


def make_loader(X: np.ndarray, y: np.ndarray | None, batch_size: int, shuffle: bool,
                seed: int | None = None) -> DataLoader:
    tensors = [torch.as_tensor(np.ascontiguousarray(X), dtype=torch.float32)]
    if y is not None:
        tensors.append(torch.as_tensor(y, dtype=torch.long))
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=shuffle,
                      generator=generator)


def check_training_args(*, max_epochs: Any = 1, batch_size: Any = 1, lr: Any = 1e-3,
                        weight_decay: Any = 0.0, optimizer: Any = "adam",
                        early_stopping_patience: Any = None, label_smoothing: Any = 0.0,
                        lr_schedule: Any = None, has_validation: bool = True) -> None:
    """Refuse training settings that cannot work, naming the argument and what was expected
    (called before any data is read)."""
    def integer(name: str, value: Any, minimum: int) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")

    def number(name: str, value: Any, low: float, high: float, *, low_open: bool = False,
               high_open: bool = True) -> None:
        ok = (isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
              and np.isfinite(value))
        if ok:
            ok = (value > low if low_open else value >= low) and \
                 (value < high if high_open else value <= high)
        if not ok:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise ValueError(f"{name} must be a number in {interval}, got {value!r}")

    integer("max_epochs", max_epochs, 1)
    integer("batch_size", batch_size, 1)
    number("lr", lr, 0.0, np.inf, low_open=True)
    number("weight_decay", weight_decay, 0.0, np.inf)
    number("label_smoothing", label_smoothing, 0.0, 1.0)
    if optimizer not in ("adam", "adamw", "sgd"):
        raise ValueError(f"optimizer must be one of ['adam', 'adamw', 'sgd'], got {optimizer!r}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {lr_schedule!r}")
    if early_stopping_patience is not None:
        integer("early_stopping_patience", early_stopping_patience, 0)
        if not has_validation:
            raise ValueError("early_stopping_patience needs validation data: set "
                             "validation_split (e.g. 0.2) or pass X_val/y_val")


def train_classifier(model: nn.Module, X: np.ndarray, y: np.ndarray, *,
                     X_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
                     max_epochs: int = 100, batch_size: int = 32, lr: float = 1e-3,
                     weight_decay: float = 0.0, optimizer: str = "adam",
                     class_weights: np.ndarray | None = None, seed: int | None = 0,
                     early_stopping_patience: int | None = None,
                     restore_best_weights: bool = True, label_smoothing: float = 0.0,
                     lr_schedule: str | None = None,
                     augmentations: list[Augmentation] | None = None,
                     accelerator: str = "cpu", devices: int | str = 1,
                     strategy: str = "auto", num_nodes: int = 1,
                     progress_bar: bool = True, trainer_kwargs: dict | None = None
                     ) -> History:
    """Fit ``model`` on integer labels ``y`` with Lightning; returns the per-epoch history.

    With validation data, ``restore_best_weights`` loads back the weights of the epoch with
    the lowest ``val_loss`` at the end (``history.best_epoch``); early stopping watches
    ``val_loss`` too and needs ``X_val``/``y_val``. ``augmentations`` see the training set
    once (:meth:`~sigformer.augment.Augmentation.prepare`) and then every training batch.
    ``progress_bar`` shows one bar per epoch; Lightning's tips and notices stay silent.
    A ``seed`` also makes the fit use deterministic algorithms; the process-wide setting
    (``torch.use_deterministic_algorithms``, ``CUBLAS_WORKSPACE_CONFIG``) is restored after.
    """
    has_val = X_val is not None and y_val is not None and len(X_val) > 0
    check_training_args(max_epochs=max_epochs, batch_size=batch_size, lr=lr,
                        weight_decay=weight_decay, optimizer=optimizer,
                        early_stopping_patience=early_stopping_patience,
                        label_smoothing=label_smoothing, lr_schedule=lr_schedule,
                        has_validation=has_val)
    seed_everything(seed)
    for aug in augmentations or []:
        aug.prepare(X, y)
    weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
    module = ClassifierModule(model, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
                              class_weights=weights, label_smoothing=label_smoothing,
                              lr_schedule=lr_schedule, augmentations=augmentations, seed=seed,
                              monitor="val_loss" if has_val else "train_loss")
    history = History()
    callbacks: list[Callback] = [_HistoryCallback(history)]
    if early_stopping_patience is not None:
        callbacks.append(EarlyStopping("val_loss", patience=early_stopping_patience))
    if has_val and restore_best_weights:
        callbacks.append(_BestWeights(history))
    # seeded fits run deterministic kernels; the process's own setting comes back afterwards
    with _quiet_lightning(), _restoring_torch_flags():
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


def alignment_references(X: np.ndarray, groups: np.ndarray | None = None) -> dict:
    """The Euclidean-alignment reference of each group of trials: its mean covariance
    (``groups=None``: one group, key ``None``)."""
    from .stages import trial_covariances

    X = np.asarray(X)
    groups = _alignment_groups(X, groups)
    keys = [None] if groups is None else np.unique(groups)
    return {g: trial_covariances(X if g is None else X[groups == g]).mean(0) for g in keys}


def _alignment_groups(X: np.ndarray, groups) -> np.ndarray | None:
    if groups is None:
        return None
    groups = np.asarray(groups)
    if len(groups) != len(X):
        raise ValueError(f"subjects has {len(groups)} entries for {len(X)} trials")
    return groups


def euclidean_align(X: np.ndarray, groups: np.ndarray | None = None,
                    references: dict | None = None) -> np.ndarray:
    """Euclidean alignment (He & Wu 2019) of each group of trials (a subject, a session) with
    its own mean covariance; ``groups=None`` aligns all trials together (key ``None`` in
    ``references``). ``references`` ``{group: covariance}`` whitens a group with a stored
    reference instead (e.g. its training trials', or a calibration recording's), so its
    own trials' statistics are not used; groups missing from it use their own mean."""
    from .stages import inverse_sqrtm

    X = np.asarray(X)
    groups = _alignment_groups(X, groups)
    keys = [None] if groups is None else np.unique(groups)
    references = references or {}
    out = np.empty(X.shape, dtype=np.float32)
    for g in keys:
        idx = slice(None) if g is None else np.flatnonzero(groups == g)
        ref = references.get(g)
        if ref is None:
            ref = alignment_references(X[idx])[None]
        out[idx] = np.einsum("cd,ndt->nct", inverse_sqrtm(np.asarray(ref)), X[idx])
    return out


def reinit_head(model: nn.Module) -> nn.Module:
    """Re-initialise the classification head in place (same size; the rest of the network
    keeps its weights) for fine-tuning on a new subject. The head is found as
    :func:`sigformer.models.heads.head_module` finds it: ``final_layer`` (braindecode's
    convention), ``head`` or ``classifier``; a model with none of them is refused. To change
    the number of outputs, use :func:`sigformer.models.heads.reset_head` instead."""
    from .models.heads import head_module

    _, head = head_module(model)
    for module in head.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


def reset_head(model: nn.Module) -> bool:
    """Deprecated alias, kept for code that imported it from here: :func:`reinit_head`, but
    returning whether the model has a head instead of raising. ``reset_head`` is
    :func:`sigformer.models.heads.reset_head` (``model.reset_head(n_outputs)``) everywhere
    else."""
    try:
        reinit_head(model)
    except ValueError:
        return False
    return True


# --- generic objectives (pretraining stages, tokenizers) -------------------------------------

def warmup_cosine(step: int, total_steps: int, warmup_steps: int, base_lr: float,
                  final_lr: float) -> float:
    """Linear warm-up to ``base_lr``, then cosine from ``base_lr`` to ``final_lr``."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    return final_lr + 0.5 * (base_lr - final_lr) * (1 + np.cos(np.pi * progress))


SCHEDULE_INTERVALS = ("step", "epoch")


class ObjectiveModule(L.LightningModule):
    """Train any module on a loss function ``loss_step(model, batch) -> {"loss": ..., ...}``
    with AdamW and a warm-up + cosine learning-rate schedule, stepped per batch
    (``interval="step"``) or once per epoch (``"epoch"``, e.g. Du-IN's release). Every other
    entry of the returned dict is logged per epoch (e.g. reconstruction loss, perplexity)."""

    def __init__(self, model: nn.Module, loss_step, lr: float = 1e-3,
                 weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                 warmup_epochs: int = 0, final_lr: float | None = None,
                 interval: str = "step"):
        super().__init__()
        if interval not in SCHEDULE_INTERVALS:
            raise ValueError(f"interval must be one of {list(SCHEDULE_INTERVALS)}, got "
                             f"{interval!r}")
        self.model, self.loss_step = model, loss_step
        self.lr, self.weight_decay, self.betas = lr, weight_decay, betas
        self.warmup_epochs, self.interval = warmup_epochs, interval
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
        if self.interval == "epoch":  # one scheduler step per epoch: count in epochs
            total, warmup = max(1, self.trainer.max_epochs), self.warmup_epochs
        else:
            total = max(1, int(self.trainer.estimated_stepping_batches))
            per_epoch = max(1, total // max(1, self.trainer.max_epochs))
            warmup = self.warmup_epochs * per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: warmup_cosine(step, total, warmup, self.lr, self.final_lr) / self.lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": self.interval}}


def train_objective(model: nn.Module, loss_step, tensors: list, *, max_epochs: int = 10,
                    batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
                    betas: tuple[float, float] = (0.9, 0.999), warmup_epochs: int = 0,
                    final_lr: float | None = None, seed: int | None = 0,
                    accelerator: str = "cpu", devices: int | str = 1, strategy: str = "auto",
                    progress_bar: bool = False, interval: str = "step") -> History:
    """Optimise ``loss_step`` over ``tensors`` (equal-length arrays, batched together).
    ``interval``: the warm-up + cosine schedule moves every batch (``"step"``) or once per
    epoch (``"epoch"``; the rate is then constant within an epoch)."""
    seed_everything(seed)
    module = ObjectiveModule(model, loss_step, lr, weight_decay, betas, warmup_epochs, final_lr,
                             interval)
    history = History()
    data = [torch.as_tensor(np.ascontiguousarray(t)) for t in tensors]
    data = [d.float() if d.is_floating_point() else d for d in data]
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    loader = DataLoader(TensorDataset(*data), batch_size=batch_size, shuffle=True,
                        generator=generator)
    with _quiet_lightning():
        trainer = L.Trainer(max_epochs=max_epochs, accelerator=accelerator, devices=devices,
                            strategy=strategy, callbacks=[_HistoryCallback(history)],
                            enable_progress_bar=progress_bar, enable_model_summary=False,
                            enable_checkpointing=False, logger=False)
        trainer.fit(module, loader)
    model.eval()
    return history
