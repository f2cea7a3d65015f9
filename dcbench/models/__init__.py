"""The model zoo: a plain dict from arch name to trunk class."""

from __future__ import annotations

import torch

from dcbench.did_you_mean import did_you_mean
from dcbench.errors import DcbenchError
from dcbench.models.alexnet import AlexNet
from dcbench.models.alexnet_small import AlexNetSmall, AlexNetSmallWide
from dcbench.models.jule_net import JULE_NETS, JuleNet32
from dcbench.models.resnet import ResNet18, ResNet50
from dcbench.models.trunk import Trunk
from dcbench.models.vgg16 import VGG16
from dcbench.models.vit import ViTBase16, ViTSmall16
from dcbench.plugins import load_group, reject

# each trunk class names itself (its ARCH): the one place an arch name is written
MODELS: dict[str, type[Trunk]] = {
    cls.ARCH: cls for cls in (AlexNet, AlexNetSmall, AlexNetSmallWide, VGG16, *JULE_NETS.values(),
                              ResNet18, ResNet50, ViTSmall16, ViTBase16)
}
# third-party trunks: the `dcbench.models` entry points, each a Trunk subclass with its ARCH
for _name, _cls in load_group("dcbench.models"):
    if not (isinstance(_cls, type) and issubclass(_cls, Trunk)) or _cls.ARCH in MODELS:
        reject("dcbench.models", _name, "not a Trunk subclass with an ARCH of its own")
    else:
        MODELS[_cls.ARCH] = _cls


def build_model(arch: str, sobel: bool = True, k: int | None = None,
                seed: int | None = None) -> Trunk:
    """A freshly initialised trunk (seeded when `seed` is given), with a top layer of size k."""
    if arch not in MODELS:
        raise DcbenchError(f"unknown arch '{arch}'{did_you_mean(arch, MODELS)}; choose one of: "
                           f"{', '.join(MODELS)}")
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MODELS[arch](sobel=sobel)
            model.set_top_layer(k)
        return model
    model = MODELS[arch](sobel=sobel)
    model.set_top_layer(k)
    return model


__all__ = ["MODELS", "Trunk", "build_model", "AlexNet", "AlexNetSmall", "AlexNetSmallWide",
           "JuleNet32", "VGG16"]
