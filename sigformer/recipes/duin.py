"""Du-IN training as released (Zheng et al., official training scripts): stage 1 VQ-VAE
pretraining, stage 2 masked-token pretraining against the frozen VQ-VAE's codes (from scratch,
as released). The classifier is fine-tuned with the usual estimator / trainer."""

from __future__ import annotations

import numpy as np

from ..models.eeg.duin import DuINMAE, DuINVQVAE, vqvae_targets

__all__ = ["pretrain_mae", "pretrain_vqvae"]


def pretrain_vqvae(model: DuINVQVAE, X: np.ndarray, *, subjects: np.ndarray | None = None,
                   max_epochs: int = 800, batch_size: int = 32, lr: float = 3e-4,
                   final_lr: float = 5e-5, warmup_epochs: int = 80, weight_decay: float = 0.01,
                   seed: int | None = 0, interval: str = "epoch", **kwargs):
    """Stage 1: VQ-VAE pretraining (defaults: the release's 800 epochs, AdamW wd 0.01, the
    warm-up + cosine stepped once per epoch as released; ``interval="step"`` moves it every
    batch, sigformer's earlier default)."""
    from ..training import train_objective

    subjects = np.zeros(len(X), np.int64) if subjects is None else np.asarray(subjects)
    model.train()
    return train_objective(model, lambda m, b: m.loss(b[0], b[1]), [X, subjects],
                           max_epochs=max_epochs, batch_size=batch_size, lr=lr,
                           final_lr=final_lr, warmup_epochs=warmup_epochs,
                           weight_decay=weight_decay, seed=seed, interval=interval, **kwargs)


def pretrain_mae(model: DuINMAE, vqvae: DuINVQVAE, X: np.ndarray, *,
                 subjects: np.ndarray | None = None, max_epochs: int = 400, batch_size: int = 64,
                 lr: float = 3e-4, final_lr: float = 5e-5, warmup_epochs: int = 40,
                 weight_decay: float = 0.05, seed: int | None = 0, **kwargs):
    """Stage 2: masked-token pretraining against the frozen VQ-VAE's codes (release: 400
    epochs, AdamW wd 0.05). From scratch as released, unless the MAE was built with
    ``init_from_vqvae=True`` (then the VQ-VAE's subject layer, tokenizer and encoder
    initialise the MAE's backbone)."""
    from ..training import train_objective

    subjects = np.zeros(len(X), np.int64) if subjects is None else np.asarray(subjects)
    targets = vqvae_targets(vqvae, X, subjects)
    if model.init_from_vqvae:
        model.backbone.load_state_dict(vqvae.backbone.state_dict())
    model.train()
    return train_objective(model, lambda m, b: m.loss(b[0], b[2], b[1]), [X, subjects, targets],
                           max_epochs=max_epochs, batch_size=batch_size, lr=lr,
                           final_lr=final_lr, warmup_epochs=warmup_epochs,
                           weight_decay=weight_decay, seed=seed, **kwargs)
