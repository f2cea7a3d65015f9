"""JULE's convnet for small grayscale images (Yang et al., CVPR 2016; released models_def).

Blocks of conv 50@5x5 (no padding), BatchNorm, ReLU and a 2x2 max-pool (ceil mode), then a
Linear layer to 160 dims and L2 normalisation; weights drawn N(0, 0.01). JULE's MNIST net is
conv+pool, conv -> 3200 -> 160 at 28 px; dcbench feeds 32 px (Fashion-MNIST padded as for the
other trunks), so the flat layer is 50 x 10 x 10 = 5000. No Sobel front end: JULE clusters
raw intensities. Taps: conv1, conv2 (post-ReLU) and `embed`, the L2-normalised output the
triplet loss and the agglomerative clustering use.
"""

from __future__ import annotations

import torch
from torch import nn

from dcbench.models.trunk import Trunk


class L2Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x, dim=1)


class JuleNet32(Trunk):
    ARCH = "jule-32"
    INPUT_SIZE = 32
    FLAT_DIM = 50 * 10 * 10
    FC_DIM = 160
    CONV_TAPS = {"conv1": 2, "conv2": 6}
    FC_TAPS = {"embed": 1}

    def __init__(self, sobel: bool = False) -> None:
        super().__init__(sobel)
        self.features = nn.Sequential(
            nn.Conv2d(self.in_channels, 50, 5), nn.BatchNorm2d(50), nn.ReLU(),
            nn.MaxPool2d(2, 2, ceil_mode=True),
            nn.Conv2d(50, 50, 5), nn.BatchNorm2d(50), nn.ReLU(),
        )
        self.classifier = nn.Sequential(nn.Linear(self.FLAT_DIM, self.FC_DIM), L2Normalize())
        self.init_weights()

    def init_weights(self) -> None:
        """JULE's init: conv and linear weights N(0, 0.01), biases 0; BN 1 / 0."""
        if next(self.classifier.parameters()).is_meta:
            return
        for m in [*self.features.modules(), *self.classifier.modules()]:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
