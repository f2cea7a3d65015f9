"""retrieval-oxford / retrieval-paris: the task on the quick embedded sets (both protocols
recorded, whitening learned on the other set, the trunk left unchanged) and bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dcbench.cli import main
from dcbench.data.embedded.retrieval_builder import build_fmnist_retrieval
from dcbench.errors import DcbenchError
from dcbench.evaluate import run_eval
from dcbench.models import build_model
from dcbench.tasks import RunContext, get_task
from dcbench.tasks import retrieval_rmac as retrieval_module


@pytest.fixture(scope="session")
def retrieval_root(tmp_path_factory: pytest.TempPathFactory, fmnist_root: Path) -> Path:
    """<data-root> with the quick fmnist-oxford and fmnist-paris (shared: do not modify)."""
    base = tmp_path_factory.mktemp("retrieval")
    for name in ("fmnist-oxford", "fmnist-paris"):
        build_fmnist_retrieval(base / f"{name}-quick", name, fmnist_root, quick=True,
                               show_progress=False)
    return base


def compute_ap_cpp(ranked, positives, junk) -> float:
    """Oxford's compute_ap.cpp as a plain loop: skip junk, trapezoids from precision 1."""
    pos, junk = {int(i) for i in positives}, {int(i) for i in junk}
    ap, tp, j, old_rec, old_prec = 0.0, 0, 0, 0.0, 1.0
    for x in (int(i) for i in ranked):
        if x in junk:
            continue
        tp += x in pos
        rec, prec = tp / len(pos), tp / (j + 1)
        ap += (rec - old_rec) * (old_prec + prec) / 2.0
        old_rec, old_prec, j = rec, prec, j + 1
    return ap


def test_quick_run_records_original_and_revisited_map(retrieval_root: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = retrieval_module.map_original

    def spy(ranks, gnd):
        seen.append((np.asarray(ranks).copy(), gnd))
        return real(ranks, gnd)

    monkeypatch.setattr(retrieval_module, "map_original", spy)
    opts = {"task": "retrieval-oxford", "ckpt": "random:alexnet-small", "quick": True,
            "results": str(tmp_path), "data_root": str(retrieval_root), "workers": 0}
    records = run_eval(opts)
    by_metric = {r.metric: r for r in records}
    assert set(by_metric) == {"map", "map_easy", "map_medium", "map_hard"}
    r = by_metric["map"]
    assert (r.dataset, r.setting, r.value) == ("fmnist-oxford-quick", "rmac", r.best)
    assert r.extra["whitened_on"] == "fmnist-paris-quick" and r.extra["max_side"] == 96
    # 40 queries over 150 images: chance is about 15 / 150 = 10 mAP; R-MAC on a random
    # trunk already matches instances far above it
    assert 10 < r.value
    # the recorded value is 100 x the mean compute_ap.cpp AP of the ranking it computed
    (ranks, gnd), = seen
    aps = [compute_ap_cpp(ranks[i], [*g.get("good", ()), *g.get("ok", ())], g.get("junk", ()))
           for i, g in enumerate(gnd) if len(g.get("good", ())) + len(g.get("ok", ()))]
    assert len(aps) == 40 and r.value == pytest.approx(100.0 * np.mean(aps), abs=1e-9)
    # the revisited protocol ranks a database without the queries: its extraction is shared
    assert r.extra["n_database"] == 150 and r.extra["n_queries"] == 40


def test_whitening_set_must_be_another_retrieval_set() -> None:
    task = get_task("retrieval-paris")
    ctx = RunContext(device=torch.device("cpu"), options={"whiten_on": "fmnist-paris"})
    with pytest.raises(DcbenchError, match="whiten_on must be another retrieval set"):
        task.config(ctx)
    ctx = RunContext(device=torch.device("cpu"), options={"pool": "sum"})
    with pytest.raises(DcbenchError, match="pool must be max"):
        task.config(ctx)


def test_trunk_is_left_unchanged(retrieval_root: Path) -> None:
    trunk = build_model("alexnet-small", seed=0)
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    task = get_task("retrieval-paris")
    ctx = RunContext(device=torch.device("cpu"), data_root=str(retrieval_root), quick=True,
                     workers=0, options={"whiten_images": 20})
    out = task.run(trunk, ["rmac"], ctx)
    assert out[0].extra["whiten_images"] == 20 and out[0].dataset == "fmnist-paris-quick"
    assert all(torch.equal(before[k], v) for k, v in trunk.state_dict().items())


def test_missing_ground_truth_file_exits_2_with_one_line(retrieval_root: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    import shutil

    root = tmp_path / "data"
    for name in ("fmnist-oxford-quick", "fmnist-paris-quick"):
        shutil.copytree(retrieval_root / name, root / name)
    gt = sorted((root / "fmnist-oxford-quick" / "gt").glob("*_good.txt"))[0]
    gt.unlink()
    monkeypatch.setattr(sys, "argv", ["dcbench", "eval", "--task", "retrieval-oxford",
                                      "--ckpt", "random:alexnet-small", "--quick",
                                      "--data-root", str(root), "--results",
                                      str(tmp_path / "res"), "--workers", "0"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert exit_.value.code == 2 and len(err) == 1 and gt.name in err[0]
    assert not (tmp_path / "res" / "records.jsonl").exists()


def test_multi_scale_sums_the_regions_of_every_scale(retrieval_root: Path) -> None:
    task = get_task("retrieval-oxford")
    trunk = build_model("alexnet-small", seed=0)
    ctx = RunContext(device=torch.device("cpu"), data_root=str(retrieval_root), quick=True,
                     workers=0, options={"scales": "1,0.5", "whiten_images": 30})
    (multi, *_) = task.run(trunk, ["rmac"], ctx)
    assert multi.extra["sides"] == [96, 48] and multi.metric == "map"
    ctx.options = {"whiten_images": 30}
    (single, *_) = task.run(trunk, ["rmac"], ctx)
    assert single.extra["sides"] == [96] and single.value != multi.value
    with pytest.raises(DcbenchError, match="scales are factors"):
        task.config(RunContext(device=torch.device("cpu"), options={"scales": "0"}))
