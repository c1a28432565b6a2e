"""Where a training script trains: one ``--device`` flag and parser for every script, and
where a model sits."""

from __future__ import annotations

import argparse

import torch
from torch import nn

DEVICE_HELP = ("where to train: cpu (default), cuda or cuda:N; the data is still made on the "
               "CPU and moved a batch at a time")


def resolve_device(name: str) -> torch.device:
    """``name`` (``cpu``, ``cuda``, ``cuda:N``) as a device that exists here; ValueError naming
    the problem otherwise: another device type (the loops are tested on these two), a CPU
    index, CUDA on a machine without it, or a GPU index beyond the machine's."""
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name!r}: {err} (expected cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index):
        raise ValueError(f"--device {name!r}: expected cpu, cuda or cuda:N (the training "
                         "loops run on the CPU and on CUDA GPUs)")
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


def add_device_argument(parser: argparse.ArgumentParser, help: str = DEVICE_HELP) -> None:
    """The scripts' ``--device`` flag (default ``cpu``)."""
    parser.add_argument("--device", default="cpu", help=help)


def check_device_argument(parser: argparse.ArgumentParser, name: str) -> None:
    """A usage error (exit 2, before anything is built) for a device :func:`resolve_device`
    refuses."""
    try:
        resolve_device(name)
    except ValueError as err:
        parser.error(str(err))


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters live (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))
