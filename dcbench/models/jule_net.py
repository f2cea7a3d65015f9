"""JULE's convnets for small grayscale images, one per input size (Yang et al., CVPR 2016;
released models_def).

Blocks of conv 50@5x5 (no padding), BatchNorm, ReLU and, in some blocks, a 2x2 max-pool (ceil
mode); then a Linear layer to 160 dims and L2 normalisation; weights drawn N(0, 0.01). The
released code builds one net per dataset's image size:
- jule-28 (MNIST, 28 px): conv+pool, conv -> 50 x 8 x 8 = 3200 -> 160
- jule-16 (USPS, 16 px): conv+pool -> 50 x 6 x 6 = 1800 -> 160
- jule-128 (COIL-20/100, 128 px): 4 x (conv+pool) -> 50 x 5 x 5 = 1250 -> 160
- jule-32: dcbench's, the MNIST net at 32 px (50 x 10 x 10 = 5000), for Fashion-MNIST and
  digits, which dcbench's other trunks and tasks see padded to 32 px.
Inputs are the 3-channel tensors every dcbench task feeds (grey repeated; JULE's own nets take
one channel: same function class, the first conv's three input slices see the same image). No
Sobel front end: JULE clusters raw intensities. Taps: conv1..convN (post-ReLU, before the
pool) and `embed`, the L2-normalised output the triplet loss and the clustering use.
"""

from __future__ import annotations

import torch
from torch import nn

from dcbench.models.convnet import ConvFcTrunk


class L2Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x, dim=1)


def _side_after(side: int, pools: tuple[bool, ...]) -> int:
    for pool in pools:
        side -= 4
        if pool:
            side = -(-side // 2)                # 2x2 max-pool, ceil mode
    return side


class JuleNet(ConvFcTrunk):
    """A JULE net: `POOLS[i]` says whether conv block i ends with a max-pool."""

    POOLS: tuple[bool, ...] = ()
    WIDTH = 50
    FC_DIM = 160
    FC_TAPS = {"embed": 1}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.FLAT_DIM = cls.WIDTH * _side_after(cls.INPUT_SIZE, cls.POOLS) ** 2
        taps, at = {}, 0
        for i, pool in enumerate(cls.POOLS):
            taps[f"conv{i + 1}"] = at + 2           # conv, BN, ReLU (tapped), [pool]
            at += 4 if pool else 3
        cls.CONV_TAPS = taps

    def __init__(self, sobel: bool = False) -> None:
        super().__init__(sobel)
        layers: list[nn.Module] = []
        cin = self.in_channels
        for pool in self.POOLS:
            layers += [nn.Conv2d(cin, self.WIDTH, 5), nn.BatchNorm2d(self.WIDTH), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            cin = self.WIDTH
        self.features = nn.Sequential(*layers)
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


class JuleNet16(JuleNet):
    ARCH, INPUT_SIZE, POOLS = "jule-16", 16, (True,)


class JuleNet28(JuleNet):
    ARCH, INPUT_SIZE, POOLS = "jule-28", 28, (True, False)


class JuleNet32(JuleNet):
    ARCH, INPUT_SIZE, POOLS = "jule-32", 32, (True, False)


class JuleNet128(JuleNet):
    ARCH, INPUT_SIZE, POOLS = "jule-128", 128, (True, True, True, True)


JULE_NETS: dict[str, type[JuleNet]] = {
    cls.ARCH: cls for cls in (JuleNet16, JuleNet28, JuleNet32, JuleNet128)}
