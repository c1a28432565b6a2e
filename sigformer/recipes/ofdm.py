"""Training recipe of the OFDM channel estimators (AdaFortiTran, FortiTran, the linear model).

As released (BerkIGuler/AdaFortiTran ``src/main/trainer.py``, see ``rf_models.md`` 1.2):

* loss ``nn.MSELoss`` on ``cat(real, imag)`` of the estimated and true grid;
* ``Adam`` (lr 1e-3, weight decay 0), ``ExponentialLR(gamma=0.995)`` stepped once per epoch;
* batch 64, at most 10 epochs, early stopping on the validation loss with patience 3, and the
  weights of the best validation epoch restored at the end.

Every item is a field of :class:`OFDMRecipe` (``RELEASE_RECIPE`` is the release). Metrics are
named for what they are: ``mse_db`` is ``10 log10(mean |H_hat - H|^2)`` per complex resource
element (the release's logged number, = 2 x MSELoss), ``nmse_db`` is the normalised error
``10 log10(sum |H_hat - H|^2 / sum |H|^2)``; both are accumulated over the whole epoch.

:func:`fit_channel_estimator` trains on a fixed :class:`~sigformer.data.ofdm.OFDMDataset` or on
an :class:`~sigformer.data.ofdm.OFDMSlotStream` (fresh slots per step, simulated in DataLoader
workers), writes a checkpoint folder every epoch (and, with ``checkpoint_every_s``, every so many
seconds within an epoch) and resumes from it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..data.ofdm import OFDMConfig, OFDMDataset, OFDMSlotStream
from ..training import History
from .device import model_device
from .precision import bf16_autocast

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
LATEST_FILE, BEST_DIR, EPOCHS_DIR = "latest.json", "best", "epochs"
# recipe fields a resumed run may change: the exponential schedule does not depend on the
# number of epochs, so more (or fewer) epochs only extend (or end) the same run
RESUMABLE_FIELDS = ("max_epochs",)


@dataclass(frozen=True)
class OFDMRecipe:
    """How an OFDM estimator is trained (defaults: the release).

    optimizer : ``"adam"`` (release) or ``"adamw"``.
    lr, weight_decay : 1e-3 and 0 in the release.
    lr_decay : ``ExponentialLR`` gamma, stepped once per epoch (0.995; 1.0 = a flat rate).
    batch_size, max_epochs : 64 and 10.
    early_stopping_patience : epochs without a lower validation loss before stopping (3;
        ``None`` trains all ``max_epochs``).
    restore_best : load the weights of the best validation epoch at the end (release: yes).
    val_fraction : share of a fixed training set held out for validation when no validation
        set is given (the release simulates a separate set of 10% the size).
    grad_clip : clip the gradient norm (the release's default: none).
    bf16 : run forward passes under ``torch.autocast(dtype=torch.bfloat16)`` (not the release).
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_decay: float = 0.995
    batch_size: int = 64
    max_epochs: int = 10
    early_stopping_patience: int | None = 3
    restore_best: bool = True
    val_fraction: float = 0.1
    grad_clip: float | None = None
    bf16: bool = False

    def __post_init__(self):
        problems = []
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {sorted(OPTIMIZERS)}, got "
                            f"{self.optimizer!r}")
        if not self.lr > 0 or self.weight_decay < 0:
            problems.append("lr must be positive and weight_decay non-negative")
        if not 0 < self.lr_decay <= 1:
            problems.append(f"lr_decay (ExponentialLR gamma) must be in (0, 1], got "
                            f"{self.lr_decay}")
        if self.batch_size < 1 or self.max_epochs < 1:
            problems.append("batch_size and max_epochs must be at least 1")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            problems.append("early_stopping_patience must be >= 1 or None")
        if not 0 <= self.val_fraction < 1:
            problems.append(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if problems:
            raise ValueError("invalid OFDM recipe: " + "; ".join(problems))

    @property
    def needs_validation(self) -> bool:
        return self.early_stopping_patience is not None or self.restore_best


RELEASE_RECIPE = OFDMRecipe()


@dataclass
class OFDMHistory(History):
    """Per-epoch metrics plus the early-stopping outcome."""

    best_epoch: int | None = None
    best_val_loss: float = math.inf
    stopped_early: bool = False


def build_optimizer(model: nn.Module, recipe: OFDMRecipe
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ExponentialLR]:
    """The recipe's optimiser and its per-epoch exponential schedule."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = OPTIMIZERS[recipe.optimizer](params, lr=recipe.lr,
                                             weight_decay=recipe.weight_decay)
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=recipe.lr_decay)


# --- loss and metrics ---------------------------------------------------------------------

class ErrorMeter:
    """Accumulates the loss and the squared errors of an epoch for honest dB metrics."""

    def __init__(self):
        self.loss_sum = self.error_sum = self.power_sum = 0.0
        self.samples = self.elements = 0

    def update(self, loss: torch.Tensor, estimate: torch.Tensor, truth: torch.Tensor) -> None:
        with torch.no_grad():
            # one read-back of the three sums (one device sync a step on an accelerator)
            loss, error, power = torch.stack([
                loss.float(), (estimate - truth).abs().square().sum(),
                truth.abs().square().sum()]).tolist()
        self.loss_sum += loss * len(truth)
        self.error_sum += error
        self.power_sum += power
        self.samples += len(truth)
        self.elements += truth.numel()

    def state(self) -> dict[str, float | int]:
        """The running sums (JSON-safe), for a mid-epoch checkpoint."""
        return dict(vars(self))

    @classmethod
    def from_state(cls, state: dict[str, float | int]) -> ErrorMeter:
        meter = cls()
        missing = set(vars(meter)) - set(state)
        if missing:
            raise ValueError(f"an ErrorMeter state needs {sorted(vars(meter))}, this one lacks "
                             f"{sorted(missing)}")
        for key, value in vars(meter).items():
            setattr(meter, key, type(value)(state[key]))
        return meter

    def summary(self, prefix: str) -> dict[str, float]:
        if not self.samples:
            return {}
        error = max(self.error_sum, 1e-30)
        return {f"{prefix}_loss": self.loss_sum / self.samples,
                f"{prefix}_mse_db": 10 * math.log10(error / self.elements),
                f"{prefix}_nmse_db": 10 * math.log10(error / max(self.power_sum, 1e-30))}


def ofdm_loss(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The release's loss: ``MSELoss`` over ``cat(real, imag)`` (half the MSE per RE)."""
    return nn.functional.mse_loss(torch.view_as_real(estimate), torch.view_as_real(truth))


def dataset_tensors(data: OFDMDataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ls, channels, statistics)`` as complex64 / complex64 / float32 tensors."""
    return (torch.from_numpy(np.ascontiguousarray(data.ls, np.complex64)),
            torch.from_numpy(np.ascontiguousarray(data.channels, np.complex64)),
            torch.from_numpy(data.statistics()))


@torch.no_grad()
def evaluate_loss(model: nn.Module, data: OFDMDataset, batch_size: int = 256,
                  bf16: bool = False, prefix: str = "val") -> dict[str, float]:
    """Loss, MSE (dB) and NMSE (dB) of ``model`` on ``data`` in eval mode, on the device the
    model sits on."""
    was_training = model.training
    model.eval()
    meter = ErrorMeter()
    device = model_device(model)
    ls, h, stats = (t.to(device) for t in dataset_tensors(data))
    for i in range(0, len(data), batch_size):
        with bf16_autocast(bf16, device.type):
            estimate = model(ls[i:i + batch_size], stats[i:i + batch_size])
        truth = h[i:i + batch_size]
        meter.update(ofdm_loss(estimate, truth), estimate, truth)
    model.train(was_training)
    return meter.summary(prefix)


# --- batches ------------------------------------------------------------------------------

def _fixed_batches(tensors, batch_size: int, generator: torch.Generator, first_step: int = 0
                   ) -> Iterator:
    """The epoch's shuffled batches from batch ``first_step`` on. The permutation is drawn
    now, whole, so a resumed epoch redraws it from the epoch-start generator state and skips
    the batches it already trained without indexing them."""
    order = torch.randperm(len(tensors[0]), generator=generator)
    return (tuple(t[idx] for t in tensors) for idx in order[first_step * batch_size:].split(
        batch_size))


def _stream_batches(stream: OFDMSlotStream, num_workers: int, first_step: int = 0
                    ) -> Iterator:
    """The stream's batches (from ``first_step`` on) as complex tensors. The DataLoader
    iterator is built now: building it draws its base seed from the global RNG, which a
    resumed epoch must restore afterwards."""
    source = stream if first_step == 0 else stream.starting_at(first_step)
    loader = torch.utils.data.DataLoader(source, batch_size=None, num_workers=num_workers,
                                         prefetch_factor=4 if num_workers else None)
    return ((torch.view_as_complex(ls), torch.view_as_complex(h), stats)
            for ls, h, stats in iter(loader))


def split_validation(train: OFDMDataset, fraction: float, seed: int | None
                     ) -> tuple[OFDMDataset, OFDMDataset | None]:
    """Hold out ``fraction`` of a fixed training set (seeded) for validation."""
    n_val = int(round(len(train) * fraction))
    if n_val < 1 or n_val >= len(train):
        return train, None
    order = np.random.default_rng(seed).permutation(len(train))
    return train.subset(np.sort(order[n_val:])), train.subset(np.sort(order[:n_val]))


# --- checkpoints --------------------------------------------------------------------------

def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _optimizer_to_files(optimizer: torch.optim.Optimizer
                        ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser state into tensors (safetensors) and plain values (JSON)."""
    state = optimizer.state_dict()
    tensors, plain = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": plain}


def _optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any]
                          ) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


@dataclass
class EpochProgress:
    """How far a mid-epoch checkpoint got into epoch ``epoch`` (its finished-epoch count).

    step : batches of the epoch trained; steps : batches per epoch (a resume with another
    count is refused: the skipped batches would not be the trained ones).
    meter : the epoch's running :class:`ErrorMeter` sums; seconds : its training time so far.
    shuffle_state : the shuffle generator at the start of the epoch (its permutation is drawn
    again from it). torch_rng : the global RNG at the save (dropout), set again once the
    epoch's batches are built.
    """

    step: int
    steps: int
    meter: dict[str, float | int]
    seconds: float
    shuffle_state: torch.Tensor
    torch_rng: torch.Tensor | None = None


def checkpoint_folder_name(epoch: int, step: int = 0) -> str:
    """``epoch-NNNN`` after ``epoch`` finished epochs, ``epoch-NNNN-step-MMMMMM`` after
    ``step`` more batches of the next one."""
    return f"epoch-{epoch:04d}" + (f"-step-{step:06d}" if step else "")


def save_training_state(out: Path, model: nn.Module, optimizer, scheduler, history: OFDMHistory,
                        epoch: int, bad_epochs: int, generator: torch.Generator,
                        recipe: OFDMRecipe, extra: dict[str, Any], seed: int | None = None,
                        progress: EpochProgress | None = None) -> Path:
    """``out/epochs/epoch-NNNN/`` (model checkpoint + optimiser/scheduler/RNG state, the
    recipe and the seed), then ``out/latest.json`` pointing at it, written last so an
    interrupted save is never read.

    ``progress``: a mid-epoch checkpoint, ``step`` batches into the epoch after ``epoch``
    finished ones, in ``epochs/epoch-NNNN-step-MMMMMM/`` with ``"step"`` in ``latest.json``
    and ``trainer.json``; its shuffle state is the epoch's start state (``generator`` is not
    read). Either way ``rng.shuffle`` is the generator at the start of epoch ``epoch``."""
    from ..checkpoint import save_checkpoint

    step = progress.step if progress is not None else 0
    folder = out / EPOCHS_DIR / checkpoint_folder_name(epoch, step)
    if folder.exists():
        shutil.rmtree(folder)
    save_checkpoint(folder / "model", model, extra={**extra, "epoch": epoch} | (
        {"step": step} if progress is not None else {}))
    tensors, meta = _optimizer_to_files(optimizer)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.shuffle"] = (generator.get_state() if progress is None
                              else progress.shuffle_state)
    save_file(tensors, str(folder / "trainer.safetensors"))
    meta.update(scheduler=scheduler.state_dict(), epoch=epoch, bad_epochs=bad_epochs,
                recipe=asdict(recipe), history=history.epochs, best_epoch=history.best_epoch,
                best_val_loss=history.best_val_loss if math.isfinite(history.best_val_loss)
                else None, seed=seed)
    pointer = {"epoch": epoch, "folder": str(folder.relative_to(out))}
    if progress is not None:  # epoch-end checkpoints keep the format they always had
        meta.update(step=step, steps_per_epoch=progress.steps, epoch_meter=progress.meter,
                    epoch_seconds=progress.seconds)
        pointer["step"] = step
    _atomic_write_text(folder / "trainer.json", json.dumps(meta, indent=2))
    _atomic_write_text(out / LATEST_FILE, json.dumps(pointer))
    for old in (out / EPOCHS_DIR).iterdir():  # keep only the newest epoch
        if old != folder and old.name.startswith("epoch-"):
            shutil.rmtree(old, ignore_errors=True)
    return folder


def read_training_meta(out: Path) -> tuple[Path, dict[str, Any]] | None:
    """``(folder, trainer.json)`` of the newest checkpoint in ``out`` (None when there is
    none), read before anything is built so the recipe and the seed can be checked first."""
    pointer = out / LATEST_FILE
    if not pointer.is_file():
        return None
    folder = out / json.loads(pointer.read_text())["folder"]
    return folder, json.loads((folder / "trainer.json").read_text())


def resume_seed(folder: Path, meta: dict[str, Any], recipe: OFDMRecipe, seed: int | None,
                seed_matters: bool) -> int:
    """Refuse to resume with a different recipe (``max_epochs`` aside) or seed; return the
    seed to continue with (the saved one for ``seed=None``).

    ``seed_matters``: the validation split is drawn from the seed, so continuing with
    another one would move training slots into validation."""
    from .resume_check import recipe_changes, refuse_changes

    changes = recipe_changes(meta.get("recipe", {}), recipe, exempt=RESUMABLE_FIELDS)
    saved_seed = meta.get("seed")
    if saved_seed is not None and seed is not None and int(seed) != int(saved_seed):
        changes["seed"] = (int(saved_seed), int(seed))
    refuse_changes(str(folder), changes, "Resume with the original values, or train into a "
                   "new checkpoint folder (scripts/train_ofdm.py: a new --out)",
                   exempt=RESUMABLE_FIELDS)
    if saved_seed is not None:
        return int(saved_seed)
    if seed is None and seed_matters:
        from ..checkpoint import CheckpointError

        raise CheckpointError(
            f"cannot resume from {folder} with seed=None: the checkpoint predates stored seeds, "
            "so the validation split it held out cannot be drawn again (a new one would mix "
            "training slots into validation); pass the seed the run started with, or train "
            "into a new checkpoint folder")
    return _draw_seed() if seed is None else int(seed)


def _draw_seed() -> int:
    """A seed for ``seed=None``, drawn once and stored with the checkpoint."""
    return int(np.random.default_rng().integers(2**31))


def load_training_state(out: Path, model: nn.Module, optimizer, scheduler,
                        generator: torch.Generator
                        ) -> tuple[int, int, OFDMHistory, EpochProgress | None]:
    """Restore what :func:`save_training_state` wrote; returns ``(epoch, bad_epochs, history,
    progress)`` with ``epoch`` the number of finished epochs and ``progress`` how far a
    mid-epoch checkpoint got into the next one (None for an epoch-end checkpoint, including
    every checkpoint written before mid-epoch ones existed)."""
    from ..checkpoint import load_checkpoint

    pointer = json.loads((out / LATEST_FILE).read_text())
    folder = out / pointer["folder"]
    loaded, _ = load_checkpoint(folder / "model")
    model.load_state_dict(loaded.state_dict())
    meta = json.loads((folder / "trainer.json").read_text())
    tensors = load_file(str(folder / "trainer.safetensors"))
    optimizer.load_state_dict(_optimizer_from_files(tensors, meta))
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.shuffle"])
    best = meta["best_val_loss"]
    history = OFDMHistory(epochs=meta["history"], best_epoch=meta["best_epoch"],
                          best_val_loss=math.inf if best is None else best)
    progress = None
    if meta.get("step"):
        progress = EpochProgress(step=int(meta["step"]), steps=int(meta["steps_per_epoch"]),
                                 meter=meta["epoch_meter"], seconds=float(meta["epoch_seconds"]),
                                 shuffle_state=tensors["rng.shuffle"],
                                 torch_rng=tensors["rng.torch"])
    return int(meta["epoch"]), int(meta["bad_epochs"]), history, progress


# --- the loop -----------------------------------------------------------------------------

def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else (
        f"{seconds // 60}m{seconds % 60:02d}s")


@dataclass
class _Progress:
    """Progress lines: samples/s and the ETA of the epoch and of the run."""

    log: Callable[[str], None] | None
    every_s: float
    steps: int
    epochs: int
    started: float = field(default_factory=time.perf_counter)
    last: float = field(default_factory=time.perf_counter)

    def step(self, epoch: int, step: int, samples: int, epoch_start: float, loss: float,
             first_step: int = 0, first_samples: int = 0):
        """``first_step`` batches (``first_samples`` slots) of a resumed epoch were trained
        before ``epoch_start``: the rate and the ETA count only the batches since then."""
        now = time.perf_counter()
        if self.log is None or now - self.last < self.every_s:
            return
        self.last = now
        rate = (samples - first_samples) / max(now - epoch_start, 1e-9)
        per_step = (now - epoch_start) / (step - first_step)
        left_epoch = per_step * (self.steps - step)
        left_total = left_epoch + per_step * self.steps * (self.epochs - epoch - 1)
        self.log(f"epoch {epoch + 1}/{self.epochs} step {step}/{self.steps} | {rate:,.1f} "
                 f"samples/s | mean loss {loss:.4g} | ETA epoch {_duration(left_epoch)}, run "
                 f"{_duration(left_total)}")


@dataclass
class _MidEpochCheckpoints:
    """A mid-epoch checkpoint at a step boundary once ``every_s`` seconds have passed since
    the last checkpoint (mid-epoch or epoch-end), so a stopped run loses at most that much."""

    write: Callable[[int, EpochProgress], None]
    every_s: float
    last: float = field(init=False)

    def __post_init__(self):
        self.restart()

    def due(self) -> bool:
        return time.perf_counter() - self.last >= self.every_s

    def save(self, epoch: int, progress: EpochProgress) -> None:
        self.write(epoch, progress)
        self.restart()

    def restart(self) -> None:
        self.last = time.perf_counter()


def fit_channel_estimator(model: nn.Module, train: OFDMDataset | OFDMSlotStream, *,
                          val: OFDMDataset | None = None, recipe: OFDMRecipe = RELEASE_RECIPE,
                          seed: int | None = 0, checkpoint_dir: str | Path | None = None,
                          resume: bool = False, log: Callable[[str], None] | None = None,
                          log_every_s: float = 30.0, num_workers: int = 0,
                          checkpoint_extra: dict[str, Any] | None = None,
                          checkpoint_every_s: float | None = None,
                          device: str | torch.device | None = None) -> OFDMHistory:
    """Train ``model`` with ``recipe`` on a fixed dataset or an on-the-fly slot stream.

    Validation: ``val``, else (a recipe that needs it) ``recipe.val_fraction`` of a fixed
    ``train``, or as many slots of a stream's mixture from an independent seed.
    ``checkpoint_dir``: a checkpoint every epoch (``epochs/epoch-NNNN``), the best epoch's
    model in ``best/``; ``resume=True`` continues from the newest one, and refuses a recipe
    that differs from the saved one in anything but ``max_epochs`` (or another seed).
    ``seed=None`` draws a seed, stores it with the checkpoint and reuses it on resume (the
    validation split stays the same). ``num_workers`` simulates a stream's slots in that many
    DataLoader worker processes.
    ``checkpoint_every_s`` (with ``checkpoint_dir``): also a checkpoint at the first step
    boundary ``checkpoint_every_s`` seconds after the last one (``epochs/epoch-NNNN-step-MMMMMM``,
    replacing it); a resume from it skips the epoch's trained batches and continues
    bit-for-bit (weights, optimiser, RNGs and the epoch's running metrics). Not part of the
    recipe: a run may resume with another value.
    ``device`` (e.g. ``"cuda"``): where to train; None keeps the model where it is (the CPU
    for a new model). Batches move there one at a time; the data stays in host memory.
    Bit-for-bit resumes hold on the CPU: the state saved is the CPU RNG's, and an
    accelerator's dropout draws from its own generator.
    """

    from ..checkpoint_io import user_path

    check_model_config(model, train.config)
    device = torch.device(device) if device is not None else model_device(model)
    model.to(device)
    if checkpoint_every_s is not None and not checkpoint_every_s >= 0:
        raise ValueError(f"checkpoint_every_s must be >= 0 seconds or None, got "
                         f"{checkpoint_every_s}")
    out = user_path(checkpoint_dir) if checkpoint_dir is not None else None
    saved = read_training_meta(out) if out is not None and resume else None
    if saved is not None:
        _check_partial_epoch_fits(*saved, recipe)
    if seed is not None:
        torch.manual_seed(seed)
    if saved is not None:
        split_needed = (isinstance(train, OFDMDataset) and val is None
                        and recipe.needs_validation)
        seed = resume_seed(*saved, recipe, seed, split_needed)
    elif seed is None:
        seed = _draw_seed()
    if isinstance(train, OFDMDataset):
        if val is None and recipe.needs_validation:
            train, val = split_validation(train, recipe.val_fraction, seed)
        tensors = dataset_tensors(train)
        steps = math.ceil(len(train) / recipe.batch_size)
    elif isinstance(train, OFDMSlotStream):
        if train.batch_size != recipe.batch_size:
            raise ValueError(f"the stream makes batches of {train.batch_size} slots, the recipe "
                             f"asks for {recipe.batch_size}")
        tensors, steps = None, len(train)
        if val is None and recipe.needs_validation and recipe.val_fraction > 0:
            n_val = max(1, round(len(train) * train.batch_size * recipe.val_fraction))
            val = train.fixed_set(n_val)  # same mixture, independent seed
    else:
        raise TypeError(f"train must be an OFDMDataset or an OFDMSlotStream, got "
                        f"{type(train).__name__}")
    optimizer, scheduler = build_optimizer(model, recipe)
    generator = torch.Generator().manual_seed(seed)
    history, start, bad_epochs, resumed = OFDMHistory(), 0, 0, None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if saved is not None:
            start, bad_epochs, history, resumed = load_training_state(out, model, optimizer,
                                                                      scheduler, generator)
            if resumed is not None:
                _check_same_steps(saved[0], resumed, steps)
            if log:
                log(_resume_line(out, start, resumed))
    best_state = _best_state(out, history) if recipe.restore_best else None
    progress = _Progress(log, log_every_s, steps, recipe.max_epochs)
    extra = dict(checkpoint_extra or {}, recipe=asdict(recipe))
    mid_epoch = None
    if out is not None and checkpoint_every_s is not None:
        def write_mid_epoch(epoch: int, state: EpochProgress) -> None:
            folder = save_training_state(out, model, optimizer, scheduler, history, epoch,
                                         bad_epochs, generator, recipe, extra, seed=seed,
                                         progress=state)
            if log:
                log(f"checkpoint in epoch {epoch + 1} after step {state.step}/{state.steps} "
                    f"-> {folder}")

        mid_epoch = _MidEpochCheckpoints(write_mid_epoch, checkpoint_every_s)
    for epoch in range(start, recipe.max_epochs):
        if history.stopped_early or _patience_spent(recipe, bad_epochs):
            history.stopped_early = True
            break
        row = _train_epoch(model, train, tensors, optimizer, recipe, generator, epoch,
                           progress, num_workers, mid_epoch, resumed, device)
        resumed = None  # only the first epoch of a resumed run is a partial one
        row["lr"] = optimizer.param_groups[0]["lr"]
        row["device"] = str(device)  # a resumed run may have moved: the card says where
        scheduler.step()
        if val is not None:
            row.update(evaluate_loss(model, val, bf16=recipe.bf16))
            if row["val_loss"] < history.best_val_loss:
                history.best_val_loss, history.best_epoch, bad_epochs = row["val_loss"], epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if out is not None:
                    from ..checkpoint import save_checkpoint

                    save_checkpoint(out / BEST_DIR, model, extra={**extra, "epoch": epoch,
                                                                   **row})
            else:
                bad_epochs += 1
        history.epochs.append(row)
        if log:
            log(_epoch_line(row, recipe.max_epochs, progress))
        if out is not None:
            save_training_state(out, model, optimizer, scheduler, history, epoch + 1,
                                bad_epochs, generator, recipe, extra, seed=seed)
            if mid_epoch is not None:
                mid_epoch.restart()
    if _patience_spent(recipe, bad_epochs):
        history.stopped_early = history.stopped_early or len(history.epochs) < recipe.max_epochs
    if recipe.restore_best and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


def _check_partial_epoch_fits(folder: Path, meta: dict[str, Any], recipe: OFDMRecipe) -> None:
    """A mid-epoch checkpoint resumed with ``max_epochs`` at or below its finished epochs
    would train nothing and hand back the weights from inside the next epoch (the epoch-end
    checkpoint before it was replaced, so that state is gone): refuse."""
    done, step = int(meta["epoch"]), int(meta.get("step") or 0)
    if step and done >= recipe.max_epochs:
        from ..checkpoint import CheckpointError

        raise CheckpointError(
            f"cannot resume from {folder}: it stopped inside epoch {done + 1} (after step "
            f"{step} of {meta.get('steps_per_epoch', '?')}), but max_epochs={recipe.max_epochs} "
            f"ends the run before that epoch, which would return half-trained weights; resume "
            f"with max_epochs >= {done + 1} (scripts/train_ofdm.py: --epochs {done + 1} or "
            "more) to finish the epoch, or train into a new checkpoint folder")


def _check_same_steps(folder: Path, progress: EpochProgress, steps: int) -> None:
    """A mid-epoch resume skips the batches it trained: only with the same batches per epoch
    are those the same batches."""
    if progress.steps != steps:
        from ..checkpoint import CheckpointError

        raise CheckpointError(
            f"cannot resume from {folder}: it stopped after batch {progress.step} of an epoch "
            f"of {progress.steps} batches, but this run makes {steps} batches per epoch "
            "(another training set size); resume with the original training data, or train "
            "into a new checkpoint folder")


def _resume_line(out: Path, epoch: int, progress: EpochProgress | None) -> str:
    if progress is None:
        return f"resumed after epoch {epoch} from {out}"
    return (f"resumed in epoch {epoch + 1} after step {progress.step}/{progress.steps} from "
            f"{out} (the batches the epoch trained are skipped, not trained again)")


def _patience_spent(recipe: OFDMRecipe, bad_epochs: int) -> bool:
    return (recipe.early_stopping_patience is not None
            and bad_epochs >= recipe.early_stopping_patience)


def _best_state(out: Path | None, history: OFDMHistory) -> dict[str, torch.Tensor] | None:
    """The best epoch's weights when resuming (they are in ``out/best``)."""
    if out is None or history.best_epoch is None or not (out / BEST_DIR).is_dir():
        return None
    from ..checkpoint import load_checkpoint

    with torch.random.fork_rng(devices=[]):  # building the model must not move the RNG
        loaded, _ = load_checkpoint(out / BEST_DIR)
    return loaded.state_dict()


def _train_epoch(model, train, tensors, optimizer, recipe: OFDMRecipe, generator, epoch: int,
                 progress: _Progress, num_workers: int,
                 mid_epoch: _MidEpochCheckpoints | None = None,
                 resumed: EpochProgress | None = None,
                 device: torch.device | None = None) -> dict[str, float]:
    """One epoch; ``resumed``: the rest of an epoch a mid-epoch checkpoint stopped in."""
    model.train()
    shuffle_state = generator.get_state()  # the epoch's permutation is drawn from this state
    first = resumed.step if resumed is not None else 0
    meter = ErrorMeter() if resumed is None else ErrorMeter.from_state(resumed.meter)
    seconds_before = resumed.seconds if resumed is not None else 0.0
    if tensors is not None:
        batches = _fixed_batches(tensors, recipe.batch_size, generator, first)
    else:
        train.set_epoch(epoch)
        batches = _stream_batches(train, num_workers, first)
    if resumed is not None:  # set after the batches: a DataLoader draws from the global RNG
        torch.set_rng_state(resumed.torch_rng)
    first_samples = meter.samples
    started = time.perf_counter()
    for step, batch in enumerate(batches, first + 1):
        ls, h, stats = batch if device is None else (t.to(device, non_blocking=True)
                                                     for t in batch)
        with bf16_autocast(recipe.bf16, ls.device.type):
            estimate = model(ls, stats)
        loss = ofdm_loss(estimate, h)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        loss = loss.detach()
        meter.update(loss, estimate.detach(), h)
        # the epoch's running mean: one batch's loss jumps with its SNR and Doppler draws
        progress.step(epoch, step, meter.samples, started, meter.loss_sum / meter.samples,
                      first, first_samples)
        if mid_epoch is not None and step < progress.steps and mid_epoch.due():
            mid_epoch.save(epoch, EpochProgress(
                step, progress.steps, meter.state(),
                seconds_before + time.perf_counter() - started, shuffle_state))
    seconds = seconds_before + time.perf_counter() - started
    row = {"epoch": epoch, **meter.summary("train"), "seconds": seconds,
           "samples_per_s": meter.samples / max(seconds, 1e-9)}
    return row


def _epoch_line(row: dict[str, float], max_epochs: int, progress: _Progress) -> str:
    elapsed = time.perf_counter() - progress.started
    done = row["epoch"] + 1
    line = (f"epoch {done}/{max_epochs} | train loss {row['train_loss']:.4g} NMSE "
            f"{row['train_nmse_db']:.2f} dB")
    if "val_loss" in row:
        line += f" | val loss {row['val_loss']:.4g} NMSE {row['val_nmse_db']:.2f} dB"
    per_epoch = row["seconds"]
    return (line + f" | lr {row['lr']:.3g} | {row['samples_per_s']:,.1f} samples/s | "
            f"{_duration(per_epoch)} | ETA {_duration(per_epoch * (max_epochs - done))} "
            f"(elapsed {_duration(elapsed)})")


def check_model_config(model: nn.Module, config: OFDMConfig) -> None:
    """The model's grid and pilot grid must match the dataset's; say which differs."""
    grid, pilots = getattr(model, "grid", None), getattr(model, "pilot_shape", None)
    if grid is None or pilots is None:
        raise TypeError(f"{type(model).__name__} is not an OFDM channel estimator (it lacks "
                        f"grid/pilot_shape)")
    if tuple(grid) != config.grid_shape:
        raise ValueError(f"the model estimates a {grid[0]} x {grid[1]} grid but the data has "
                         f"{config.grid_shape[0]} x {config.grid_shape[1]}")
    if tuple(pilots) != config.pilot_shape:
        raise ValueError(f"the model was built for {pilots[0]} x {pilots[1]} pilots but the data "
                         f"has {config.pilot_shape[0]} x {config.pilot_shape[1]} (pilot step "
                         f"{config.pilot_subcarrier_step}, symbols {config.pilot_symbols}); "
                         f"use a checkpoint trained on this pilot pattern")
