"""KD-MobileNet: the MobileNet-style student of ClST's signal knowledge distillation.

1-D MobileNet (Howard et al. 2017) for ``(B, 2, n_times)`` I/Q frames: a
``Conv1d(k=3) + BatchNorm + ReLU6`` stem, depthwise-separable blocks (depthwise
``Conv1d(k=3)`` + BatchNorm + ReLU6, pointwise ``Conv1d(1x1)`` + BatchNorm + ReLU6) with
widths 32, 64, 64, 128 and strides 2, 2, 1, 2, global average pooling and a linear output.
17,851 parameters for 11 classes.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import register_model
from .clst import check_iq_input
from .kd_cnn import conv_bn_act


class DepthwiseSeparable(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__(conv_bn_act(c_in, c_in, 3, stride, groups=c_in, act=nn.ReLU6),
                         conv_bn_act(c_in, c_out, 1, act=nn.ReLU6))


@register_model("kd_mobilenet", domain="rf", presets={"paper": {}})
class KDMobileNet(nn.Module):
    def __init__(self, n_chans: int = 2, n_outputs: int = 11, n_times: int = 128,
                 sfreq: float | None = None, chs_info=None, stem: int = 16,
                 widths: tuple[int, ...] = (32, 64, 64, 128),
                 strides: tuple[int, ...] = (2, 2, 1, 2), dropout: float = 0.2):
        super().__init__()
        self.n_chans, self.n_outputs, self.n_times = n_chans, n_outputs, n_times
        layers = [conv_bn_act(n_chans, stem, 3, act=nn.ReLU6)]
        c_in = stem
        for width, stride in zip(widths, strides):
            layers.append(DepthwiseSeparable(c_in, width, stride))
            c_in = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool1d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_iq_input(x, self.n_chans, self.n_times, type(self).__name__)
        return self.classifier(self.features(x))
