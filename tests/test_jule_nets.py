"""JULE's per-set nets: each of JULE's sets trains the released net of its image size (MNIST
jule-28, USPS jule-16, COIL jule-128) on its images as they are, and the tasks feed a JULE
net at its own side."""

from __future__ import annotations

import bz2
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_jule_sets import write_idx  # tests/ is on sys.path (pytest rootdir prepend)

from dcbench.data import make_transform
from dcbench.data.real.digits import digits_28px
from dcbench.errors import DcbenchError
from dcbench.evaluate import run_eval
from dcbench.methods import run_pretraining


def mnist_tree(root: Path, n: int = 60) -> np.ndarray:
    root.mkdir(parents=True, exist_ok=True)
    x, y = digits_28px()
    for prefix in ("train", "t10k"):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", x[:n], 2051)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", y[:n], 2049)
    return x[:n]


def usps_tree(root: Path, n: int = 60) -> np.ndarray:
    """USPS files of n digits (8x8 digits at 16 px), LIBSVM format; the 16x16 uint8 images."""
    root.mkdir(parents=True, exist_ok=True)
    x, y = digits_28px()
    small = np.stack([np.asarray(Image.fromarray(im).resize((16, 16), Image.BILINEAR))
                      for im in x[:n]])
    lines = [f"{label + 1} " + " ".join(f"{i + 1}:{v / 127.5 - 1:.6f}"
                                        for i, v in enumerate(im.ravel()))
             for im, label in zip(small, y[:n])]
    for name in ("usps.bz2", "usps.t.bz2"):
        with bz2.open(root / name, "wt") as f:
            f.write("\n".join(lines) + "\n")
    return small


def short_run(data: str, root: Path, out: Path, **sets) -> tuple[dict, dict]:
    row = run_pretraining({"method": "jule", "data": data, "root": str(root), "out": str(out),
                           "epochs": 1, "jule_options": sets})
    ckpt = torch.load(out / "checkpoint.pth.tar", weights_only=False)
    return row, ckpt


def test_mnist_and_usps_train_the_released_net_of_their_size(tmp_path: Path):
    mnist_tree(tmp_path / "mnist")
    usps_tree(tmp_path / "usps")
    for data, arch, flat in (("mnist", "jule-28", 3200), ("usps", "jule-16", 1800)):
        row, ckpt = short_run(data, tmp_path / data, tmp_path / f"run-{data}")
        assert row["final"] and row["n_clusters"] == 10 and row["n_images"] == 60
        assert ckpt["arch"] == arch and ckpt["config"]["arch"] == arch
        assert ckpt["state_dict"]["classifier.0.weight"].shape == (160, flat)
    # the 32-px net on MNIST when asked for, e.g. for the 32-px tasks
    _, ckpt = short_run("mnist", tmp_path / "mnist", tmp_path / "run-32", arch="jule-32")
    assert ckpt["arch"] == "jule-32"
    assert ckpt["state_dict"]["classifier.0.weight"].shape == (160, 5000)


def test_the_net_sees_the_images_at_their_own_size(tmp_path: Path):
    from dcbench.methods.jule import load_images

    x = mnist_tree(tmp_path)
    cfg = {"data": "mnist", "split": "test", "root": str(tmp_path), "data_root": None,
           "max_images": None, "seed": 0}
    images, _ = load_images({**cfg, "arch": "jule-28"})
    assert images.shape == (60, 3, 28, 28)
    want = (x[7].astype(np.float32) / 255 - 0.1307) / 0.3081
    np.testing.assert_allclose(images[7, 1].numpy(), want, atol=1e-5)
    padded, _ = load_images({**cfg, "arch": "jule-32"})
    assert padded.shape == (60, 3, 32, 32)
    torch.testing.assert_close(padded[7, :, 2:30, 2:30], images[7])


def test_usps_is_kept_at_16_px_and_resized_only_for_32_px_trunks(tmp_path: Path):
    small = usps_tree(tmp_path)
    mean, std = (0.25,) * 3, (0.35,) * 3
    from dcbench.data import build_dataset
    at16 = build_dataset("usps", "train", make_transform("eval", "small", mean, std, 16,
                                                         side=16), root=tmp_path)
    # LIBSVM values are written with 6 decimals: the uint8 round trip is exact
    want = (small[3].astype(np.float32) / 255 - 0.25) / 0.35
    np.testing.assert_allclose(at16[3][0][0].numpy(), want, atol=1e-5)
    at32 = build_dataset("usps", "train", make_transform("eval", "small", mean, std, 16),
                         root=tmp_path)
    up = np.asarray(Image.fromarray(small[3]).resize((32, 32), Image.BILINEAR), np.float32)
    np.testing.assert_allclose(at32[3][0][0].numpy(), (up / 255 - 0.25) / 0.35, atol=1e-5)


def test_probe_and_train_recipes_work_at_a_jule_side():
    img = Image.fromarray(np.arange(16 * 16, dtype=np.uint8).reshape(16, 16))
    torch.manual_seed(0)
    for recipe in ("train", "probe", "cluster", "eval"):
        t = make_transform(recipe, "small", (0.5,) * 3, (0.5,) * 3, 16, side=16)
        assert tuple(t(img).shape) == (3, 16, 16), recipe
    t = make_transform("probe", "small", (0.0,) * 3, (1.0,) * 3, 16, side=16)
    shifted = [t(img)[0] for _ in range(20)]
    # RandomCrop(16, padding 2): a shifted copy with zero borders, never a resize
    values = set(np.round(np.concatenate([s.numpy().ravel() for s in shifted]) * 255))
    assert values <= set(range(256)) and 0 in values


def test_jule_28_checkpoint_runs_the_fashion_mnist_probe_at_28_px(tmp_path: Path):
    mnist_tree(tmp_path / "mnist")
    _, _ = short_run("mnist", tmp_path / "mnist", tmp_path / "run")
    ckpt = str(tmp_path / "run" / "checkpoint.pth.tar")
    records = run_eval({"task": "linear-fmnist", "ckpt": ckpt, "results": str(tmp_path / "r"),
                        "quick": True})
    assert sorted({r.setting for r in records}) == ["conv1", "conv2"]
    # the same net at 32 px would flatten 5000 values into a 3200-input layer: it ran at 28
    assert all(r.value > 10.0 for r in records if r.metric == "top1")


@pytest.mark.parametrize("opts, message", [
    ({"arch": "alexnet-small"}, r"--arch alexnet-small: JULE trains its own nets \(jule-16, "
                                r"jule-28, jule-32, jule-128; jule-28 for mnist\)"),
    ({"jule_options": {"arch": "alexnet"}}, r"--set arch=alexnet: expected one of jule-16, "
                                            r"jule-28, jule-32, jule-128"),
])
def test_a_net_that_is_not_jules_is_refused(tmp_path: Path, opts, message):
    mnist_tree(tmp_path)
    with pytest.raises(DcbenchError, match=message):
        run_pretraining({"method": "jule", "data": "mnist", "root": str(tmp_path),
                         "out": str(tmp_path / "run"), **opts})
    assert not (tmp_path / "run").exists()


def test_jule_128_on_a_large_set_task_is_refused_with_the_fitting_archs(tmp_path: Path):
    from dcbench.models import build_model
    from dcbench.tasks.inputs import check_input, input_side

    net = build_model("jule-128", sobel=False)
    assert input_side("fashion-mnist", net) == 128
    assert input_side("fashion-mnist", build_model("alexnet-small")) == 32
    with pytest.raises(DcbenchError, match="feeds 224 px images .* use a checkpoint of arch "
                                           "alexnet or vgg16"):
        check_input(net, "imagenet", "linear-imagenet")
    assert json.dumps(input_side("imagenet", net)) == "224"


def test_the_report_offers_small_set_fill_commands_to_every_small_trunk():
    from dcbench.report.measured import task_fits_arch

    assert task_fits_arch("linear-fmnist", None, "jule-28")
    assert task_fits_arch("clustering", "digits", "jule-16")
    assert task_fits_arch("linear-fmnist", None, "alexnet")       # upsampled to 224 px
    assert not task_fits_arch("linear-imagenet", None, "jule-28")
    assert task_fits_arch("linear-imagenet", None, "vgg16")
