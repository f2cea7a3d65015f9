"""The VOC devkit loader on a hand-written devkit tree: the files as the devkit distributes
them (VOC2007 XML with parts and pose, a VOC2012-style float box and a missing <difficult>,
per-class files with 1 / -1 / 0), and the errors for what is missing or wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcbench.data import build_dataset, validate_dataset
from dcbench.data.loader import collate_skipping
from dcbench.data.voc.devkit import (
    VOCClassification,
    VOCDetection,
    VOCSegmentation,
    find_devkit,
    read_annotation,
)
from dcbench.errors import DataError

XML_000001 = """<annotation>
\t<folder>VOC2007</folder>
\t<filename>000001.jpg</filename>
\t<source><database>The VOC2007 Database</database><annotation>PASCAL VOC2007</annotation>
\t\t<image>flickr</image><flickrid>341012865</flickrid></source>
\t<owner><flickrid>Fried Camels</flickrid><name>Jinky the Fruit Bat</name></owner>
\t<size><width>40</width><height>30</height><depth>3</depth></size>
\t<segmented>1</segmented>
\t<object><name>dog</name><pose>Left</pose><truncated>1</truncated><difficult>0</difficult>
\t\t<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>20</xmax><ymax>30</ymax></bndbox></object>
\t<object><name>person</name><pose>Left</pose><truncated>0</truncated><difficult>1</difficult>
\t\t<bndbox><xmin>30</xmin><ymin>5</ymin><xmax>40</xmax><ymax>25</ymax></bndbox>
\t\t<part><name>head</name><bndbox><xmin>31</xmin><ymin>5</ymin><xmax>35</xmax><ymax>9</ymax>
\t\t</bndbox></part></object>
</annotation>
"""
# VOC2012 style: float coordinates, no <difficult>, an <actions> block
XML_000002 = """<annotation><filename>000002.jpg</filename><folder>VOC2012</folder>
<size><width>40</width><height>30</height><depth>3</depth></size><segmented>0</segmented>
<object><name>person</name><actions><other>1</other></actions>
<bndbox><xmin>2.0</xmin><ymin>3.5</ymin><xmax>12.0</xmax><ymax>20.0</ymax></bndbox></object>
</annotation>"""
# an image with no object
XML_000003 = """<annotation><filename>000003.jpg</filename>
<size><width>40</width><height>30</height><depth>3</depth></size><segmented>0</segmented>
</annotation>"""

# class -> {id: label}; 000001 has a dog and only a difficult person -> person 0
LABELS = {"dog": {"000001": 1, "000002": -1, "000003": -1},
          "person": {"000001": 0, "000002": 1, "000003": -1}}


def write_devkit(base: Path) -> Path:
    root = base / "VOCdevkit" / "VOC2007"
    for d in ("JPEGImages", "Annotations", "ImageSets/Main", "ImageSets/Segmentation",
              "SegmentationClass"):
        (root / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, xml in (("000001", XML_000001), ("000002", XML_000002), ("000003", XML_000003)):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(
            root / "JPEGImages" / f"{i}.jpg")
        (root / "Annotations" / f"{i}.xml").write_text(xml)
    (root / "ImageSets/Main/trainval.txt").write_text("000001\n000002\n000003\n")
    for cls, rows in LABELS.items():
        (root / f"ImageSets/Main/{cls}_trainval.txt").write_text(
            "".join(f"{i} {v:2d}\n" for i, v in rows.items()))
    (root / "ImageSets/Segmentation/trainval.txt").write_text("000001\n")
    mask = np.zeros((30, 40), np.uint8)
    mask[2:30, 0:20] = 1
    mask[1, 0:20] = 255
    png = Image.fromarray(mask, mode="L").convert("P")
    png.save(root / "SegmentationClass" / "000001.png")
    return base


def test_annotation_fields_as_the_devkit_writes_them(tmp_path: Path) -> None:
    root = find_devkit(write_devkit(tmp_path), "2007")
    a = read_annotation(root / "Annotations" / "000001.xml")
    assert (a.image_id, a.width, a.height, a.segmented) == ("000001", 40, 30, True)
    assert [(o.name, o.box, o.difficult, o.truncated) for o in a.objects] == [
        ("dog", (1.0, 2.0, 20.0, 30.0), False, True),
        ("person", (30.0, 5.0, 40.0, 25.0), True, False)]    # the part's box is not an object
    b = read_annotation(root / "Annotations" / "000002.xml")
    assert [(o.name, o.box, o.difficult) for o in b.objects] == [
        ("person", (2.0, 3.5, 12.0, 20.0), False)]
    assert read_annotation(root / "Annotations" / "000003.xml").objects == []


def test_classification_labels_from_the_per_class_files(tmp_path: Path) -> None:
    ds = build_dataset("voc2007", "trainval", None, root=write_devkit(tmp_path))
    assert isinstance(ds, VOCClassification)
    assert ds.classes == ["dog", "person"]          # any class list the files name
    assert ds.labels.tolist() == [[1, 0], [-1, 1], [-1, -1]]
    img, labels = ds[0]
    assert img.size == (40, 30) and labels.tolist() == [1, 0]
    batch = collate_skipping([(torch.zeros(1), ds[0][1], 0), (torch.zeros(1), ds[1][1], 1)])
    assert batch[1].tolist() == [[1, 0], [-1, 1]]    # multi-labels stack into (B, C)


def test_detection_and_segmentation_items(tmp_path: Path) -> None:
    root = find_devkit(write_devkit(tmp_path), "2007")
    det = VOCDetection(root, "trainval")
    assert [len(det[i][1].objects) for i in range(3)] == [2, 1, 0]
    seg = VOCSegmentation(root, "trainval")
    img, mask = seg[0]
    assert mask.shape == (30, 40) and sorted(np.unique(mask).tolist()) == [0, 1, 255]


def test_validate_counts_non_difficult_images_per_class(tmp_path: Path) -> None:
    report = validate_dataset("voc2007", root=write_devkit(tmp_path))
    assert report.splits == {"trainval": 3}
    assert report.per_class["trainval"] == {"dog": 1, "person": 1}
    assert report.notes == ["segmentation trainval: 1 images"]


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "Annotations" / "000002.xml").unlink(), "Annotations/000002.xml missing"),
    (lambda r: (r / "JPEGImages" / "000003.jpg").unlink(), "JPEGImages/000003.jpg missing"),
    (lambda r: (r / "ImageSets/Main/person_trainval.txt").write_text("000001  0\n"),
     "person_trainval.txt lists 1 images, trainval.txt lists 3"),
    (lambda r: (r / "ImageSets/Main/dog_trainval.txt").write_text("000001 2\n"),
     "bad line '000001 2'"),
    (lambda r: (r / "Annotations" / "000001.xml").write_text(
        XML_000001.replace("<xmax>40</xmax>", "<xmax>41</xmax>")), "lies outside the 40x30"),
    (lambda r: (r / "Annotations" / "000003.xml").write_text("<annotation>"), "not valid XML"),
])
def test_broken_devkit_names_the_problem(tmp_path: Path, damage, message: str) -> None:
    base = write_devkit(tmp_path)
    damage(find_devkit(base, "2007"))
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        validate_dataset("voc2007", root=base)


def test_not_a_devkit_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a VOC devkit folder"):
        validate_dataset("voc2007", root=tmp_path)


def test_an_embedded_set_from_an_older_builder_is_refused(tmp_path: Path) -> None:
    import json
    root = tmp_path / "fmnist-voc"
    write_devkit(tmp_path)
    (tmp_path / "VOCdevkit" / "VOC2007").rename(root)
    (root / "BUILD_INFO.json").write_text(json.dumps({"builder_version": 1}))
    with pytest.raises(DataError, match="built by fmnist-voc builder version 1"):
        validate_dataset("fmnist-voc", data_root=tmp_path)
