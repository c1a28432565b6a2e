"""VT-CNN2: the convolutional modulation classifier of the RadioML 2016 paper.

O'Shea, Corgan, Clancy, "Convolutional Radio Modulation Recognition Networks", EANN 2016
(the "CNN2" of the RadioML tutorial). Input ``(B, 2, n_times)`` I/Q rows, seen as a 1 x 2 x T
image: zero-pad time by 2 -> ``Conv2d(1, 256, (1, 3))`` ReLU dropout -> pad ->
``Conv2d(256, 80, (2, 3))`` ReLU dropout -> flatten -> ``Linear(., 256)`` ReLU dropout ->
``Linear(256, n_outputs)``. 2,830,427 parameters for 2 x 128 frames and 11 classes.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import register_model
from .clst import check_iq_input


@register_model("vtcnn2", domain="rf", presets={"paper": {}})
class VTCNN2(nn.Module):
    def __init__(self, n_chans: int = 2, n_outputs: int = 11, n_times: int = 128,
                 sfreq: float | None = None, chs_info=None, filters: tuple[int, int] = (256, 80),
                 hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        self.n_chans, self.n_outputs, self.n_times = n_chans, n_outputs, n_times
        self.features = nn.Sequential(
            nn.ZeroPad2d((2, 2, 0, 0)), nn.Conv2d(1, filters[0], (1, 3)), nn.ReLU(),
            nn.Dropout(dropout),
            nn.ZeroPad2d((2, 2, 0, 0)), nn.Conv2d(filters[0], filters[1], (n_chans, 3)),
            nn.ReLU(), nn.Dropout(dropout), nn.Flatten())
        width = n_times + 4
        self.classifier = nn.Sequential(nn.Linear(filters[1] * width, hidden), nn.ReLU(),
                                        nn.Dropout(dropout), nn.Linear(hidden, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_iq_input(x, self.n_chans, self.n_times, type(self).__name__)
        return self.classifier(self.features(x.unsqueeze(1)))
