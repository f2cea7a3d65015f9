"""An FCN from a classification trunk, as FCN's `voc-fcn-alexnet` builds it (PROTOCOLS.md).

fc6 becomes a convolution whose kernel is conv5's pooled grid (alexnet 6x6, vgg16 7x7,
alexnet-small 4x4) and fc7 a 1x1 convolution, both with the checkpoint's weights reshaped:
PyTorch flattens conv5's (C, H, W) output in that order, so Linear(C*g*g -> n) is exactly
Conv2d(C -> n, g) with weight.view(n, C, g, g). Dropout 0.5 follows both ReLUs; a 1x1
score layer over the classes + background starts at zero (the FCN paper: random init gave
nothing better).

Two choices where the Caffe model cannot be copied literally, and why:
- Coverage of the border. Caffe pads conv1 by 100 px so that fc6's window slides past the
  image edge, then crops at a computed offset. Here the pool5 map gets g // 2 zeros on each
  side instead, with the same weights: on the embedded set's 64 px scenes with
  alexnet-small (pool5 8x8, fc6 4x4) an unpadded fc6 would leave a 5x5 map for an 8x8 grid.
  An odd kernel (vgg16) then gives one score per pool5 cell, centred on it; an even kernel
  (alexnet, alexnet-small) gives n + 1 scores centred on the cell corners, the first and
  last on the image's edges.
- Upsampling. FCN-AlexNet's deconvolution is initialised bilinear and never trained (lr 0),
  i.e. a fixed bilinear interpolation. `F.interpolate(mode="bilinear")` does that for any
  stride, without Caffe's crop offset: align_corners=False for cell-centred scores (odd
  kernel), align_corners=True for corner-centred ones (even kernel), so each score lands
  within a pixel of the image position its fc6 window is centred on.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from dcbench.models import Trunk

from .common import fc_layers


def conv5_shape(trunk: Trunk) -> tuple[int, int]:
    """(channels, grid) of the flattened conv5 output that fc6 reads."""
    channels = [m for m in trunk.features if isinstance(m, nn.Conv2d)][-1].out_channels
    grid = math.isqrt(trunk.FLAT_DIM // channels)
    if channels * grid * grid != trunk.FLAT_DIM:
        raise ValueError(f"{trunk.ARCH}: FLAT_DIM {trunk.FLAT_DIM} is not conv5's "
                         f"{channels} channels on a square grid")
    return channels, grid


def linear_to_conv(linear: nn.Linear, channels: int, grid: int) -> nn.Conv2d:
    """A Conv2d(channels -> out, grid) computing `linear` on a (channels, grid, grid) input."""
    if linear.in_features != channels * grid * grid:
        raise ValueError(f"Linear has {linear.in_features} inputs, not {channels}x{grid}x{grid}")
    conv = nn.Conv2d(channels, linear.out_features, grid).to(linear.weight.device)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.view(linear.out_features, channels, grid, grid))
        conv.bias.copy_(linear.bias)
    return conv


class FCN(nn.Module):
    """Sobel + the trunk's conv layers + fc6/fc7 as convolutions + a score layer; forward
    returns class scores on the padded pool5 grid; `upsample` brings them to pixels."""

    def __init__(self, trunk: Trunk, n_classes: int) -> None:
        super().__init__()
        channels, grid = conv5_shape(trunk)
        fc6, fc7 = fc_layers(trunk)
        self.sobel = trunk.sobel
        self.features = trunk.features
        self.pad = nn.ZeroPad2d(grid // 2)
        self.align_corners = grid % 2 == 0
        self.head = nn.Sequential(
            linear_to_conv(fc6, channels, grid), nn.ReLU(), nn.Dropout(0.5),
            linear_to_conv(fc7, fc7.in_features, 1), nn.ReLU(), nn.Dropout(0.5))
        self.score = nn.Conv2d(fc7.out_features, n_classes, 1).to(fc7.weight.device)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def conv(self, x: torch.Tensor, train_conv: bool) -> torch.Tensor:
        """The trunk's conv part; without autograd when it is frozen (no activations kept)."""
        with torch.set_grad_enabled(train_conv and torch.is_grad_enabled()):
            if self.sobel is not None:
                x = self.sobel(x)
            return self.features(x)

    def forward(self, x: torch.Tensor, train_conv: bool = True) -> torch.Tensor:
        return self.score(self.head(self.pad(self.conv(x, train_conv))))

    def upsample(self, scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Fixed bilinear upsampling of a score map to `size` pixels (FCN's untrained
        deconvolution), aligned as the module docstring says."""
        return F.interpolate(scores, size=size, mode="bilinear",
                             align_corners=self.align_corners)
