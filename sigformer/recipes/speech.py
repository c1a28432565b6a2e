"""Training recipes of the speech models: MossFormer separation and DeFTAN-II enhancement,
trained on data that changes every step (dynamic mixing, simulated rooms).

**MossFormer** (:data:`MOSSFORMER`; the release trains with SpeechBrain's separation
trainer, see /work/shared/reference/speech_models.md §1.3): Adam at lr 1.5e-4, the learning
rate halved when the validation loss stops improving (``ReduceLROnPlateau``, factor 0.5),
gradient clipping at max-norm 5, utterance-level PIT SI-SNR loss (zero-mean) with
``threshold_byloss``: examples whose loss is already below ``-30`` dB are left out of the
batch mean, batches with a non-finite or huge loss (``loss_upper_limit``) are skipped.
Switches: ClearerVoice's MossFormer2 recipe uses clip 10, weight decay 1e-5 and
effectively no threshold (``loss_threshold=-9999``).

**DeFTAN-II** (:data:`DEFTAN2`): the PCM loss as released (``pcm_loss.py``); no training
script was released, so the optimiser follows the only public re-implementation (Adam,
lr 1e-4, AMSGrad) [unverified against the paper], with the same plateau halving.

:func:`fit` is the loop used by ``scripts/train_speech.py``: a DataLoader over an
IterableDataset (:class:`~sigformer.data.mixtures.DynamicMixtures` /
:class:`~sigformer.data.room.EnhancementScenes`), progress lines (steps/s, loss, ETA, share
of step time spent waiting for data), validation (SI-SDRi on held-out speakers for
separation, SI-SDR gain over the reference microphone for enhancement) every
``val_every`` steps driving the scheduler (the best one's weights kept in ``<out>-best``), a
checkpoint folder every ``checkpoint_every``
steps (:func:`sigformer.checkpoint.save_checkpoint` + the optimiser/scheduler state,
read back with ``torch.load(weights_only=True)``) and ``resume=True``. A resume refuses a
recipe that differs from the one the checkpoint recorded (``steps`` is not part of the recipe:
the plateau schedule does not depend on it, so more steps extend a run; ``bf16`` may change
too: it is precision, not part of the model).

``bf16=True`` (not the published recipe) runs each training step's forward pass under
``torch.autocast(dtype=torch.bfloat16)``; the estimates are cast to float32 and the loss,
backward, optimiser step and validation stay float32. The weights stay float32, so the
checkpoints are the same format either way.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..speech.metrics import pcm_loss, pit_loss, si_sdr
from .device import model_device
from .precision import bf16_autocast

TRAIN_STATE = "train_state.pt"
BEST_SUFFIX = "-best"  # sibling folder with the best validation's weights
# recipe fields a resumed run may change: precision changes speed and rounding, not the
# weights' format, the optimiser state or the schedule
RESUMABLE_FIELDS = ("bf16",)


@dataclass(frozen=True)
class SpeechRecipe:
    """Optimiser, schedule, clipping and loss of one published training recipe."""

    loss: str  # "pit_si_snr", "pcm" or "si_sdr" (see LOSSES)
    lr: float
    weight_decay: float = 0.0
    amsgrad: bool = False
    plateau_factor: float = 0.5  # "halving" on plateau
    plateau_patience: int = 2  # validations without improvement before halving
    min_lr: float = 1e-8
    clip_grad_norm: float | None = 5.0
    loss_threshold: float | None = -30.0  # threshold_byloss (PIT SI-SNR only)
    loss_upper_limit: float = 999999.0  # skip batches whose loss exceeds it (or is NaN)
    bf16: bool = False  # forward passes under bf16 autocast (not the release; see module doc)

    def with_options(self, **changes) -> SpeechRecipe:
        return replace(self, **changes)


# "si_sdr": negative SI-SDR of the (single) estimate against the target, mean over the batch.
# DeFTAN-II's README says it was "trained using PCM loss and SI-SDR loss" (weighting not
# released); alone, the PCM loss stalls at a near-silent output on CPU-sized runs (docs/speech.md)
LOSSES = ("pit_si_snr", "pcm", "si_sdr")
MOSSFORMER = SpeechRecipe(loss="pit_si_snr", lr=1.5e-4)
DEFTAN2 = SpeechRecipe(loss="pcm", lr=1e-4, amsgrad=True, clip_grad_norm=None,
                       loss_threshold=None)
RECIPES = {"mossformer": MOSSFORMER, "deftan2": DEFTAN2}


def make_optimizer(model: nn.Module, recipe: SpeechRecipe) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay,
                            amsgrad=recipe.amsgrad)


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: SpeechRecipe):
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=recipe.plateau_factor,
        patience=recipe.plateau_patience, min_lr=recipe.min_lr)


def batch_loss(model: nn.Module, batch, recipe: SpeechRecipe) -> torch.Tensor:
    """The recipe's loss on one ``(inputs, targets)`` batch (the forward pass under bf16
    autocast when ``recipe.bf16``; the loss always in float32)."""
    inputs, targets = batch
    with bf16_autocast(recipe.bf16, inputs.device.type):
        estimates = model(inputs)
    if recipe.bf16:
        # outside autocast and from float32 estimates: SI-SDR and PCM sum energies over
        # thousands of samples, which bf16's 8 significant bits would round away
        estimates = estimates.float()
    return _loss(estimates, inputs, targets, recipe)


def _loss(estimates: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor,
          recipe: SpeechRecipe) -> torch.Tensor:
    if recipe.loss == "pit_si_snr":
        return pit_loss(estimates, targets, recipe.loss_threshold)
    if recipe.loss == "pcm":
        return pcm_loss(inputs[:, :1], estimates, targets)
    if recipe.loss == "si_sdr":
        return -si_sdr(estimates[:, 0], targets[:, 0], check_silence=False).mean()
    raise ValueError(f"unknown loss {recipe.loss!r}; expected one of {LOSSES}")


def train_step(model: nn.Module, batch, optimizer: torch.optim.Optimizer,
               recipe: SpeechRecipe) -> float | None:
    """One optimiser step; returns the loss, or ``None`` when the batch was skipped
    (non-finite or above ``loss_upper_limit``, as the release's trainer does)."""
    model.train()
    loss = batch_loss(model, batch, recipe)
    if not torch.isfinite(loss) or loss.item() > recipe.loss_upper_limit:
        optimizer.zero_grad(set_to_none=True)
        return None
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if recipe.clip_grad_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad_norm)
    optimizer.step()
    return loss.item()


@torch.inference_mode()
def validate(model: nn.Module, items: Iterable, task: str) -> dict[str, float]:
    """Mean SI-SDRi (separation, PIT-aligned) or SI-SDR gain over the reference microphone
    (enhancement) on fixed validation items ``(inputs, targets)`` (unbatched)."""
    from ..speech.metrics import best_permutation

    model.eval()
    device = model_device(model)
    scores, base = [], []
    for inputs, targets in items:
        inputs, targets = inputs.to(device), targets.to(device)
        est = model(inputs[None]).double()
        ref = targets[None].double()
        if task == "separate":
            score, _ = best_permutation(est, ref, check_silence=False)
            mix = inputs.double()[None, None].expand_as(ref)
            scores.append(float(score))
            base.append(float(si_sdr(mix, ref, check_silence=False).mean()))
        else:
            scores.append(float(si_sdr(est[0, 0], ref[0, 0], check_silence=False)))
            base.append(float(si_sdr(inputs[0].double(), ref[0, 0],
                                     check_silence=False)))
    return {"si_sdr": float(np.mean(scores)), "si_sdri": float(np.mean(scores) - np.mean(base))}


def save_train_state(folder: Path, model: nn.Module, optimizer, scheduler, step: int,
                     history: list[dict], recipe: SpeechRecipe | None = None) -> Path:
    """Model checkpoint (safetensors + config, with the recipe in ``extra``) with the trainer
    state published beside it in the same atomic write."""
    from ..checkpoint import save_checkpoint

    buffer = io.BytesIO()
    torch.save({"step": step, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict()}, buffer)
    extra = {"step": step} if recipe is None else {"step": step, "recipe": asdict(recipe)}
    return save_checkpoint(folder, model, extra=extra, extra_files={
        TRAIN_STATE: buffer.getvalue(),
        "history.json": json.dumps(history, indent=1).encode()})


def save_best(folder: Path, model: nn.Module, step: int, scores: dict[str, float]) -> Path:
    """The weights of the best validation so far in the sibling folder ``<folder>-best`` (what
    a bundle ships when the last steps overfit or a run is stopped at a bad moment). A sibling,
    because each checkpoint replaces ``folder`` as a whole."""
    from ..checkpoint import save_checkpoint

    return save_checkpoint(folder.with_name(folder.name + BEST_SUFFIX), model,
                           extra={"step": step, **scores})


def load_train_state(folder: Path, model: nn.Module, optimizer, scheduler,
                     recipe: SpeechRecipe | None = None) -> tuple[int, list[dict]]:
    """Restore model, optimiser and scheduler from :func:`save_train_state`'s folder; with
    ``recipe``, first refuse one that differs from the recorded recipe (a checkpoint from
    before recipes were recorded has nothing to compare and is accepted)."""
    from ..checkpoint import load_checkpoint, read_config
    from .resume_check import recipe_changes, refuse_changes

    saved = read_config(folder)["extra"].get("recipe")
    if recipe is not None and saved is not None:
        refuse_changes(str(folder), recipe_changes(saved, recipe, exempt=RESUMABLE_FIELDS),
                       "Resume with the original values (scripts/train_speech.py: the same "
                       "--loss, --lr, --clip, --loss-threshold), or train into a new --out "
                       "(--init starts it from this checkpoint's weights)",
                       exempt=RESUMABLE_FIELDS)
    loaded, _ = load_checkpoint(folder)
    model.load_state_dict(loaded.state_dict())
    # map to the CPU: a run trained on a GPU resumes anywhere (the optimiser moves its state
    # to the parameters' device when it loads it)
    state = torch.load(folder / TRAIN_STATE, weights_only=True, map_location="cpu")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    history_file = folder / "history.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    return int(state["step"]), history


def fit(model: nn.Module, train_loader: Iterable, val_items: list, recipe: SpeechRecipe, *,
        task: str, steps: int, out_dir: str | Path, checkpoint_every: int = 1000,
        val_every: int = 500, log_every: int = 50, resume: bool = False,
        log: Callable[[str], None] = print,
        device: str | torch.device | None = None) -> dict[str, Any]:
    """Train ``model`` for ``steps`` optimiser steps on ``train_loader`` (endless); see the
    module doc. Returns the history and timing (``data_wait_share``: time blocked on the
    loader / total step time). ``device`` (e.g. ``"cuda"``): where the model trains and
    validates (batches are made on the CPU and moved one at a time); None keeps it where it
    is."""
    out = Path(out_dir)
    if device is not None:
        model.to(device)
    device = model_device(model)
    optimizer = make_optimizer(model, recipe)
    scheduler = make_scheduler(optimizer, recipe)
    step, history = 0, []
    if resume and (out / TRAIN_STATE).is_file():
        step, history = load_train_state(out, model, optimizer, scheduler, recipe)
        log(f"resumed from {out} at step {step}")
    batches = iter(train_loader)
    wait = compute = 0.0
    window_start, window_steps, losses = time.perf_counter(), 0, []
    t_start = time.perf_counter()
    while step < steps:
        t0 = time.perf_counter()
        batch = tuple(t.to(device, non_blocking=True) for t in next(batches))
        t1 = time.perf_counter()
        loss = train_step(model, batch, optimizer, recipe)
        t2 = time.perf_counter()
        wait, compute = wait + (t1 - t0), compute + (t2 - t1)
        step += 1
        window_steps += 1
        if loss is not None:
            losses.append(loss)
        if step % log_every == 0 or step == steps:
            now = time.perf_counter()
            rate = window_steps / max(now - window_start, 1e-9)
            eta = (steps - step) / max(rate, 1e-9)
            log(f"step {step}/{steps}  {rate:.2f} steps/s  loss {np.mean(losses or [math.nan]):.3f}"
                f"  lr {optimizer.param_groups[0]['lr']:.2e}  data wait "
                f"{wait / max(wait + compute, 1e-9):.1%}  ETA {_hms(eta)}")
            window_start, window_steps, losses = now, 0, []
        if val_items and (step % val_every == 0 or step == steps):
            scores = validate(model, val_items, task)
            scheduler.step(-scores["si_sdri"])
            history.append({"step": step, **scores, "lr": optimizer.param_groups[0]["lr"]})
            log(f"validation at step {step}: SI-SDR {scores['si_sdr']:.2f} dB, "
                f"SI-SDRi {scores['si_sdri']:.2f} dB")
            finite = [h["si_sdri"] for h in history if math.isfinite(h["si_sdri"])]
            if math.isfinite(scores["si_sdri"]) and scores["si_sdri"] >= max(finite):
                save_best(out, model, step, scores)
        if step % checkpoint_every == 0 or step == steps:
            save_train_state(out, model, optimizer, scheduler, step, history, recipe)
    total = time.perf_counter() - t_start
    return {"steps": step, "history": history, "seconds": total,
            "data_wait_share": wait / max(wait + compute, 1e-9), "recipe": asdict(recipe)}


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
