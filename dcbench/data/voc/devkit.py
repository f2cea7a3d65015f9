"""PASCAL VOC in the devkit's own layout, read exactly as the devkit distributes it.

    <root>/JPEGImages/<id>.jpg
    <root>/Annotations/<id>.xml              objects: name, pose, truncated, difficult, bndbox
                                             (1-based inclusive pixels; VOC2012 has floats)
    <root>/ImageSets/Main/<split>.txt        ids of a split
    <root>/ImageSets/Main/<cls>_<split>.txt  "<id> <1|-1|0>" (0: only difficult objects)
    <root>/ImageSets/Segmentation/<split>.txt
    <root>/SegmentationClass/<id>.png        palette PNG, index = class + 1, 0 background,
                                             255 void

`<root>` is the folder holding JPEGImages (VOCdevkit/VOC2007), or one above it. The class
list is whatever the per-class files name (sorted: the VOC order for the 20 VOC classes), so
any devkit-layout set works, the embedded fmnist-voc included
(dcbench/data/embedded/voc_builder.py).
Every file a split needs is checked before any work and the first missing one is named.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from dcbench.data.real import fashion_mnist
from dcbench.data.real.image_folder import load_rgb
from dcbench.data.registry import ensure_root, get_dataset_spec
from dcbench.data.spec import DatasetSpec, ValidationReport
from dcbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from dcbench.data.voc.masks import check_masks, read_mask
from dcbench.errors import DataError

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset

_CLASS_FILE = re.compile(r"^(?P<cls>.+)_(?P<split>[^_]+)\.txt$")


@dataclass(frozen=True)
class VOCObject:
    name: str
    box: tuple[float, float, float, float]    # xmin, ymin, xmax, ymax as in the file (1-based)
    difficult: bool = False
    truncated: bool = False


@dataclass
class VOCAnnotation:
    image_id: str
    width: int
    height: int
    objects: list[VOCObject] = field(default_factory=list)
    segmented: bool = False


def find_devkit(root: Path, year: str | None = None) -> Path:
    """The folder that holds JPEGImages: root itself, root/VOC<year> or
    root/VOCdevkit/VOC<year>."""
    cands = [root]
    if year:
        cands += [root / f"VOC{year}", root / "VOCdevkit" / f"VOC{year}"]
    for c in cands:
        if (c / "JPEGImages").is_dir():
            return c
    where = " or ".join(str(c / "JPEGImages") for c in cands)
    raise DataError(f"not a VOC devkit folder: {where} missing (expected the devkit layout: "
                    f"JPEGImages/, Annotations/, ImageSets/Main/)")


def _text(node: ET.Element, tag: str, path: Path, default: str | None = None) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        if default is not None:
            return default
        raise DataError(f"{path}: <{node.tag}> has no <{tag}> (a VOC annotation needs it)")
    return child.text.strip()


_EXPECTED = {"number": "a number", "pixels": "a whole number of pixels (1 or more)",
             "flag": "0 or 1"}


def _field(node: ET.Element, tag: str, path: Path, kind: str,
           default: str | None = None) -> float:
    """A numeric field of an annotation (VOC2012 writes floats): a value that is not one
    names the file and the field instead of ending as a bare ValueError."""
    text = _text(node, tag, path, default)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    ok = math.isfinite(value) and (
        kind == "number" or (value.is_integer() and (value >= 1 if kind == "pixels"
                                                     else value in (0, 1))))
    if not ok:
        raise DataError(f"{path}: <{node.tag}><{tag}> is '{text[:40]}', expected "
                        f"{_EXPECTED[kind]}; fix the annotation or re-extract the devkit")
    return value


def _flag(node: ET.Element, tag: str, path: Path) -> bool:
    """VOC flags are 0/1; VOC2012 omits <difficult> on some objects (read as 0)."""
    return bool(_field(node, tag, path, "flag", default="0"))


def read_annotation(path: Path) -> VOCAnnotation:
    """Parse one Annotations/<id>.xml (parts, actions and points are read past)."""
    if not path.is_file():
        raise DataError(f"annotation file missing: {path}")
    try:
        tree = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataError(f"{path} is not valid XML ({e}); re-extract the devkit") from None
    size = tree.find("size")
    if size is None:
        raise DataError(f"{path} has no <size> (a VOC annotation needs width and height)")
    width, height = (int(_field(size, t, path, "pixels")) for t in ("width", "height"))
    objects = []
    for obj in tree.findall("object"):
        bb = obj.find("bndbox")
        if bb is None:
            raise DataError(f"{path}: an <object> has no <bndbox>")
        box = tuple(_field(bb, t, path, "number") for t in ("xmin", "ymin", "xmax", "ymax"))
        if not (1 <= box[0] <= box[2] <= width and 1 <= box[1] <= box[3] <= height):
            raise DataError(f"{path}: box {box} of '{_text(obj, 'name', path)}' lies outside "
                            f"the {width}x{height} image (VOC boxes are 1-based, inclusive); "
                            f"fix or remove that object")
        objects.append(VOCObject(_text(obj, "name", path), box,  # type: ignore[arg-type]
                                 _flag(obj, "difficult", path), _flag(obj, "truncated", path)))
    image_id = Path(_text(tree, "filename", path, default=path.stem + ".jpg")).stem
    return VOCAnnotation(image_id, width, height, objects,
                         _flag(tree, "segmented", path))


def read_lines(path: Path) -> list[str]:
    """A devkit list's lines; bytes that are not UTF-8 name the file and line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line} is not UTF-8 text (byte 0x{data[e.start]:02x}); the "
                        f"devkit's lists are plain text: fix that line or re-extract the "
                        f"devkit") from None


def read_ids(path: Path) -> list[str]:
    """The ids of a split file; an empty one is refused here, before any training, rather
    than when the split is first measured."""
    if not path.is_file():
        raise DataError(f"split file missing: {path}")
    ids = [line.split()[0] for line in read_lines(path) if line.strip()]
    if not ids:
        raise DataError(f"{path} lists no images (expected one image id per line); fill it "
                        f"from the devkit, or delete it if that split is not used")
    return ids


def voc_classes(root: Path, split: str) -> list[str]:
    """The classes named by ImageSets/Main/<cls>_<split>.txt, sorted."""
    main = root / "ImageSets" / "Main"
    if not main.is_dir():
        raise DataError(f"missing folder {main} (the devkit's split lists)")
    names = sorted(m["cls"] for p in main.iterdir()
                   if (m := _CLASS_FILE.match(p.name)) and m["split"] == split)
    if not names:
        raise DataError(f"no per-class files <class>_{split}.txt in {main}; the devkit "
                        f"layout has one per class and split")
    return names


def class_labels(root: Path, split: str, classes: list[str], ids: list[str]) -> np.ndarray:
    """(N, C) int8 of 1 / -1 / 0 from the per-class files, rows in `ids` order."""
    row = {i: n for n, i in enumerate(ids)}
    out = np.full((len(ids), len(classes)), -1, dtype=np.int8)
    for c, name in enumerate(classes):
        path = root / "ImageSets" / "Main" / f"{name}_{split}.txt"
        if not path.is_file():
            raise DataError(f"per-class file missing: {path}")
        seen = 0
        for line in read_lines(path):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in ("1", "-1", "0") or parts[0] not in row:
                raise DataError(f"{path}: bad line '{line.strip()}' (expected '<id> 1|-1|0' "
                                f"with an id of ImageSets/Main/{split}.txt)")
            out[row[parts[0]], c] = int(parts[1])
            seen += 1
        if seen != len(ids):
            raise DataError(f"{path} lists {seen} images, {split}.txt lists {len(ids)}")
    return out


def check_classes(path: Path, annotation: VOCAnnotation, classes: list[str]) -> None:
    """Every object must be one of the classes the per-class files name."""
    for o in annotation.objects:
        if o.name not in classes:
            raise DataError(f"{path}: object '{o.name}' is not a class of the per-class files "
                            f"({', '.join(classes)}); fix its <name> or remove that object")


def check_files(root: Path, ids: list[str], folders: tuple[tuple[str, str], ...]) -> None:
    """Name the first missing file of a split before any work."""
    for folder, ext in folders:
        base = root / folder
        if not base.is_dir():
            raise DataError(f"missing folder {base} (VOC devkit layout)")
        present = {p.name for p in base.iterdir()}
        for i in ids:
            if f"{i}{ext}" not in present:
                raise DataError(f"{base / (i + ext)} missing (listed in the split file); "
                                f"re-extract the devkit or rebuild the set")


class _SplitImages:
    """The images of one split list, read on demand; a subclass says what comes with each
    (`target`). An unreadable image is an item of None (the loader skips and counts it)."""

    def __init__(self, root: Path, ids: list[str], transform: Callable | None) -> None:
        self.root, self.ids, self.transform = root, ids, transform

    def __len__(self) -> int:
        return len(self.ids)

    def image(self, i: int) -> Image.Image | None:
        return load_rgb(self.root / "JPEGImages" / f"{self.ids[i]}.jpg")

    def target(self, i: int):
        raise NotImplementedError

    def __getitem__(self, i: int):
        img = self.image(i)
        if img is None:
            return None
        if self.transform is not None:
            img = self.transform(img)
        return img, self.target(i)


class VOCClassification(_SplitImages):
    """Items (image, labels): labels an int8 tensor over the classes, 1 / -1 / 0 (difficult)."""

    def __init__(self, root: Path, split: str, transform: Callable | None = None) -> None:
        super().__init__(root, read_ids(root / "ImageSets" / "Main" / f"{split}.txt"), transform)
        self.classes = voc_classes(root, split)
        self.labels = class_labels(root, split, self.classes, self.ids)
        check_files(root, self.ids, (("JPEGImages", ".jpg"),))

    def target(self, i: int) -> torch.Tensor:
        import torch  # imported where used: the registry loads without torch

        return torch.from_numpy(self.labels[i])


class VOCDetection(_SplitImages):
    """Items (image, VOCAnnotation); the annotation's classes index into `classes`."""

    def __init__(self, root: Path, split: str, transform: Callable | None = None) -> None:
        super().__init__(root, read_ids(root / "ImageSets" / "Main" / f"{split}.txt"), transform)
        self.classes = voc_classes(root, split)
        check_files(root, self.ids, (("JPEGImages", ".jpg"), ("Annotations", ".xml")))
        self.annotations = []
        for i in self.ids:
            path = root / "Annotations" / f"{i}.xml"
            self.annotations.append(read_annotation(path))
            check_classes(path, self.annotations[-1], self.classes)

    def target(self, i: int) -> VOCAnnotation:
        return self.annotations[i]


class VOCSegmentation(_SplitImages):
    """Items (image, mask) with mask a (H, W) uint8 array: 0 background, c + 1 for class c,
    255 void. `transform(img, mask)` is joint (crops and flips must move both)."""

    def __init__(self, root: Path, split: str, transform: Callable | None = None) -> None:
        ids = read_ids(root / "ImageSets" / "Segmentation" / f"{split}.txt")
        super().__init__(root, ids, transform)
        self.classes = voc_classes(root, "trainval" if split != "test" else "test")
        check_files(root, self.ids, (("JPEGImages", ".jpg"), ("SegmentationClass", ".png")))

    def target(self, i: int) -> np.ndarray:
        return read_mask(self.root / "SegmentationClass" / f"{self.ids[i]}.png")

    def __getitem__(self, i: int):
        img = self.image(i)
        if img is None:
            return None
        mask = self.target(i)
        return self.transform(img, mask) if self.transform is not None else (img, mask)


def validate(root: Path, year: str | None = None) -> ValidationReport:
    """Counts per split and class (non-difficult images with the class), files checked."""
    root = find_devkit(root, year)
    main = root / "ImageSets" / "Main"
    splits: dict[str, int] = {}
    per_class: dict[str, dict[str, int]] = {}
    classes: list[str] = []
    parsed: set[str] = set()
    for split in ("train", "val", "trainval", "test"):
        if not (main / f"{split}.txt").is_file():
            continue
        ids = read_ids(main / f"{split}.txt")
        classes = voc_classes(root, split)
        labels = class_labels(root, split, classes, ids)
        check_files(root, ids, (("JPEGImages", ".jpg"), ("Annotations", ".xml")))
        for i in [i for i in ids if i not in parsed]:   # up front: a bad file fails here
            path = root / "Annotations" / f"{i}.xml"
            check_classes(path, read_annotation(path), classes)
        parsed.update(ids)
        splits[split] = len(ids)
        per_class[split] = {c: int((labels[:, k] == 1).sum()) for k, c in enumerate(classes)}
    if not splits:
        raise DataError(f"{main} holds none of train.txt, val.txt, trainval.txt, test.txt")
    notes = []
    seg = root / "ImageSets" / "Segmentation"
    masked: set[str] = set()
    for split in ("train", "val", "trainval", "test"):
        if (seg / f"{split}.txt").is_file():
            ids = read_ids(seg / f"{split}.txt")
            check_files(root, ids, (("JPEGImages", ".jpg"), ("SegmentationClass", ".png")))
            check_masks(root, [i for i in ids if i not in masked], len(classes))
            masked.update(ids)
            notes.append(f"segmentation {split}: {len(ids)} images")
    return ValidationReport(root.name, root, splits, classes, per_class, notes)


KINDS: dict[str, type[_SplitImages]] = {"cls": VOCClassification, "det": VOCDetection,
                                        "seg": VOCSegmentation}
VOC_YEARS: dict[str, str | None] = {}


def build_voc(name: str, kind: str, split: str, transform: Callable | None,
              data_root: str | None = None) -> _SplitImages:
    """A registered VOC set's split as classification, detection or segmentation items
    (the registry's own `build_dataset` gives the classification view); validated first."""
    spec = get_dataset_spec(name)
    if name not in VOC_YEARS:
        raise DataError(f"dataset '{name}' is not a VOC devkit set; VOC sets: "
                        f"{', '.join(sorted(VOC_YEARS))}")
    if split not in spec.splits:
        raise DataError(f"dataset '{name}' has no split '{split}'; "
                        f"splits: {', '.join(spec.splits)}")
    path = ensure_root(name, None, data_root)
    spec.validate(path)
    return KINDS[kind](find_devkit(path, VOC_YEARS[name]), split, transform)


def _build(kind: type[Dataset], year: str | None) -> Callable[..., Dataset]:
    return lambda root, split, transform: kind(find_devkit(root, year), split, transform)


# this module's datasets, registered by dcbench/data/catalog.py
SPECS: list[DatasetSpec] = []


def _register(name: str, year: str | None, description: str,
              check: Callable[[Path], None] | None = None, **kw) -> None:
    def check_then_validate(root: Path) -> ValidationReport:
        if check is not None:
            check(root)
        return validate(root, year)

    splits = ("trainval", "test", "train", "val")
    VOC_YEARS[name] = year
    SPECS.append(DatasetSpec(
        name=name, description=description, splits=splits, labelled=True,
        validate=check_then_validate, build=_build(VOCClassification, year), **kw))


_register("voc2007", "2007", "PASCAL VOC 2007 devkit (JPEGImages, Annotations, ImageSets, "
          "SegmentationClass)", size="large", native=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
_register("voc2012", "2012", "PASCAL VOC 2012 devkit (JPEGImages, Annotations, ImageSets, "
          "SegmentationClass)", size="large", native=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def _fmnist_voc(quick: bool) -> Callable[[Path], Path]:
    def build(target: Path) -> Path:
        from dcbench.data.embedded.voc_builder import build_fmnist_voc

        return build_fmnist_voc(target, quick=quick)
    return build


def _current_build(root: Path) -> None:
    from dcbench.data.embedded.voc_builder import check_current

    check_current(root)


# The embedded set (dcbench/data/embedded/voc_builder.py): built on first use under the cache folder
# (or <data-root>/fmnist-voc); Fashion-MNIST's statistics, as its trunks were trained on them.
for _name, _quick in (("fmnist-voc", False), ("fmnist-voc-quick", True)):
    _register(_name, None, "embedded VOC-layout scenes of Fashion-MNIST items (built on first "
              "use: dcbench data build fmnist-voc" + (" --quick)" if _quick else ")"),
              size="small", native=96, mean=(fashion_mnist.MEAN,) * 3,
              std=(fashion_mnist.STD,) * 3,
              builder=_fmnist_voc(_quick), check=_current_build,
              quick_variant=None if _quick else "fmnist-voc-quick")
