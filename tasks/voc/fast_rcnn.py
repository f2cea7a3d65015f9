"""Fast R-CNN on a classification trunk, from torchvision's detection parts (PROTOCOLS.md).

Fast R-CNN (Girshick 2015, rbgirshick/fast-rcnn) for AlexNet and VGG16: the conv layers up to
conv5 (pool5 removed) as backbone, RoI max pooling of each proposal to the grid fc6 expects
(alexnet 6x6 and vgg16 7x7 at stride 16; alexnet-small its own 4x4 at stride 4), fc6 -> ReLU
-> Dropout -> fc7 -> ReLU -> Dropout initialised from the checkpoint, and fresh predictors:
class scores N(0, 0.01), box deltas N(0, 0.001), biases 0.

torchvision's `RoIHeads` does the sampling, box coding, losses and test-time NMS. Its
defaults are Faster R-CNN's, so they are set here to Fast R-CNN's: 128 RoIs per image, 25 %
foreground (IoU >= 0.5), background IoU in [0.1, 0.5) (`RoIHeads` has no 0.1 floor: training
proposals whose best IoU with the ground truth is under 0.1 are dropped before it sees them,
which is what Fast R-CNN's sampler does with them), score > 0.05, NMS 0.3, at most 100
detections per image, box-delta weights (10, 10, 5, 5) (= Fast R-CNN's target stds 0.1,
0.1, 0.2, 0.2). `FasterRCNN` accepts only MultiScaleRoIAlign, so `RoIHeads` is built
directly around `torchvision.ops.roi_pool`, which matches Caffe's RoIPool. One difference
stays: torchvision's box loss is smooth-L1 with beta 1/9, Fast R-CNN's beta 1 (sigma 1).

Boxes: the VOC files' 1-based inclusive pixel boxes (x1, y1, x2, y2) become torchvision's
continuous 0-based extents (x1 - 1, y1 - 1, x2, y2) in the scaled image, and back.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from dcbench.models import Trunk

from .common import fc_layers
from .fcn import conv5_shape
from .task import ALL

# The layers Fast R-CNN keeps frozen even when fine-tuning "all" (its prototxts set lr 0 on
# conv1 for AlexNet, conv1_1-conv2_2 for VGG16), as indices into `Trunk.features`.
FROZEN_IN_ALL = {"alexnet": 3, "alexnet-small": 3, "alexnet-small-wide": 3, "vgg16": 14}
# Input pixels per conv5 cell (the RoI pooling scale is its inverse).
CONV5_STRIDE = {"alexnet": 16, "alexnet-small": 4, "alexnet-small-wide": 4, "vgg16": 16}
RECIPE_HEAD = {"rois_per_image": 128, "fg_fraction": 0.25, "fg_iou": 0.5, "bg_iou_low": 0.1,
               "score_thresh": 0.05, "nms": 0.3, "detections_per_image": 100}


class RoIPoolConv5(nn.Module):
    """`box_roi_pool` for RoIHeads: Caffe's RoI max pooling on the single conv5 map."""

    def __init__(self, grid: int, spatial_scale: float) -> None:
        super().__init__()
        self.grid, self.spatial_scale = grid, spatial_scale

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        from torchvision.ops import roi_pool  # torchvision: imported where used (startup)

        return roi_pool(features["conv5"], proposals, self.grid, self.spatial_scale)


class BoxHead(nn.Module):
    """fc6 -> ReLU -> Dropout -> fc7 -> ReLU -> Dropout on the pooled RoIs (Fast R-CNN's
    order for both AlexNet and VGG16), the linear layers being the checkpoint's."""

    def __init__(self, trunk: Trunk) -> None:
        super().__init__()
        fc6, fc7 = fc_layers(trunk)
        self.layers = nn.Sequential(fc6, nn.ReLU(), nn.Dropout(0.5), fc7, nn.ReLU(),
                                    nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.flatten(x, 1))


class FastRCNN(nn.Module):
    """Sobel + conv1..conv5 (no pool5) + RoIHeads; `forward(images, proposals, shapes,
    targets)` returns losses in training and detections in eval mode."""

    def __init__(self, trunk: Trunk, n_classes: int, rois_per_image: int = 128) -> None:
        super().__init__()
        _, grid = conv5_shape(trunk)
        self.stride = CONV5_STRIDE[trunk.ARCH]
        self.sobel = trunk.sobel
        self.features = trunk.features[:-1]           # pool5 is replaced by RoI pooling
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
        from torchvision.models.detection.roi_heads import RoIHeads

        predictor = FastRCNNPredictor(trunk.FC_DIM, n_classes + 1)    # + background
        nn.init.normal_(predictor.cls_score.weight, 0.0, 0.01)
        nn.init.normal_(predictor.bbox_pred.weight, 0.0, 0.001)
        nn.init.zeros_(predictor.cls_score.bias)
        nn.init.zeros_(predictor.bbox_pred.bias)
        h = RECIPE_HEAD
        self.heads = RoIHeads(
            RoIPoolConv5(grid, 1.0 / self.stride), BoxHead(trunk), predictor,
            fg_iou_thresh=h["fg_iou"], bg_iou_thresh=h["fg_iou"],
            batch_size_per_image=rois_per_image, positive_fraction=h["fg_fraction"],
            bbox_reg_weights=(10.0, 10.0, 5.0, 5.0), score_thresh=h["score_thresh"],
            nms_thresh=h["nms"], detections_per_img=h["detections_per_image"])

    def conv5(self, images: torch.Tensor, train_conv: bool) -> torch.Tensor:
        with torch.set_grad_enabled(train_conv and torch.is_grad_enabled()):
            if self.sobel is not None:
                images = self.sobel(images)
            return self.features(images)

    def forward(self, images: torch.Tensor, proposals: list[torch.Tensor],
                image_shapes: list[tuple[int, int]], targets: list[dict] | None = None,
                train_conv: bool = False):
        features = OrderedDict(conv5=self.conv5(images, train_conv))
        if self.training:
            proposals = drop_below_background_floor(proposals, targets,
                                                    RECIPE_HEAD["bg_iou_low"])
        return self.heads(features, proposals, image_shapes, targets)


def drop_below_background_floor(proposals: list[torch.Tensor], targets: list[dict] | None,
                                floor: float) -> list[torch.Tensor]:
    """Keep the training proposals whose best IoU with a ground-truth box is >= floor:
    Fast R-CNN samples background from IoU [0.1, 0.5) and never uses the rest."""
    if targets is None:
        raise ValueError("training needs targets")
    from torchvision.ops import box_iou

    out = []
    for p, t in zip(proposals, targets):
        if len(t["boxes"]) == 0 or len(p) == 0:
            out.append(p[:0])
            continue
        out.append(p[box_iou(p, t["boxes"]).max(dim=1).values >= floor])
    return out


def to_extent(boxes: torch.Tensor, scale: float) -> torch.Tensor:
    """VOC 1-based inclusive boxes -> 0-based continuous extents in an image scaled by
    `scale`."""
    out = boxes.clone().float()
    out[:, :2] -= 1.0
    return out * scale


def from_extent(boxes: torch.Tensor, scale: float) -> torch.Tensor:
    """The inverse of `to_extent`: detections back to the VOC file's 1-based boxes."""
    out = boxes / scale
    out[:, :2] += 1.0
    return out


def trainable(model: FastRCNN, arch: str, setting: str) -> list[nn.Parameter]:
    """Set requires_grad for `setting` and return the trained parameters: fc6-8 trains the
    heads only; `all` the convs too, but not those Fast R-CNN freezes (FROZEN_IN_ALL) nor
    the Sobel filter."""
    for i, layer in enumerate(model.features):
        for p in layer.parameters():
            p.requires_grad = setting == ALL and i >= FROZEN_IN_ALL[arch]
    if model.sobel is not None:
        for p in model.sobel.parameters():
            p.requires_grad = False
    return [p for p in model.parameters() if p.requires_grad]
