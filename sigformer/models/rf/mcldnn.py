"""MCLDNN: multi-channel convolutional LSTM deep network for modulation recognition.

Xu, Luo, Wang, Yang, "A Spatiotemporal Multi-Channel Learning Framework for Automatic
Modulation Recognition", IEEE Wireless Commun. Lett. 9(10), 2020. Three inputs from one
frame: the I/Q image ``Conv2d(1, 50, (2, 8), same)``; I and Q alone through causal
``Conv1d(1, 50, 8)``, stacked and mixed by ``Conv2d(50, 50, (1, 8), same)``; both
concatenated -> ``Conv2d(100, 100, (2, 5))`` -> two ``LSTM(128)`` -> two ``Linear(128)``
SELU dropout 0.5 -> output. 406,199 parameters for 11 classes here; PyTorch's LSTMs carry two
bias vectors where Keras's carry one, so a Keras build has 1,024 fewer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_model
from .clst import check_iq_input


@register_model("mcldnn", domain="rf", presets={"paper": {}})
class MCLDNN(nn.Module):
    def __init__(self, n_chans: int = 2, n_outputs: int = 11, n_times: int = 128,
                 sfreq: float | None = None, chs_info=None, filters: int = 50,
                 lstm_units: int = 128, hidden: int = 128, dropout: float = 0.5):
        super().__init__()
        if n_chans != 2:
            raise ValueError(f"MCLDNN needs I/Q frames (n_chans=2), got n_chans={n_chans}")
        self.n_chans, self.n_outputs, self.n_times = n_chans, n_outputs, n_times
        self.iq_conv = nn.Conv2d(1, filters, (2, 8))
        self.i_conv = nn.Conv1d(1, filters, 8)
        self.q_conv = nn.Conv1d(1, filters, 8)
        self.mix_conv = nn.Conv2d(filters, filters, (1, 8))
        self.fuse_conv = nn.Conv2d(2 * filters, 2 * filters, (2, 5))
        self.lstm = nn.LSTM(2 * filters, lstm_units, num_layers=2, batch_first=True)
        self.classifier = nn.Sequential(
            nn.Linear(lstm_units, hidden), nn.SELU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.SELU(), nn.Dropout(dropout),
            nn.Linear(hidden, n_outputs))

    @staticmethod
    def _same(x: torch.Tensor, kernel: int) -> torch.Tensor:  # Keras 'same' padding in time
        return F.pad(x, ((kernel - 1) // 2, kernel // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_iq_input(x, self.n_chans, self.n_times, type(self).__name__)
        image = x.unsqueeze(1)  # (B, 1, 2, T)
        iq = torch.relu(self.iq_conv(F.pad(self._same(image, 8), (0, 0, 0, 1))))
        i = torch.relu(self.i_conv(F.pad(x[:, :1], (7, 0))))  # causal
        q = torch.relu(self.q_conv(F.pad(x[:, 1:], (7, 0))))
        mixed = torch.relu(self.mix_conv(self._same(torch.stack([i, q], dim=2), 8)))
        fused = torch.relu(self.fuse_conv(torch.cat([iq, mixed], dim=1)))  # (B, 100, 1, T-4)
        seq, _ = self.lstm(fused.squeeze(2).transpose(1, 2))
        return self.classifier(seq[:, -1])
