"""The paper's pictures of a trunk (conv1 filters, nearest neighbours, top activations) from any
checkpoint, and the test images they are drawn on.

These figures need forward passes, not records, so they are not part of `build_report`: they
run on checkpoints named by the caller (draw_pictures.py). The images are a seeded subset of the
labelled eval split (Fashion-MNIST's test split by default) at the trunk's input size, kept as
the uint8 pixels the eval transform produces: what is drawn is exactly what the trunk saw, and
the normalised tensors are rebuilt per batch instead of being held in memory (224 px sets).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dcbench.checkpoint import CheckpointInfo, load_trunk
from dcbench.errors import DcbenchError
from dcbench.models import MODELS, Trunk

DEFAULT_DATASET = "fashion-mnist"
DEFAULT_IMAGES = 2000        # images searched for neighbours and top activations
BATCH = 250
Ckpt = str | tuple[Trunk, CheckpointInfo]     # a load_trunk spec, or what it returned


@dataclass
class PictureImages:
    """A labelled image set as the trunk sees it: uint8 pixels after the eval transform."""

    dataset: str
    split: str
    pixels: np.ndarray           # (N, S, S, 3) uint8
    labels: np.ndarray           # (N,) int64
    classes: list[str]
    mean: np.ndarray             # (3,) the dataset's normalisation
    std: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def side(self) -> int:
        return int(self.pixels.shape[1])

    def tensor(self, rows: np.ndarray | slice) -> torch.Tensor:
        """The normalised (B, 3, S, S) float batch of these rows, as the eval transform gives."""
        x = torch.from_numpy(np.ascontiguousarray(self.pixels[rows])).permute(0, 3, 1, 2)
        x = x.float().div_(255.0)
        mean = torch.from_numpy(self.mean).view(1, 3, 1, 1)
        std = torch.from_numpy(self.std).view(1, 3, 1, 1)
        return (x - mean) / std

    def batches(self, size: int = BATCH) -> Iterator[tuple[slice, torch.Tensor]]:
        for start in range(0, len(self), size):
            rows = slice(start, min(start + size, len(self)))
            yield rows, self.tensor(rows)

    def class_name(self, label: int) -> str:
        return self.classes[label] if 0 <= label < len(self.classes) else str(label)


def load_test_images(dataset: str = DEFAULT_DATASET, data_root: str | os.PathLike | None = None,
                     max_images: int | None = DEFAULT_IMAGES) -> PictureImages:
    """A seeded subset (the tasks' quick-subset seed) of `dataset`'s eval split."""
    from dcbench.data import get_dataset_spec, make_loader
    from dcbench.tasks.inputs import eval_split, labelled_split, transform_for

    spec = get_dataset_spec(dataset)
    if not spec.labelled:
        raise DcbenchError(f"the pictures need a labelled dataset and '{dataset}' has none; use "
                           f"e.g. fashion-mnist")
    split = eval_split(dataset)
    data = labelled_split(dataset, split, transform_for(dataset, "eval"),
                          None if data_root is None else str(data_root), max_images)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    pixels, labels = [], []
    for images, targets, _, _ in make_loader(data, BATCH):
        if images is None:
            continue
        x = images.float() * torch.from_numpy(std).view(1, 3, 1, 1)
        x += torch.from_numpy(mean).view(1, 3, 1, 1)
        pixels.append(x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
                      .permute(0, 2, 3, 1).numpy())
        labels.append(targets.numpy().astype(np.int64))
    if not pixels:
        raise DcbenchError(f"no readable image in {dataset} {split}")
    return PictureImages(dataset, split, np.concatenate(pixels), np.concatenate(labels),
                      list(getattr(data, "classes", []) or []), mean, std)


def check_fits(trunk: Trunk, images: PictureImages, info: CheckpointInfo) -> None:
    """Refuse a trunk whose input side is not the images' side, saying which set would fit,
    or that is not one of DeepCluster's convnets (the figures read conv layers by index)."""
    if trunk.FAMILY != "convnet":
        raise DcbenchError(f"{info.path} ({trunk.ARCH}): the activation pictures read the conv "
                           f"layers of DeepCluster's convnets (alexnet, vgg16, alexnet-small); "
                           f"a {trunk.FAMILY} trunk has no conv1..conv5 to picture")
    if trunk.INPUT_SIZE != images.side:
        fits = [a for a, cls in MODELS.items() if cls.INPUT_SIZE == images.side]
        raise DcbenchError(f"{info.path} ({trunk.ARCH}) takes {trunk.INPUT_SIZE} px images but "
                           f"the picture images ({images.dataset}) are {images.side} px; pass a "
                           f"dataset of its size or a checkpoint of arch {' or '.join(fits)}")


def pooled_features(trunk: Trunk, images: PictureImages, layer: str,
                    device: torch.device | str = "cpu") -> np.ndarray:
    """(N, D) float32: a conv tap averaged over its spatial positions, or an fc tap as is."""
    out = []
    trunk.eval()
    with torch.inference_mode():
        for _, x in images.batches():
            act = trunk.extract(x.to(device), [layer])[layer]
            if act.ndim == 4:
                act = act.mean(dim=(2, 3))
            out.append(act.float().cpu().numpy())
    return np.concatenate(out)


def ckpt_label(info: CheckpointInfo) -> str:
    """A short row label: 'method k=K · file' ('random:alexnet-small:0' for the baselines)."""
    if info.format == "random":
        return info.path
    method = info.method or "foreign"
    k = f" k={info.k}" if info.k and method == "deepcluster" else ""
    return f"{method}{k} · {ckpt_stem(info)}"


def ckpt_stem(info: CheckpointInfo) -> str:
    """A file-name-safe name: the run folder for checkpoint*.pth.tar files, else the stem."""
    path = Path(info.path)
    name = path.name.split(".")[0]
    if name.startswith("checkpoint") and path.parent.name:
        name = path.parent.name
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "ckpt"


def load_for_pictures(ckpts: Sequence[Ckpt], device: torch.device | str = "cpu"
                      ) -> list[tuple[Trunk, CheckpointInfo]]:
    """Load the specs (load_trunk's: a file, a pretrained/ name, random:ARCH:SEED); trunks
    already loaded pass through, so one run of several figures loads each file once."""
    if not ckpts:
        raise DcbenchError("the pictures need at least one checkpoint")
    return [load_trunk(c, device) if isinstance(c, str) else c for c in ckpts]
