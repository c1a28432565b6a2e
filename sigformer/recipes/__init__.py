"""Training recipes: how a model is trained as published (optimiser, schedule, losses,
pretraining stages), kept out of the model files. Import a recipe module directly, e.g.
``from sigformer.recipes import tfm``; nothing heavy is imported here.

:func:`pretrain` and :func:`unsupervised_stage` dispatch on the registered model name, so
estimators and tokenizer wrappers can train any model that has a recipe without the model
files importing training code.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

# Registered model name -> (recipe module, function) that :func:`pretrain` runs; the tokenizer
# wrappers ask :func:`has_pretraining_recipe`, so a recipe added here is picked up without
# touching them.
PRETRAINING_RECIPES: dict[str, tuple[str, str]] = {
    "tfm_tokenizer": ("tfm", "pretrain_tokenizer"),
}


def has_pretraining_recipe(model) -> bool:
    """Whether :func:`pretrain` can train ``model`` (by its registered name)."""
    return _model_name(model) in PRETRAINING_RECIPES


def _model_name(model) -> str:
    from ..models.registry import registered_name

    return registered_name(model) or type(model).__name__


def pretrain(model, X, **kwargs) -> Any:
    """Self-supervised pretraining of ``model`` on ``X`` with its published recipe; returns
    the training history (also stored as ``model.history_``)."""
    name = _model_name(model)
    if name not in PRETRAINING_RECIPES:
        raise TypeError(f"no pretraining recipe for {name!r}; models with one: "
                        f"{', '.join(PRETRAINING_RECIPES)} (sigformer.recipes); Du-IN's two "
                        f"stages are sigformer.recipes.duin.pretrain_vqvae and pretrain_mae")
    module, function = PRETRAINING_RECIPES[name]
    recipe = getattr(import_module(f"{__name__}.{module}"), function)
    model.history_ = recipe(model, X, **kwargs)
    return model.history_


def unsupervised_stage(model) -> Callable[..., None] | None:
    """The unsupervised stage an estimator runs before supervised training, ``run(X,
    seed=None)`` (e.g. the TFM classifier's tokenizer and masked-token pretraining), or
    None. ``seed`` seeds its shuffling and masks (None: drawn from torch's generator)."""
    if _model_name(model) == "tfm_classifier":
        from .tfm import pretrain_classifier_stages

        def run(X, seed: int | None = None) -> None:
            pretrain_classifier_stages(model, X, tokenizer_epochs=model.tokenizer_epochs,
                                       mtp_epochs=model.mtp_epochs,
                                       batch_size=model.pretrain_batch_size,
                                       lr=model.pretrain_lr, seed=seed)

        return run
    return None


def supervised_warm_start(model) -> Callable[[Any, Any, Any], None] | None:
    """A step an estimator runs on the training split just before supervised training,
    ``run(X, y_idx, class_weights)``, or None (e.g. the TFM classifier's amplitude probe)."""
    if _model_name(model) == "tfm_classifier" and getattr(
            model, "amplitude_probe", False):
        from .tfm import fit_amplitude_probe

        def run(X, y_idx, class_weights) -> None:
            fit_amplitude_probe(model, X, y_idx, class_weights=class_weights)

        return run
    return None
