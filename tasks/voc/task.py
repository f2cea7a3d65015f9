"""What the three VOC task declarations share (voc-cls, voc-det, voc-seg): their options are
the recipe's keys (None: the dataset's recipe), their config is the recipe plus the --set
options checked before any work, --quick swaps in the embedded set's small twin. Loads
without torch; tasks/voc/common.py holds what their training shares."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from dcbench.data import get_dataset_spec
from dcbench.errors import DcbenchError

from ..inputs import QUICK_TEST, QUICK_TRAIN
from ..registry import RunContext, Task

if TYPE_CHECKING:
    from dcbench.models import Trunk

EMBEDDED = ("fmnist-voc", "fmnist-voc-quick")
# the paper's two settings: FC6-8 trains fc6, fc7 and the new head over frozen conv layers
# (their BatchNorm included); ALL trains every layer but the Sobel filter
FC6_8, ALL = "fc6-8", "all"
SETTINGS = (FC6_8, ALL)
# voc-cls on any trunk: a new linear head on the frozen trunk's embedding (fc7, a ResNet's
# pooled res5, a ViT's CLS); the setting a ResNet or ViT gets where a convnet gets FC6-8
FROZEN = "frozen"
# the tasks a trunk without fc6 / fc7 (ResNets, ViTs) runs, for the refusals' hint
MODERN_TASKS = ("linear-imagenet", "linear-places", "linear-fmnist", "knn", "clustering",
                "retrieval-oxford", "retrieval-paris", "voc-cls")
QUICK_ITERATIONS = 20      # --quick: the same code, this many iterations on the small twin


def recipe_for(dataset: str, recipes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The recipe of a dataset: the embedded set (and its quick twin) has its own, real VOC
    years the paper's."""
    return dict(recipes["fmnist-voc" if dataset in EMBEDDED else "voc"])


def resolve_config(task: str, ctx: RunContext, default_dataset: str,
                   recipes: dict[str, dict[str, Any]], at_least_one: tuple[str, ...],
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A VOC task's hyperparameters: its dataset's recipe, then the --set options; --quick
    swaps in the embedded set's small twin and caps iterations, images and evaluations.
    Counts that must be >= 1 and a positive lr are checked here, before any work."""
    dataset = ctx.options.get("dataset") or default_dataset
    if ctx.quick:        # the embedded set's small twin (built in seconds)
        dataset = get_dataset_spec(dataset).quick_variant or dataset
    cfg = {"dataset": dataset, **recipe_for(dataset, recipes), "max_train": None,
           "max_test": None, **(extra or {})}
    cfg.update({k: v for k, v in ctx.options.items() if v is not None})
    if ctx.quick:
        cfg["iterations"] = min(cfg["iterations"], QUICK_ITERATIONS)
        cfg["max_train"] = min(cfg["max_train"] or QUICK_TRAIN, QUICK_TRAIN)
        cfg["max_test"] = min(cfg["max_test"] or QUICK_TEST, QUICK_TEST)
        cfg["evals"] = min(cfg["evals"], 2)
    for key in at_least_one:
        if int(cfg[key]) < 1:
            raise DcbenchError(f"{task} option {key} must be at least 1, got {cfg[key]}")
    if cfg["lr"] <= 0:
        raise DcbenchError(f"{task} option lr must be positive, got {cfg['lr']}")
    return cfg


def check_split(task: str, key: str, batch: int) -> None:
    """Under torchrun each rank takes batch / W images of every step (tasks/voc/sharding.py):
    refuse, before any work, a global batch that does not split evenly over the W ranks."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if batch % world:
        raise DcbenchError(f"{task}: {key} {batch} does not split over {world} ranks (each "
                           f"takes {key} / {world} images of every step); pass --set "
                           f"{key}={max(world, batch // world * world)} (a multiple of {world}) "
                           f"or run one process")


class VOCTask(Task):
    """What the three VOC tasks share: they train a copy (the trunk must come back
    unchanged), their options are the recipe's keys (None: the dataset's recipe), and their
    config is `resolve_config` plus the task's own checks (`check_options`)."""

    frozen = True
    recipes: dict[str, dict[str, Any]] = {}
    counts: tuple[str, ...] = ()        # options that must be at least 1
    batch_key = "batch_size"            # the global batch, split over torchrun's ranks
    shards = True                       # tasks/voc/sharding.py
    settings_apart = True               # FC6-8, then ALL: two trainings

    def shown_options(self) -> list[str]:
        """`dcbench tasks` shows each recipe option's real defaults, the embedded set's then
        real VOC's (the option itself is None: the dataset's recipe decides)."""
        emb, voc = self.recipes["fmnist-voc"], self.recipes["voc"]
        out = [f"{k}={v}" if v is not None or k not in voc else
               (f"{k}={emb.get(k)}" if emb.get(k) == voc[k] else f"{k}={emb.get(k)}/{voc[k]}")
               for k, v in self.options.items()]
        return [*out, "(a/b: fmnist-voc's recipe / real VOC's)"]

    @classmethod
    def recipe_options(cls, recipes: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {"dataset": "fmnist-voc", **{k: None for k in recipes["voc"]},
                "max_train": None, "max_test": None}

    def config(self, ctx: RunContext) -> dict[str, Any]:
        cfg = resolve_config(self.name, ctx, self.options["dataset"], self.recipes,
                             self.counts)
        self.check_options(cfg)
        check_split(self.name, self.batch_key, int(cfg[self.batch_key]))
        return cfg

    def check_options(self, cfg: dict[str, Any]) -> None:
        """Refuse task-specific bad values (may normalise them in place)."""

    def check(self, trunk: Trunk, ctx: RunContext) -> None:
        """voc-det (RoI pooling into fc6) and voc-seg (fc6 / fc7 as convolutions) need
        DeepCluster's conv-then-fc trunks; voc-cls overrides this (it takes any trunk)."""
        if trunk.FAMILY != "convnet":
            raise DcbenchError(f"task '{self.name}' needs a trunk with fc6 and fc7 (alexnet, "
                               f"vgg16, alexnet-small); a {trunk.ARCH} runs on: "
                               f"{', '.join(MODERN_TASKS)}")

    def data_needed(self, ctx: RunContext) -> tuple[str, ...]:
        return (self.config(ctx)["dataset"],)
