"""`voc-det`: PASCAL VOC detection with Fast R-CNN on a pretrained trunk (the paper's Tables
2 and 4).

Protocol (PROTOCOLS.md; DeepCluster never released its prototxts, so the literature's
setting of Kraehenbuehl et al. / Zhang et al.): Fast R-CNN on selective-search proposals
(tasks/voc/fast_rcnn.py), trained on trainval and measured on test with the devkit's AP
(11-point for VOC2007 and the embedded set, area for VOC2012; tasks/voc/metrics.py). `fc6-8`
freezes every conv layer including its BatchNorm affine parameters and trains fc6, fc7 and
the predictors; `all` also trains the convs except those Fast R-CNN keeps frozen (conv1 of
AlexNet, conv1_1-conv2_2 of VGG16). Conv BN running statistics are never updated.

Recipes. `voc`: SGD lr 0.001 (biases x2, without weight decay, as the prototxts),
momentum 0.9, wd 5e-4, 150,000 iterations with lr /10 every 50,000, 2 images x 128 RoIs per
batch, multi-scale training (shorter side 480, 576, 688, 864 or 1200, longer side <= 2000,
one drawn per image) and single-scale test (600, <= 1000), horizontal flips. Proposals:
Fast R-CNN's voc_<year>_<split>.mat files, put in <devkit>/selective_search/ (or the folder
above it), where present, else OpenCV's selective search (dcbench/data/voc/proposals.py,
cached next to the set); the record names which. `fmnist-voc` (about a minute on 2 CPU
cores): the same protocol with 4 images x 64 RoIs, lr 0.01, 750 iterations (lr /10 after
500) and sizes scaled to the scenes: shorter side 48, 56, 64 or 72 in training, 64 at test,
times the trunk's input side / 32 (alexnet-small reads the items at Fashion-MNIST's scale;
alexnet and vgg16 see them 7x larger, as their 224 px crops in voc-cls do). The test mAP is
measured `evals` times; the record holds the final value and the best (read off the test
split: optimistic, kept beside the final one, never instead).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dcbench.errors import DcbenchError

from ..registry import Measurement, RunContext, register_task
from .task import SETTINGS, VOCTask

if TYPE_CHECKING:       # the declaration loads without torch; run() imports the training
    from dcbench.models import Trunk

RECIPES: dict[str, dict[str, Any]] = {
    "voc": {"train_split": "trainval", "test_split": "test", "iterations": 150_000,
            "images_per_batch": 2, "rois_per_image": 128, "lr": 0.001, "lr_step": 50_000,
            "momentum": 0.9, "weight_decay": 5e-4, "train_sizes": (480, 576, 688, 864, 1200),
            "train_max_size": 2000, "test_size": 600, "test_max_size": 1000,
            "size_factor": 1.0, "proposals": "auto", "evals": 3},
    "fmnist-voc": {"train_split": "trainval", "test_split": "test", "iterations": 750,
                   "images_per_batch": 4, "rois_per_image": 64, "lr": 0.01, "lr_step": 500,
                   "momentum": 0.9, "weight_decay": 5e-4, "train_sizes": (48, 56, 64, 72),
                   "train_max_size": 120, "test_size": 64, "test_max_size": 107,
                   "size_factor": None, "proposals": "opencv", "evals": 2},
}


@register_task("voc-det", settings=SETTINGS, datasets=("fmnist-voc", "voc2007", "voc2012"))
class VOCDetectionTask(VOCTask):
    """VOC detection mAP@0.5, Fast R-CNN on FC6-8 (conv frozen incl. BN) or ALL trained."""

    description = ("PASCAL VOC detection mAP (FC6-8 / ALL), Fast R-CNN on selective search; "
                   "options default to the dataset's recipe (fmnist-voc or voc)")
    recipes = RECIPES
    counts = ("iterations", "images_per_batch", "rois_per_image", "lr_step", "evals")
    batch_key = "images_per_batch"
    options = VOCTask.recipe_options(RECIPES)

    def check_options(self, cfg: dict[str, Any]) -> None:
        if cfg["proposals"] not in ("auto", "mat", "opencv"):
            raise DcbenchError(f"voc-det option proposals must be auto (Fast R-CNN's .mat "
                               f"where present, else OpenCV), mat or opencv; got "
                               f"{cfg['proposals']!r}")
        sizes = cfg["train_sizes"]
        cfg["train_sizes"] = tuple(float(s) for s in (sizes if isinstance(sizes, (list, tuple))
                                                      else str(sizes).split(",")))
        if min(cfg["train_sizes"]) <= 0 or cfg["test_size"] <= 0:
            raise DcbenchError("voc-det sizes must be positive shorter-side lengths in pixels, "
                               "e.g. --set train_sizes=480,576,688")

    def check(self, trunk: Trunk, ctx: RunContext) -> None:
        from .fast_rcnn import CONV5_STRIDE

        super().check(trunk, ctx)
        if trunk.ARCH not in CONV5_STRIDE:
            raise DcbenchError(f"voc-det has no Fast R-CNN layout for arch '{trunk.ARCH}'; "
                               f"archs: {', '.join(CONV5_STRIDE)}")

    def run(self, trunk: Trunk, settings: list[str], ctx: RunContext) -> list[Measurement]:
        from .det_train import run_task

        return run_task(trunk, settings, self.config(ctx), ctx)
