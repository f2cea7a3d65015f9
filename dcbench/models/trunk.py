"""The base of every model: named taps, an optional Sobel front end, a replaceable top layer.

Tasks never index into a network: they ask a trunk for taps by name (`extract`) and for the
taps that play a part in a protocol (`ROLES`: what a linear probe reads per layer, what kNN and
clustering read by default, the spatial map R-MAC pools, the features DeepCluster clusters).
Three families implement it: DeepCluster's conv-then-fc nets (`convnet.py`: AlexNet, VGG16,
the small nets, JULE's), torchvision's ResNets (`resnet.py`) and ViTs in the timm / DINO
layout (`vit.py`). Each keeps the parameter names its released checkpoints use.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dcbench.models.sobel import make_sobel

# the parts a tap can play in a protocol (every trunk names its taps for each)
ROLE_NAMES = ("probe", "embed", "map", "cluster")


class Trunk(nn.Module):
    """A trunk: `extract(x, taps)` -> {tap: activation}; `forward` -> the top layer's logits.

    Subclasses set ARCH, FAMILY, INPUT_SIZE, FC_DIM (the width of the embedding the top layer
    reads) and ROLES, and implement `tap_names`, `extract`, `embed` and `feature_map`.
    """

    ARCH: str = ""
    FAMILY: str = ""
    INPUT_SIZE: int = 224
    FC_DIM: int = 4096
    ROLES: dict[str, tuple[str, ...]] = {}
    SOBEL_BY_DEFAULT = True       # random:ARCH gets the Sobel front end (DeepCluster's nets)
    HEAD_PREFIXES: tuple[str, ...] = ("top_layer.",)   # a saved head that loads as top_layer

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
        raise NotImplementedError

    @classmethod
    def role(cls, name: str) -> tuple[str, ...]:
        """The taps that play part `name` (ROLE_NAMES) for this trunk."""
        return cls.ROLES[name]

    def front(self, x: torch.Tensor) -> torch.Tensor:
        """The fixed Sobel front end, where the trunk has one."""
        return self.sobel(x) if self.sobel is not None else x

    def check_taps(self, taps: Sequence[str]) -> None:
        unknown = [t for t in taps if t not in self.tap_names()]
        if unknown:
            raise KeyError(f"unknown tap(s) {unknown} for {self.ARCH}; "
                           f"available: {', '.join(self.tap_names())}")

    def extract(self, x: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        """Run the trunk only as far as the deepest requested tap; return {tap: tensor}."""
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, FC_DIM) features the top layer reads."""
        raise NotImplementedError

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last spatial map (B, C, h, w): what R-MAC pools into regions."""
        raise NotImplementedError

    def conv_bn_pairs(self) -> list[tuple[nn.Module, str, str]]:
        """(parent, conv name, BatchNorm name) of every conv directly followed by a BN: what
        dcbench.models.fold_bn folds for frozen passes."""
        return []

    def foldable_relus(self) -> list[nn.ReLU]:
        """ReLUs that may run in place once BN is folded (no tap holds their input)."""
        return []

    def set_top_layer(self, k: int | None) -> None:
        """Replace the head by a fresh Linear(FC_DIM, k) drawn N(0, 0.01), or remove it."""
        if k is None:
            self.top_layer = None
            return
        device = next(self.parameters()).device
        layer = nn.Linear(self.FC_DIM, k).to(device)
        if not layer.weight.is_meta:
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.zeros_(layer.bias)
        self.top_layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        return self.top_layer(x) if self.top_layer is not None else x

    def trunk_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict without the (per-run, per-k) top layer."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("top_layer.")}
