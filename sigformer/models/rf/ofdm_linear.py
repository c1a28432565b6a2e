"""The linear OFDM channel estimator of the AdaFortiTran reference (BerkIGuler/AdaFortiTran,
``linear``): a learned linear map from the pilots to the grid."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..registry import register_model
from .adafortitran import as_complex_pilots


@register_model("ofdm_linear", domain="rf", presets={"paper": {},
                                                     "repo_default": {"pilot_shape": (12, 2)}})
class OFDMLinear(nn.Module):
    """The reference's linear model: one ``Linear(P, K*L)`` from the pilots to the grid, shared
    by the real and imaginary parts (136,080 parameters with 40 x 2 pilots)."""

    def __init__(self, n_subcarriers: int = 120, n_symbols: int = 14,
                 pilot_shape: tuple[int, int] = (40, 2)):
        super().__init__()
        self.grid = (int(n_subcarriers), int(n_symbols))
        self.pilot_shape = (int(pilot_shape[0]), int(pilot_shape[1]))
        self.adaptive = False
        self.upsampler = nn.Linear(math.prod(self.pilot_shape), math.prod(self.grid))

    def forward(self, pilots: torch.Tensor, statistics: torch.Tensor | None = None):
        pilots = as_complex_pilots(pilots, self.pilot_shape)
        b = pilots.shape[0]
        both = torch.cat([pilots.real, pilots.imag], 0).float().reshape(2 * b, -1)
        out = self.upsampler(both).view(2 * b, *self.grid).float()  # autocast gives bf16
        return torch.complex(out[:b], out[b:])
