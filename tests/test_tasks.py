"""The built-in tasks end to end in quick mode (random:alexnet-small on Fashion-MNIST, and
random:alexnet on a tiny ImageNet-layout folder), plus their building blocks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from dcbench import tasks
from dcbench.checkpoint import load_trunk
from dcbench.evaluate import run_eval
from dcbench.results import Record, read_records, records_path

CONV = ["conv1", "conv2", "conv3", "conv4", "conv5"]


def run(task: str, results: Path, ckpt: str = "random:alexnet-small", **kw) -> list[Record]:
    opts = {"task": task, "ckpt": ckpt, "settings": (), "seed": 0, "seeds": 1, "force": False,
            "quick": True, "data_root": None, "results": str(results), "overrides": (),
            "workers": 0, **kw}
    return run_eval(opts, command=f"dcbench eval --task {task} --quick")


def by(records: list[Record], setting: str, metric: str) -> Record:
    return next(r for r in records if r.setting == setting and r.metric == metric)


def correct_count(percent: float, n: int, tol: float = 1e-6) -> bool:
    """Whether an accuracy in percent is a whole number of the n test images."""
    hits = percent * n / 100.0
    return abs(hits - round(hits)) < tol and 0 <= round(hits) <= n


def test_reference_pools_for_alexnet_at_224() -> None:
    trunk, _ = load_trunk("random:alexnet")
    pooler = tasks.pooling.Pooler(trunk, CONV, torch.device("cpu"))
    assert pooler.dims == {"conv1": 96 * 10 * 10, "conv2": 256 * 6 * 6, "conv3": 384 * 5 * 5,
                           "conv4": 384 * 5 * 5, "conv5": 256 * 6 * 6}


def test_small_inputs_pool_to_about_the_32px_target() -> None:
    trunk, _ = load_trunk("random:alexnet-small")
    pooler = tasks.pooling.Pooler(trunk, [*CONV, "fc7"], torch.device("cpu"))
    assert tasks.pooling.pool_target(32) == 1536 and tasks.pooling.pool_target(224) == 9216
    assert pooler.dims == {"conv1": 48 * 6 * 6, "conv2": 96 * 4 * 4, "conv3": 160 * 3 * 3,
                           "conv4": 160 * 3 * 3, "conv5": 96 * 4 * 4, "fc7": 512}
    assert tasks.pooling.pooled_side(64, 224, 9216) == 12          # VGG16 conv1 -> 64x12x12 = 9216
    assert tasks.pooling.pooled_side(512, 2, 9216) == 2            # never above the map's own side


def test_probe_tasks_read_the_paper_datasets_and_splits() -> None:
    ctx = tasks.RunContext(device=torch.device("cpu"))
    expected = {"linear-imagenet": ("imagenet", "val", 90),
                "linear-places": ("places205", "val", 90),
                "linear-fmnist": ("fashion-mnist", "test", 10)}
    for name, (dataset, split, epochs) in expected.items():
        cfg = tasks.get_task(name).config(ctx)
        assert (cfg["dataset"], cfg["test_split"], cfg["epochs"]) == (dataset, split, epochs)


def test_sqrt_schedule_is_eval_linear_learning_rate_decay() -> None:
    from dcbench.tasks.probe_training import lr_at

    cfg = dict(tasks.linear_probe.PAPER_RECIPE)
    assert lr_at(cfg, 0, 100) == pytest.approx(0.01)
    # eval_linear.sh's wd 1e-7: lr0 / sqrt(1 + lr0 * wd * t), 0.0099995 after 1e6 steps
    assert lr_at(cfg, 1_000_000, 100) == pytest.approx(0.01 / math.sqrt(1 + 0.01 * 1e-7 * 1e6),
                                                      rel=1e-9)
    assert lr_at(cfg, 1_000_000, 100) != pytest.approx(0.01, rel=1e-6)


@pytest.mark.parametrize("chunk_bytes", [1, 7 * 4 * 20, 2**26],
                         ids=["every batch", "every 20 rows", "once"])
def test_running_topk_matches_brute_force(chunk_bytes: int) -> None:
    """Merged after each batch of 16, after each 20+ buffered rows (the merge point falls
    inside a batch's rows), or once at the end: the exact top 4 of all 50."""
    from dcbench.tasks.knn_search import RunningTopK, vote

    g = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(7, 5, generator=g), dim=1)
    keys = torch.nn.functional.normalize(torch.randn(50, 5, generator=g), dim=1)
    labels = torch.randint(0, 3, (50,), generator=g)
    top = RunningTopK(queries, 4, chunk_bytes=chunk_bytes)
    for i in range(0, 50, 16):
        top.add(keys[i:i + 16], labels[i:i + 16])
    sims = queries @ keys.T
    ref = sims.topk(4, dim=1)
    assert torch.allclose(top.sims, ref.values)
    assert torch.equal(top.labels, labels[ref.indices])
    scores = vote(top, 3, 0.07)
    expected = torch.zeros(7, 3).scatter_add_(1, labels[ref.indices], (ref.values / 0.07).exp())
    assert torch.allclose(scores, expected)


def test_linear_fmnist_quick_records_every_layer(tmp_path: Path) -> None:
    records = run("linear-fmnist", tmp_path)
    assert {(r.setting, r.metric) for r in records} == {(c, m) for c in CONV
                                                       for m in ("top1", "top5")}
    for r in records:
        assert (r.task, r.dataset, r.split, r.epochs) == ("linear-fmnist", "fashion-mnist",
                                                          "test", 2)
        # the final value is the last epoch's, each a whole number of the n_test images
        assert r.value == r.extra["curve"][-1] and len(r.extra["curve"]) == 2
        assert all(correct_count(v, r.extra["n_test"]) for v in r.extra["curve"])
        assert r.best == max(r.extra["curve"]) and 1 <= r.best_epoch <= 2
        assert r.extra["cached_features"] and r.extra["n_train"] == 512
    assert by(records, "conv2", "top1").value > 30.0       # 10 classes: chance is 10 %
    on_disk = read_records(records_path(tmp_path))
    assert len(on_disk) == len(records)


def test_linear_fmnist_streams_when_cache_is_off(tmp_path: Path) -> None:
    records = run("linear-fmnist", tmp_path, settings=("conv5",),
                  overrides=("cache_mb=0", "epochs=1"))
    assert {r.metric for r in records} == {"top1", "top5"}
    assert not records[0].extra["cached_features"] and records[0].epochs == 1
    assert records[0].config["cache_mb"] == 0


def test_clustering_quick_records_the_metrics_of_its_clusters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    from dcbench.clustering import metrics

    real = metrics.all_metrics

    def spy(labels, assignment):
        seen.append((np.asarray(labels).copy(), np.asarray(assignment).copy()))
        return real(labels, assignment)

    monkeypatch.setattr(metrics, "all_metrics", spy)    # the task imports it when it runs
    records = run("clustering", tmp_path, settings=("fc6", "fc7"))
    assert {r.metric for r in records} == {"nmi_geometric", "nmi_arithmetic", "acc", "ari"}
    for r in records:
        assert (r.dataset, r.split, r.best, r.best_epoch) == ("fashion-mnist", "test", None,
                                                              None)
        assert r.extra["k"] == 10 and r.extra["n_images"] == 256
    # each setting's record holds sklearn's / scipy's values for the clusters it found
    assert len(seen) == 2
    for setting, (labels, assignment) in zip(("fc6", "fc7"), seen):
        assert len(labels) == 256 and len(np.unique(assignment)) == 10
        table = contingency_matrix(labels, assignment)
        want = {"nmi_geometric": normalized_mutual_info_score(labels, assignment,
                                                              average_method="geometric"),
                "nmi_arithmetic": normalized_mutual_info_score(labels, assignment,
                                                               average_method="arithmetic"),
                "acc": 100.0 * table[linear_sum_assignment(-table)].sum() / len(labels),
                "ari": adjusted_rand_score(labels, assignment)}
        for metric, value in want.items():
            assert by(records, setting, metric).value == pytest.approx(value, abs=1e-12)
    assert by(records, "fc6", "nmi_geometric").value > 0.0


def test_knn_quick_beats_chance(tmp_path: Path) -> None:
    records = run("knn", tmp_path, overrides=("k=10",))
    assert {(r.setting, r.metric) for r in records} == {(s, m) for s in ("conv5", "fc7")
                                                       for m in ("top1", "top5")}
    for r in records:
        assert r.split == "test" and r.extra["k"] == 10 and r.config["k"] == 10
        assert correct_count(r.value, r.extra["n_test"], tol=1e-3)   # float32 mean of hits
    assert by(records, "conv5", "top1").value > 40.0
    assert by(records, "conv5", "top5").value >= by(records, "conv5", "top1").value


@pytest.mark.slow
def test_linear_imagenet_on_a_tiny_imagenet_folder(tmp_path: Path,
                                                    tiny_image_folder: Path) -> None:
    """The 224 px probe with the paper's recipe (ten-crop test, AvgPools), on 30 + 20 PNGs."""
    data_root = tmp_path / "data"
    data_root.mkdir()
    (data_root / "imagenet").symlink_to(tiny_image_folder, target_is_directory=True)
    records = run("linear-imagenet", tmp_path / "results", ckpt="random:alexnet",
                  data_root=str(data_root), overrides=("epochs=1",))
    assert {(r.setting, r.metric) for r in records} == {(c, m) for c in CONV
                                                       for m in ("top1", "top5")}
    for r in records:
        assert (r.dataset, r.split, r.epochs, r.best_epoch) == ("imagenet", "val", 1, 1)
        assert r.config["tencrop"] and r.config["schedule"] == "sqrt"
        assert r.config["weight_decay"] == 1e-7 and r.config["lr"] == 0.01   # eval_linear.sh
        assert r.extra["n_classes"] == 10 and r.extra["n_test"] == 20
        assert r.checkpoint["arch"] == "alexnet"
    assert by(records, "conv1", "top1").extra["dim"] == 9600
