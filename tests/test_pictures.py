"""The pictures of issue 19: conv1 filters, nearest neighbours, top activations (from tiny random
checkpoints on 500 Fashion-MNIST test images) and Fig. 2 (c) from hand-built records; the
neighbour and top-activation selections against brute-force numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcbench.checkpoint import load_trunk
from dcbench.errors import DcbenchError
from dcbench.report.activations import (
    receptive_field,
    rf_crop,
    top_activation_plot,
    top_activations,
)
from dcbench.report.draw_pictures import picture_plots
from dcbench.report.fig_k import fig_k
from dcbench.report.filters import filter_panels, filters_plot
from dcbench.report.neighbours import nearest_neighbours, neighbours_plot
from dcbench.report.pictures import PictureImages, load_test_images
from dcbench.report.plot import Plot
from dcbench.results import load_frame

SOBEL, RGB = "random:alexnet-small:0", "random-rgb:alexnet-small:1"


@pytest.fixture(scope="module")
def images() -> PictureImages:
    return load_test_images(max_images=500)


def saved_png(plot: Plot, folder: Path, size: tuple[int, int]) -> None:
    """The plot is written as a non-blank PNG of `size` (width, height) pixels."""
    path = plot.save(folder)
    assert path is not None and path.stat().st_size > 0, plot.skipped
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size == size
        assert np.asarray(img.convert("L")).std() > 0


def brute_neighbours(x: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    out = []
    for q in queries:
        sims = unit @ unit[q]
        sims[q] = -np.inf
        out.append(np.argsort(-sims)[:k])
    return np.array(out)


def test_nearest_neighbours_equal_brute_force() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 24)).astype(np.float32)
    queries = np.array([0, 17, 123, 299])
    want = brute_neighbours(x.astype(np.float64), queries, 7)
    np.testing.assert_array_equal(nearest_neighbours(x, queries, 7), want)
    # cosine: scaling a row changes nothing; the query is never its own neighbour
    scaled = x * rng.uniform(0.1, 10, size=(300, 1)).astype(np.float32)
    got = nearest_neighbours(scaled, queries, 7)
    np.testing.assert_array_equal(got, want)
    assert not (got == queries[:, None]).any()


def test_top_activations_equal_brute_force() -> None:
    rng = np.random.default_rng(5)
    maps = rng.normal(size=(200, 6, 3, 3))
    scores = maps.reshape(200, 6, -1).max(axis=2)
    want = np.stack([np.argsort(-scores[:, c])[:9] for c in range(6)])
    np.testing.assert_array_equal(top_activations(maps, 9), want)
    np.testing.assert_array_equal(top_activations(scores, 9), want)
    assert top_activations(scores[:4], 9).shape == (6, 4)


def test_receptive_field_of_alexnet_small() -> None:
    sobel, _ = load_trunk(SOBEL)
    rgb, _ = load_trunk(RGB)
    assert receptive_field(rgb, "conv1") == (5, 1, 0.5)
    assert receptive_field(sobel, "conv1") == (7, 1, 0.5)      # + the 3x3 Sobel kernels
    assert receptive_field(sobel, "conv5") == (38, 4, 2.0)
    pixels = np.arange(32 * 32 * 3, dtype=np.int64).reshape(32, 32, 3)
    crop = rf_crop(pixels, 0, 0, receptive_field(rgb, "conv1"), np.zeros(3, np.int64))
    assert crop.shape == (5, 5, 3)
    np.testing.assert_array_equal(crop[2:, 2:], pixels[:3, :3])    # unit 0 sees pixels 0..2
    assert (crop[:2] == 0).all()


def test_filter_panels_sobel_grey_rgb_colour() -> None:
    sobel, _ = load_trunk(SOBEL)
    rgb, _ = load_trunk(RGB)
    grey = filter_panels(sobel)
    assert [c for c, _ in grey] == ["Sobel d/dx", "Sobel d/dy"]
    assert all(m.ndim == 2 for _, m in grey)
    (colour,) = filter_panels(rgb)
    assert colour[1].ndim == 3 and colour[1].shape[2] == 3
    assert 0.0 <= min(m.min() for _, m in grey + [colour])
    assert max(m.max() for _, m in grey + [colour]) <= 1.0


def test_filters_plot(tmp_path: Path) -> None:
    saved_png(filters_plot([SOBEL, RGB]), tmp_path, (720, 290))     # 2 + 1 panels
    saved_png(filters_plot([RGB]), tmp_path, (400, 290))


def test_neighbours_plot(images: PictureImages, tmp_path: Path) -> None:
    plot = neighbours_plot([SOBEL, RGB], k=3, n_queries=2, images=images)
    saved_png(plot, tmp_path, (600, 500))              # 4 columns, 2 checkpoints x 2 queries
    assert sum("share the query's label" in n for n in plot.notes) == 2   # one per checkpoint


@pytest.mark.parametrize("spec", [SOBEL, RGB])
def test_top_activation_plot(images: PictureImages, tmp_path: Path, spec: str) -> None:
    plot = top_activation_plot(spec, n_filters=2, steps=8, images=images)
    assert plot.name.startswith("top_activations_random")
    saved_png(plot, tmp_path, (720, 510))


def test_picture_plots_writes_every_figure(tmp_path: Path) -> None:
    plots = picture_plots([SOBEL, RGB], tmp_path / "figures", max_images=300)
    names = sorted(p.name for p in plots)
    assert names == ["conv1_filters", "nearest_neighbours",
                     "top_activations_random-alexnet-small-0",
                     "top_activations_random-rgb-alexnet-small-1"]
    assert sorted(p.stem for p in (tmp_path / "figures").glob("*.png")) == names


def record(task: str, setting: str, metric: str, value: float, k: int, seed: int = 0,
           dataset: str = "fmnist-voc") -> dict:
    ckpt = {"path": f"runs/dc-k{k}/checkpoint.pth.tar", "sha256": f"{k:064d}",
            "arch": "alexnet-small", "sobel": True, "format": "dcbench", "epoch": 3,
            "method": "deepcluster", "k": k, "data": "fashion-mnist"}
    return {"task": task, "setting": setting, "dataset": dataset, "split": "test",
            "metric": metric, "value": value, "best": None, "best_epoch": None, "epochs": None,
            "checkpoint": ckpt, "seed": seed, "config": {}, "config_hash": "c0",
            "code_version": "git:abc", "dcbench_version": "0.1.0",
            "started": "2024-01-01T00:00:00Z", "seconds": 1.0, "device": "cpu",
            "world_size": 1, "quick": False, "command": "", "extra": {}}


def frame_of(tmp_path: Path, records: list[dict]):
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return load_frame(path)


def test_fig_k_skips_with_one_k(tmp_path: Path) -> None:
    plot = fig_k(frame_of(tmp_path, [record("voc-cls", "fc6-8", "map", 30.0, 100),
                                     record("linear-fmnist", "conv3", "top1", 80.0, 100)]))
    assert plot.figure is None and "only k = 100" in plot.skipped
    assert plot.save(tmp_path) is None
    assert fig_k(frame_of(tmp_path, [])).figure is None


def test_fig_k_voc_three_k(tmp_path: Path) -> None:
    records = [record("voc-cls", "fc6-8", "map", v, k, seed=s)
               for k, vs in ((10, (30.0, 31.0)), (100, (36.0, 35.0)), (1000, (33.0, 33.5)))
               for s, v in enumerate(vs)]
    plot = fig_k(frame_of(tmp_path, records))
    saved_png(plot, tmp_path, (600, 400))
    text = " ".join(plot.notes)
    assert "10x the number of classes" in text and "best k is 10,000" in text
    assert "best k = 100 (35.5): agrees" in text


def test_fig_k_falls_back_to_linear_probe_best_layer(tmp_path: Path) -> None:
    records = [record("voc-cls", "fc6-8", "map", 30.0, 100)]      # one k: not enough
    for k, best in ((10, 70.0), (30, 75.0), (300, 72.0)):
        records += [record("linear-fmnist", "conv2", "top1", best, k, dataset="fashion-mnist"),
                    record("linear-fmnist", "conv5", "top1", best - 5, k,
                           dataset="fashion-mnist")]
    plot = fig_k(frame_of(tmp_path, records))
    saved_png(plot, tmp_path, (600, 400))
    text = " ".join(plot.notes)
    assert "linear-fmnist: best k = 30 (75.0): does not agree (the k nearest 100 is 300" in text


def test_a_trunk_of_another_input_size_is_refused_before_any_figure(tmp_path: Path) -> None:
    with pytest.raises(DcbenchError, match=r"random:alexnet:0 \(alexnet\) takes 224 px"):
        picture_plots([SOBEL, "random:alexnet:0"], tmp_path, max_images=50)
    assert not list(tmp_path.glob("*.png"))
