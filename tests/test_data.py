"""The data layer: every registered loader on the real Fashion-MNIST files and on small
layouts built by the tests, root resolution, the skipping loader and the set builders
(transforms and subsets: test_transforms.py; the distributed ImageNet / Places205 layouts:
test_data_layouts.py)."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcbench.data import (
    DATASETS,
    build_dataset,
    get_dataset_spec,
    make_loader,
    make_transform,
    targets_of,
    validate_dataset,
)
from dcbench.data.embedded.builders import CLASS_DIRS, export_file_list, export_image_folder
from dcbench.data.idx import FILES, read_idx
from dcbench.data.real.fashion_mnist import CLASSES, MEAN, STD
from dcbench.data.registry import candidate_roots
from dcbench.errors import DataError

IMAGE_FOLDER_NAMES = ("imagenet", "places205", "image-folder")


def write_idx(path: Path, array: np.ndarray, n_claimed: int | None = None) -> None:
    """Write an idx .gz file; `n_claimed` puts a larger count in the header (a truncated file)."""
    magic = 2051 if array.ndim == 3 else 2049
    dims = list(array.shape)
    if n_claimed is not None:
        dims[0] = n_claimed
    header = struct.pack(">I" + "I" * len(dims), magic, *dims)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_idx_set(root: Path, n_train: int = 20, n_test: int = 10) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        img_name, lbl_name = FILES[split]
        write_idx(root / img_name, rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / lbl_name, np.arange(n) % 10)
    return root


# ---------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_real_files_counts(fmnist_root: Path) -> None:
    report = validate_dataset("fashion-mnist")
    assert report.root == fmnist_root
    assert report.splits == {"train": 60000, "test": 10000}
    assert report.classes == CLASSES
    assert set(report.per_class["train"].values()) == {6000}
    assert set(report.per_class["test"].values()) == {1000}


def test_fashion_mnist_cluster_items_are_normalised_32px() -> None:
    spec = get_dataset_spec("fashion-mnist")
    tf = make_transform("cluster", spec.size, spec.mean, spec.std, native=spec.native)
    ds = build_dataset("fashion-mnist", "test", tf)
    assert len(ds) == 10000
    img, label = ds[0]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32
    assert 0 <= label < 10
    # the 2 px padding is black: (0 - mean) / std in every channel
    assert torch.allclose(img[:, 0, :], torch.full((3, 32), -MEAN / STD), atol=1e-5)
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])


def test_synthetic_idx_set_validates_and_loads(tmp_path: Path) -> None:
    root = make_idx_set(tmp_path / "fm")
    report = validate_dataset("fashion-mnist", root=root)
    assert report.splits == {"train": 20, "test": 10}
    assert report.per_class["train"]["T-shirt/top"] == 2
    assert report.per_class["test"]["Ankle boot"] == 1
    ds = build_dataset("fashion-mnist", "train", None, root=root)
    img, label = ds[13]
    assert isinstance(img, Image.Image) and img.size == (28, 28)
    assert label == 3


def test_synthetic_idx_set_found_through_data_root(tmp_path: Path, monkeypatch) -> None:
    make_idx_set(tmp_path / "fashion-mnist")
    assert validate_dataset("fashion-mnist", data_root=tmp_path).splits["test"] == 10
    monkeypatch.setenv("DCBENCH_DATA", str(tmp_path))
    assert validate_dataset("fashion-mnist").root == tmp_path / "fashion-mnist"


def test_idx_with_short_body_names_the_file(tmp_path: Path) -> None:
    root = make_idx_set(tmp_path / "fm")
    img_name, _ = FILES["train"]
    write_idx(root / img_name, np.zeros((10, 28, 28)), n_claimed=20)
    with pytest.raises(DataError, match="truncated") as err:
        build_dataset("fashion-mnist", "train", None, root=root)
    assert str(root / img_name) in str(err.value)


def test_idx_gz_cut_in_half_names_the_file(tmp_path: Path) -> None:
    root = make_idx_set(tmp_path / "fm", n_train=200)
    path = root / FILES["train"][0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as err:
        build_dataset("fashion-mnist", "train", None, root=root)
    assert str(path) in str(err.value)


def test_idx_wrong_magic_and_count_mismatch(tmp_path: Path) -> None:
    root = make_idx_set(tmp_path / "fm")
    img_name, lbl_name = FILES["test"]
    write_idx(root / lbl_name, np.zeros(7))
    with pytest.raises(DataError, match="10 images but .* 7 labels"):
        validate_dataset("fashion-mnist", root=root)
    shutil.copy(root / FILES["train"][1], root / img_name)   # a label file where images belong
    with pytest.raises(DataError, match="not an idx file") as err:
        validate_dataset("fashion-mnist", root=root)
    assert str(root / img_name) in str(err.value)


def test_missing_idx_file_names_the_path(tmp_path: Path) -> None:
    root = make_idx_set(tmp_path / "fm")
    missing = root / FILES["test"][1]
    missing.unlink()
    with pytest.raises(DataError, match="missing") as err:
        validate_dataset("fashion-mnist", root=root)
    assert str(missing) in str(err.value)


# ---------------------------------------------------------------- image folders


@pytest.mark.parametrize("name", IMAGE_FOLDER_NAMES)
def test_image_folder_counts_per_split_and_class(name: str, tiny_image_folder: Path,
                                                 tiny_sizes) -> None:
    report = validate_dataset(name, root=tiny_image_folder)
    n = len(CLASS_DIRS)
    assert report.splits == {"train": n * tiny_sizes.train_per_class,
                             "val": n * tiny_sizes.val_per_class}
    assert report.classes == sorted(CLASS_DIRS)
    assert set(report.per_class["train"].values()) == {tiny_sizes.train_per_class}
    assert set(report.per_class["val"].values()) == {tiny_sizes.val_per_class}
    assert "T-shirt_top" in report.classes
    assert any("images" in line for line in report.lines())


def test_image_folder_large_transform_gives_224(tiny_image_folder: Path, tiny_sizes) -> None:
    tf = make_transform("eval", "large")
    ds = build_dataset("imagenet", "val", tf, root=tiny_image_folder)
    assert len(ds) == len(CLASS_DIRS) * tiny_sizes.val_per_class
    img, target = ds[len(ds) - 1]
    assert img.shape == (3, 224, 224) and img.dtype == torch.float32
    assert ds.classes[target] == sorted(CLASS_DIRS)[-1]
    assert ds.targets == sorted(ds.targets)


def test_image_folder_missing_val_names_it(tiny_image_folder: Path, tmp_path: Path) -> None:
    root = tmp_path / "places"
    shutil.copytree(tiny_image_folder / "train", root / "train")
    with pytest.raises(DataError, match="missing folder") as err:
        validate_dataset("places205", root=root)
    assert str(root / "val") in str(err.value)


def test_image_folder_class_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="no images"):
        validate_dataset("image-folder", root=tmp_path)


def test_image_folder_val_classes_must_match_train(tiny_image_folder: Path,
                                                   tmp_path: Path) -> None:
    root = tmp_path / "in"
    shutil.copytree(tiny_image_folder, root)
    shutil.rmtree(root / "val" / "Bag")   # val indices would shift by one class after 'Bag'
    with pytest.raises(DataError, match="Bag"):
        validate_dataset("imagenet", root=root)


def test_data_root_resolution(tiny_image_folder: Path, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "imagenet").symlink_to(tiny_image_folder)
    assert validate_dataset("imagenet", data_root=tmp_path).root == tmp_path / "imagenet"
    monkeypatch.setenv("DCBENCH_DATA", str(tmp_path))
    assert validate_dataset("imagenet").root == tmp_path / "imagenet"
    # an explicit root wins over the data root
    assert candidate_roots("imagenet", root="/x", data_root=tmp_path) == [Path("/x")]
    with pytest.raises(DataError) as err:
        validate_dataset("places205")
    msg = str(err.value)
    assert str(tmp_path / "places205") in msg and "DCBENCH_DATA" in msg and "\n" not in msg


def test_no_root_at_all_says_how_to_give_one() -> None:
    with pytest.raises(DataError, match="--data-root"):
        validate_dataset("imagenet")


def test_fashion_mnist_falls_back_to_default_root(tmp_path: Path) -> None:
    cands = candidate_roots("fashion-mnist", data_root=tmp_path)
    assert cands == [tmp_path / "fashion-mnist", get_dataset_spec("fashion-mnist").default_root]
    assert validate_dataset("fashion-mnist", data_root=tmp_path).root == cands[1]


def test_unknown_dataset_and_split() -> None:
    with pytest.raises(DataError, match="known datasets: .*fashion-mnist"):
        get_dataset_spec("nope")
    with pytest.raises(DataError, match="no split 'val'"):
        build_dataset("fashion-mnist", "val", None)


def test_registry_holds_the_builtin_datasets() -> None:
    assert {"fashion-mnist", "imagenet", "places205", "image-folder", "yfcc1m"} <= set(DATASETS)


# ---------------------------------------------------------------- file list (YFCC1M)


def _file_list_with_bad_entries(src: Path, dst: Path) -> Path:
    """The tiny file list plus one listed-but-missing file and one undecodable .jpg."""
    shutil.copytree(src, dst)
    (dst / "images" / "garbage.jpg").write_bytes(b"\x00not a jpeg" * 50)
    with open(dst / "yfcc1m.txt", "a") as f:
        f.write("# a comment\n\nimages/gone.jpg\nimages/garbage.jpg\n")
    return dst


def test_file_list_counts_missing_and_validates(tiny_file_list: Path, tmp_path: Path,
                                                tiny_sizes) -> None:
    root = _file_list_with_bad_entries(tiny_file_list, tmp_path / "yfcc")
    report = validate_dataset("yfcc1m", root=root)
    assert report.splits == {"train": tiny_sizes.list_size + 1}
    assert any("1 listed images are missing" in n for n in report.notes)
    ds = build_dataset("yfcc1m", "train", None, root=root)
    assert len(ds) == tiny_sizes.list_size + 1 and ds.missing == 1
    assert targets_of(ds) is None


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_skips_corrupt_image(tiny_file_list: Path, tmp_path: Path, workers: int) -> None:
    root = _file_list_with_bad_entries(tiny_file_list, tmp_path / "yfcc")
    ds = build_dataset("yfcc1m", "train", make_transform("cluster", "large"), root=root)
    corrupt = ds.paths.index(str(root / "images" / "garbage.jpg"))
    seen, skipped = [], 0
    for images, targets, indices, n_skipped in make_loader(ds, batch_size=5, workers=workers):
        skipped += n_skipped
        if images is not None:
            assert images.shape[1:] == (3, 224, 224)
            assert len(images) == len(targets) == len(indices)
            assert (targets == -1).all()
            seen.extend(indices.tolist())
    assert skipped == 1
    assert sorted(seen) == [i for i in range(len(ds)) if i != corrupt]


def test_file_list_without_list_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        validate_dataset("yfcc1m", root=tmp_path)
    assert str(tmp_path / "yfcc1m.txt") in str(err.value)


def test_file_list_where_nothing_exists(tmp_path: Path) -> None:
    (tmp_path / "yfcc1m.txt").write_text("a.jpg\nb.jpg\n")
    with pytest.raises(DataError, match="none of the images"):
        validate_dataset("yfcc1m", root=tmp_path)


# ---------------------------------------------------------------- builders


def test_builders_are_deterministic_rgb_copies(tiny_image_folder: Path, tiny_file_list: Path,
                                               tiny_sizes, tmp_path: Path,
                                               fmnist_root: Path) -> None:
    again = export_image_folder(tmp_path / "again", tiny_sizes.train_per_class,
                                tiny_sizes.val_per_class, fmnist_root)
    first = sorted(p.relative_to(tiny_image_folder) for p in tiny_image_folder.rglob("*.png"))
    assert first == sorted(p.relative_to(again) for p in again.rglob("*.png"))
    assert all((tiny_image_folder / p).read_bytes() == (again / p).read_bytes() for p in first)
    images = read_idx(fmnist_root / FILES["train"][0], 2051)
    labels = read_idx(fmnist_root / FILES["train"][1], 2049)
    i = int(np.flatnonzero(labels == CLASSES.index("Ankle boot"))[0])
    png = Image.open(tiny_image_folder / "train" / "Ankle_boot" / f"{i:05d}.png")
    assert png.mode == "RGB" and np.array_equal(np.asarray(png)[..., 0], images[i])
    listed = (tiny_file_list / "yfcc1m.txt").read_text().split()
    assert listed == [f"images/{j:05d}.png" for j in range(tiny_sizes.list_size)]
    assert np.array_equal(np.asarray(Image.open(tiny_file_list / listed[0]))[..., 1], images[0])


def test_builders_refuse_more_images_than_exist(tmp_path: Path) -> None:
    root = make_idx_set(tmp_path / "fm")          # 2 train images per class
    with pytest.raises(DataError, match="only 2 images of 'T-shirt/top'"):
        export_image_folder(tmp_path / "out", 3, 1, fmnist_root=root)
    with pytest.raises(DataError, match="has 20 images"):
        export_file_list(tmp_path / "list", 21, fmnist_root=root)
    assert validate_dataset("yfcc1m", root=export_file_list(tmp_path / "ok", 20, root)).splits[
        "train"] == 20
