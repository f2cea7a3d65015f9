"""AlexNet exactly as DeepCluster trains it (REFERENCE.md): BN after every conv, no LRN, no
groups, optional fixed Sobel front end; 224x224 input, conv5 -> 256x6x6 -> fc6 -> fc7 (4096)."""

from __future__ import annotations

from torch import nn

from dcbench.models.convnet import ConvFcTrunk, conv_bn_relu


class AlexNet(ConvFcTrunk):
    ARCH = "alexnet"
    INPUT_SIZE = 224
    FLAT_DIM = 256 * 6 * 6
    FC_DIM = 4096
    # features: conv1 0-2, pool 3, conv2 4-6, pool 7, conv3 8-10, conv4 11-13, conv5 14-16, pool 17
    CONV_TAPS = {"conv1": 2, "conv2": 6, "conv3": 10, "conv4": 13, "conv5": 16}
    # classifier: Dropout 0, fc6 1, ReLU 2, Dropout 3, fc7 4, ReLU 5
    FC_TAPS = {"fc6_pre": 1, "fc6": 2, "fc7_pre": 4, "fc7": 5}

    def __init__(self, sobel: bool = True) -> None:
        super().__init__(sobel)
        self.features = nn.Sequential(
            *conv_bn_relu(self.in_channels, 96, 11, 4, 2), nn.MaxPool2d(3, 2),
            *conv_bn_relu(96, 256, 5, 1, 2), nn.MaxPool2d(3, 2),
            *conv_bn_relu(256, 384, 3, 1, 1),
            *conv_bn_relu(384, 384, 3, 1, 1),
            *conv_bn_relu(384, 256, 3, 1, 1), nn.MaxPool2d(3, 2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(self.FLAT_DIM, 4096), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(),
        )
        self.init_weights()
