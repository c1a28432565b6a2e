"""KD-CNN: the lightweight plain-CNN student of ClST's signal knowledge distillation.

The ClST paper names the students KD-CNN and KD-MobileNet without public code; this is a
compact 1-D CNN for ``(B, 2, n_times)`` I/Q frames: three ``Conv1d + BatchNorm + ReLU``
layers (16, 32, 64 filters; kernels 7, 5, 3; max-pooling by 2 after the first two), global
average pooling and ``Linear(64, n_outputs)``. 9,867 parameters for 11 classes.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import register_model
from .clst import check_iq_input


def conv_bn_act(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
                act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(c_in, c_out, kernel, stride, kernel // 2, groups=groups,
                                   bias=False), nn.BatchNorm1d(c_out), act())


@register_model("kd_cnn", domain="rf", presets={"paper": {}})
class KDCNN(nn.Module):
    def __init__(self, n_chans: int = 2, n_outputs: int = 11, n_times: int = 128,
                 sfreq: float | None = None, chs_info=None,
                 filters: tuple[int, int, int] = (16, 32, 64), dropout: float = 0.2):
        super().__init__()
        self.n_chans, self.n_outputs, self.n_times = n_chans, n_outputs, n_times
        f1, f2, f3 = filters
        self.features = nn.Sequential(
            conv_bn_act(n_chans, f1, 7), nn.MaxPool1d(2), conv_bn_act(f1, f2, 5),
            nn.MaxPool1d(2), conv_bn_act(f2, f3, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(f3, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_iq_input(x, self.n_chans, self.n_times, type(self).__name__)
        return self.classifier(self.features(x))
