"""voc-cls: the AP of the original script on hand-computed rankings, the frozen FC6-8
setting (conv weights AND BN buffers bit-identical), and a quick run on the embedded set."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from dcbench.errors import DcbenchError
from dcbench.evaluate import run_eval
from dcbench.models import build_model
from dcbench.models.fold_bn import fold_into
from dcbench.results import read_records
from dcbench.tasks import RunContext, get_task
from dcbench.tasks.voc.cls_train import masked_bce, train_and_test
from dcbench.tasks.voc.common import RandomSquareCrop
from dcbench.tasks.voc.metrics import classification_ap, mean_ap


def test_ap_leaves_difficult_rows_out() -> None:
    # the difficult row (label 0) scores highest: left out, the ranking is pos, neg, pos:
    # AP = (1/1 + 2/3) / 2. Counted as a negative: (1/2 + 2/4) / 2 = 0.5; as a positive
    # 0.9167; the VOC 11-point rule would give 0.8485.
    scores = np.array([[0.95], [0.9], [0.8], [0.7]])
    labels = np.array([[0], [1], [-1], [1]])
    assert classification_ap(scores, labels)[0] == pytest.approx((1 + 2 / 3) / 2)


def test_map_skips_classes_without_positives() -> None:
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.4], [0.1, 0.3, 0.6]])
    labels = np.array([[1, -1, -1], [-1, 1, -1], [-1, -1, 0]])
    aps = classification_ap(scores, labels)
    assert aps[:2].tolist() == [1.0, 1.0] and np.isnan(aps[2])
    assert mean_ap(np.array([1.0, 0.5, np.nan])) == 0.75
    with pytest.raises(ValueError, match="no class has a positive"):
        mean_ap(np.array([np.nan]))


def test_masked_bce_ignores_difficult_and_divides_by_batch() -> None:
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    labels = torch.tensor([[1, 0], [-1, 1]])
    # terms: -log s(0) = log 2; masked; -log(1 - s(1)) = log(1 + e); -log s(-1) = log(1 + e)
    expected = (np.log(2) + 2 * np.log(1 + np.e)) / 2
    assert float(masked_bce(logits, labels)) == pytest.approx(expected, rel=1e-6)


def test_crop_is_square_of_the_scale_range_and_seeded() -> None:
    crop = RandomSquareCrop(32, (0.1, 0.5), (0.5,) * 3, (0.25,) * 3)
    u = [[0.0, 0.0, 0.0]] * 11
    assert crop.box(96, 72, u) == (0, 0, 26, 26)           # sqrt(0.1 * 96 * 72) = 26.3
    u = [[0.999, 0.999, 0.999]] * 11        # torch.rand is in [0, 1)
    assert crop.box(96, 72, u) == (37, 13, 96, 72)          # side sqrt(0.5 * 6912) = 58.8
    from PIL import Image
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (72, 96, 3), np.uint8))
    torch.manual_seed(3)
    a = crop(img)
    torch.manual_seed(3)
    assert a.shape == (3, 32, 32) and torch.equal(a, crop(img))


def _train(setting: str, root: Path) -> tuple[torch.nn.Module, dict]:
    task = get_task("voc-cls")
    ctx = RunContext(device=torch.device("cpu"), data_root=str(root), quick=True, workers=0,
                     options={"iterations": 4, "batch_size": 8, "test_crops": 2})
    cfg = task.config(ctx)
    from dcbench.data import build_dataset
    from dcbench.tasks.voc.common import crop_transform
    tf = crop_transform(cfg["dataset"], 32, (cfg["scale_min"], cfg["scale_max"]))
    train = build_dataset(cfg["dataset"], "trainval", tf, data_root=str(root))
    test = build_dataset(cfg["dataset"], "test", tf, data_root=str(root))
    trunk = build_model("alexnet-small", seed=0)
    return trunk, train_and_test(trunk, setting, train, test, cfg, ctx)


def test_fc6_8_leaves_conv_weights_and_bn_buffers_bit_identical(voc_quick_root: Path) -> None:
    trunk, res = _train("fc6-8", voc_quick_root)
    trained = res["model"]
    # fc6-8 trains a copy whose frozen convs have BN folded in: they must come out as folded
    before = fold_into(copy.deepcopy(trunk)).features.state_dict()
    after = trained.features.state_dict()
    assert before.keys() == after.keys() and "1.running_mean" not in after
    assert all(torch.equal(before[k], after[k].cpu()) for k in before)
    assert not torch.equal(trunk.classifier[1].weight, trained.classifier[1].weight.cpu())
    assert [h["iteration"] for h in res["history"]] == [2, 4]


def test_all_trains_conv_but_never_updates_bn_statistics(voc_quick_root: Path) -> None:
    trunk, res = _train("all", voc_quick_root)
    before, after = trunk.features.state_dict(), res["model"].features.state_dict()
    assert not torch.equal(before["0.weight"], after["0.weight"].cpu())     # conv1 trained
    assert not torch.equal(before["1.weight"], after["1.weight"].cpu())     # BN gamma trained
    for k in before:
        if "running_" in k or "num_batches" in k:
            assert torch.equal(before[k], after[k].cpu()), k


def test_quick_eval_records_final_best_and_per_class(voc_quick_root: Path,
                                                      tmp_path: Path) -> None:
    opts = {"task": "voc-cls", "ckpt": "random:alexnet-small", "settings": ("fc6-8",),
            "quick": True, "results": str(tmp_path), "data_root": str(voc_quick_root),
            "workers": 0, "overrides": ("test_crops=2",)}
    records = run_eval(opts)
    assert [(r.task, r.setting, r.metric, r.dataset) for r in records] == [
        ("voc-cls", "fc6-8", "map", "fmnist-voc-quick")]
    r = records[0]
    aps = [v for v in r.extra["per_class_ap"].values() if v is not None]
    assert len(r.extra["per_class_ap"]) == 10
    assert r.value == pytest.approx(np.mean(aps), abs=1e-2)      # mAP = mean of the classes
    assert r.best == max(c["mAP"] for c in r.extra["curve"])
    assert r.extra["curve"][-1]["mAP"] == r.value and r.epochs == 20
    assert len(read_records(tmp_path / "records.jsonl")) == 1


def test_a_setting_records_the_same_value_whatever_ran_before_it(voc_quick_root: Path,
                                                                 tmp_path: Path) -> None:
    """ALL after FC6-8 in one invocation = ALL alone: each setting draws its heads from the
    same random state (before, FC6-8's crops and dropout moved it and ALL's heads differed)."""
    opts = {"task": "voc-cls", "ckpt": "random:alexnet-small", "quick": True,
            "data_root": str(voc_quick_root), "workers": 0,
            "overrides": ("test_crops=1", "iterations=5", "evals=1")}
    both = run_eval({**opts, "settings": ("fc6-8", "all"), "results": str(tmp_path / "a")})
    alone = run_eval({**opts, "settings": ("all",), "results": str(tmp_path / "b")})
    assert [r.setting for r in both] == ["fc6-8", "all"]
    assert both[1].value == alone[0].value and both[1].extra["curve"] == alone[0].extra["curve"]


@pytest.mark.parametrize("override, message", [
    ("iterations=0", r"--set iterations=0 is out of range: expected an integer in \[1"),
    ("scale_min=0.6", "scale_min <= scale_max"),
    ("lr=-1", r"--set lr=-1 is out of range: expected a number in \(0, inf\)"),
])
def test_bad_options_refused_before_work(override: str, message: str, tmp_path: Path) -> None:
    opts = {"task": "voc-cls", "ckpt": "random:alexnet-small", "quick": True,
            "results": str(tmp_path), "overrides": (override,)}
    with pytest.raises(DcbenchError, match=message):
        run_eval(opts)
    assert not (tmp_path / "records.jsonl").exists()


def test_a_finished_setting_is_recorded_when_a_later_one_fails(voc_quick_root: Path,
                                                               tmp_path: Path,
                                                               monkeypatch, capsys) -> None:
    """Issue 31: ALL diverged after FC6-8 had finished and the run wrote nothing. FC6-8 is
    recorded, the failure still stops the command with its own message, and the same command
    then runs ALL alone (FC6-8 is skipped as recorded)."""
    from dcbench.errors import DcbenchError
    from dcbench.tasks.voc import cls_train

    real = cls_train.train_and_test
    ran = []

    def diverging(trunk, setting, *args, **kwargs):
        ran.append(setting)
        if setting == "all":
            raise DcbenchError("voc-cls all: loss became nan at iteration 5")
        return real(trunk, setting, *args, **kwargs)

    monkeypatch.setattr(cls_train, "train_and_test", diverging)
    opts = {"task": "voc-cls", "ckpt": "random:alexnet-small", "quick": True,
            "data_root": str(voc_quick_root), "workers": 0, "results": str(tmp_path),
            "settings": ("fc6-8", "all"),
            "overrides": ("test_crops=1", "iterations=5", "evals=1")}
    with pytest.raises(DcbenchError, match="loss became nan at iteration 5"):
        run_eval(opts)
    assert ran == ["fc6-8", "all"]
    assert "voc-cls: fc6-8 finished before the failure below and is recorded" in \
        capsys.readouterr().err
    kept = read_records(tmp_path / "records.jsonl")
    assert [(r["setting"], r["epochs"]) for r in kept] == [("fc6-8", 5)]
    monkeypatch.setattr(cls_train, "train_and_test", real)
    again = run_eval(opts)
    assert [r.setting for r in again] == ["all"]
    assert [r["setting"] for r in read_records(tmp_path / "records.jsonl")] == ["fc6-8", "all"]
