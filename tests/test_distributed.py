"""The torchrun path on CPU: two gloo processes share the data, agree on the assignment, and
only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dcbench.checkpoint import load_trunk


@pytest.mark.slow
def test_two_cpu_processes_pretrain_and_agree(tmp_path: Path):
    out = tmp_path / "ddp"
    env = {**os.environ, "DCBENCH_NO_PROGRESS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_port=29531", "-m", "dcbench", "pretrain", "--out", str(out),
         "--max-images", "256", "--k", "8", "--batch-size", "64", "--workers", "0",
         "--pca-dim", "32", "--epochs", "2"],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    # every rank checked that it trains on the same assignment (the run fails otherwise);
    # the digest in the log is that of the assignment saved by rank 0
    import hashlib
    for r in rows:
        assert r["ranks"] == 2
        saved = np.load(out / f"assignments/epoch_{r['epoch']:04d}.npy")
        assert hashlib.sha256(saved.astype(np.int64).tobytes()).hexdigest()[:16] == \
            r["assignment_sha256"]
        assert saved.min() >= 0 and len(np.unique(saved)) == 8
    # each rank trained on its half: the epoch's images, summed over ranks, are all 256
    assert all(r["images_trained"] == 256 for r in rows)
    trunk, info = load_trunk(str(out / "checkpoint.pth.tar"))
    assert info.epoch == 2 and all(torch.isfinite(p).all() for p in trunk.parameters())
    # only rank 0 wrote: no stray temp files, one checkpoint
    assert sorted(p.name for p in out.iterdir()) == ["assignments", "checkpoint.pth.tar",
                                                     "config.json", "log.jsonl"]


SEQUENCE = Path(__file__).parent / "cli_sequence.py"


def _evals(runs: list[list[str]], results: Path, cache: Path, nproc: int = 1,
           port: int = 29541) -> subprocess.CompletedProcess:
    """`dcbench eval` of every run in one process (nproc 1) or one torchrun launch of nproc
    processes (tests/cli_sequence.py): one interpreter start for all, not one per command."""
    # one thread per process in both runs (torchrun's default): PCA and k-means results
    # depend in their last bits on the BLAS thread count, and k-means amplifies that
    env = {**os.environ, "DCBENCH_NO_PROGRESS": "1", "DCBENCH_CACHE": str(cache),
           "OMP_NUM_THREADS": "1"}
    head = ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
             f"--master_port={port}"] if nproc > 1 else [sys.executable])
    commands = [["eval", *args, *([] if "--set" in args else ["--quick"]), "--workers", "0",
                 "--results", str(results)] for args in runs]
    return subprocess.run(head + [str(SEQUENCE), json.dumps(commands)], capture_output=True,
                          text=True, env=env, timeout=900)


def _values(results: Path) -> dict[tuple, tuple]:
    rows = [json.loads(x) for x in (results / "records.jsonl").read_text().splitlines()]
    keys = [(r["task"], r["setting"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)), "a record was written twice"
    return {(r["task"], r["setting"], r["metric"]): (r["value"], r["world_size"],
                                                      r["extra"].get("n_train"),
                                                      r["extra"].get("n_test")) for r in rows}


@pytest.mark.slow
def test_eval_under_two_processes_shards_and_records_what_one_process_does(tmp_path: Path):
    """kNN (the ranks' top-k merged), clustering (every rank's rows gathered back in dataset
    order: bit-identical features, tested in test_collect_gathers_in_dataset_order) and the
    linear probe (DDP heads on the global batch; the shuffle and the heads' BatchNorm
    statistics differ per rank: within 1.5 points) and retrieval (each rank extracts every
    2nd image, every rank gathers all: the same mAP) recorded once, by rank 0, with
    world_size 2 and the counts of all ranks."""
    cache = tmp_path / "cache"
    runs = [["--task", "knn", "--ckpt", "random:alexnet-small"],
            ["--task", "clustering", "--ckpt", "random:alexnet-small", "--setting", "conv5",
             "--setting", "fc7"],
            ["--task", "linear-fmnist", "--ckpt", "random:alexnet-small", "--setting", "conv3",
             "--setting", "conv5", "--set", "max_train=2048", "--set", "max_test=1024",
             "--set", "epochs=8"],
            ["--task", "retrieval-oxford", "--ckpt", "random:alexnet-small"]]
    one = _evals(runs, tmp_path / "one", cache)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _evals(runs, tmp_path / "two", cache, nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]
    single, double = _values(tmp_path / "one"), _values(tmp_path / "two")
    assert single.keys() == double.keys() and len(single) == 2 * 2 + 2 * 4 + 2 * 2 + 4
    for key, (value, world, n_train, n_test) in single.items():
        v2, w2, t2, e2 = double[key]
        assert (world, w2) == (1, 2) and (n_train, n_test) == (t2, e2), key
        if key[0] == "linear-fmnist":
            assert abs(value - v2) <= 1.5, (key, value, v2)
        elif key[0] == "knn":
            assert abs(value - v2) <= 0.2, (key, value, v2)     # a near-tie may flip
        else:
            assert value == pytest.approx(v2, abs=1e-3), key


@pytest.mark.slow
def test_voc_tasks_under_two_processes_shard_and_record_what_one_process_does(tmp_path: Path):
    """voc-cls, voc-det and voc-seg in both settings: each rank trains on half of every global
    batch (the step's exactness: tests/test_voc_sharding.py) and measures every 2nd test
    image, rank 0 records once. Detection and segmentation run with lr 1e-9, so their test
    scores are those of the shared initial model: a rank that measured on its own weights or
    a score not gathered over the ranks changes them. Classification trains for real; its
    crops and dropout differ per rank, so it agrees within 1 point (its seed-to-seed spread on
    this set is 0.55 points)."""
    cache = tmp_path / "cache"
    frozen = ["--set", "lr=1e-9", "--set", "iterations=4", "--set", "evals=1", "--set",
              "max_train=32", "--set", "max_test=48", "--set", "dataset=fmnist-voc-quick"]
    both = ["--ckpt", "random:alexnet-small", "--setting", "fc6-8", "--setting", "all"]
    runs = [["--task", "voc-cls", *both], ["--task", "voc-det", *both, *frozen],
            ["--task", "voc-seg", *both, *frozen]]
    one = _evals(runs, tmp_path / "one", cache)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _evals(runs, tmp_path / "two", cache, nproc=2, port=29545)
    assert two.returncode == 0, two.stderr[-3000:]
    single, double = _values(tmp_path / "one"), _values(tmp_path / "two")
    assert single.keys() == double.keys() and len(single) == 2 * 3
    for key, (value, world, n_train, n_test) in single.items():
        v2, w2, t2, e2 = double[key]
        assert (world, w2) == (1, 2) and (n_train, n_test) == (t2, e2), key
        if key[0] == "voc-cls":
            assert abs(value - v2) <= 1.0, (key, value, v2)
        else:
            assert value == pytest.approx(v2, abs=1e-6), (key, value, v2)
    rows = [json.loads(x) for x in (tmp_path / "two" / "records.jsonl").read_text().splitlines()]
    assert all(r["extra"]["skipped_test"] == 0 and r["extra"]["skipped_train"] == 0
               for r in rows)                   # every test image was scored (gathered)


def test_a_task_that_does_not_shard_is_refused_under_torchrun(tmp_path: Path, monkeypatch):
    from dcbench.errors import DcbenchError
    from dcbench.evaluate import run_eval
    from dcbench.tasks.registry import TASKS, Task, register_task

    @register_task("one-process-only")
    class OneProcess(Task):
        shards = False

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    try:
        with pytest.raises(DcbenchError, match="task 'one-process-only' does not split its "
                                               "work across"):
            run_eval({"task": "one-process-only", "ckpt": "random:alexnet-small",
                      "results": str(tmp_path)})
    finally:
        TASKS.pop("one-process-only")
    assert not (tmp_path / "records.jsonl").exists()


GATHER_SCRIPT = """
import sys, numpy as np, torch
from dcbench import distributed
from dcbench.checkpoint import load_trunk
from dcbench.models.fold_bn import folded_copy
from dcbench.tasks.features import collect
from dcbench.tasks.inputs import labelled_split, transform_for
from dcbench.tasks.pooling import Pooler
from dcbench.tasks.registry import RunContext
distributed.init()
trunk = folded_copy(load_trunk("random:alexnet-small")[0].eval())
data = labelled_split("fashion-mnist", "test", transform_for("fashion-mnist", "eval"), None,
                      300)
ctx = RunContext(device=torch.device("cpu"), workers=0)
feats, labels = collect(trunk, Pooler(trunk, ["conv5", "fc7"], ctx.device), data, ctx, "x")
if distributed.is_main():
    np.savez(sys.argv[1], labels=labels, **{k: v.numpy() for k, v in feats.items()})
"""


@pytest.mark.slow
def test_collect_gathers_in_dataset_order(tmp_path: Path):
    """Under torchrun each rank extracts every 2nd image; collect() must give every rank the
    single-process features, row for row, bit for bit (the per-image forward does not
    depend on the batch it is in)."""
    script = tmp_path / "gather.py"
    script.write_text(GATHER_SCRIPT)
    env = {**os.environ, "DCBENCH_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one.npz")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_port=29551", str(script), str(tmp_path / "two.npz")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert a["conv5"].shape == (300, 1536) and a["fc7"].shape == (300, 512)
    for key in ("labels", "conv5", "fc7"):
        assert np.array_equal(a[key], b[key]), key
