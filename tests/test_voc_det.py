"""voc-det: Fast R-CNN assembled from a trunk (RoI grid = fc6's input, fc6/fc7 the
checkpoint's), Fast R-CNN's sampling floor, box conventions, frozen layers per setting, a
quick run on the embedded set, and bad devkit input refused with one line and exit 2."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from dcbench.cli import main
from dcbench.evaluate import run_eval
from dcbench.models import build_model
from dcbench.tasks.voc.det_inputs import image_scale, mirror
from dcbench.tasks.voc.fast_rcnn import (
    FastRCNN,
    drop_below_background_floor,
    from_extent,
    to_extent,
    trainable,
)


@pytest.mark.parametrize("arch, side, grid", [("alexnet-small", 64, 4), ("alexnet", 224, 6)])
def test_fast_rcnn_pools_rois_to_fc6_grid_and_reuses_fc6_fc7(arch: str, side: int,
                                                              grid: int) -> None:
    trunk = build_model(arch, seed=0)
    model = FastRCNN(trunk, n_classes=3).eval()
    assert model.heads.box_roi_pool.grid == grid
    fc6 = model.heads.box_head.layers[0]
    assert torch.equal(fc6.weight, trunk.classifier[1].weight)       # the checkpoint's fc6
    props = [torch.tensor([[0.0, 0.0, side / 2, side / 2], [4.0, 4.0, side - 1.0, side - 1.0]])]
    found, losses = model(torch.randn(1, 3, side, side), props, [(side, side)])
    assert losses == {} and set(found[0]) == {"boxes", "labels", "scores"}
    assert found[0]["labels"].min() >= 1 if len(found[0]["labels"]) else True


def test_vgg16_box_head_reads_a_7x7_roi_at_stride_16() -> None:
    model = FastRCNN(build_model("vgg16", seed=0), n_classes=2)
    assert model.heads.box_roi_pool.grid == 7 and model.heads.box_roi_pool.spatial_scale == 1 / 16
    assert model.heads.box_head.layers[0].in_features == 512 * 7 * 7


def test_predictors_are_drawn_as_fast_rcnn_and_heads_set_to_its_values() -> None:
    torch.manual_seed(0)
    model = FastRCNN(build_model("alexnet", seed=0), n_classes=20)
    pred = model.heads.box_predictor
    assert pred.cls_score.out_features == 21 and pred.bbox_pred.out_features == 84
    assert float(pred.cls_score.weight.detach().std()) == pytest.approx(0.01, rel=0.05)
    assert float(pred.bbox_pred.weight.detach().std()) == pytest.approx(0.001, rel=0.05)
    h = model.heads
    assert (h.nms_thresh, h.score_thresh, h.detections_per_img) == (0.3, 0.05, 100)
    assert h.fg_bg_sampler.batch_size_per_image == 128
    assert h.fg_bg_sampler.positive_fraction == 0.25


def test_training_proposals_below_the_background_floor_are_dropped() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    props = torch.tensor([[0.0, 0.0, 10.0, 10.0],      # IoU 1: foreground
                          [5.0, 0.0, 15.0, 10.0],      # IoU 50/150 = 0.33: background
                          [8.0, 8.0, 18.0, 18.0],      # IoU 4/196 = 0.02: never used
                          [30.0, 30.0, 40.0, 40.0]])   # IoU 0
    (kept,) = drop_below_background_floor([props], [{"boxes": gt}], 0.1)
    assert kept.tolist() == props[:2].tolist()
    (none,) = drop_below_background_floor([props], [{"boxes": gt[:0]}], 0.1)
    assert none.shape == (0, 4)


def test_box_conventions_round_trip_and_mirror() -> None:
    voc = torch.tensor([[1.0, 1.0, 10.0, 20.0]])    # 1-based inclusive: 10 px wide, 20 high
    ext = to_extent(voc, 2.0)
    assert ext.tolist() == [[0.0, 0.0, 20.0, 40.0]]          # 0-based extent, scaled
    assert from_extent(ext, 2.0).tolist() == voc.tolist()
    assert mirror(ext, 50).tolist() == [[30.0, 0.0, 50.0, 40.0]]


def test_image_scale_follows_the_shorter_side_capped_by_the_longer() -> None:
    assert image_scale(500, 375, 600, 1000) == pytest.approx(1.6)     # 800 x 600
    assert image_scale(500, 200, 600, 1000) == pytest.approx(2.0)     # 1500 > 1000: capped


def test_fc6_8_trains_heads_only_and_all_keeps_conv1_frozen() -> None:
    model = FastRCNN(build_model("alexnet-small", seed=0), n_classes=2)
    heads = sum(p.numel() for p in model.heads.parameters())
    assert sum(p.numel() for p in trainable(model, "alexnet-small", "fc6-8")) == heads
    params = trainable(model, "alexnet-small", "all")
    assert not model.features[0].weight.requires_grad       # conv1, as Fast R-CNN
    assert model.features[4].weight.requires_grad            # conv2
    assert all(not p.requires_grad for p in model.sobel.parameters())
    assert len(params) == sum(1 for p in model.parameters() if p.requires_grad)


def test_quick_eval_records_map_rule_and_proposals(voc_quick_root: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCBENCH_CACHE", str(tmp_path / "cache"))
    opts = {"task": "voc-det", "ckpt": "random:alexnet-small", "settings": ("fc6-8",),
            "quick": True, "results": str(tmp_path / "res"), "data_root": str(voc_quick_root),
            "workers": 0, "overrides": ("iterations=4", "max_test=16")}
    (r,) = run_eval(opts)
    assert (r.task, r.metric, r.dataset, r.split) == ("voc-det", "map", "fmnist-voc-quick",
                                                      "test")
    assert r.extra["ap_rule"] == "11-point (VOC2007)" and r.extra["n_test"] == 16
    assert r.extra["proposals"]["test"]["proposals"] == "opencv-ss-fast"
    aps = [v for v in r.extra["per_class_ap"].values() if v is not None]
    assert r.value == pytest.approx(np.mean(aps), abs=1e-2)
    assert r.best == max(c["mAP"] for c in r.extra["curve"]) and r.epochs == 4


def _devkit(voc_quick_root: Path, tmp_path: Path) -> Path:
    """A writable voc2007-layout copy of the quick embedded set: <data-root>/voc2007/VOC2007."""
    root = tmp_path / "data"
    shutil.copytree(voc_quick_root / "fmnist-voc-quick", root / "voc2007" / "VOC2007")
    return root


def _run_cli(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture, *extra: str) -> tuple[int, str]:
    """`dcbench eval --task voc-det ...` through main() in this process: (exit code, stderr)."""
    monkeypatch.setenv("DCBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", [
        "dcbench", "eval", "--task", "voc-det", "--ckpt", "random:alexnet-small", "--setting",
        "fc6-8", "--data-root", str(data_root), "--results", str(tmp_path / "res"), "--set",
        "iterations=2", "--set", "dataset=voc2007", "--workers", "0", *extra])
    with pytest.raises(SystemExit) as exit_:
        main()
    return int(exit_.value.code or 0), capsys.readouterr().err


def _one_line_exit_2(result: tuple[int, str], *fragments: str) -> None:
    code, err = result
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    for f in fragments:
        assert f in lines[0], lines[0]


def test_proposal_file_lacking_images_is_refused(voc_quick_root: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    root = _devkit(voc_quick_root, tmp_path)
    devkit = root / "voc2007" / "VOC2007"
    ids = (devkit / "ImageSets" / "Main" / "trainval.txt").read_text().split()
    boxes = np.empty((1, len(ids) - 1), dtype=object)
    for k in range(len(ids) - 1):
        boxes[0, k] = np.array([[1, 1, 20, 20]], dtype=np.float64)
    images = np.empty((len(ids) - 1, 1), dtype=object)
    for k, i in enumerate(ids[:-1]):
        images[k, 0] = i
    (devkit / "selective_search").mkdir()
    scipy.io.savemat(devkit / "selective_search" / "voc_2007_trainval.mat",
                     {"boxes": boxes, "images": images})
    result = _run_cli(root, tmp_path, monkeypatch, capsys, "--set", "proposals=mat")
    _one_line_exit_2(result, ids[-1], "voc_2007_trainval.mat")
    assert not (tmp_path / "res" / "records.jsonl").exists()


def test_box_outside_the_image_is_refused(voc_quick_root: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture) -> None:
    root = _devkit(voc_quick_root, tmp_path)
    ann = sorted((root / "voc2007" / "VOC2007" / "Annotations").glob("*.xml"))[0]
    text = ann.read_text()
    start = text.index("<xmax>") + len("<xmax>")
    ann.write_text(text[:start] + "999" + text[text.index("</xmax>"):])
    _one_line_exit_2(_run_cli(root, tmp_path, monkeypatch, capsys), ann.name, "outside")


def test_empty_annotation_file_is_refused(voc_quick_root: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture) -> None:
    root = _devkit(voc_quick_root, tmp_path)
    ann = sorted((root / "voc2007" / "VOC2007" / "Annotations").glob("*.xml"))[3]
    ann.write_text("")
    _one_line_exit_2(_run_cli(root, tmp_path, monkeypatch, capsys), ann.name, "not valid XML")


@pytest.mark.slow
@pytest.mark.parametrize("task, overrides", [
    ("voc-det", ("iterations=2", "images_per_batch=2", "max_test=4", "evals=1")),
    ("voc-seg", ("iterations=2", "batch_size=2", "max_test=4", "evals=1")),
])
def test_released_format_alexnet_runs_at_224_px_scale(task: str, overrides: tuple, tmp_path: Path,
                                                      voc_quick_root: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from test_checkpoint import write_released_alexnet

    monkeypatch.setenv("DCBENCH_CACHE", str(tmp_path / "cache"))
    write_released_alexnet(tmp_path / "released.pth")
    opts = {"task": task, "ckpt": str(tmp_path / "released.pth"), "settings": ("all",),
            "quick": True, "results": str(tmp_path / "res"), "data_root": str(voc_quick_root),
            "workers": 0, "overrides": overrides}
    (r,) = run_eval(opts)
    assert r.checkpoint["arch"] == "alexnet" and r.extra["n_test"] == 4
    assert r.extra["size_factor" if task == "voc-det" else "image_scale"] == 7.0
