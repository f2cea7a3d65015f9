"""`voc-cls`: PASCAL VOC classification from a pretrained trunk (the paper's Table 2).

As DeepCluster's eval_voc_classif.py does it (PROTOCOLS.md): fc6, fc7 and a new
Linear(fc7, classes) are re-initialised N(0, 0.01) with bias 0.1 in both settings; `fc6-8`
freezes every conv layer INCLUDING its BatchNorm affine parameters (the paper's erratum: 70.4)
and `all` trains everything but the Sobel filter; in both, `model.train(); features.eval()`
keeps dropout on and never updates conv BN statistics. Loss: BCE-with-logits summed over the
classes with difficult labels (0) masked, divided by the batch; SGD momentum 0.9, gradient
norm clipped at 10, lr halved every `lr_step` iterations. Training crops:
RandomResizedCrop(side, scale (0.1, 0.5), ratio 1) + flip; test: the trunk in eval mode, the
logits of `test_crops` passes of the same random crop recipe summed. Metric: per-class
non-interpolated AP (sklearn) on non-difficult rows, mean over classes (tasks/voc/metrics.py).

Recipes. `voc` (voc2007 / voc2012): trainval -> test, batch 16, lr 0.003, wd 1e-6, 80,000
iterations, lr x0.5 every 5,000 (the released script; the script's own default split `train`
evaluates on val and does not reproduce the paper, DeeperCluster#6). `fmnist-voc` (the
embedded set, minutes on 2 CPU cores): the same protocol with batch 32 and fewer iterations.
`side` is the trunk's input size, so alexnet-small sees 32 px crops and alexnet/vgg16 224 px.
The test mAP is measured `evals` times during training; the record holds the final value and
the best of those (the best is read off the test split: there is no val split in this
protocol, so it is an optimistic number, kept beside the final one and never instead of it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dcbench.errors import DcbenchError

from ..registry import Measurement, RunContext, register_task
from .task import ALL, FC6_8, FROZEN, SETTINGS, VOCTask

if TYPE_CHECKING:       # the declaration loads without torch; run() imports the training
    from dcbench.models import Trunk

RECIPES: dict[str, dict[str, Any]] = {
    "voc": {"train_split": "trainval", "test_split": "test", "iterations": 80_000,
            "batch_size": 16, "lr": 0.003, "lr_step": 5_000, "lr_gamma": 0.5,
            "weight_decay": 1e-6, "momentum": 0.9, "clip": 10.0, "scale_min": 0.1,
            "scale_max": 0.5, "test_crops": 10, "evals": 8},
    "fmnist-voc": {"train_split": "trainval", "test_split": "test", "iterations": 750,
                   "batch_size": 32, "lr": 0.003, "lr_step": 300, "lr_gamma": 0.5,
                   "weight_decay": 1e-6, "momentum": 0.9, "clip": 10.0, "scale_min": 0.1,
                   "scale_max": 0.5, "test_crops": 10, "evals": 2},
}


@register_task("voc-cls", settings=(*SETTINGS, FROZEN),
               datasets=("fmnist-voc", "voc2007", "voc2012"))
class VOCClassificationTask(VOCTask):
    """Multi-label VOC classification, FC6-8 (conv frozen incl. BN) or ALL trained; on a
    ResNet or ViT, FROZEN (a linear head on the frozen trunk) or ALL."""

    default_settings = SETTINGS

    description = ("PASCAL VOC classification mAP (FC6-8 / ALL), eval_voc_classif.py protocol; "
                   "options default to the dataset's recipe (fmnist-voc or voc)")
    recipes = RECIPES
    counts = ("iterations", "batch_size", "lr_step", "test_crops", "evals")
    options = VOCTask.recipe_options(RECIPES)

    def check_options(self, cfg: dict[str, Any]) -> None:
        if not 0 < cfg["scale_min"] <= cfg["scale_max"] <= 1:
            raise DcbenchError(f"voc-cls needs 0 < scale_min <= scale_max <= 1, got "
                               f"{cfg['scale_min']}, {cfg['scale_max']}")

    def check(self, trunk: Trunk, ctx: RunContext) -> None:
        """Any trunk: a ResNet or ViT gets a head on its embedding (settings_for)."""

    def settings_for(self, trunk: Trunk, settings: list[str], asked: str) -> list[str]:
        """A trunk without fc6 / fc7 runs FROZEN and ALL (FC6-8 refused by name)."""
        if trunk.FAMILY == "convnet":
            return super().settings_for(trunk, settings, asked)
        if asked == "named" and FC6_8 in settings:
            raise DcbenchError(f"a {trunk.ARCH} has no fc6 / fc7 to train over frozen conv "
                               f"layers; voc-cls runs '{FROZEN}' (a linear head on the frozen "
                               f"trunk) or '{ALL}' on it")
        return settings if asked == "named" else [FROZEN, ALL]

    def run(self, trunk: Trunk, settings: list[str], ctx: RunContext) -> list[Measurement]:
        from .cls_train import run_task

        return run_task(trunk, settings, self.config(ctx), ctx)
