"""Mixed precision shared by the training recipes and the throughput benchmark."""

from __future__ import annotations

import contextlib

import torch


def bf16_autocast(enabled: bool, device_type: str = "cpu"):
    """``torch.autocast(device_type, bfloat16)`` when ``enabled``; otherwise no context at
    all, so an fp32 step is exactly the plain one and an autocast a caller opened around it is
    left alone (``autocast(enabled=False)`` would switch that one off)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16)
