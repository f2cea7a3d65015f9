"""torchvision's ResNet-18 / ResNet-50, with the taps of the field's linear benchmark.

The modules are torchvision's own (`conv1`, `bn1`, `layer1`..`layer4`), so a torchvision
state dict loads with no rename; its `fc` is the top layer. Taps (Goyal et al. 2019, VISSL's
linear benchmark): `conv1` (the stem after its ReLU, before the max-pool), `res2`..`res5`
(the outputs of layer1..layer4) and `res5avg` (res5 average-pooled to one vector, the
2,048-d feature MoCo, SwAV and DINO report). A Sobel front end is optional, as for AlexNet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torchvision.models import resnet as tv

from dcbench.layer_names import RESNET_TAPS
from dcbench.models.trunk import Trunk

STAGES = ("res2", "res3", "res4", "res5")


class ResNet(Trunk):
    FAMILY = "resnet"
    INPUT_SIZE = 224
    SOBEL_BY_DEFAULT = False
    HEAD_PREFIXES = ("top_layer.", "fc.")
    BUILD: Callable[..., tv.ResNet]
    ROLES = {"probe": ("conv1", "res2", "res3", "res4", "res5", "res5avg"),
             "embed": ("res5avg",), "map": ("res5",), "cluster": ("res5avg",)}

    def __init__(self, sobel: bool = False) -> None:
        super().__init__(sobel)
        net = type(self).BUILD(weights=None)
        if sobel:
            net.conv1 = nn.Conv2d(2, 64, 7, 2, 3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4)

    @classmethod
    def tap_names(cls) -> tuple[str, ...]:
        return RESNET_TAPS

    def stages(self) -> tuple[nn.Module, ...]:
        return self.layer1, self.layer2, self.layer3, self.layer4

    def extract(self, x: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        self.check_taps(taps)
        wanted = set(taps)
        if not wanted:
            return {}
        out: dict[str, torch.Tensor] = {}
        x = self.relu(self.bn1(self.conv1(self.front(x))))
        if "conv1" in wanted:
            out["conv1"] = x
        deepest = max((STAGES.index(t) for t in wanted if t in STAGES), default=-1)
        if "res5avg" in wanted:
            deepest = len(STAGES) - 1
        if deepest < 0:
            return out
        x = self.maxpool(x)
        for i, (name, stage) in enumerate(zip(STAGES, self.stages())):
            x = stage(x)
            if name in wanted:
                out[name] = x
            if i >= deepest:
                break
        if "res5avg" in wanted:
            out["res5avg"] = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return out

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.extract(x, ["res5"])["res5"]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.extract(x, ["res5avg"])["res5avg"]

    def conv_bn_pairs(self) -> list[tuple[nn.Module, str, str]]:
        pairs: list[tuple[nn.Module, str, str]] = [(self, "conv1", "bn1")]
        for stage in self.stages():
            for block in stage:
                pairs += [(block, f"conv{i}", f"bn{i}") for i in (1, 2, 3)
                          if hasattr(block, f"conv{i}")]
                if block.downsample is not None:
                    pairs.append((block.downsample, "0", "1"))
        return pairs


class ResNet18(ResNet):
    ARCH, FC_DIM, BUILD = "resnet18", 512, staticmethod(tv.resnet18)


class ResNet50(ResNet):
    ARCH, FC_DIM, BUILD = "resnet50", 2048, staticmethod(tv.resnet50)
