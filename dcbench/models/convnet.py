"""DeepCluster's convnets: a conv `features` stack, then a fully connected `classifier`.

The attributes of the original code (`sobel`, `features`, `classifier`, `top_layer`) keep
state-dict keys equal to the released checkpoints'; layers are exposed by name (`conv1`..
`conv5`, `fc6`, `fc7`, and the pre-ReLU `fc6_pre`, `fc7_pre`) through index maps, so tasks ask
for a layer, not an index. AlexNet, VGG16, the small 32 px nets and JULE's nets are of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from dcbench.models.trunk import Trunk


def conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1, pad: int = 0) -> list[nn.Module]:
    # ReLUs are not in-place: a tap may hold the pre-activation tensor.
    return [nn.Conv2d(cin, cout, k, stride, pad), nn.BatchNorm2d(cout), nn.ReLU()]


def _run_until(layers: nn.Sequential, x: torch.Tensor, taps: dict[int, str], last: int,
               out: dict[str, torch.Tensor]) -> torch.Tensor:
    """Run `layers` up to index `last`, storing the output of each index in `taps`."""
    for i, layer in enumerate(layers):
        x = layer(x)
        if i in taps:
            out[taps[i]] = x
        if i >= last:
            break
    return x


class ConvFcTrunk(Trunk):
    """A convnet with DeepCluster's module names and named taps.

    Subclasses set `features`, `classifier`, `ARCH`, `INPUT_SIZE`, `FLAT_DIM`, `FC_DIM`,
    `CONV_TAPS` (tap name -> index in `features`, post-ReLU, before pooling) and `FC_TAPS`
    (tap name -> index in `classifier`).
    """

    FAMILY = "convnet"
    # torchvision's vgg16_bn keeps its 1000-way classifier at classifier.6
    HEAD_PREFIXES = ("top_layer.", "classifier.6.")
    FLAT_DIM: int = 0
    CONV_TAPS: dict[str, int] = {}
    FC_TAPS: dict[str, int] = {}

    features: nn.Sequential
    classifier: nn.Sequential

    @classmethod
    def tap_names(cls) -> tuple[str, ...]:
        return tuple(cls.CONV_TAPS) + tuple(cls.FC_TAPS)

    @classmethod
    def role(cls, name: str) -> tuple[str, ...]:
        """probe: every conv layer; embed: conv5 and fc7 (where the net has them, else its
        last tap); map: the last conv layer; cluster: fc7 before its ReLU (DeepCluster's)."""
        taps = cls.tap_names()
        if name == "probe":
            return tuple(cls.CONV_TAPS)
        if name == "embed":
            return tuple(t for t in ("conv5", "fc7") if t in taps) or taps[-1:]
        if name == "map":
            return tuple(cls.CONV_TAPS)[-1:]
        return ("fc7_pre",) if "fc7_pre" in taps else taps[-1:]

    def init_weights(self) -> None:
        """DeepCluster's init: conv N(0, sqrt(2/(kh*kw*out))), BN 1/0, Linear N(0, 0.01)."""
        if next(self.classifier.parameters()).is_meta:
            return      # a shapes-only model (meta device): normal_ there costs seconds of imports
        for m in [*self.features.modules(), *self.classifier.modules()]:
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(self.front(x)), 1))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last conv layer after its ReLU, without the final max-pool (if any)."""
        f = self.features
        end = len(f) - 1 if isinstance(f[-1], nn.MaxPool2d) else len(f)
        return f[:end](self.front(x))

    def conv_bn_pairs(self) -> list[tuple[nn.Module, str, str]]:
        f = self.features
        return [(f, str(i), str(i + 1)) for i in range(len(f) - 1)
                if isinstance(f[i], nn.Conv2d) and isinstance(f[i + 1], nn.BatchNorm2d)]

    def foldable_relus(self) -> list[nn.ReLU]:
        # conv taps are post-ReLU: no tap holds a conv's output (fc6_pre / fc7_pre keep theirs)
        return [m for m in self.features if isinstance(m, nn.ReLU)]

    def extract(self, x: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        """Run the trunk only as far as the deepest requested tap; return {tap: tensor}."""
        self.check_taps(taps)
        wanted = set(taps)
        out: dict[str, torch.Tensor] = {}
        conv_at = {i: name for name, i in self.CONV_TAPS.items() if name in wanted}
        fc_at = {i: name for name, i in self.FC_TAPS.items() if name in wanted}
        if not wanted:
            return out
        x = self.front(x)
        last_conv = max(conv_at) if not fc_at else len(self.features) - 1
        x = _run_until(self.features, x, conv_at, last_conv, out)
        if fc_at:
            _run_until(self.classifier, torch.flatten(x, 1), fc_at, max(fc_at), out)
        return out
