"""A five-conv AlexNet for 32x32 inputs (Fashion-MNIST padded to 32), fast on 2 CPU cores.

Same module layout and tap names as `alexnet` (the same `features` indices, BN after every
conv, fc6, fc7, a top layer) so every task and the DeepCluster trainer treat it the same way.
Shapes: 32 -conv1,pool-> 16 -conv2,pool-> 8 -conv3,4,5,pool-> 4; 96x4x4 -> 512 -> 512.
Widths 48-96-160-160-96 were picked by measurement (bench/bench_alexnet_small_width.py): about
330 training images/s on 2 CPU cores in channels_last, against 190 for 64-128-192-192-128.
"""

from __future__ import annotations

from torch import nn

from dcbench.models.convnet import ConvFcTrunk, conv_bn_relu


class AlexNetSmall(ConvFcTrunk):
    ARCH = "alexnet-small"
    INPUT_SIZE = 32
    WIDTHS = (48, 96, 160, 160, 96)          # conv1..conv5 channels
    FLAT_DIM = WIDTHS[4] * 4 * 4
    FC_DIM = 512
    CONV_TAPS = {"conv1": 2, "conv2": 6, "conv3": 10, "conv4": 13, "conv5": 16}
    FC_TAPS = {"fc6_pre": 1, "fc6": 2, "fc7_pre": 4, "fc7": 5}

    def __init__(self, sobel: bool = True) -> None:
        super().__init__(sobel)
        c1, c2, c3, c4, c5 = self.WIDTHS
        self.features = nn.Sequential(
            *conv_bn_relu(self.in_channels, c1, 5, 1, 2), nn.MaxPool2d(2, 2),
            *conv_bn_relu(c1, c2, 3, 1, 1), nn.MaxPool2d(2, 2),
            *conv_bn_relu(c2, c3, 3, 1, 1),
            *conv_bn_relu(c3, c4, 3, 1, 1),
            *conv_bn_relu(c4, c5, 3, 1, 1), nn.MaxPool2d(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(self.FLAT_DIM, self.FC_DIM), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(self.FC_DIM, self.FC_DIM), nn.ReLU(),
        )
        self.init_weights()


class AlexNetSmallWide(AlexNetSmall):
    """alexnet-small at twice the width of every layer (4x the conv cost): the trunk-width
    lever of the fidelity sweep (README), for 32 px data."""

    ARCH = "alexnet-small-wide"
    WIDTHS = (96, 192, 320, 320, 192)
    FLAT_DIM = WIDTHS[4] * 4 * 4
    FC_DIM = 1024
