"""The image transforms of REFERENCE.md, and their equivalents for 28-32 px inputs.

Four recipes, each for 'large' (224 px, ImageNet statistics) and 'small' (32 px) inputs:
- cluster: deterministic, for the features that are clustered (Resize 256 + CenterCrop 224)
- train:   DeepCluster's training augmentation (RandomResizedCrop 224 + horizontal flip)
- probe:   linear-probe training (Resize 256 + RandomCrop 224 + flip)
- eval:    the deterministic view used by every evaluation (same as cluster)
Every recipe returns a 3-channel float tensor; grayscale data are repeated to RGB. The small
recipes are dcbench.data.small_transforms (the same operations, ten times faster).
"""

from __future__ import annotations

from collections.abc import Callable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RECIPES = ("cluster", "train", "probe", "eval")


def make_transform(recipe: str, size: str, mean: tuple[float, ...] = IMAGENET_MEAN,
                   std: tuple[float, ...] = IMAGENET_STD, native: int = 224,
                   min_scale: float = 0.08, side: int = 32) -> Callable:
    """Build the named recipe for 'large' or 'small' inputs (PIL image -> normalised tensor).

    `min_scale` is RandomResizedCrop's lower scale bound for the 'train' recipe (0.08 is
    torchvision's and the original code's; small images want a milder crop). `side`: the
    small recipes' output side (32, or a JULE net's own input size).
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown transform recipe '{recipe}'; choose one of {RECIPES}")
    if size not in ("large", "small"):
        raise ValueError(f"size must be 'large' or 'small', not '{size}'")
    if size == "small":
        from dcbench.data.small_transforms import SmallTransform

        return SmallTransform(recipe, native, mean, std, min_scale, side)
    # imported here: torchvision costs seconds to import and `dcbench data ...` needs none of it
    from torchvision import transforms as T

    tail = [T.Lambda(_to_rgb), T.ToTensor(), T.Normalize(mean, std)]
    head = {
        "cluster": [T.Resize(256), T.CenterCrop(224)],
        "eval": [T.Resize(256), T.CenterCrop(224)],
        "train": [T.RandomResizedCrop(224, scale=(min_scale, 1.0)), T.RandomHorizontalFlip()],
        # eval_linear.py: a square 256 centre crop first, then the random 224 crop
        "probe": [T.Resize(256), T.CenterCrop(256), T.RandomCrop(224), T.RandomHorizontalFlip()],
    }[recipe]
    return T.Compose(head + tail)


def _to_rgb(img):
    return img if img.mode == "RGB" else img.convert("RGB")
