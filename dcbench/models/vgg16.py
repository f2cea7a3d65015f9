"""VGG16 with BN as DeepCluster trains it: 13 convs, conv at features.{0,3,7,...,40}, BN at
+1; classifier Linear(25088,4096), ReLU, Dropout, Linear(4096,4096), ReLU. The same key layout
as torchvision's vgg16_bn, whose `classifier.6` plays the part of the top layer."""

from __future__ import annotations

from torch import nn

from dcbench.models.convnet import ConvFcTrunk, conv_bn_relu

BLOCKS = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]


class VGG16(ConvFcTrunk):
    ARCH = "vgg16"
    INPUT_SIZE = 224
    FLAT_DIM = 512 * 7 * 7
    FC_DIM = 4096
    # convN = the ReLU of the last conv of block N, before its max-pool
    CONV_TAPS = {"conv1": 5, "conv2": 12, "conv3": 22, "conv4": 32, "conv5": 42}
    # classifier: fc6 0, ReLU 1, Dropout 2, fc7 3, ReLU 4
    FC_TAPS = {"fc6_pre": 0, "fc6": 1, "fc7_pre": 3, "fc7": 4}

    def __init__(self, sobel: bool = True) -> None:
        super().__init__(sobel)
        layers: list[nn.Module] = []
        cin = self.in_channels
        for width, n in BLOCKS:
            for _ in range(n):
                layers += conv_bn_relu(cin, width, 3, 1, 1)
                cin = width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(self.FLAT_DIM, 4096), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(),
        )
        self.init_weights()
