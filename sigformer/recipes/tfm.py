"""TFM-Tokenizer training as released (Pradeepkumar et al., official training scripts).

Three stages, each a function with the release's settings as defaults:

* :func:`pretrain_tokenizer`: masked-view + complementary-view spectrogram reconstruction with
  the VQ loss; AdamW (lr 1e-3, wd 1e-5, betas 0.9/0.99), batch 256, 100 epochs, 10 warm-up
  epochs, per-step cosine schedule. Saves every epoch (safetensors + JSON) and resumes.
* :func:`pretrain_mtp`: masked-token prediction of the TFM-Encoder (Bernoulli 0.5 mask + its
  complement), AdamW betas 0.9/0.99, batch 512, 50 epochs, 5 warm-up epochs; the transformer,
  token, channel and CLS embeddings are then transferred to the classifier's encoder.
* :func:`finetune`: AdamW betas 0.9/0.999, batch 512, 50 epochs, 5 warm-up epochs; label
  smoothing 0.1 for multi-class, BCE on one output for binary tasks (TUAB), focal loss
  (alpha 0.8, gamma 0.7, CHB-MIT); the best epoch by validation kappa / AUROC.

The training loop is plain PyTorch (no Lightning, no pickle): checkpoints hold the model via
:func:`sigformer.checkpoint.save_checkpoint`, the optimiser state and RNG state as safetensors,
and the loop position and history as JSON.

The release's ``final_lr`` (0.005) is larger than its ``lr`` (0.001), so its cosine schedule
*rises* after warm-up. ``lr_schedule="released"`` reproduces that; ``"intended"`` (default,
as before) decays from ``lr`` to ``final_lr * lr``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..checkpoint import CheckpointError, atomic_write_bytes, save_checkpoint
from ..checkpoint_io import user_path
from ..models.eeg.tfm_tokenizer import (
    TFMClassifier,
    TFMEncoder,
    TFMTokenizer,
    channel_scale,
    percentile_normalize,
)
from .precision import bf16_autocast

LR_SCHEDULES = ("intended", "released")
FINETUNE_LOSSES = ("auto", "label_smoothing", "ce", "bce", "focal")
STATE_FILE, OPTIMIZER_FILE, LATEST_FILE = "trainer_state.json", "optimizer.safetensors", \
    "latest.json"
BEST_DIR = "best"  # fine-tuning: the best validation epoch's model, kept across resumes

__all__ = [
    "FINETUNE_LOSSES", "LR_SCHEDULES", "cosine_schedule", "finetune", "finetune_loss",
    "focal_loss", "latest_checkpoint", "pretrain_classifier_stages", "pretrain_mtp",
    "pretrain_tokenizer", "schedule_end_lr",
]


# --- learning-rate schedule --------------------------------------------------------------

def schedule_end_lr(lr: float, final_lr: float, lr_schedule: str) -> float:
    """The rate the cosine ends at: ``final_lr`` as released, ``final_lr * lr`` as intended."""
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
    return final_lr if lr_schedule == "released" else final_lr * lr


def cosine_schedule(base_lr: float, end_lr: float, epochs: int, steps_per_epoch: int,
                    warmup_epochs: int = 0) -> np.ndarray:
    """Per-step rates of the release's ``cosine_scheduler``: a linear warm-up from 0 to
    ``base_lr`` over ``warmup_epochs`` (endpoints included), then a cosine from ``base_lr``
    towards ``end_lr`` over the remaining steps (the last step stops one step short of it)."""
    total = epochs * steps_per_epoch
    warmup = min(warmup_epochs * steps_per_epoch, total)
    ramp = np.linspace(0.0, base_lr, warmup) if warmup > 0 else np.zeros(0)
    n_cos = total - warmup
    i = np.arange(n_cos)
    cos = end_lr + 0.5 * (base_lr - end_lr) * (1 + np.cos(np.pi * i / max(n_cos, 1)))
    return np.concatenate([ramp, cos])


# --- losses ------------------------------------------------------------------------------

def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.8,
               gamma: float = 0.7) -> torch.Tensor:
    """The release's binary focal loss on one logit (CHB-MIT): ``-alpha (1-p)^gamma y log p
    - (1-alpha) p^gamma (1-y) log(1-p)``, averaged (log-sigmoid form, stable for any logit)."""
    logits, target = logits.reshape(-1).float(), target.reshape(-1).float()
    p = torch.sigmoid(logits)
    pos = -alpha * (1 - p) ** gamma * target * F.logsigmoid(logits)
    neg = -(1 - alpha) * p ** gamma * (1 - target) * F.logsigmoid(-logits)
    return (pos + neg).mean()


def resolve_loss(loss: str, n_outputs: int) -> str:
    """``"auto"``: BCE for one output (binary tasks), label-smoothing CE otherwise."""
    if loss not in FINETUNE_LOSSES:
        raise ValueError(f"loss must be one of {FINETUNE_LOSSES}, got {loss!r}")
    if loss == "auto":
        return "bce" if n_outputs == 1 else "label_smoothing"
    if loss in ("bce", "focal") and n_outputs != 1:
        raise ValueError(f"loss {loss!r} needs a model with one output (binary task, e.g. "
                         f"preset 'tuab'), got {n_outputs} outputs")
    if loss in ("label_smoothing", "ce") and n_outputs == 1:
        raise ValueError(f"loss {loss!r} needs at least 2 outputs; use 'bce' or 'focal' for a "
                         "one-output model")
    return loss


def finetune_loss(logits: torch.Tensor, y: torch.Tensor, loss: str = "auto",
                  label_smoothing: float = 0.1) -> torch.Tensor:
    """The release's fine-tuning losses. ``logits`` ``(B,)`` or ``(B, 1)`` for one output,
    ``(B, K)`` otherwise."""
    n_outputs = 1 if logits.dim() == 1 else logits.shape[-1]
    loss = resolve_loss(loss, n_outputs)
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(logits.reshape(-1).float(),
                                                  y.reshape(-1).float())
    if loss == "focal":
        return focal_loss(logits, y)
    smoothing = label_smoothing if loss == "label_smoothing" else 0.0
    return F.cross_entropy(logits.float(), y.long(), label_smoothing=smoothing)


# --- the training loop -------------------------------------------------------------------

def _resolve_device(model: nn.Module, device: str | torch.device | None,
                    accelerator: str | None, devices: int | str | None) -> torch.device:
    if devices not in (None, 1, "1", "auto"):
        raise ValueError(f"the TFM recipes train on one device; got devices={devices!r} (use "
                         "one process per device and shard the data yourself)")
    if device is None and accelerator not in (None, "auto"):
        aliases = {"cpu": "cpu", "gpu": "cuda", "cuda": "cuda", "mps": "mps"}
        if accelerator not in aliases:
            raise ValueError(f"accelerator must be one of {sorted(aliases)}, got "
                             f"{accelerator!r}")
        device = aliases[accelerator]
    if device is None and accelerator == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device is None:
        device = next(model.parameters()).device
    return torch.device(device)


def _autocast(device: torch.device, precision: str):
    if precision not in ("32", "bf16"):
        raise ValueError(f"precision must be '32' or 'bf16', got {precision!r}")
    return bf16_autocast(precision == "bf16", device.type)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """One generator per epoch (shuffling and masks), so a resumed run draws what an
    uninterrupted one would have drawn."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def _model_identity(model: nn.Module) -> tuple[str, dict[str, Any]]:
    built = getattr(model, "sigformer_config", None)
    if built:
        return built["name"], dict(built["kwargs"])
    names = {TFMTokenizer: "tfm_tokenizer", TFMEncoder: "tfm_encoder"}
    if type(model) in names:
        return names[type(model)], model.constructor_kwargs()
    raise CheckpointError(f"cannot checkpoint a {type(model).__name__} built without "
                          "create_model(): build it with sigformer.models.create_model")


def _optimizer_payload(optimizer: torch.optim.Optimizer) -> tuple[dict, list]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"state.{index}.{key}"] = tensor.detach().cpu().contiguous().clone()
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in state["param_groups"]]
    return tensors, groups


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                    groups: list[dict], device: torch.device) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        if name.startswith("state."):
            _, index, key = name.split(".", 2)
            on_device = tensor if key == "step" else tensor.to(device)
            state.setdefault(int(index), {})[key] = on_device
    restored = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    optimizer.load_state_dict({"state": state, "param_groups": restored})


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The newest complete epoch folder of a recipe's ``checkpoint_dir`` (None if none yet).
    Each folder is a sigformer checkpoint: ``sigformer.checkpoint.load_checkpoint`` reads the
    model from it."""
    pointer = user_path(checkpoint_dir) / LATEST_FILE
    if not pointer.is_file():
        return None
    try:
        folder = user_path(checkpoint_dir) / json.loads(pointer.read_text())["folder"]
    except (json.JSONDecodeError, KeyError) as err:
        raise CheckpointError(f"{pointer} is corrupt ({err}); remove it to start over") from None
    if not (folder / STATE_FILE).is_file():
        raise CheckpointError(f"{pointer} points to {folder}, which is incomplete")
    return folder


class _Loop:
    """Epochs of AdamW steps over in-memory tensors with the per-step cosine schedule, an
    optional per-epoch checkpoint and resume."""

    def __init__(self, model: nn.Module, loss_step: Callable, tensors: list[torch.Tensor], *,
                 recipe: str, max_epochs: int, batch_size: int, lr: float, weight_decay: float,
                 betas: tuple[float, float], warmup_epochs: int, end_lr: float,
                 seed: int | None, device: torch.device, precision: str,
                 checkpoint_dir: str | Path | None, resume: bool, keep_last: int,
                 progress: bool, settings: dict[str, Any]):
        if max_epochs < 1 or batch_size < 1:
            raise ValueError(f"max_epochs and batch_size must be >= 1, got {max_epochs} and "
                             f"{batch_size}")
        if len(tensors[0]) == 0:
            raise ValueError(f"{recipe}: no training examples")
        self.model, self.loss_step, self.tensors = model, loss_step, tensors
        self.recipe, self.max_epochs, self.batch_size = recipe, max_epochs, batch_size
        self.device, self.precision, self.progress = device, precision, progress
        self.seed = int(seed) if seed is not None else int(torch.randint(2**31, ()).item())
        self.checkpoint_dir = None if checkpoint_dir is None else user_path(checkpoint_dir)
        self.resume, self.keep_last = resume, keep_last
        self.settings = dict(settings, recipe=recipe, max_epochs=max_epochs,
                             batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                             betas=list(betas), warmup_epochs=warmup_epochs, end_lr=end_lr,
                             seed=self.seed, precision=precision)
        # values a recipe keeps in trainer_state.json and gets back on resume (its keys and
        # defaults are set before run(); e.g. fine-tuning's best epoch and score)
        self.extra_state: dict[str, Any] = {}
        self.steps_per_epoch = math.ceil(len(tensors[0]) / batch_size)
        self.rates = cosine_schedule(lr, end_lr, max_epochs, self.steps_per_epoch, warmup_epochs)
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay,
                                           betas=tuple(betas))

    def run(self, history, after_epoch: Callable[[int], dict] | None = None,
            stop_after: int | None = None) -> None:
        """Train the remaining epochs (up to ``stop_after`` epochs done, if given);
        ``after_epoch(epoch)`` may add metrics to the row."""
        from ..training import seed_everything

        seed_everything(self.seed)
        self.model.to(self.device)
        start = self._restore(history) if self.checkpoint_dir and self.resume else 0
        end = self.max_epochs if stop_after is None else min(stop_after, self.max_epochs)
        for epoch in range(start, end):
            tic = time.perf_counter()
            row = self._epoch(epoch)
            row.update(epoch=epoch, seconds=time.perf_counter() - tic)
            if after_epoch is not None:
                row.update(after_epoch(epoch))
            history.epochs.append(row)
            if self.progress:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch")
                print(f"[{self.recipe}] epoch {epoch + 1}/{self.max_epochs}: {shown}")
            if self.checkpoint_dir is not None:
                self._save(epoch + 1, history)
        self.model.eval()

    def _epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        generator = _epoch_generator(self.seed, epoch)
        order = torch.randperm(len(self.tensors[0]), generator=generator)
        sums: dict[str, float] = {}
        seen = 0
        for i, idx in enumerate(order.split(self.batch_size)):
            step = epoch * self.steps_per_epoch + i
            for group in self.optimizer.param_groups:
                group["lr"] = float(self.rates[min(step, len(self.rates) - 1)])
            batch = [t[idx].to(self.device) for t in self.tensors]
            with _autocast(self.device, self.precision):
                out = self.loss_step(self.model, batch, generator)
            self.optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            self.optimizer.step()
            n = len(idx)
            seen += n
            for key, value in out.items():
                sums[f"train_{key}"] = sums.get(f"train_{key}", 0.0) + float(value.detach()) * n
        row = {key: total / seen for key, total in sums.items()}
        row["lr"] = float(self.optimizer.param_groups[0]["lr"])
        return row

    # --- checkpoint / resume ---------------------------------------------------------
    def _save(self, epochs_done: int, history) -> None:
        name, kwargs = _model_identity(self.model)
        folder = self.checkpoint_dir / f"epoch_{epochs_done:04d}"
        if folder.exists():
            shutil.rmtree(folder)
        save_checkpoint(folder, self.model, name=name, kwargs=kwargs,
                        extra={"recipe": self.recipe, "epochs_done": epochs_done})
        tensors, groups = _optimizer_payload(self.optimizer)
        tensors["rng.torch"] = torch.get_rng_state()
        save_file(tensors, str(folder / OPTIMIZER_FILE))
        state = {"recipe": self.recipe, "epochs_done": epochs_done, "settings": self.settings,
                 "param_groups": groups, "history": history.epochs, **self.extra_state}
        atomic_write_bytes(folder / STATE_FILE, json.dumps(state, indent=1).encode())
        # the pointer moves last: an interrupted save leaves the previous epoch as latest
        pointer = {"folder": folder.name, "epochs_done": epochs_done}
        atomic_write_bytes(self.checkpoint_dir / LATEST_FILE, json.dumps(pointer).encode())
        self._prune(epochs_done)

    def _prune(self, epochs_done: int) -> None:
        if self.keep_last < 1:
            return
        for old in self.checkpoint_dir.glob("epoch_*"):
            number = int(old.name.split("_")[1]) if old.name[6:].isdigit() else None
            if number is not None and number <= epochs_done - self.keep_last:
                shutil.rmtree(old, ignore_errors=True)

    def _restore(self, history) -> int:
        folder = latest_checkpoint(self.checkpoint_dir)
        if folder is None:
            return 0
        state = json.loads((folder / STATE_FILE).read_text())
        saved = state["settings"]
        differing = {k: (saved.get(k), v) for k, v in self.settings.items()
                     if k != "seed" and saved.get(k) != v}
        if differing:
            raise CheckpointError(
                f"cannot resume from {folder}: settings differ (saved, now): {differing}; "
                "use the same settings, resume=False, or another checkpoint_dir")
        self.seed = saved["seed"]
        weights = load_file(str(folder / "model.safetensors"), device=str(self.device))
        self.model.load_state_dict(weights, strict=True)
        tensors = load_file(str(folder / OPTIMIZER_FILE))
        _load_optimizer(self.optimizer, tensors, state["param_groups"], self.device)
        torch.set_rng_state(tensors["rng.torch"])
        history.epochs.extend(state["history"])
        self.extra_state.update({k: state[k] for k in self.extra_state if k in state})
        return int(state["epochs_done"])


def _history():
    from ..training import History

    return History()


# --- stage 1: tokenizer pretraining ------------------------------------------------------

def pretrain_tokenizer(tokenizer: TFMTokenizer, X, *, max_epochs: int = 100,
                       batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-5,
                       betas: tuple[float, float] = (0.9, 0.99), warmup_epochs: int = 10,
                       final_lr: float = 0.005, lr_schedule: str = "intended",
                       seed: int | None = 0, device: str | torch.device | None = None,
                       accelerator: str | None = None, devices: int | str | None = None,
                       precision: str = "32", checkpoint_dir: str | Path | None = None,
                       resume: bool = True, keep_last: int = 2, stop_after: int | None = None,
                       progress_bar: bool = False):
    """Pretrain ``tokenizer`` on signals ``(n, N)`` or ``(n, C, N)`` (channels are treated
    independently), at 200 Hz and normalised
    (:func:`~sigformer.models.eeg.tfm_tokenizer.tfm_prepare`).

    Each step: one random frequency-band x frame mask shared by the batch, the masked view and
    its complement, MSE to the full spectrogram plus the VQ loss of each view (the tokenizer's
    switches decide the release details). ``precision="bf16"`` autocasts as the release
    trained (the quantizer stays float32). With ``checkpoint_dir`` every epoch is saved to
    ``checkpoint_dir/epoch_NNNN`` (model + config via :mod:`sigformer.checkpoint`, optimiser
    and RNG state, history) and, with ``resume=True``, a rerun continues after the last
    complete epoch with the same schedule, shuffling and masks (the settings must match;
    the last ``keep_last`` epoch folders are kept). ``stop_after=k`` stops once ``k`` epochs
    are done (to run a long schedule in time-boxed chunks; call again to continue). Returns
    the history (``train_loss``, ``train_reconstruction``, ``train_vq``, ``train_perplexity``,
    ``lr``, ``seconds`` per epoch).
    """
    if not isinstance(tokenizer, TFMTokenizer):
        raise TypeError(f"pretrain_tokenizer trains a TFMTokenizer, got {type(tokenizer).__name__}")
    X = np.asarray(X, np.float32)
    if X.ndim not in (2, 3):
        raise ValueError(f"X must be (n, N) or (n, C, N) signals, got shape {X.shape}")
    signals = torch.as_tensor(X.reshape(-1, X.shape[-1]))
    end_lr = schedule_end_lr(lr, final_lr, lr_schedule)

    def loss_step(model, batch, generator):
        return model.reconstruction_loss(batch[0], generator=generator)

    loop = _Loop(tokenizer, loss_step, [signals], recipe="tfm_tokenizer_pretraining",
                 max_epochs=max_epochs, batch_size=batch_size, lr=lr,
                 weight_decay=weight_decay, betas=betas, warmup_epochs=warmup_epochs,
                 end_lr=end_lr, seed=seed,
                 device=_resolve_device(tokenizer, device, accelerator, devices),
                 precision=precision, checkpoint_dir=checkpoint_dir, resume=resume,
                 keep_last=keep_last, progress=progress_bar,
                 settings={"n_signals": len(signals), "n_samples": signals.shape[-1],
                           "lr_schedule": lr_schedule,
                           "tokenizer": tokenizer.constructor_kwargs()})
    history = _history()
    loop.run(history, stop_after=stop_after)
    tokenizer.history_ = history
    return history


# --- stage 2: masked-token prediction ----------------------------------------------------

def mtp_model_like(encoder: TFMEncoder) -> TFMEncoder:
    """An MTP model (``n_codes``-way head on every token) sharing ``encoder``'s architecture,
    initialised with its weights (all but the head)."""
    mtp = TFMEncoder(**dict(encoder.constructor_kwargs(), n_outputs=None))
    mtp.load_state_dict(_without_head(encoder.state_dict()), strict=False)
    return mtp


def _without_head(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith("head.")}


def classifier_token_ids(classifier: TFMClassifier, X, normalized: bool = False) -> np.ndarray:
    """Token ids ``(n, C, T)`` of raw 200 Hz signals ``(n, C, N)`` through the classifier's
    tokenizer (95th-percentile scaling first unless ``normalized``)."""
    X = np.asarray(X, np.float32)
    if not normalized:
        X = percentile_normalize(torch.as_tensor(X)).numpy()
    # transform() encodes in eval mode and restores the tokenizer's mode: an unfrozen
    # tokenizer stays in training mode for fine-tuning (its EMA codebook keeps adapting)
    return classifier.tokenizer.transform(X).reshape(len(X), X.shape[1], -1)


def pretrain_mtp(target: TFMEncoder | TFMClassifier, data, *, max_epochs: int = 50,
                 batch_size: int = 512, lr: float = 1e-3, weight_decay: float = 1e-5,
                 betas: tuple[float, float] = (0.9, 0.99), warmup_epochs: int = 5,
                 final_lr: float = 0.005, lr_schedule: str = "intended", seed: int | None = 0,
                 device: str | torch.device | None = None, precision: str = "32",
                 checkpoint_dir: str | Path | None = None, resume: bool = True,
                 progress_bar: bool = False, normalized: bool = False):
    """Masked-token prediction, then transfer of everything but the head into ``target``'s
    encoder. ``data``: token ids ``(n, C, T)`` for a :class:`TFMEncoder`; raw 200 Hz signals
    ``(n, C, N)`` for a :class:`TFMClassifier` (tokenized by its tokenizer). Returns the
    history (``train_loss``, ``train_token_accuracy``)."""
    if isinstance(target, TFMClassifier):
        encoder, ids = target.encoder, classifier_token_ids(target, data, normalized)
    elif isinstance(target, TFMEncoder):
        encoder, ids = target, np.asarray(data)
    else:
        raise TypeError(f"pretrain_mtp takes a TFMEncoder or TFMClassifier, got "
                        f"{type(target).__name__}")
    if ids.ndim != 3 or ids.dtype.kind not in "iu":
        raise ValueError(f"token ids must be integers (n, channels, frames), got {ids.dtype} "
                         f"{ids.shape}")
    mtp = mtp_model_like(encoder)

    def loss_step(model, batch, generator):
        return model.mtp_loss(batch[0], generator=generator)

    dev = _resolve_device(encoder, device, None, None)
    loop = _Loop(mtp, loss_step, [torch.as_tensor(ids.astype(np.int64))],
                 recipe="tfm_mtp_pretraining", max_epochs=max_epochs, batch_size=batch_size,
                 lr=lr, weight_decay=weight_decay, betas=betas, warmup_epochs=warmup_epochs,
                 end_lr=schedule_end_lr(lr, final_lr, lr_schedule), seed=seed, device=dev,
                 precision=precision, checkpoint_dir=checkpoint_dir, resume=resume,
                 keep_last=2, progress=progress_bar,
                 settings={"n_examples": len(ids), "lr_schedule": lr_schedule})
    history = _history()
    loop.run(history)
    encoder.load_state_dict(_without_head(mtp.state_dict()), strict=False)
    return history


def pretrain_classifier_stages(classifier: TFMClassifier, X, *, tokenizer_epochs: int,
                               mtp_epochs: int, batch_size: int = 256, lr: float = 1e-3,
                               seed: int | None = None) -> None:
    """The estimator's unsupervised stages on raw training signals ``(n, C, N)``: tokenizer
    pretraining (``tokenizer_epochs``), codebook-initialised token embeddings, then
    masked-token pretraining (``mtp_epochs``); warm-up is a tenth of each stage. A classifier
    built with ``tokenizer_weights`` (e.g. the shipped ``tfm-tokenizer-eeg-corpus``) already
    has a pretrained tokenizer and codebook-initialised embeddings: only the masked-token
    stage runs, on the training data, as the TFM paper does after its tokenizer stage.

    ``seed`` seeds both stages (shuffling, masks); None draws it from torch's global
    generator, so a caller that seeded it (the estimator's ``random_state``) decides it."""
    if seed is None:  # one draw, before either stage reseeds the global generator
        seed = int(torch.randint(2**31, ()).item())
    pretrained = getattr(classifier, "tokenizer_weights", None)
    if tokenizer_epochs > 0 and pretrained is not None:
        # retraining would silently replace the pretrained tokenizer the caller asked for
        raise ValueError(f"the classifier's tokenizer is pretrained ({pretrained!r}); got "
                         f"tokenizer_epochs={tokenizer_epochs}, expected 0")
    X = percentile_normalize(torch.as_tensor(np.asarray(X, np.float32))).numpy()
    if tokenizer_epochs > 0:
        tokenizer = classifier.tokenizer
        tokenizer.requires_grad_(True)
        # the recipe itself: Tokenizer.fit is the no-op of fixed tokenizers
        pretrain_tokenizer(tokenizer, X, max_epochs=tokenizer_epochs, lr=lr,
                           batch_size=batch_size, warmup_epochs=max(1, tokenizer_epochs // 10),
                           seed=seed)
        tokenizer.requires_grad_(not classifier.freeze_tokenizer)
        # the pretraining loop ends in eval mode; an unfrozen tokenizer goes on adapting its
        # EMA codebook in fine-tuning (Lightning keeps the submodule modes it finds)
        tokenizer.train(classifier.training and not classifier.freeze_tokenizer)
        classifier.encoder.init_from_codebook(tokenizer.quantizer.codebook.detach())
    if mtp_epochs > 0:
        pretrain_mtp(classifier, X, max_epochs=mtp_epochs, batch_size=batch_size, lr=lr,
                     warmup_epochs=max(1, mtp_epochs // 10), normalized=True, seed=seed)


def fit_amplitude_probe(classifier: TFMClassifier, X, y_idx, *, class_weights=None,
                        C: float = 1.0) -> np.ndarray:
    """Linear probe of ``TFMClassifier(amplitude_input=True)``'s amplitude path (LP-FT):
    logistic regression of ``y_idx`` on the standardised log scales of the training windows
    ``X (n, C, N)`` (the statistics are fixed from all of them), written into the amplitude
    projection so that the head's logits gain exactly the probe's decision function (the
    projection is solved through the head's weights by pseudo-inverse; the head has full row
    rank when ``n_outputs <= emb_size``). Returns the probe's coefficients ``(K, C)``."""
    from sklearn.linear_model import LogisticRegression

    if not getattr(classifier, "amplitude_input", False):
        raise ValueError("fit_amplitude_probe needs TFMClassifier(amplitude_input=True)")
    X = torch.as_tensor(np.asarray(X, np.float32))
    y_idx = np.asarray(y_idx)
    if X.ndim != 3 or len(X) != len(y_idx):
        raise ValueError(f"X must be (n, channels, samples) with one label per window, got "
                         f"{tuple(X.shape)} and {len(y_idx)} labels")
    amplitude, head = classifier.amplitude, classifier.encoder.head
    if X.shape[1] > amplitude.proj.in_features:  # the forward's limit, said before any work
        raise ValueError(f"amplitude input takes at most {amplitude.proj.in_features} "
                         f"channels, got {X.shape[1]}")
    # in batches: torch.quantile sorts a copy, which for a whole corpus at once can exhaust
    # memory where batched training would not
    scale = torch.cat([channel_scale(xb)[..., 0] for xb in X.split(256)])
    amplitude.calibrate_on(scale)
    with torch.no_grad():
        z = amplitude.normalized(scale).double().numpy()
    n_classes = head.out_features
    weights = None if class_weights is None else {
        k: float(w) for k, w in enumerate(np.asarray(class_weights, float))}
    probe = LogisticRegression(C=C, max_iter=2000, class_weight=weights).fit(z, y_idx)
    coef, intercept = probe.coef_, probe.intercept_
    if n_classes >= 2 and coef.shape[0] == 1:  # sklearn's binary form: one decision function
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    if coef.shape[0] != n_classes:
        raise ValueError(f"the labels have {coef.shape[0]} classes in the probe, the head has "
                         f"{n_classes} outputs")
    with torch.no_grad():
        pinv = torch.linalg.pinv(head.weight.double())  # (D, K)
        proj = amplitude.proj
        n_chans = z.shape[1]
        proj.weight.zero_()
        proj.weight[:, :n_chans] = (pinv @ torch.from_numpy(coef)).to(proj.weight.dtype)
        proj.bias.copy_((pinv @ torch.from_numpy(intercept)).to(proj.bias.dtype))
    return coef


# --- stage 3: fine-tuning ----------------------------------------------------------------

def _n_outputs(model: nn.Module) -> int:
    encoder = model.encoder if isinstance(model, TFMClassifier) else model
    n = getattr(encoder, "n_outputs", None)
    if n is None:
        raise ValueError("fine-tuning needs a classification head (n_outputs >= 1); this is "
                         "the masked-token-prediction model")
    return int(n)


def _validation_score(model: nn.Module, X_val: torch.Tensor, y_val: np.ndarray, loss: str,
                      batch_size: int, device: torch.device) -> float:
    """Validation kappa (multi-class) or AUROC (binary), the release's model-selection
    metrics."""
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    model.eval()
    with torch.inference_mode():
        logits = torch.cat([model(xb.to(device)).float().cpu()
                            for xb in X_val.split(batch_size)])
    if loss in ("bce", "focal"):
        if len(np.unique(y_val)) < 2:
            return float("nan")
        return float(roc_auc_score(y_val, torch.sigmoid(logits.reshape(-1)).numpy()))
    return float(cohen_kappa_score(y_val, logits.argmax(-1).numpy()))


def finetune(model: TFMClassifier | TFMEncoder, X, y, *, X_val=None, y_val=None,
             loss: str = "auto", label_smoothing: float = 0.1, max_epochs: int = 50,
             batch_size: int = 512, lr: float = 1e-3, weight_decay: float = 1e-5,
             betas: tuple[float, float] = (0.9, 0.999), warmup_epochs: int = 5,
             final_lr: float = 0.005, lr_schedule: str = "intended", seed: int | None = 0,
             device: str | torch.device | None = None, precision: str = "32",
             checkpoint_dir: str | Path | None = None, resume: bool = True,
             progress_bar: bool = False):
    """Supervised fine-tuning as released. ``X``: raw 200 Hz signals ``(n, C, N)`` for a
    :class:`TFMClassifier` (frozen tokenizer), token ids ``(n, C, T)`` for a
    :class:`TFMEncoder`. ``loss="auto"``: BCE for one output (``preset="tuab"``),
    label-smoothing CE (0.1) otherwise; ``"focal"`` is the CHB-MIT loss. With validation data
    the model ends with the weights of the best epoch (kappa, or AUROC for binary tasks) and
    the history holds ``val_score``; with ``checkpoint_dir`` the best epoch's model is kept in
    ``checkpoint_dir/best`` (its epoch and score in ``trainer_state.json``), so a resumed or
    re-run call also ends with the best epoch of the whole run, not of its own epochs.
    Returns the history."""
    loss = resolve_loss(loss, _n_outputs(model))
    X = np.asarray(X)
    y = np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"X and y differ in length: {len(X)} vs {len(y)}")
    if loss in ("bce", "focal") and not np.isin(y, (0, 1)).all():
        raise ValueError(f"loss {loss!r} needs binary labels 0/1, got {np.unique(y)[:10]}")
    x_dtype = torch.long if isinstance(model, TFMEncoder) else torch.float32
    tensors = [torch.as_tensor(X, dtype=x_dtype),
               torch.as_tensor(y, dtype=torch.float32 if loss in ("bce", "focal")
                               else torch.long)]

    def loss_step(m, batch, generator):
        logits = m(batch[0])
        out = {"loss": finetune_loss(logits, batch[1], loss, label_smoothing)}
        if loss in ("bce", "focal"):
            out["acc"] = ((logits.reshape(-1) > 0).float() == batch[1]).float().mean()
        else:
            out["acc"] = (logits.argmax(-1) == batch[1]).float().mean()
        return out

    dev = _resolve_device(model, device, None, None)
    loop = _Loop(model, loss_step, tensors, recipe="tfm_finetuning", max_epochs=max_epochs,
                 batch_size=batch_size, lr=lr, weight_decay=weight_decay, betas=betas,
                 warmup_epochs=warmup_epochs, end_lr=schedule_end_lr(lr, final_lr, lr_schedule),
                 seed=seed, device=dev, precision=precision, checkpoint_dir=checkpoint_dir,
                 resume=resume, keep_last=2, progress=progress_bar,
                 settings={"n_examples": len(X), "loss": loss, "lr_schedule": lr_schedule,
                           "label_smoothing": label_smoothing})
    history = _history()
    if X_val is None:
        loop.run(history)
        return history
    X_val_t = torch.as_tensor(np.asarray(X_val), dtype=x_dtype)
    y_val = np.asarray(y_val)
    best_dir = None if checkpoint_dir is None else user_path(checkpoint_dir) / BEST_DIR
    # best_epoch / best_score live in the loop's saved state: a resume restores them
    loop.extra_state.update(best_epoch=None, best_score=None)
    kept: dict[str, Any] = {"state": None}

    def select(epoch: int) -> dict[str, float]:
        score = _validation_score(model, X_val_t, y_val, loss, batch_size, dev)
        previous = loop.extra_state["best_score"]
        if not math.isnan(score) and (previous is None or score > previous):
            loop.extra_state.update(best_epoch=epoch, best_score=score)
            if best_dir is not None:  # saved before the epoch's state names it the best
                name, kwargs = _model_identity(model)
                save_checkpoint(best_dir, model, name=name, kwargs=kwargs,
                                extra={"recipe": loop.recipe, "epoch": epoch,
                                       "val_score": score})
            else:
                kept["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return {"val_score": score}

    loop.run(history, after_epoch=select)
    _restore_best(model, best_dir, loop.extra_state["best_epoch"], kept["state"], dev)
    model.eval()
    return history


def _restore_best(model: nn.Module, best_dir: Path | None, best_epoch: int | None,
                  in_memory: dict[str, torch.Tensor] | None, device: torch.device) -> None:
    """Load the best epoch's weights: from ``best_dir`` (written by this call or by the run it
    resumed) or, without a checkpoint folder, from memory."""
    if in_memory is not None:
        model.load_state_dict(in_memory)
        return
    if best_dir is None or best_epoch is None:
        return
    import warnings

    from ..checkpoint import read_config

    recorded = read_config(best_dir)["extra"].get("epoch") if best_dir.is_dir() else None
    if recorded != best_epoch:  # a run stopped between saving best/ and the epoch's state
        warnings.warn(f"{best_dir} holds epoch {recorded}, the training state names epoch "
                      f"{best_epoch} as the best: keeping the last epoch's weights",
                      stacklevel=3)
        return
    weights = load_file(str(best_dir / "model.safetensors"), device=str(device))
    model.load_state_dict(weights, strict=True)
