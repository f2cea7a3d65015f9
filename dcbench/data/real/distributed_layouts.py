"""ImageNet and Places205 in the layouts their users download, beside the class-folder layout.

- Places205 as distributed: images under `<root>/data/vision/torralba/deeplearning/images256/`,
  splits in `<root>/trainvalsplit_places205/{train,val}_places205.csv`, one "relative/path
  label" per line (space-separated, label 0..204). Class names are read from the paths
  (`a/abbey/x.jpg` -> `abbey`; `b/bedroom/indoor/x.jpg` -> `bedroom/indoor`).
- ImageNet with its 50,000 validation images flat in `<root>/val/` (ILSVRC2012_val_*.JPEG, as
  the archive unpacks) and the labels from the devkit, parsed by torchvision's own code:
  `<root>/meta.bin` (torchvision.datasets.ImageNet writes it), or, when only
  `ILSVRC2012_devkit_t12.tar.gz` is there, torchvision's parse_devkit_archive (md5-checked)
  writes it first. The training split stays `<root>/train/<wnid>/`.

`layout_of(root)` says which layout a root holds; class_folder_sets.py dispatches on it, so the
probes, `data validate` and every task read all of them alike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dcbench.data.real.image_folder import IMG_EXTENSIONS, ListedImages, scan_split
from dcbench.data.registry import ValidationReport
from dcbench.errors import DataError

if TYPE_CHECKING:
    from torch.utils.data import Dataset

PLACES_IMAGES = Path("data/vision/torralba/deeplearning/images256")
PLACES_SPLITS = Path("trainvalsplit_places205")
DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"


def layout_of(name: str, root: Path) -> str:
    """'places205-csv', 'imagenet-devkit' or 'class-folders'."""
    if name == "places205" and (root / PLACES_SPLITS).is_dir():
        return "places205-csv"
    val = root / "val"
    if name == "imagenet" and val.is_dir() and any(
            p.suffix.lower() in IMG_EXTENSIONS for p in _first(val, 50)):
        return "imagenet-devkit"
    return "class-folders"


def _first(folder: Path, n: int) -> list[Path]:
    out = []
    for p in folder.iterdir():
        if p.is_file():
            out.append(p)
            if len(out) >= n:
                break
    return out


# -- Places205 ---------------------------------------------------------------------------------
def places_split(root: Path, split: str) -> tuple[list[str], list[tuple[str, int]]]:
    """(class names by label, (path, label) pairs) of one CSV split."""
    csv = root / PLACES_SPLITS / f"{split}_places205.csv"
    images = root / PLACES_IMAGES
    if not csv.is_file():
        raise DataError(f"missing {csv} (Places205's trainvalsplit_places205/"
                        f"{split}_places205.csv: 'relative/path label' per line)")
    if not images.is_dir():
        raise DataError(f"missing folder {images} (Places205's images256 tree)")
    samples, names = [], {}
    for n, line in enumerate(csv.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{csv}:{n}: expected 'relative/path label', got '{line[:80]}'")
        rel, label = parts[0], int(parts[1])
        names.setdefault(label, "/".join(Path(rel).parts[1:-1]) or Path(rel).parent.name)
        samples.append((str(images / rel), label))
    if not samples:
        raise DataError(f"{csv} lists no images")
    k = max(names) + 1
    if sorted(names) != list(range(k)):
        raise DataError(f"{csv}: labels are not 0..{k - 1} ({k - len(names)} missing)")
    missing = [p for p, _ in samples[:20] if not Path(p).is_file()]
    if missing:
        raise DataError(f"{csv} lists {missing[0]}, which does not exist; is --root the folder "
                        f"holding data/ and trainvalsplit_places205/?")
    return [names[i] for i in range(k)], samples


# -- ImageNet with a flat val/ ---------------------------------------------------------------
def imagenet_val(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """(wnids sorted, (path, label) pairs) of a flat val/ labelled by the devkit."""
    from torchvision.datasets.imagenet import META_FILE, load_meta_file, parse_devkit_archive

    if not (root / META_FILE).is_file():
        if not (root / DEVKIT).is_file():
            raise DataError(f"{root / 'val'} holds images without class folders: their labels "
                            f"come from the devkit; put {DEVKIT} (or torchvision's "
                            f"{META_FILE}) in {root}")
        parse_devkit_archive(str(root))          # torchvision: md5-checked, writes meta.bin
    wnid_to_classes, val_wnids = load_meta_file(str(root))
    wnids = sorted(wnid_to_classes)
    index = {w: i for i, w in enumerate(wnids)}
    files = sorted(p for p in (root / "val").iterdir()
                   if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if len(files) != len(val_wnids):
        raise DataError(f"{root / 'val'} holds {len(files)} images but the devkit labels "
                        f"{len(val_wnids)}; the folder is incomplete")
    return wnids, [(str(p), index[w]) for p, w in zip(files, val_wnids)]


def build(name: str, root: Path, split: str, transform: Callable | None) -> Dataset:
    layout = layout_of(name, root)
    if layout == "places205-csv":
        classes, samples = places_split(root, split)
    else:                       # imagenet-devkit: train keeps its class folders
        classes, samples = (imagenet_val(root) if split == "val" else scan_split(root / split))
    return ListedImages(samples, classes, transform)


def validate(name: str, root: Path, splits: tuple[str, ...]) -> ValidationReport:
    counts, per_class, classes = {}, {}, []
    for split in splits:
        data = build(name, root, split, None)
        if classes and data.classes != classes:
            raise DataError(f"{name} at {root}: the {split} split has {len(data.classes)} "
                            f"classes, the {splits[0]} split {len(classes)}")
        classes = data.classes
        counts[split] = len(data)
        tally = [0] * len(classes)
        for t in data.targets:
            tally[t] += 1
        per_class[split] = dict(zip(classes, tally))
    return ValidationReport(name, root, counts, classes, per_class,
                            notes=[f"layout: {layout_of(name, root)}"])
