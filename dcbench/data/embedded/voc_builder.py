"""fmnist-voc: a small PASCAL-VOC-layout dataset built from Fashion-MNIST.

The VOC2007 loader (classification, detection, segmentation) must run end to end where the
real VOC cannot ship. This writes the devkit's exact layout (JPEGImages, Annotations,
ImageSets, SegmentationClass/Object) for the scenes of dcbench/data/embedded/voc_scenes.py, into a
temporary folder renamed into place when complete. Every scene's generator derives from
`seed`, so a build is byte-for-byte reproducible.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from dcbench.data.embedded.build_digests import verify, write_digests
from dcbench.data.embedded.voc_scenes import FMNIST_VOC_CLASSES, Pool, Scene, VocObject, make_scene
from dcbench.data.idx import FILES, read_idx
from dcbench.data.registry import resolve_root
from dcbench.errors import DataError
from dcbench.progress import progress

SIZES = {"full": {"train": 1000, "val": 1000, "test": 1000},
         "quick": {"train": 64, "val": 64, "test": 64}}
NAME = "fmnist-voc"
BUILDER_VERSION = 3      # 2: mask values in sorted class order; 3: smaller, darker scenes
SPLITS = ("train", "val", "test")
JPEG_QUALITY = 90


def voc_palette() -> list[int]:
    """The VOC devkit colour map (bit-interleaved), flat [r0, g0, b0, r1, ...] for 256 entries,
    so masks look exactly like VOC's and tools that key on colours read them."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= (c & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


PALETTE = voc_palette()

def annotation_xml(sid: str, scene: Scene) -> str:
    """The VOC annotation file for one scene (the devkit's element names and nesting)."""
    h, w = scene.image.shape[:2]
    lines = ["<annotation>", f"\t<folder>{NAME}</folder>", f"\t<filename>{sid}.jpg</filename>",
             "\t<source>", f"\t\t<database>{NAME} (dcbench)</database>", "\t</source>",
             "\t<size>", f"\t\t<width>{w}</width>", f"\t\t<height>{h}</height>",
             "\t\t<depth>3</depth>", "\t</size>", "\t<segmented>1</segmented>"]
    for o in scene.objects:
        x0, y0, x1, y1 = o.box
        lines += ["\t<object>", f"\t\t<name>{FMNIST_VOC_CLASSES[o.cls]}</name>",
                  "\t\t<pose>Unspecified</pose>", f"\t\t<truncated>{int(o.truncated)}</truncated>",
                  f"\t\t<difficult>{int(o.difficult)}</difficult>", "\t\t<bndbox>",
                  f"\t\t\t<xmin>{x0}</xmin>", f"\t\t\t<ymin>{y0}</ymin>",
                  f"\t\t\t<xmax>{x1}</xmax>", f"\t\t\t<ymax>{y1}</ymax>",
                  "\t\t</bndbox>", "\t</object>"]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def _png_bytes(mask: np.ndarray) -> bytes:
    im = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask))
    im.putpalette(PALETTE)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _write_scene(root: Path, sid: str, scene: Scene) -> None:
    Image.fromarray(scene.image).save(root / "JPEGImages" / f"{sid}.jpg", format="JPEG",
                                      quality=JPEG_QUALITY)
    (root / "SegmentationClass" / f"{sid}.png").write_bytes(_png_bytes(scene.cls_mask))
    (root / "SegmentationObject" / f"{sid}.png").write_bytes(_png_bytes(scene.obj_mask))
    (root / "Annotations" / f"{sid}.xml").write_text(annotation_xml(sid, scene))


def _labels_line(sid: str, objects: list[VocObject], cls: int) -> str:
    """VOC per-class label: 1 a non-difficult object of the class, 0 only difficult, -1 none."""
    flags = [o.difficult for o in objects if o.cls == cls]
    label = -1 if not flags else (0 if all(flags) else 1)
    return f"{sid} {label:2d}"


def _pools(root: Path, seed: int) -> dict[str, Pool]:
    """Train and val draw from disjoint halves of Fashion-MNIST train, test from its test."""
    pools = {}
    for src in ("train", "test"):
        img_name, lbl_name = FILES[src]
        pools[src] = Pool(read_idx(root / img_name, 2051), read_idx(root / lbl_name, 2049))
    full = pools.pop("train")
    perm = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(99,))).permutation(
        len(full.labels))
    half = len(perm) // 2
    for split, idx in (("train", perm[:half]), ("val", perm[half:])):
        idx = np.sort(idx)
        pools[split] = Pool(full.images[idx], full.labels[idx])
    return pools


def _build_info(seed: int, quick: bool) -> dict:
    return {"name": NAME, "seed": seed, "quick": quick,
            "sizes": SIZES["quick" if quick else "full"], "classes": FMNIST_VOC_CLASSES,
            "builder_version": BUILDER_VERSION}


def _is_build(out: Path, info: dict) -> bool:
    try:
        return json.loads((out / "BUILD_INFO.json").read_text()) == info
    except (OSError, ValueError):
        return False


def check_current(root: Path) -> None:
    """Refuse a set an older builder wrote (its scenes differ from today's: numbers from it
    would not be comparable with records made on the current set) or one whose files changed
    since its build (build_digests.py)."""
    try:
        got = json.loads((root / "BUILD_INFO.json").read_text()).get("builder_version")
    except (OSError, ValueError):
        raise DataError(f"{root} has no readable BUILD_INFO.json: not a complete fmnist-voc "
                        f"build; delete the folder and run again (it is rebuilt)") from None
    if got != BUILDER_VERSION:
        raise DataError(f"{root} was built by fmnist-voc builder version {got}, this dcbench "
                        f"builds version {BUILDER_VERSION}; delete the folder and run again "
                        f"(it is rebuilt)")
    verify(root)


def _write_tree(tmp: Path, pools: dict[str, Pool], seed: int, sizes: dict[str, int],
                show_progress: bool) -> None:
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main", "ImageSets/Segmentation",
                "SegmentationClass", "SegmentationObject"):
        (tmp / sub).mkdir(parents=True)
    jobs = [(si, split, i) for si, split in enumerate(SPLITS) for i in range(sizes[split])]
    it = progress(jobs, NAME, total=len(jobs), unit="scene") if show_progress else jobs
    ids: dict[str, list[str]] = {s: [] for s in SPLITS}
    objects: dict[str, list[VocObject]] = {}
    for n, (si, split, i) in enumerate(it, 1):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(si, i)))
        scene = make_scene(rng, pools[split])
        sid = f"{n:06d}"
        _write_scene(tmp, sid, scene)
        ids[split].append(sid)
        objects[sid] = scene.objects
    ids["trainval"] = ids["train"] + ids["val"]
    for split in ("train", "val", "trainval", "test"):
        listing = "".join(f"{sid}\n" for sid in ids[split])
        (tmp / "ImageSets" / "Main" / f"{split}.txt").write_text(listing)
        (tmp / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(listing)
        for ci, cname in enumerate(FMNIST_VOC_CLASSES):
            text = "".join(_labels_line(sid, objects[sid], ci) + "\n" for sid in ids[split])
            (tmp / "ImageSets" / "Main" / f"{cname}_{split}.txt").write_text(text)


def build_fmnist_voc(out: Path, fmnist_root: str | Path | None = None, *, quick: bool = False,
                     seed: int = 0, show_progress: bool = True) -> Path:
    """Build fmnist-voc at `out` (which plays VOCdevkit/VOC2007) and return `out`.

    The tree is written to a hidden sibling and renamed into place only when complete, so
    an interrupted build never leaves a half set. An existing complete build with the same
    settings is returned as is; anything else already at `out` is a DataError.
    """
    if seed < 0:
        raise ValueError("seed must be non-negative")
    out = Path(out)
    info = _build_info(seed, quick)
    mode = "quick" if quick else "full"
    if reuse_build(out, info, f"{NAME} build ({mode}, seed {seed})"):
        return out
    pools = _pools(resolve_root("fashion-mnist", fmnist_root), seed)
    return publish_build(out, info,
                         lambda tmp: _write_tree(tmp, pools, seed, info["sizes"], show_progress))


def reuse_build(out: Path, info: dict, what: str) -> bool:
    """True if `out` already holds a complete build made with `info`; a DataError if
    something else is there; False if nothing is."""
    if not out.exists():
        return False
    if _is_build(out, info):
        return True
    raise DataError(f"{out} exists but is not a complete {what}; remove it or pick another "
                    f"output folder")


def publish_build(out: Path, info: dict, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp)` into a hidden sibling of `out`, add BUILD_INFO.json, and rename it
    into place only when complete, so an interrupted build never leaves a half set."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        write(tmp)
        write_digests(tmp)
        (tmp / "BUILD_INFO.json").write_text(json.dumps(info, indent=2) + "\n")
        try:
            os.rename(tmp, out)
        except OSError:
            if not _is_build(out, info):       # not a concurrent build of the same set
                raise DataError(f"cannot move the finished build to {out} (it appeared "
                                f"meanwhile); remove it and build again") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
