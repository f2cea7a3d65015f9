"""Every task on a ResNet and a ViT (issue 32): the trunk's own taps as settings, the released
layouts through a task, and the VOC tasks that need fc6 / fc7 refusing before any work.
Small --set sizes keep a 224 px trunk within seconds on 2 CPU cores."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_modern_trunks import _resnet_layouts
from test_tasks import run

from dcbench.errors import DcbenchError
from dcbench.models import build_model
from dcbench.results import records_path
from dcbench.tasks.pooling import Pooler

SMALL = {
    "linear-fmnist": ("max_train=32", "max_test=16", "epochs=1"),
    "knn": ("max_train=32", "max_test=16"),
    "clustering": ("max_images=40", "pca_dim=8"),
    "retrieval-oxford": ("max_side=64",),
    "voc-cls": ("iterations=2", "batch_size=4", "max_train=8", "max_test=8", "test_crops=1",
                "evals=1"),
}


def test_a_resnet50_is_pooled_as_vissl_s_linear_benchmark() -> None:
    trunk = build_model("resnet50", sobel=False, seed=0).eval()
    pooler = Pooler(trunk, trunk.role("probe"), torch.device("cpu"))
    assert pooler.dims == {"conv1": 64 * 12 * 12, "res2": 256 * 6 * 6, "res3": 512 * 4 * 4,
                           "res4": 1024 * 3 * 3, "res5": 2048 * 2 * 2, "res5avg": 2048}


@pytest.mark.slow
@pytest.mark.parametrize("arch,task,settings", [
    ("resnet18", "linear-fmnist", ["conv1", "res2", "res3", "res4", "res5", "res5avg"]),
    ("resnet18", "knn", ["res5avg"]),
    ("resnet18", "clustering", ["res5avg"]),
    ("resnet18", "voc-cls", ["frozen", "all"]),
    ("vit-s16", "linear-fmnist", ["cls4", "cls+avgpool"]),
    ("vit-s16", "knn", ["cls"]),
    ("vit-s16", "clustering", ["cls"]),
    ("vit-s16", "retrieval-oxford", ["rmac"]),
    ("vit-s16", "voc-cls", ["frozen", "all"]),
])
def test_each_task_runs_quick_on_the_trunks_own_settings(tmp_path: Path, arch: str, task: str,
                                                         settings: list[str]) -> None:
    records = run(task, tmp_path, ckpt=f"random:{arch}", overrides=SMALL[task])
    assert list(dict.fromkeys(r.setting for r in records)) == settings
    assert {r.checkpoint["arch"] for r in records} == {arch}
    assert all(math.isfinite(r.value) for r in records)


def test_one_resnet50_in_four_layouts_gives_identical_retrieval_records(tmp_path: Path) -> None:
    """The must-show: torchvision, MoCo v2, SwAV and DINO files of one trunk, one result."""
    layouts = _resnet_layouts(build_model("resnet50", sobel=False, seed=7))
    rows = {}
    for layout in ("torchvision", "moco", "swav", "dino"):
        torch.save(layouts[layout], tmp_path / f"{layout}.pth")
        records = run("retrieval-oxford", tmp_path / layout, ckpt=str(tmp_path / f"{layout}.pth"),
                      overrides=SMALL["retrieval-oxford"])
        rows[layout] = [(r.setting, r.metric, r.value) for r in records]
        assert {r.checkpoint["arch"] for r in records} == {"resnet50"}
        assert {r.checkpoint["format"] for r in records} == {
            {"dino": "dino-teacher"}.get(layout, layout)}
    assert len(rows["torchvision"]) >= 2
    assert rows["moco"] == rows["swav"] == rows["dino"] == rows["torchvision"]


def test_voc_cls_quick_on_a_moco_v2_file(tmp_path: Path) -> None:
    torch.save(_resnet_layouts(build_model("resnet50", sobel=False, seed=1))["moco"],
               tmp_path / "moco_v2.pth.tar")
    records = run("voc-cls", tmp_path, ckpt=str(tmp_path / "moco_v2.pth.tar"),
                  overrides=SMALL["voc-cls"])
    assert [r.setting for r in records if r.metric == "map"] == ["frozen", "all"]
    assert all(math.isfinite(r.value) for r in records)
    assert records[0].checkpoint["format"] == "moco"
    assert "encoder_k (the key encoder)" in records[0].checkpoint["dropped"]


@pytest.mark.parametrize("task", ["voc-det", "voc-seg"])
def test_the_fc_tasks_refuse_a_resnet_and_name_what_it_runs(tmp_path: Path, task: str) -> None:
    with pytest.raises(DcbenchError, match=f"'{task}' needs a trunk with fc6 and fc7.*a "
                                           f"resnet18 runs on: linear-imagenet.*voc-cls"):
        run(task, tmp_path, ckpt="random:resnet18")
    with pytest.raises(DcbenchError, match="resnet18 has no fc6 / fc7.*'frozen'"):
        run("voc-cls", tmp_path, ckpt="random:resnet18", settings=("fc6-8",))
    assert not records_path(tmp_path).exists()


def test_voc_cls_all_by_name_is_the_all_setting_alone_on_a_resnet(tmp_path: Path) -> None:
    """VOC's "all" is a setting (train everything), not "every setting": on a ResNet,
    `--setting all` runs ALL only, no setting runs frozen and all."""
    from dcbench.evaluate import prepare_request

    base = {"task": "voc-cls", "ckpt": "random:resnet18", "seed": 0, "seeds": 1,
            "force": False, "quick": True, "data_root": None, "results": str(tmp_path),
            "overrides": (), "workers": 0}
    assert prepare_request({**base, "settings": ("all",)}).settings == ["all"]
    assert prepare_request({**base, "settings": ()}).settings == ["frozen", "all"]
