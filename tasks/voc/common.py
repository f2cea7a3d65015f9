"""What the VOC tasks share: the data they read, the crops they feed a trunk of any input
size, and the head surgery of the original evaluation code.

Every trunk runs at its own input side (`Trunk.INPUT_SIZE`: 32 px for alexnet-small, 224 px
for alexnet and vgg16): a crop of the VOC image is resized to that side, so one scene set
serves every arch (fmnist-voc scenes are 72-96 px; a 224 px trunk sees them upsampled).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image
from torch import nn

from dcbench import distributed, step_meter
from dcbench.data import get_dataset_spec
from dcbench.errors import DcbenchError
from dcbench.models import Trunk
from dcbench.models.fold_bn import fold_into

from .sharding import reduced_step
from .task import FC6_8, FROZEN


class RandomSquareCrop:
    """RandomResizedCrop(side, scale=(lo, hi), ratio=(1, 1)) + horizontal flip, then
    ToTensor + Normalize: the training and test-time crop of DeepCluster's
    eval_voc_classif.py, as one PIL resize (box + bilinear in one C call). Randomness comes
    from torch's generator, so loader seeding governs it."""

    def __init__(self, side: int, scale: tuple[float, float], mean: tuple[float, ...],
                 std: tuple[float, ...]) -> None:
        self.side, self.scale = side, scale
        self.mean = np.asarray(mean, dtype=np.float32)[:, None, None]
        self.std = np.asarray(std, dtype=np.float32)[:, None, None]

    def __repr__(self) -> str:
        return f"RandomSquareCrop(side={self.side}, scale={self.scale})"

    def box(self, width: int, height: int, u: list[list[float]]) -> tuple[int, int, int, int]:
        """torchvision's RandomResizedCrop.get_params with ratio 1, from uniforms u."""
        area = width * height
        for a in range(10):
            side = int(round(math.sqrt(area * (self.scale[0] + (self.scale[1] - self.scale[0])
                                               * u[a][0]))))
            if 0 < side <= min(width, height):
                i = int(u[a][1] * (height - side + 1))
                j = int(u[a][2] * (width - side + 1))
                return j, i, j + side, i + side
        side = min(width, height)          # the fallback: a centred square
        j, i = (width - side) // 2, (height - side) // 2
        return j, i, j + side, i + side

    def __call__(self, img: Image.Image) -> torch.Tensor:
        u = torch.rand(11, 3).tolist()
        img = img.resize((self.side, self.side), Image.BILINEAR, box=self.box(*img.size, u))
        arr = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) * (1.0 / 255.0)
        if u[10][0] < 0.5:
            arr = arr[:, :, ::-1]
        return torch.from_numpy(np.ascontiguousarray((arr - self.mean) / self.std))


def crop_transform(dataset: str, side: int, scale: tuple[float, float]) -> RandomSquareCrop:
    spec = get_dataset_spec(dataset)
    return RandomSquareCrop(side, scale, spec.mean, spec.std)


def fc_layers(trunk: Trunk) -> list[nn.Linear]:
    """fc6 and fc7, the Linear layers of the classifier."""
    return [m for m in trunk.classifier if isinstance(m, nn.Linear)]


def init_std(fan_in: int) -> float:
    """The original N(0, 0.01) for layers of 4096 inputs or more (alexnet and vgg16 exactly);
    narrower layers (alexnet-small's 1536 and 512) get 0.01 * sqrt(4096 / fan_in), the same
    output scale, since at 0.01 their signal shrinks ~4x per layer and the heads barely
    train in the embedded recipe's iterations (measured: see the README)."""
    return 0.01 * max(1.0, math.sqrt(4096 / fan_in))


def reset_fc_and_head(trunk: Trunk, n_classes: int) -> None:
    """eval_voc_classif.py's surgery, in both settings: fc6, fc7 and a new Linear(fc7,
    classes) drawn N(0, 0.01) with bias 0.1 (the checkpoint's fc weights are not used)."""
    trunk.set_top_layer(n_classes)
    for layer in [*fc_layers(trunk), trunk.top_layer]:
        nn.init.normal_(layer.weight, 0.0, init_std(layer.in_features))
        nn.init.constant_(layer.bias, 0.1)


def freeze_conv(trunk: Trunk, frozen: bool) -> list[nn.Parameter]:
    """Set requires_grad (conv layers and their BN affine frozen when `frozen`: the paper's
    erratum setting) and return the parameters to train (never the Sobel filter)."""
    for p in trunk.features.parameters():
        p.requires_grad = not frozen
    return [p for name, p in trunk.named_parameters()
            if p.requires_grad and not name.startswith("sobel.")]


def trunk_copy(trunk: Trunk, setting: str) -> Trunk:
    """The copy a VOC run trains; at fc6-8 (and voc-cls's frozen) its frozen conv layers
    have BatchNorm folded in (the same outputs as eval-mode BN, which those settings keep:
    faster, bench/bench_fold_bn.py)."""
    model = copy.deepcopy(trunk)
    return fold_into(model) if setting in (FC6_8, FROZEN) else model


def train_mode(trunk: Trunk) -> None:
    """`model.train(); model.features.eval()` as the original script: dropout on in fc6/fc7,
    conv BN running statistics never updated, in both settings."""
    trunk.train()
    trunk.features.eval()


def pad_stack(tensors: list[torch.Tensor], fill: float, dtype: torch.dtype | None = None
              ) -> torch.Tensor:
    """Stack tensors that differ in their last two sizes (H, W), padded at the bottom and
    right with `fill` to the largest: the batches of the full-size VOC tasks."""
    h = max(t.shape[-2] for t in tensors)
    w = max(t.shape[-1] for t in tensors)
    out = torch.full((len(tensors), *tensors[0].shape[:-2], h, w), fill,
                     dtype=dtype or tensors[0].dtype)
    for j, t in enumerate(tensors):
        out[j, ..., :t.shape[-2], :t.shape[-1]] = t
    return out


def sgd_step(opt: torch.optim.Optimizer, loss: torch.Tensor | None, n: int, task: str,
             setting: str, it: int, progress,
             clip: tuple[list[nn.Parameter], float] | None = None) -> float | None:
    """One SGD step of a VOC task's training loop on `loss`, the mean over the `n` images
    read (None: none was read; no step), gradient norm clipped when `clip` gives the
    parameters and the norm; a non-finite loss stops the run with what to do. Under torchrun
    the step is that of the global batch (sharding.reduced_step). Returns the loss for the
    running mean (None without a step)."""
    if distributed.is_distributed():
        return reduced_step(opt, loss, n, task, setting, it, progress, clip)
    if loss is None:
        return None
    if not torch.isfinite(loss):
        progress.close()
        raise DcbenchError(f"{task} {setting}: the loss became {loss.item()} at iteration "
                           f"{it}; lower --set lr=...")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(*clip)
    opt.step()
    value = float(loss.detach())
    step_meter.step(n, value)
    return value


def from_one_rng_state(settings: list[str]) -> Iterator[str]:
    """The settings, each entered from the random state the first one started from: each
    draws its heads from it, so a record does not depend on the settings run before it (and
    rank 0 under torchrun draws what one process does)."""
    state = torch.get_rng_state()
    for setting in settings:
        torch.set_rng_state(state)
        yield setting


def pct(v: float) -> float | None:
    """A per-class AP / IoU in [0, 1] as a percent with 3 decimals; None for NaN (a class
    with no positive)."""
    return None if np.isnan(v) else round(100.0 * float(v), 3)
