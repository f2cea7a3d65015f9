"""JULE's sets in their downloaded layouts, on tiny copies built here from digits."""

from __future__ import annotations

import bz2
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcbench.data import build_dataset
from dcbench.data.real.digits import digits_28px
from dcbench.errors import DataError


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    head = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + array.astype(np.uint8).tobytes())


def test_mnist_reads_the_four_idx_files(tmp_path: Path):
    x, y = digits_28px()
    for prefix, sl in (("train", slice(0, 30)), ("t10k", slice(30, 50))):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", x[sl], 2051)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", y[sl], 2049)
    data = build_dataset("mnist", "test", None, root=tmp_path)
    assert len(data) == 20 and data.classes[3] == "3"
    img, label = data[4]
    assert label == y[34] and np.array_equal(np.asarray(img), x[34])


def test_usps_reads_libsvm_bz2_with_labels_1_to_10(tmp_path: Path):
    rng = np.random.default_rng(0)
    lines = []
    pixels = rng.uniform(-1, 1, (3, 256)).round(3)
    for label, row in zip((1, 10, 4), pixels):
        lines.append(f"{label} " + " ".join(f"{i + 1}:{v}" for i, v in enumerate(row)))
    for name in ("usps.bz2", "usps.t.bz2"):
        with bz2.open(tmp_path / name, "wt") as f:
            f.write("\n".join(lines) + "\n")
    data = build_dataset("usps", "train", None, root=tmp_path)
    assert [data[i][1] for i in range(3)] == [0, 9, 3]
    # rounded, not truncated: (v + 1) * 127.5 lands just under an integer for most values
    small = np.clip(np.rint((pixels[1] + 1) * 127.5), 0, 255).astype(np.uint8).reshape(16, 16)
    assert np.array_equal(np.asarray(data[1][0]), small)       # kept at its 16 px


def test_usps_bad_line_is_named(tmp_path: Path):
    with bz2.open(tmp_path / "usps.bz2", "wt") as f:
        f.write("3 1:0.5 2:oops\n")
    with pytest.raises(DataError, match="usps.bz2 line 1: not a LIBSVM USPS line"):
        build_dataset("usps", "train", None, root=tmp_path)


def test_coil20_reads_obj_pose_files_in_object_order(tmp_path: Path):
    for k in range(1, 21):
        for pose in (0, 5):
            Image.fromarray(np.full((128, 128), k * 10 + pose, np.uint8)).save(
                tmp_path / f"obj{k}__{pose}.png")
    data = build_dataset("coil20", "all", None, root=tmp_path)
    assert len(data) == 40 and len(data.classes) == 20
    assert [data[i][1] for i in (0, 1, 2, 39)] == [0, 0, 1, 19]
    assert np.asarray(data[3][0]).shape == (128, 128) and np.asarray(data[3][0])[0, 0] == 25
    (tmp_path / "obj20__0.png").unlink()
    (tmp_path / "obj20__5.png").unlink()
    with pytest.raises(DataError, match="of 20 objects, found 19"):
        build_dataset("coil20", "all", None, root=tmp_path)


def test_jule_runs_on_a_coil20_tree_to_its_20_objects(tmp_path: Path):
    import json

    from dcbench.methods import run_pretraining

    rng = np.random.default_rng(1)
    root = tmp_path / "coil-20-proc"
    root.mkdir()
    for k in range(1, 21):
        base = rng.integers(0, 255, (128, 128))
        for pose in (0, 5, 10):
            noisy = np.clip(base + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(root / f"obj{k}__{pose}.png")
    out = tmp_path / "run"
    row = run_pretraining({"method": "jule", "data": "coil20", "root": str(root),
                           "out": str(out), "epochs": 1})
    assert row["final"] and row["n_clusters"] == 20 and row["n_images"] == 60
    config = json.loads((out / "config.json").read_text())
    assert config["split"] == "all" and config["data"] == "coil20"
    assert config["arch"] == "jule-128"             # the released COIL net, at 128 px
    # three noisy poses of one random texture per object: the 1-NN graph alone finds them
    assert row["jule_rc"]["nmi_geometric"] == pytest.approx(1.0)
