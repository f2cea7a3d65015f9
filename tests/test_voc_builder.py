"""fmnist-voc: the builder writes the VOC devkit layout exactly, reproducibly, and with
annotations that agree with the masks (the VOC loader's benchmarks trust all three)."""

from __future__ import annotations

import hashlib
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcbench.data.embedded import voc_builder
from dcbench.data.embedded.voc_builder import SIZES, build_fmnist_voc
from dcbench.data.embedded.voc_scenes import FMNIST_VOC_CLASSES, SIDES
from dcbench.errors import DataError

FMNIST = Path("/usr/share/datasets/fashion-mnist")
QUICK = SIZES["quick"]
N_QUICK = sum(QUICK.values())


@pytest.fixture(scope="module")
def quick_voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quick build (seed 0) shared by the module: tests must not modify it."""
    return build_fmnist_voc(tmp_path_factory.mktemp("voc") / "fmnist-voc", FMNIST, quick=True,
                            show_progress=False)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _ids(root: Path, split: str, kind: str = "Main") -> list[str]:
    return (root / "ImageSets" / kind / f"{split}.txt").read_text().split()


def _objects(root: Path, sid: str) -> list[dict]:
    out = []
    for o in ET.parse(root / "Annotations" / f"{sid}.xml").getroot().findall("object"):
        bb = o.find("bndbox")
        out.append({"name": o.findtext("name"), "difficult": int(o.findtext("difficult")),
                    "truncated": int(o.findtext("truncated")),
                    "box": tuple(int(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))})
    return out


def _all_ids(root: Path) -> list[str]:
    return _ids(root, "trainval") + _ids(root, "test")


def test_same_seed_same_bytes_other_seed_differs(quick_voc: Path, tmp_path: Path) -> None:
    first = _hashes(quick_voc)
    again = _hashes(build_fmnist_voc(tmp_path / "a", FMNIST, quick=True, show_progress=False))
    assert again == first
    # 192 JPEGs + 192 XMLs + 2 x 192 PNGs + 4 + 4 + 40 lists + BUILD_INFO + DIGESTS
    assert len(first) == 4 * N_QUICK + 4 + 4 + 40 + 2
    other = _hashes(build_fmnist_voc(tmp_path / "b", FMNIST, quick=True, seed=1,
                                     show_progress=False))
    jpgs = [k for k in first if k.endswith(".jpg")]
    assert len(jpgs) == N_QUICK
    assert sum(first[k] == other[k] for k in jpgs) == 0
    assert json.loads((tmp_path / "b" / "BUILD_INFO.json").read_text())["seed"] == 1
    # nothing left behind next to the builds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_split_lists(quick_voc: Path) -> None:
    train, val, test = (_ids(quick_voc, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (QUICK["train"], QUICK["val"], QUICK["test"])
    assert _ids(quick_voc, "trainval") == train + val
    # train first, then val, then test: 000001..000192 with no gaps and no overlap
    assert train + val + test == [f"{i:06d}" for i in range(1, N_QUICK + 1)]
    for split in ("train", "val", "trainval", "test"):
        assert _ids(quick_voc, split, "Segmentation") == _ids(quick_voc, split)
    assert sorted(p.stem for p in (quick_voc / "JPEGImages").iterdir()) == _all_ids(quick_voc)


def test_build_info(quick_voc: Path) -> None:
    info = json.loads((quick_voc / "BUILD_INFO.json").read_text())
    assert info == {"name": "fmnist-voc", "seed": 0, "quick": True, "sizes": QUICK,
                    "classes": FMNIST_VOC_CLASSES, "builder_version": 3}
    assert all(re.fullmatch(r"[a-z]+", c) for c in FMNIST_VOC_CLASSES)


def test_xml_and_image_sizes(quick_voc: Path) -> None:
    palette = None
    shapes = set()
    for sid in _all_ids(quick_voc):
        root = ET.parse(quick_voc / "Annotations" / f"{sid}.xml").getroot()
        assert root.findtext("filename") == f"{sid}.jpg"
        assert root.findtext("folder") == "fmnist-voc"
        assert root.findtext("segmented") == "1"
        size = (int(root.findtext("size/width")), int(root.findtext("size/height")))
        assert root.findtext("size/depth") == "3"
        with Image.open(quick_voc / "JPEGImages" / f"{sid}.jpg") as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", size)
        for kind in ("SegmentationClass", "SegmentationObject"):
            with Image.open(quick_voc / kind / f"{sid}.png") as im:
                assert (im.format, im.mode, im.size) == ("PNG", "P", size)
                palette = im.getpalette()
        shapes.add(size)
        for o in _objects(quick_voc, sid):
            x0, y0, x1, y1 = o["box"]
            assert 1 <= x0 <= x1 <= size[0] and 1 <= y0 <= y1 <= size[1]
            assert o["name"] in FMNIST_VOC_CLASSES
    assert {w for w, _ in shapes} == set(SIDES) and any(w != h for w, h in shapes)
    # the VOC colour map
    rgb = [tuple(palette[3 * i:3 * i + 3]) for i in (0, 1, 2, 3, 15, 255)]
    assert rgb == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (192, 128, 128),
                   (224, 224, 192)]


def test_boxes_and_masks_agree(quick_voc: Path) -> None:
    n_objects = 0
    for sid in _all_ids(quick_voc):
        objs = _objects(quick_voc, sid)
        cls = np.array(Image.open(quick_voc / "SegmentationClass" / f"{sid}.png"))
        obj = np.array(Image.open(quick_voc / "SegmentationObject" / f"{sid}.png"))
        assert 0 <= len(objs) <= 4
        assert set(np.unique(obj)) <= {0, 255, *range(1, len(objs) + 1)}
        for k, o in enumerate(objs, 1):
            ys, xs = np.nonzero(obj == k)
            assert len(ys), f"{sid}: object {k} has no pixels"
            assert (xs.min() + 1, ys.min() + 1, xs.max() + 1, ys.max() + 1) == o["box"], sid
            # the loader numbers classes in sorted order (as VOC): mask value = that + 1
            assert (cls[obj == k] == sorted(FMNIST_VOC_CLASSES).index(o["name"]) + 1).all()
            if len(ys) < 120:
                assert o["difficult"] == 1, f"{sid}: {len(ys)} pixels but not difficult"
        # background and void are the same pixels in both masks
        assert ((cls == 0) == (obj == 0)).all() and ((cls == 255) == (obj == 255)).all()
        void = obj == 255
        labelled = (obj > 0) & ~void
        assert void.any() == bool(objs)
        # every void pixel touches an object pixel (a band on the boundaries, not noise)
        pad = np.pad(labelled, 1)
        h, w = obj.shape
        near = np.zeros_like(labelled)
        for dy in range(3):
            for dx in range(3):
                near |= pad[dy:dy + h, dx:dx + w]
        assert (near[void]).all()
        n_objects += len(objs)
    assert n_objects > N_QUICK          # 1-4 items per scene, about 2.2 on average


def test_per_class_files_follow_annotations(quick_voc: Path) -> None:
    zeros = 0
    difficult = 0
    for split in ("train", "val", "trainval", "test"):
        ids = _ids(quick_voc, split)
        objs = {sid: _objects(quick_voc, sid) for sid in ids}
        difficult += sum(o["difficult"] for v in objs.values() for o in v)
        for cname in FMNIST_VOC_CLASSES:
            text = (quick_voc / "ImageSets" / "Main" / f"{cname}_{split}.txt").read_text()
            lines = text.splitlines()
            assert all(re.fullmatch(r"\d{6} (-1| 0| 1)", ln) for ln in lines)
            want = []
            for sid in ids:
                flags = [o["difficult"] for o in objs[sid] if o["name"] == cname]
                label = -1 if not flags else (0 if all(flags) else 1)
                want.append(f"{sid} {label:2d}")
            assert lines == want
            zeros += sum(ln.endswith(" 0") for ln in lines)
    assert difficult > 0 and zeros > 0      # the 0 ("difficult only") case is exercised


def test_items_vary_independently_of_class(quick_voc: Path) -> None:
    """Every class occurs in every split, at small and large sizes, truncated or not."""
    seen: dict[str, set] = {c: set() for c in FMNIST_VOC_CLASSES}
    for split in ("train", "val", "test"):
        names = [o["name"] for sid in _ids(quick_voc, split) for o in _objects(quick_voc, sid)]
        assert set(names) == set(FMNIST_VOC_CLASSES), split
    for sid in _all_ids(quick_voc):
        for o in _objects(quick_voc, sid):
            x0, y0, x1, y1 = o["box"]
            seen[o["name"]].add(("big" if max(x1 - x0, y1 - y0) >= 36 else "small",
                                 o["truncated"]))
    assert sum(len(s) >= 3 for s in seen.values()) >= 8


def test_pools_follow_the_source_splits() -> None:
    pools = voc_builder._pools(FMNIST, 0)
    assert [len(pools[s].labels) for s in ("train", "val", "test")] == [30000, 30000, 10000]
    # train and val halves are disjoint and together are the whole train file
    both = np.concatenate([pools["train"].images, pools["val"].images]).reshape(60000, -1)
    assert len(np.unique(both, axis=0)) > 59000   # (Fashion-MNIST holds a few duplicates)
    assert np.bincount(pools["test"].labels).tolist() == [1000] * 10


def test_existing_folders(quick_voc: Path, tmp_path: Path) -> None:
    stamp = (quick_voc / "BUILD_INFO.json").stat().st_mtime_ns
    assert build_fmnist_voc(quick_voc, FMNIST, quick=True, show_progress=False) == quick_voc
    assert (quick_voc / "BUILD_INFO.json").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="remove it"):
        build_fmnist_voc(quick_voc, FMNIST, quick=True, seed=3, show_progress=False)
    half = tmp_path / "half"
    (half / "JPEGImages").mkdir(parents=True)
    with pytest.raises(DataError, match="not a complete fmnist-voc build"):
        build_fmnist_voc(half, FMNIST, quick=True, show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half"]


def test_interrupted_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = voc_builder.make_scene
    calls = []

    def flaky(rng, pool):
        calls.append(1)
        if len(calls) == 50:
            raise KeyboardInterrupt
        return real(rng, pool)

    monkeypatch.setattr(voc_builder, "make_scene", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_fmnist_voc(tmp_path / "voc", FMNIST, quick=True, show_progress=False)
    assert len(calls) == 50
    assert list(tmp_path.iterdir()) == []
