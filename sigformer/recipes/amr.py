"""Training recipe of the modulation classifiers: ClST, its SKD students and the baselines.

SKD (ClST paper; its loss is not published in code): the student minimises the hybrid loss
``alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T))`` - hard labels
plus the teacher's temperature-softened outputs (Hinton et al. 2015). Defaults ``T = 4``,
``alpha = 0.5``. Students trained without distillation use the same trainer with
``alpha = 1`` (plain cross-entropy), so the comparison isolates the soft targets.

Two drivers:

* :func:`train_amr` - a fixed set of frames (Lightning, AdamW, warm-up + cosine), used by the
  ``task: amr`` pipeline (:func:`run_amr_pipeline`).
* :func:`fit_stream` - on-the-fly generation (:class:`GeneratedFrames`, fresh frames every
  step, seeded per step so any worker count and a resumed run see the same frames), AdamW
  with per-step warm-up + cosine, SKD from a teacher model evaluated on each batch, a
  checkpoint folder every epoch (``sigformer.checkpoint``) plus the optimiser state, and
  ``resume=True`` to continue (with the recipe the checkpoint recorded: ``epochs`` and
  ``frames_per_epoch`` shape the cosine, so only ``num_workers`` may change). :func:`train_bundles` chains teacher, students (with and
  without SKD) and baselines at the same budget; ``scripts/train_amr.py`` is its CLI.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..data.modgen import ModGenConfig, generate_frames
from ..data.radioml import AMRDataset
from ..data.sigmf_io import normalize_frames
from ..training import History, train_objective
from .device import model_device

TRAIN_STATE = "train_state.pt"
# StreamRecipe fields a resumed run may change: frames are seeded per step, so the worker
# count changes nothing; every other field moves the cosine or the loss mid-run
RESUMABLE_FIELDS = ("num_workers",)
# the SKD loss's settings: they shape only a distilled student's training, so a teacher, a
# baseline or a student trained alone is reused whatever they say now
SKD_FIELDS = ("temperature", "alpha")


def reuse_exempt(distilled: bool) -> tuple[str, ...]:
    """Recipe fields a resumed or reused model may differ in (see :data:`SKD_FIELDS`)."""
    return RESUMABLE_FIELDS if distilled else RESUMABLE_FIELDS + SKD_FIELDS


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                      targets: torch.Tensor, temperature: float = 4.0, alpha: float = 0.5
                      ) -> torch.Tensor:
    """SKD hybrid loss; ``teacher_logits=None`` or ``alpha=1`` is plain cross-entropy."""
    hard = F.cross_entropy(student_logits, targets)
    if teacher_logits is None or alpha >= 1:
        return hard
    if not temperature > 0:
        raise ValueError(f"the distillation temperature must be positive, got {temperature}")
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.softmax(teacher_logits / temperature, dim=1), reduction="batchmean")
    return alpha * hard + (1 - alpha) * temperature ** 2 * soft


def train_amr(model: nn.Module, X: np.ndarray, y: np.ndarray, *,
              teacher_logits: np.ndarray | None = None, temperature: float = 4.0,
              alpha: float = 0.5, max_epochs: int = 20, batch_size: int = 128,
              lr: float = 1e-3, weight_decay: float = 1e-4, warmup_epochs: int = 1,
              seed: int | None = 0, progress_bar: bool = False) -> History:
    """Train a modulation classifier on fixed frames (AdamW, warm-up + cosine); with
    ``teacher_logits`` the SKD hybrid loss, otherwise cross-entropy."""
    if teacher_logits is not None and len(teacher_logits) != len(X):
        raise ValueError(f"{len(teacher_logits)} teacher outputs for {len(X)} frames")
    if max_epochs <= 0:
        raise ValueError(f"max_epochs must be positive, got {max_epochs}")

    def step(m, batch):
        xb, yb = batch[0], batch[1]
        logits = m(xb)
        teacher = batch[2] if len(batch) > 2 else None
        loss = distillation_loss(logits, teacher, yb, temperature, alpha)
        return {"loss": loss, "acc": (logits.argmax(1) == yb).float().mean()}

    tensors = [np.asarray(X, np.float32), np.asarray(y, np.int64)]
    if teacher_logits is not None:
        tensors.append(np.asarray(teacher_logits, np.float32))
    return train_objective(model, step, tensors, max_epochs=max_epochs, batch_size=batch_size,
                           lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
                           final_lr=lr * 0.01, seed=seed, progress_bar=progress_bar)


# --- on-the-fly generation ---------------------------------------------------------------------

class GeneratedFrames(IterableDataset):
    """Fresh generated batches ``(X (B, 2, L) float32, y (B,) int64)``: ``steps`` batches per
    pass. Batch ``s`` of epoch ``e`` is drawn with the seed ``(seed, e, s)``, so the frames
    do not depend on the number of DataLoader workers (each takes every W-th step) and a
    resumed run sees what an uninterrupted one would have. ``epoch_offset`` is added to the
    epoch in that seed: a fine-tune of a model trained ``k`` epochs on this stream passes
    ``k``, so it draws frames the model has not seen. Use with ``batch_size=None``."""

    def __init__(self, classes: Sequence[str], config: ModGenConfig | None = None, *,
                 batch_size: int = 256, steps: int = 100, frame_length: int = 128,
                 normalization: str = "rms", seed: int = 0, epoch: int = 0,
                 epoch_offset: int = 0):
        self.classes = tuple(classes)
        self.config = config
        self.batch_size = batch_size
        self.steps = steps
        self.frame_length = frame_length
        self.normalization = normalization
        self.seed = seed
        self.epoch = epoch
        self.epoch_offset = epoch_offset

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batch(self, step: int, epoch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        seed = [self.seed, self.epoch_offset + (self.epoch if epoch is None else epoch), step]
        frames = generate_frames(self.batch_size, classes=self.classes, config=self.config,
                                 frame_length=self.frame_length, seed=seed)
        X = normalize_frames(frames.as_iq_rows(), self.normalization)
        return torch.from_numpy(X), torch.from_numpy(frames.y)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        first, stride = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(first, self.steps, stride):
            yield self.batch(step)

    def __len__(self) -> int:
        return self.steps


@dataclass
class StreamRecipe:
    """Budget and optimiser of :func:`fit_stream` (the same for every model of a run)."""

    epochs: int = 10
    frames_per_epoch: int = 100_000
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    final_lr_ratio: float = 0.01
    temperature: float = 4.0
    alpha: float = 0.5
    num_workers: int = 0

    def __post_init__(self):
        for name in ("epochs", "frames_per_epoch", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if not self.temperature > 0:  # the soft targets divide by it
            raise ValueError(f"temperature must be positive, got {self.temperature}")

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.frames_per_epoch / self.batch_size)


@dataclass
class StreamHistory:
    epochs: list[dict[str, float]] = field(default_factory=list)
    done: bool = False


def _lr_lambda(recipe: StreamRecipe) -> Callable[[int], float]:
    total = recipe.epochs * recipe.steps_per_epoch
    warmup = max(1, int(recipe.warmup_epochs * recipe.steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        low = recipe.final_lr_ratio
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return (f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600
            else f"{seconds // 60}m{seconds % 60:02d}s")


def _save_state(out: Path, model: nn.Module, optimizer, scheduler, history: StreamHistory,
                epoch: int, extra: dict[str, Any], recipe: StreamRecipe | None = None) -> None:
    """One atomic checkpoint folder per epoch: the model (``sigformer.checkpoint``) and, until
    the last epoch, the optimiser/scheduler state beside it (read back with
    ``weights_only=True``); the final folder carries the model alone (a clean bundle)."""
    from ..checkpoint import save_checkpoint

    files = {}
    if not history.done:
        buffer = io.BytesIO()
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "epoch": epoch, "rng": torch.get_rng_state()}, buffer)
        files[TRAIN_STATE] = buffer.getvalue()
    recorded = {} if recipe is None else {"recipe": asdict(recipe)}
    save_checkpoint(out, model, extra={**extra, **recorded, "epoch": epoch,
                                       "training_done": history.done,
                                       "history": history.epochs}, extra_files=files)


def _load_state(out: Path, model: nn.Module, optimizer, scheduler,
                recipe: StreamRecipe | None = None, distilled: bool = False
                ) -> tuple[int, StreamHistory]:
    """Restore what :func:`_save_state` wrote; with ``recipe``, first refuse one that differs
    from the recorded recipe (``num_workers`` aside, and the SKD settings unless
    ``distilled``)."""
    from ..checkpoint import CheckpointError, load_checkpoint, read_config
    from .resume_check import recipe_changes, refuse_changes

    saved = read_config(out)["extra"].get("recipe")
    if recipe is not None and saved is not None:
        exempt = reuse_exempt(distilled)
        refuse_changes(str(out), recipe_changes(saved, recipe, exempt=exempt),
                       "Resume with the original values (scripts/train_amr.py: the same "
                       "--epochs, --frames, --batch-size, --lr, --temperature, --alpha), "
                       "or train into a new --out", exempt=exempt)
    loaded, config = load_checkpoint(out)
    try:
        model.load_state_dict(loaded.state_dict())
    except RuntimeError as err:  # another architecture (e.g. preset): say so, not a torch dump
        first = " ".join(line.strip() for line in str(err).splitlines()[:2])
        raise CheckpointError(f"cannot resume from {out}: its {config['model']!r} weights "
                              f"(built with {config['kwargs']}) do not fit the model being "
                              f"trained ({first}). Train into a new folder, or delete {out} "
                              "to retrain") from None
    extra = config["extra"]
    history = StreamHistory(epochs=list(extra.get("history", [])),
                            done=bool(extra.get("training_done")))
    if not history.done:
        # map to the CPU: a run trained on a GPU resumes anywhere (the optimiser moves its
        # state to the parameters' device when it loads it)
        state = torch.load(out / TRAIN_STATE, weights_only=True, map_location="cpu")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])  # dropout continues as if never interrupted
    return int(extra["epoch"]), history


def has_finished(out: str | Path) -> bool:
    """Whether :func:`fit_stream` completed every epoch into ``out``."""
    from ..checkpoint import CheckpointError, read_config

    try:
        return bool(read_config(out)["extra"].get("training_done"))
    except (CheckpointError, OSError, KeyError):
        return False


def fit_stream(model: nn.Module, stream: GeneratedFrames, recipe: StreamRecipe, *,
               teacher: nn.Module | None = None, validation: AMRDataset | None = None,
               checkpoint_dir: str | Path | None = None, resume: bool = False,
               label: str = "model", log: Callable[[str], None] = print,
               log_every: int = 50, extra: dict[str, Any] | None = None,
               device: str | torch.device | None = None) -> StreamHistory:
    """Train ``model`` on fresh generated batches for ``recipe.epochs`` x
    ``recipe.steps_per_epoch`` steps; SKD hybrid loss when a ``teacher`` is given (alpha
    from the recipe), cross-entropy otherwise. Logs frames/s and the ETA; evaluates on
    ``validation`` after each epoch (``val_acc``: monitored, never used to pick an epoch; pass
    a grid other than the test set); checkpoints into ``checkpoint_dir`` every epoch (the
    recipe recorded in ``extra["recipe"]``; a resume with another recipe is refused).
    ``device`` (e.g. ``"cuda"``): where the model and teacher train and evaluate; batches are
    generated on the CPU and moved one at a time. None keeps the model where it is."""
    from ..checkpoint_io import user_path
    from ..training import predict_logits

    stream.steps, stream.batch_size = recipe.steps_per_epoch, recipe.batch_size
    if device is not None:
        model.to(device)
    device = model_device(model)
    if teacher is not None:
        teacher.to(device)  # a teacher loaded on the CPU follows the student
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr,
                                  weight_decay=recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(recipe))
    out = user_path(checkpoint_dir) if checkpoint_dir is not None else None
    start, history = 0, StreamHistory()
    if out is not None and resume and (out / "config.json").is_file():
        start, history = _load_state(out, model, optimizer, scheduler, recipe,
                                     distilled=teacher is not None)
        log(f"[{label}] resumed after epoch {start}/{recipe.epochs}")
    if teacher is not None:
        teacher.eval()
    alpha = recipe.alpha if teacher is not None else 1.0
    total_steps = recipe.epochs * recipe.steps_per_epoch
    t_run, steps_run = time.perf_counter(), 0
    for epoch in range(start, recipe.epochs):
        stream.set_epoch(epoch)
        loader = DataLoader(stream, batch_size=None, num_workers=recipe.num_workers)
        model.train()
        sums = {"loss": 0.0, "acc": 0.0, "n": 0}
        for step, (xb, yb) in enumerate(loader):
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            logits = model(xb)
            teacher_logits = None
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(xb)
            loss = distillation_loss(logits, teacher_logits, yb, recipe.temperature, alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            # one read-back a step (one device sync on an accelerator)
            batch_loss, correct = torch.stack([loss.detach().float(),
                                               (logits.argmax(1) == yb).sum().float()]).tolist()
            if not math.isfinite(batch_loss):  # stop before a checkpoint saves broken weights
                raise FloatingPointError(
                    f"[{label}] the training loss is {batch_loss} at epoch {epoch + 1}, step "
                    f"{step + 1}; nothing of this epoch was saved (the last checkpoint holds "
                    "the epoch before). Lower the learning rate or check the recipe.")
            sums["loss"] += batch_loss * len(yb)
            sums["acc"] += correct
            sums["n"] += len(yb)
            steps_run += 1
            if log_every and (step + 1) % log_every == 0:
                rate = steps_run * recipe.batch_size / (time.perf_counter() - t_run)
                left = (total_steps - epoch * recipe.steps_per_epoch - step - 1) * (
                    recipe.batch_size / rate)
                log(f"[{label}] epoch {epoch + 1}/{recipe.epochs} step {step + 1}/"
                    f"{recipe.steps_per_epoch} loss {sums['loss'] / sums['n']:.3f} acc "
                    f"{sums['acc'] / sums['n']:.3f} {rate:.0f} frames/s ETA {_duration(left)}")
        row = {"epoch": epoch + 1, "train_loss": sums["loss"] / max(sums["n"], 1),
               "train_acc": sums["acc"] / max(sums["n"], 1),
               "frames_per_s": steps_run * recipe.batch_size / (time.perf_counter() - t_run)}
        if validation is not None:
            pred = predict_logits(model, validation.X).argmax(1)
            row["val_acc"] = float(np.mean(pred == validation.y))
        history.epochs.append(row)
        history.done = epoch + 1 == recipe.epochs
        log(f"[{label}] epoch {epoch + 1}/{recipe.epochs} done: " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        if out is not None:
            _save_state(out, model, optimizer, scheduler, history, epoch + 1, extra or {},
                        recipe)
    model.eval()
    return history


# --- the long training of the shipped bundles ------------------------------------------------

BASELINES = ("vtcnn2", "amr_resnet", "mcldnn")
STUDENTS = ("kd_cnn", "kd_mobilenet")
