"""ImageNet and Places205 in the layouts they are distributed in (a flat val/ folder labelled
by the devkit; Places205's images256/ tree with its CSV splits), on tiny trees built here."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcbench.data import (
    build_dataset,
    validate_dataset,
)
from dcbench.errors import DataError


def _places_as_distributed(src: Path, dst: Path) -> dict[str, list[tuple[str, int]]]:
    """The tiny class folders rewritten as Places205 ships: images256/<letter>/<class>/ and
    trainvalsplit_places205/{train,val}_places205.csv ("relative/path label")."""
    images = dst / "data/vision/torralba/deeplearning/images256"
    classes = sorted(p.name for p in (src / "train").iterdir())
    rows: dict[str, list[tuple[str, int]]] = {}
    for split in ("train", "val"):
        rows[split] = []
        for label, c in enumerate(classes):
            for f in sorted((src / split / c).iterdir()):
                rel = f"{c[0].lower()}/{c.lower()}/{split}_{f.name}"
                (images / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, images / rel)
                rows[split].append((rel, label))
        csv = dst / "trainvalsplit_places205" / f"{split}_places205.csv"
        csv.parent.mkdir(parents=True, exist_ok=True)
        csv.write_text("".join(f"{r} {lab}\n" for r, lab in rows[split][::-1]))  # any order
    return rows


def test_places205_in_its_distributed_layout(tiny_image_folder: Path, tmp_path: Path,
                                              tiny_sizes) -> None:
    root = tmp_path / "places205"
    rows = _places_as_distributed(tiny_image_folder, root)
    report = validate_dataset("places205", root=root)
    assert report.splits == {"train": 10 * tiny_sizes.train_per_class,
                             "val": 10 * tiny_sizes.val_per_class}
    assert "layout: places205-csv" in report.notes
    val = build_dataset("places205", "val", None, root=root)
    assert val.classes[0] == "ankle_boot" and len(val.classes) == 10
    rel, label = rows["val"][-1]                      # the CSV's first line
    img, target = val[0]
    assert target == label and np.array_equal(
        np.asarray(img), np.asarray(Image.open(root / "data/vision/torralba/deeplearning"
                                               "/images256" / rel).convert("RGB")))
    (root / "trainvalsplit_places205" / "val_places205.csv").write_text("a/x.jpg five\n")
    with pytest.raises(DataError, match=r"val_places205.csv:1: expected 'relative/path label'"):
        validate_dataset("places205", root=root)


def test_imagenet_with_a_flat_val_folder_and_the_devkit_labels(tiny_image_folder: Path,
                                                               tmp_path: Path) -> None:
    """val/ as the archive unpacks (ILSVRC2012_val_*.JPEG, no class folders), labelled by
    torchvision's meta.bin (what its parse_devkit_archive writes from the devkit)."""
    root = tmp_path / "imagenet"
    shutil.copytree(tiny_image_folder / "train", root / "train")
    wnids = sorted(p.name for p in (root / "train").iterdir())
    flat, val_wnids = root / "val", []
    flat.mkdir()
    pairs = [(w, f) for w in wnids for f in sorted((tiny_image_folder / "val" / w).iterdir())]
    order = np.random.default_rng(0).permutation(len(pairs))   # the devkit's order is not by class
    for i, j in enumerate(order, 1):
        w, f = pairs[j]
        shutil.copy(f, flat / f"ILSVRC2012_val_{i:08d}.png")
        val_wnids.append(w)
    with pytest.raises(DataError, match="put ILSVRC2012_devkit_t12.tar.gz"):
        validate_dataset("imagenet", root=root)
    torch.save(({w: (w.lower(),) for w in wnids}, val_wnids), root / "meta.bin")
    report = validate_dataset("imagenet", root=root)
    assert report.splits == {"train": 30, "val": 20} and "layout: imagenet-devkit" in report.notes
    val = build_dataset("imagenet", "val", None, root=root)
    for i in (0, 7, 19):
        img, target = val[i]
        w, f = pairs[order[i]]
        assert wnids[target] == w
        assert np.array_equal(np.asarray(img), np.asarray(Image.open(f).convert("RGB")))
    (flat / "ILSVRC2012_val_00000020.png").unlink()
    with pytest.raises(DataError, match="holds 19 images but the devkit labels 20"):
        build_dataset("imagenet", "val", None, root=root)
