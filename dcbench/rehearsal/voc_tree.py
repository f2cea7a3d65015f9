"""A VOC devkit tree at VOC's own size, for rehearsing the real VOC recipes where VOC cannot
ship: JPEGs whose long side is 500 px and short side 350-500 (as VOC's), the 20 VOC class
names, devkit XML (1-based inclusive boxes, some objects difficult), the per-class
ImageSets/Main files, and palette masks with VOC's void band (255) along every object's
outline. Objects are Fashion-MNIST items scaled up and tinted by class over a smooth
background, so a net can learn them and a loss that trains falls.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from dcbench.data.embedded.builders import load_split
from dcbench.data.embedded.voc_builder import PALETTE
from dcbench.data.voc.masks import VOID

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")
VOID_BAND = 3             # px each side of an outline: VOC's void borders are ~5 px wide


def _image_size(rng: np.random.Generator) -> tuple[int, int]:
    """(width, height): the long side 500, the short side 350-500, landscape 3 times in 4."""
    short = int(rng.integers(350, 501))
    return (500, short) if rng.random() < 0.75 else (short, 500)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    coarse = rng.uniform(40, 200, (6, 8, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR), np.float32)
    return smooth + rng.normal(0, 8, (h, w, 3))


def _outline(mask: np.ndarray, band: int) -> np.ndarray:
    """Pixels within `band` of the boundary between mask and not-mask."""
    from scipy.ndimage import binary_dilation, binary_erosion

    grown = binary_dilation(mask, iterations=band)
    shrunk = binary_erosion(mask, iterations=band)
    return grown & ~shrunk


def _scene(rng: np.random.Generator, items: np.ndarray, labels: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, list[int], bool]]]:
    """(RGB uint8 image, class-index mask with void, objects (name, box, difficult))."""
    w, h = _image_size(rng)
    img, mask = _background(rng, w, h), np.zeros((h, w), np.uint8)
    outlines, objects = np.zeros((h, w), bool), []
    for _ in range(int(rng.integers(1, 4))):
        c = int(rng.integers(len(VOC_CLASSES)))
        item = items[rng.choice(np.flatnonzero(labels == c % 10))]
        ow, oh = int(rng.integers(90, w * 3 // 5)), int(rng.integers(90, h * 3 // 5))
        x0, y0 = int(rng.integers(0, w - ow)), int(rng.integers(0, h - oh))
        alpha = np.asarray(Image.fromarray(item).resize((ow, oh), Image.BILINEAR),
                           np.float32) / 255.0
        shape = alpha > 0.25
        if not shape.any():
            continue
        tint = np.array(PALETTE[3 * (c + 1):3 * (c + 2)], np.float32) * 0.8 + 30
        if c >= 10:                                  # the second ten: inverted shading
            alpha = np.where(shape, 1.2 - alpha, 0.0)
        region = img[y0:y0 + oh, x0:x0 + ow]
        region[:] = region * (1 - alpha[..., None]) + tint * alpha[..., None]
        mask[y0:y0 + oh, x0:x0 + ow][shape] = c + 1
        outlines[y0:y0 + oh, x0:x0 + ow] |= _outline(shape, VOID_BAND)
        ys, xs = np.nonzero(shape)
        box = [x0 + int(xs.min()) + 1, y0 + int(ys.min()) + 1, x0 + int(xs.max()) + 1,
               y0 + int(ys.max()) + 1]                          # 1-based inclusive
        objects.append((VOC_CLASSES[c], box, bool(rng.random() < 0.1)))
    mask[outlines] = VOID
    if not objects:                                 # never: a scene has at least one object
        return _scene(rng, items, labels)
    return np.clip(img, 0, 255).astype(np.uint8), mask, objects


def _xml(sid: str, w: int, h: int, objects: list[tuple[str, list[int], bool]]) -> str:
    parts = [f"<annotation><folder>VOC-size rehearsal</folder><filename>{sid}.jpg</filename>"
             f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
             f"<segmented>1</segmented>"]
    for name, (x1, y1, x2, y2), difficult in objects:
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose>"
                     f"<truncated>0</truncated><difficult>{int(difficult)}</difficult>"
                     f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
                     f"<ymax>{y2}</ymax></bndbox></object>")
    return "".join(parts) + "</annotation>\n"


def build_voc_size_tree(out: Path, fmnist_root: str | os.PathLike, sizes: dict[str, int],
                        seed: int = 0) -> Path:
    """Write a devkit tree at `out` (out/JPEGImages, ...) with `sizes` images per split, e.g.
    {"train": 20, "val": 10, "test": 10}; trainval is train + val. Returns `out`."""
    items, labels = (a[:6000] for a in load_split("train", fmnist_root))
    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Main",
                "ImageSets/Segmentation"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    ids: dict[str, list[str]] = {}
    flags: dict[str, dict[str, int]] = {}           # id -> class -> 1 / 0 (difficult only)
    n = 0
    for split, count in sizes.items():
        ids[split] = []
        for _ in range(count):
            n += 1
            sid = f"{2007 if split == 'test' else 2008}_{n:06d}"
            img, mask, objects = _scene(rng, items, labels)
            Image.fromarray(img).save(out / "JPEGImages" / f"{sid}.jpg", quality=90)
            png = Image.fromarray(mask, mode="P")
            png.putpalette(PALETTE)
            png.save(out / "SegmentationClass" / f"{sid}.png")
            (out / "Annotations" / f"{sid}.xml").write_text(
                _xml(sid, img.shape[1], img.shape[0], objects))
            seen: dict[str, int] = {}
            for name, _, difficult in objects:
                seen[name] = max(seen.get(name, 0), 0 if difficult else 1)
            flags[sid] = seen
            ids[split].append(sid)
    if "train" in ids and "val" in ids:
        ids["trainval"] = ids["train"] + ids["val"]
    for split, members in ids.items():
        text = "".join(f"{i}\n" for i in members)
        (out / "ImageSets/Main" / f"{split}.txt").write_text(text)
        (out / "ImageSets/Segmentation" / f"{split}.txt").write_text(text)
        for name in VOC_CLASSES:
            (out / "ImageSets/Main" / f"{name}_{split}.txt").write_text("".join(
                f"{i} {flags[i].get(name, -1):2d}\n" for i in members))
    return out
