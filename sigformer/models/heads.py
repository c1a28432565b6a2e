"""Reusing a pretrained model on a new task: swap its head, freeze the rest.

braindecode's convention: the classification head of an EEG model is ``final_layer``;
sigformer's models name it ``final_layer``, ``head`` or ``classifier`` (:func:`head_module`
finds it). :func:`reset_head` replaces the last linear layer of that head with a fresh one of
``n_outputs`` and records the new size, so the model still checkpoints and rebuilds::

    model = create_model("clst", weights="amr-clst-modgen")   # 11 modulation classes
    reset_head(model, n_outputs=4)
    freeze(model, except_head=True)       # train only the new head first

To re-initialise the head in place at the same size (fine-tuning on a new subject), use
:func:`sigformer.training.reinit_head`.
"""

from __future__ import annotations

from torch import nn

HEAD_NAMES = ("final_layer", "head", "classifier")


def head_module(model: nn.Module) -> tuple[str, nn.Module]:
    """``(attribute name, module)`` of the model's output head."""
    for name in HEAD_NAMES:
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            return name, module
    raise ValueError(f"{type(model).__name__} has no output head named one of {HEAD_NAMES}; "
                     f"replace its last layer by hand")


def _last_linear(module: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """``(parent, attribute, layer)`` of the last ``nn.Linear`` inside ``module``."""
    found = None
    for parent in module.modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, attr, child)
    if found is None:
        if isinstance(module, nn.Linear):
            return None, "", module  # type: ignore[return-value]
        raise ValueError(f"the head {type(module).__name__} contains no linear layer")
    return found


def reset_head(model: nn.Module, n_outputs: int) -> nn.Module:
    """Replace the output layer with a freshly initialised one of ``n_outputs`` units."""
    if not isinstance(n_outputs, int) or n_outputs < 1:
        raise ValueError(f"n_outputs must be a positive integer, got {n_outputs!r}")
    name, head = head_module(model)
    parent, attr, layer = _last_linear(head)
    new = nn.Linear(layer.in_features, n_outputs, bias=layer.bias is not None)
    new.to(device=layer.weight.device, dtype=layer.weight.dtype)
    if parent is None:
        setattr(model, name, new)
    else:
        setattr(parent, attr, new)
    if hasattr(model, "n_outputs"):
        try:
            model.n_outputs = n_outputs
        except AttributeError:  # braindecode exposes n_outputs as a read-only property
            model._n_outputs = n_outputs
    config = getattr(model, "sigformer_config", None)
    if config is not None:
        config["kwargs"] = {**config["kwargs"], "n_outputs": n_outputs}
    return model


def freeze(model: nn.Module, *, except_head: bool = True, trainable: tuple[str, ...] = ()
           ) -> nn.Module:
    """Stop gradients everywhere except the head (and any submodule named in ``trainable``)."""
    keep = set(trainable)
    if except_head:
        keep.add(head_module(model)[0])
    for name, param in model.named_parameters():
        param.requires_grad = any(name == k or name.startswith(k + ".") for k in keep)
    return model


def unfreeze(model: nn.Module) -> nn.Module:
    for param in model.parameters():
        param.requires_grad = True
    return model
