"""ResNet for modulation recognition (residual stacks).

O'Shea, Roy, Clancy, "Over-the-Air Deep Learning Based Radio Signal Classification", IEEE
JSTSP 12(1), 2018. Each residual stack is ``Conv1d(1x1)`` (linear) -> two residual units
(``Conv1d(k=3)`` ReLU ``Conv1d(k=3)`` + skip, ReLU) -> ``MaxPool1d(2)``; then
``Linear(., 128)`` SELU alpha-dropout, ``Linear(128, 128)`` SELU alpha-dropout, output. The
paper uses 6 stacks for 1024-sample frames; the default here takes
``min(6, log2(n_times) - 3)`` stacks (4 for 128 samples) so the last map keeps 8 steps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..registry import register_model
from .clst import check_iq_input


class ResidualUnit(nn.Module):
    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(channels, channels, kernel_size, padding=pad)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class ResidualStack(nn.Sequential):
    def __init__(self, in_channels: int, channels: int):
        super().__init__(nn.Conv1d(in_channels, channels, 1), ResidualUnit(channels),
                         ResidualUnit(channels), nn.MaxPool1d(2))


@register_model("amr_resnet", domain="rf", presets={"paper": {}})
class AMRResNet(nn.Module):
    def __init__(self, n_chans: int = 2, n_outputs: int = 11, n_times: int = 128,
                 sfreq: float | None = None, chs_info=None, filters: int = 32,
                 n_stacks: int | None = None, hidden: int = 128, dropout: float = 0.3):
        super().__init__()
        self.n_chans, self.n_outputs, self.n_times = n_chans, n_outputs, n_times
        n_stacks = n_stacks or max(1, min(6, int(math.log2(n_times)) - 3))
        self.stacks = nn.Sequential(*(ResidualStack(n_chans if i == 0 else filters, filters)
                                      for i in range(n_stacks)))
        flat = filters * (n_times >> n_stacks)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, hidden), nn.SELU(), nn.AlphaDropout(dropout),
            nn.Linear(hidden, hidden), nn.SELU(), nn.AlphaDropout(dropout),
            nn.Linear(hidden, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_iq_input(x, self.n_chans, self.n_times, type(self).__name__)
        return self.classifier(self.stacks(x))
