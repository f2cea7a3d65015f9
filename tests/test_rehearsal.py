"""The real-size rehearsal trees (dcbench/rehearsal/): each is read by dcbench's loader for the
real data set, at the real size; and the issue-31 recipe: VOC2012 segmentation at VOC size
trains and is recorded in both settings for a random and a released-format AlexNet."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcbench.checkpoint import load_trunk
from dcbench.data import build_dataset, validate_dataset
from dcbench.data.voc.devkit import read_annotation
from dcbench.data.voc.masks import VOID, read_mask
from dcbench.rehearsal.class_trees import build_imagenet_tree, build_places_tree
from dcbench.rehearsal.released_files import write_released
from dcbench.rehearsal.retrieval_tree import upscale_retrieval_tree
from dcbench.rehearsal.voc_tree import VOC_CLASSES, build_voc_size_tree


def test_voc_size_tree_has_voc_sizes_classes_boxes_and_void_outlines(fmnist_root: Path,
                                                                      tmp_path: Path) -> None:
    root = build_voc_size_tree(tmp_path / "voc2012", fmnist_root, {"train": 3, "val": 2})
    report = validate_dataset("voc2012", root=root)      # parses every XML and mask
    assert report.splits == {"train": 3, "val": 2, "trainval": 5}
    assert tuple(report.classes) == VOC_CLASSES
    for sid in (root / "ImageSets/Segmentation/trainval.txt").read_text().split():
        w, h = Image.open(root / "JPEGImages" / f"{sid}.jpg").size
        assert max(w, h) == 500 and 350 <= min(w, h) <= 500
        mask = read_mask(root / "SegmentationClass" / f"{sid}.png")
        ann = read_annotation(root / "Annotations" / f"{sid}.xml")
        assert mask.shape == (h, w) and (mask == VOID).any()
        for o in ann.objects:
            x1, y1, x2, y2 = (int(v) for v in o.box)
            assert 1 <= x1 < x2 <= w and 1 <= y1 < y2 <= h
            inside = mask[y1 - 1:y2, x1 - 1:x2]          # 1-based inclusive box
            assert (inside == VOC_CLASSES.index(o.name) + 1).any()


def test_imagenet_and_places_trees_read_as_distributed(fmnist_root: Path,
                                                       tmp_path: Path) -> None:
    imagenet = build_imagenet_tree(tmp_path / "imagenet", fmnist_root, 23, 7, classes=11)
    report = validate_dataset("imagenet", root=imagenet)
    assert report.splits == {"train": 23, "val": 7} and "layout: imagenet-devkit" in report.notes
    train = build_dataset("imagenet", "train", None, root=imagenet)
    assert len(train.classes) == 11 and sorted(report.per_class["train"].values()) == [2] * 10 + [3]
    w, h = train[0][0].size
    assert 400 <= max(w, h) <= 500 and 300 <= min(w, h) <= 400
    places = build_places_tree(tmp_path / "places205", fmnist_root, 10, 5, classes=5)
    report = validate_dataset("places205", root=places)
    assert report.splits == {"train": 10, "val": 5} and "layout: places205-csv" in report.notes
    assert build_dataset("places205", "val", None, root=places)[0][0].size == (256, 256)


def test_retrieval_tree_scales_images_to_1024_and_each_box_with_its_image(
        fmnist_root: Path, tmp_path: Path) -> None:
    from dcbench.data.embedded.retrieval_builder import build_fmnist_retrieval

    src = build_fmnist_retrieval(tmp_path / "src", "fmnist-oxford", fmnist_root, quick=True,
                                 show_progress=False)
    out = upscale_retrieval_tree(src, tmp_path / "oxford5k", "oxford5k")
    query = next((src / "gt").glob("*_query.txt"))
    name, *box = query.read_text().split()
    image = name.removeprefix("oxc1_")
    before = Image.open(src / "jpg" / f"{image}.jpg").size
    after = Image.open(out / "jpg" / f"{image}.jpg").size
    factor = 1024 / max(before)
    assert max(after) == 1024
    scaled = [float(v) for v in (out / "gt" / query.name).read_text().split()[1:]]
    assert scaled == pytest.approx([float(v) * factor for v in box], abs=0.051)
    with open(out / "gnd_roxford5k.pkl", "rb") as f:
        gnd = pickle.load(f)
    q = gnd["qimlist"].index(image)
    assert gnd["gnd"][q]["bbx"] == pytest.approx([float(v) * factor for v in box], abs=1e-6)
    assert validate_dataset("oxford5k", root=out).splits


def test_released_format_files_load_as_released_files(tmp_path: Path) -> None:
    """AlexNet's file (VGG16's differs only by keeping 'features.': 550 MB to write)."""
    import torch

    arch, prefix = "alexnet", "features.module.0.weight"
    path = write_released(arch, tmp_path / arch / "checkpoint.pth.tar", k=11)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"arch", "epoch", "state_dict"} and prefix in raw["state_dict"]
    assert not any(k.endswith("num_batches_tracked") for k in raw["state_dict"])
    trunk, info = load_trunk(str(path))
    assert (info.format, info.arch, info.sobel, info.k) == ("deepcluster", arch, True, 11)


@pytest.mark.slow
def test_voc2012_segmentation_at_voc_size_records_both_settings_for_both_trunks(
        fmnist_root: Path, tmp_path: Path) -> None:
    """Issue 31's report: at VOC size the FCN recipe went to NaN in a few steps for a random
    alexnet and a released-format file, and a failed ALL lost the finished FC6-8. Here both
    trunks train both settings at the recipe's lr and both are recorded with a finite mIoU."""
    from dcbench.evaluate import run_eval
    from dcbench.results import read_records

    build_voc_size_tree(tmp_path / "data" / "voc2012", fmnist_root, {"train": 5, "val": 1},
                        seed=3)
    released = write_released("alexnet", tmp_path / "alexnet" / "checkpoint.pth.tar", k=37)
    for ckpt in ("random:alexnet", str(released)):
        run_eval({"task": "voc-seg", "ckpt": ckpt, "data_root": str(tmp_path / "data"),
                  "results": str(tmp_path / "results"),
                  "overrides": ("dataset=voc2012", "iterations=5", "evals=1")})
    records = read_records(tmp_path / "results" / "records.jsonl")
    miou = {(r["checkpoint"]["format"], r["setting"]): r for r in records
            if r["metric"] == "miou"}
    assert set(miou) == {(f, s) for f in ("random", "deepcluster") for s in ("fc6-8", "all")}
    for r in miou.values():
        assert math.isfinite(r["value"]) and r["config"]["lr"] == 1e-4
        losses = [p["train_loss"] for p in r["extra"]["curve"]]
        assert all(np.isfinite(losses))
        assert r["extra"]["n_train"] == 5 and r["extra"]["n_test"] == 1
