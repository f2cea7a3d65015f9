"""How a conv layer's activations are pooled before a linear probe, kNN or k-means: the one
place that rule lives.

AlexNet at 224 px gets exactly the AvgPools of DeepCluster's eval_linear.py (REFERENCE.md),
which bring every conv layer to about 9k dims: conv1 AvgPool(6, 6, p3) -> 96x10x10,
conv2 AvgPool(4, 4) -> 256x6x6, conv3/conv4 AvgPool(3, 3, p1) -> 384x5x5,
conv5 AvgPool(2, 2) -> 256x6x6. ResNets get VISSL's pools of the same benchmark (below).

Every other trunk and input size gets the equivalent rule: adaptive average pooling to the
spatial side s (never above the map's own side) whose C*s*s is closest to a target
dimensionality. The target for 224 px inputs is the paper's 9216. For 32 px inputs it is
1536 = 96x4x4, the flattened conv5 of alexnet-small, just as 9216 = 256x6x6 is the flattened
conv5 of AlexNet: the probe on every layer sees about as many dims as the trunk's own
classifier does. That gives alexnet-small conv1 48x6x6, conv2 96x4x4, conv3/conv4 160x3x3,
conv5 96x4x4 (7680 dims for all five), which also keeps a feature cache of Fashion-MNIST
near 1 GB in float16. fc layers are used as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dcbench.models import Trunk

# (kernel, stride, padding) per layer at 224 px: AlexNet, eval_linear.py's RegLog; ResNets,
# VISSL's linear benchmark (Goyal et al. 2019: conv1 64x12x12, res2 256x6x6, res3 512x4x4,
# res4 1024x3x3, res5 2048x2x2 for a ResNet-50; res5avg is the global pool itself)
REFERENCE_POOLS: dict[str, dict[str, tuple[int, int, int]]] = {
    "alexnet": {"conv1": (6, 6, 3), "conv2": (4, 4, 0), "conv3": (3, 3, 1),
                "conv4": (3, 3, 1), "conv5": (2, 2, 0)},
    "resnet": {"conv1": (10, 10, 4), "res2": (16, 8, 0), "res3": (13, 5, 0),
               "res4": (8, 3, 0), "res5": (6, 1, 0)},
}
POOL_TARGETS: dict[int, int] = {224: 9216, 32: 1536}   # input side -> target dims per layer


def pool_target(input_size: int) -> int:
    """The target dimensionality for a trunk's input side (the nearest known side)."""
    side = min(POOL_TARGETS, key=lambda s: abs(s - input_size))
    return POOL_TARGETS[side]


def pooled_side(channels: int, side: int, target: int) -> int:
    """The side s <= `side` whose channels*s*s is closest to `target` (ties: the smaller)."""
    return min(range(1, side + 1), key=lambda s: (abs(channels * s * s - target), s))


def make_pool(trunk: Trunk, layer: str, shape: Sequence[int]) -> nn.Module:
    """The pooling for `layer` of `trunk`, whose activation has shape (C, H, W) or (D,)."""
    if len(shape) == 1:
        return nn.Flatten(1)
    reference = REFERENCE_POOLS.get(trunk.ARCH, REFERENCE_POOLS.get(trunk.FAMILY, {}))
    if trunk.INPUT_SIZE == 224 and layer in reference:
        k, s, p = reference[layer]
        return nn.Sequential(nn.AvgPool2d(k, stride=s, padding=p), nn.Flatten(1))
    c, h, w = shape
    side = pooled_side(c, min(h, w), pool_target(trunk.INPUT_SIZE))
    return nn.Sequential(nn.AdaptiveAvgPool2d(side), nn.Flatten(1))


class Pooler(nn.Module):
    """Turns a trunk's tap activations into flat pooled features, one pool per layer.

    The activation shapes come from one dry forward of a blank image at the trunk's input
    size, so the rule never hard-codes a trunk's geometry.
    """

    def __init__(self, trunk: Trunk, layers: Sequence[str], device: torch.device) -> None:
        super().__init__()
        self.layers = list(layers)
        size = trunk.INPUT_SIZE
        with torch.no_grad():
            was_training = trunk.training
            trunk.eval()
            blank = torch.zeros(1, 3, size, size, device=device)
            shapes = {k: tuple(v.shape[1:]) for k, v in trunk.extract(blank, self.layers).items()}
            trunk.train(was_training)
        self.pools = nn.ModuleDict({k: make_pool(trunk, k, shapes[k]) for k in self.layers})
        with torch.no_grad():
            self.dims = {k: int(self.pools[k](torch.zeros(1, *shapes[k])).shape[1])
                         for k in self.layers}

    def forward(self, taps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: self.pools[k](taps[k].float()) for k in self.layers}
