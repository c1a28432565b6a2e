"""Where a training script trains: one parser for ``--device`` in every script."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """``name`` (``cpu``, ``cuda``, ``cuda:N``) as a device that exists here; ValueError naming
    the problem otherwise (a device torch does not know, or CUDA on a machine without it)."""
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name!r}: {err} (expected cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        build = (f"built with CUDA {torch.version.cuda}, but no GPU is visible"
                 if torch.version.cuda else "a CPU-only build")
        raise ValueError(f"--device {name}: torch.cuda.is_available() is False (torch "
                         f"{torch.__version__}, {build}); run on a machine with an NVIDIA GPU "
                         "and a CUDA build of torch, or pass --device cpu")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s) (cuda:0 ... cuda:{torch.cuda.device_count() - 1})")
    return device
