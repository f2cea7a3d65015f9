"""What a task feeds the trunk: which image side a dataset gives, whether the checkpoint's arch
takes that side, and the (quick-mode subset of the) labelled splits.

A 224 px dataset (ImageNet, Places205) needs a 224 px trunk (AlexNet, VGG16, ResNets, ViTs);
a small dataset (Fashion-MNIST, digits, JULE's sets) is fed at the trunk's own side: 32 px
(28 px padded) to alexnet-small and jule-32, a JULE net's own side (16, 28 or 128 px) to that
net, and 224 px (upsampled) to the 224 px trunks. Checked before any work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from dcbench.data import build_dataset, get_dataset_spec, make_transform
from dcbench.errors import DcbenchError

from .registry import RunContext, Task

if TYPE_CHECKING:           # task declarations load without torch (`dcbench tasks`)
    from torch.utils.data import Dataset

    from dcbench.models import Trunk

SIDES = {"large": 224, "small": 32}
QUICK_TRAIN, QUICK_TEST = 512, 256       # --quick: the same code on this many images
QUICK_SUBSET_SEED = 0                    # the same quick subset for every seed


def input_side(dataset: str, trunk: Trunk | None = None) -> int:
    """The side `dataset`'s images are fed at: 224 for large sets; small sets at the trunk's
    own side (32 for alexnet-small, a JULE net's, 224 for AlexNet, ResNets and ViTs, which
    see the 28 px images upsampled), 32 when no trunk is given."""
    side = SIDES[get_dataset_spec(dataset).size]
    if trunk is not None and side == SIDES["small"]:
        return trunk.INPUT_SIZE
    return side


def check_input(trunk: Trunk, dataset: str, task: str) -> None:
    """Refuse an unlabelled dataset, or a trunk whose input size is not the one the dataset's
    images come at."""
    if not get_dataset_spec(dataset).labelled:
        raise DcbenchError(f"task '{task}' needs labels and dataset '{dataset}' has none; use a "
                           f"labelled dataset (e.g. fashion-mnist, imagenet)")
    side = input_side(dataset, trunk)
    if trunk.INPUT_SIZE != side:
        from dcbench.models import MODELS

        fits = [a for a, cls in MODELS.items() if cls.INPUT_SIZE == side]
        raise DcbenchError(f"task '{task}' feeds {side} px images ({dataset}) but the checkpoint "
                           f"is {trunk.ARCH}, which takes {trunk.INPUT_SIZE} px; use a "
                           f"checkpoint of arch {' or '.join(fits)}")


def eval_split(dataset: str) -> str:
    """The held-out split results are reported on: 'test' where there is one, else 'val',
    else the only one (digits: 'all')."""
    splits = get_dataset_spec(dataset).splits
    return "test" if "test" in splits else "val" if "val" in splits else splits[0]


def train_split(dataset: str) -> str:
    return get_dataset_spec(dataset).splits[0]


def transform_for(dataset: str, recipe: str, side: int = SIDES["small"]) -> Callable:
    """`recipe`'s transform for `dataset`; small sets come out at `side` px (input_side)."""
    spec = get_dataset_spec(dataset)
    return make_transform(recipe, spec.size, spec.mean, spec.std, spec.native, side=side)


def labelled_split(dataset: str, split: str, transform: Callable, data_root: str | None,
                   max_images: int | None) -> Dataset:
    """A labelled split: a seeded subset of at most `max_images` (all when None)."""
    from dcbench.data.loader import subset

    data = build_dataset(dataset, split, transform, data_root=data_root)
    return subset(data, max_images, QUICK_SUBSET_SEED)


def balanced_subset(data: Dataset, per_class: int, seed: int) -> Dataset:
    """`per_class` images of every class drawn with `seed` (the low-label protocols: each seed
    is another draw of the labelled images), kept in dataset order."""
    from torch.utils.data import Subset

    from dcbench.data import targets_of

    targets = targets_of(data)
    if targets is None:
        raise DcbenchError("a low-label probe needs a labelled training split")
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(targets):
        members = np.flatnonzero(targets == c)
        if len(members) < per_class:
            raise DcbenchError(f"class {c} has only {len(members)} training images, fewer "
                               f"than the {per_class} labels per class asked for")
        keep.append(rng.choice(members, size=per_class, replace=False))
    rows = np.sort(np.concatenate(keep))
    sub = Subset(data, rows.tolist())
    sub.targets = [int(targets[i]) for i in rows]       # type: ignore[attr-defined]
    sub.classes = getattr(data, "classes", [])          # type: ignore[attr-defined]
    return sub


def num_classes(data: Dataset) -> int:
    classes = getattr(data, "classes", None)
    if classes:
        return len(classes)
    return int(max(data.targets)) + 1


class OnLabelledDataset(Task):
    """A task that runs on whichever labelled dataset its `dataset` option names (clustering,
    kNN): that dataset is what it needs and what the trunk's input size is checked against."""

    def data_needed(self, ctx: RunContext) -> tuple[str, ...]:
        return (self.config(ctx)["dataset"],)

    def check(self, trunk: Trunk, ctx: RunContext) -> None:
        check_input(trunk, self.config(ctx)["dataset"], self.name)
