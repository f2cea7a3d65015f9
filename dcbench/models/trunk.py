"""The base of every model: DeepCluster's module layout plus named layer taps.

A trunk has the attributes of the original code (`sobel`, `features`, `classifier`,
`top_layer`) so that state-dict keys match the released checkpoints, and it exposes its
layers by name (`conv1`..`conv5`, `fc6`, `fc7`, and the pre-ReLU `fc6_pre`, `fc7_pre`) so
tasks ask for a layer, not an index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from dcbench.models.sobel import make_sobel


def conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1, pad: int = 0) -> list[nn.Module]:
    # ReLUs are not in-place: a tap may hold the pre-activation tensor.
    return [nn.Conv2d(cin, cout, k, stride, pad), nn.BatchNorm2d(cout), nn.ReLU()]


class Trunk(nn.Module):
    """A convnet with DeepCluster's module names and named taps.

    Subclasses set `features`, `classifier`, `ARCH`, `INPUT_SIZE`, `FLAT_DIM`, `FC_DIM`,
    `CONV_TAPS` (tap name -> index in `features`, post-ReLU, before pooling) and `FC_TAPS`
    (tap name -> index in `classifier`).
    """

    ARCH: str = ""
    INPUT_SIZE: int = 224
    FLAT_DIM: int = 0
    FC_DIM: int = 4096
    CONV_TAPS: dict[str, int] = {}
    FC_TAPS: dict[str, int] = {}

    features: nn.Sequential
    classifier: nn.Sequential

    def __init__(self, sobel: bool) -> None:
        super().__init__()
        self.sobel: nn.Sequential | None = make_sobel() if sobel else None
        self.top_layer: nn.Linear | None = None

    @property
    def in_channels(self) -> int:
        return 2 if self.sobel is not None else 3

    @property
    def has_sobel(self) -> bool:
        return self.sobel is not None

    @classmethod
    def tap_names(cls) -> tuple[str, ...]:
        return tuple(cls.CONV_TAPS) + tuple(cls.FC_TAPS)

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

    def set_top_layer(self, k: int | None) -> None:
        """Replace the head by a fresh Linear(fc7, k) drawn N(0, 0.01), or remove it."""
        if k is None:
            self.top_layer = None
            return
        device = next(self.classifier.parameters()).device
        layer = nn.Linear(self.FC_DIM, k).to(device)
        if not layer.weight.is_meta:
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.zeros_(layer.bias)
        self.top_layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sobel is not None:
            x = self.sobel(x)
        x = self.features(x)
        x = self.classifier(torch.flatten(x, 1))
        if self.top_layer is not None:
            x = self.top_layer(x)
        return x

    def extract(self, x: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        """Run the trunk only as far as the deepest requested tap; return {tap: tensor}."""
        unknown = [t for t in taps if t not in self.CONV_TAPS and t not in self.FC_TAPS]
        if unknown:
            raise KeyError(f"unknown tap(s) {unknown} for {self.ARCH}; "
                           f"available: {', '.join(self.tap_names())}")
        wanted = set(taps)
        out: dict[str, torch.Tensor] = {}
        conv_at = {i: name for name, i in self.CONV_TAPS.items() if name in wanted}
        fc_at = {i: name for name, i in self.FC_TAPS.items() if name in wanted}
        if not wanted:
            return out
        if self.sobel is not None:
            x = self.sobel(x)
        last_conv = max(conv_at) if not fc_at else len(self.features) - 1
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in conv_at:
                out[conv_at[i]] = x
            if i >= last_conv:
                break
        if not fc_at:
            return out
        x = torch.flatten(x, 1)
        last_fc = max(fc_at)
        for i, layer in enumerate(self.classifier):
            x = layer(x)
            if i in fc_at:
                out[fc_at[i]] = x
            if i >= last_fc:
                break
        return out

    def trunk_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict without the (per-run, per-k) top layer."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("top_layer.")}
