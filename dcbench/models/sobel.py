"""The fixed Sobel front end of DeepCluster: grayscale, then horizontal and vertical gradients.

Keys match the released checkpoints: sobel.0 (1x1 conv 3->1, weights 1/3) and sobel.1
(3x3 conv 1->2, the two Sobel kernels). Never trained.
"""

from __future__ import annotations

import torch
from torch import nn

SOBEL_X = [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]
SOBEL_Y = [[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]]


def make_sobel() -> nn.Sequential:
    grayscale = nn.Conv2d(3, 1, kernel_size=1, stride=1, padding=0)
    edges = nn.Conv2d(1, 2, kernel_size=3, stride=1, padding=1)
    with torch.no_grad():
        grayscale.weight.fill_(1.0 / 3.0)
        grayscale.bias.zero_()
        edges.weight[0, 0].copy_(torch.tensor(SOBEL_X))
        edges.weight[1, 0].copy_(torch.tensor(SOBEL_Y))
        edges.bias.zero_()
    sobel = nn.Sequential(grayscale, edges)
    for p in sobel.parameters():
        p.requires_grad = False
    return sobel
