"""Resume restores the saved assignment (issue 20, row 3): a run stopped right after its
epoch-2 assignment was saved, then resumed, must train epoch 2 on the file on disk, not on a
fresh clustering. On CPU a re-clustering with the same epoch seed reproduces the saved file, so
these tests make the two differ: the file is replaced on disk by another valid partition, and
(in-process) the clustering is swapped for one that would give a third labelling.

The saved file carries no digest of its own: clustering_step checks only that the model state
it was computed from (model_sha256 in its .json) is the checkpoint's, so a changed .npy with
its .json intact is accepted and used (a changed model_sha256 is refused: test_pretrain.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dcbench.clustering.metrics import nmi
from dcbench.data import build_dataset, subset, targets_of
from dcbench.faults import KILLED_EXIT
from dcbench.methods import cluster_pass, deepcluster, run_pretraining

TINY = {"max_images": 256, "k": 8, "batch_size": 64, "workers": 0, "pca_dim": 32}
N = TINY["max_images"]


class Stopped(Exception):
    """Stands for the kill: raised where DCBENCH_FAULT=after-assignment:2 would exit."""


def digest16(a: np.ndarray) -> str:
    """The log's assignment_sha256 (dcbench.methods.deepcluster.check_ranks_agree)."""
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.int64).tobytes()).hexdigest()[:16]


def another_partition(k: int = 8) -> np.ndarray:
    """A valid assignment (every cluster non-empty) that no k-means of the run produced."""
    return np.random.default_rng(12345).permutation(np.arange(N) % k).astype(np.int64)


def log_rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]


def fmnist_subset_labels(seed: int = 31) -> np.ndarray:
    """The labels of the images the tiny run trains on (its seeded subset of train)."""
    return targets_of(subset(build_dataset("fashion-mnist", "train", None), N, seed))


def opts(out: Path, epochs: int, resume: bool = False) -> dict[str, Any]:
    return {"data": "fashion-mnist", "out": str(out), "epochs": epochs, "resume": resume,
            **TINY}


@pytest.fixture
def stopped_after_assignment_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run folder holding epoch 1's checkpoint and epoch 2's saved assignment."""
    def stop_at(name: str, epoch: int) -> None:
        if (name, epoch) == ("after-assignment", 2):
            raise Stopped

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(deepcluster, "fault_point", stop_at)
        with pytest.raises(Stopped):
            run_pretraining(opts(out, 2))
    assert [r["epoch"] for r in log_rows(out)] == [1]
    assert (out / "assignments/epoch_0002.npy").exists()
    return out


def test_resume_restores_the_saved_assignment_instead_of_re_clustering(
        stopped_after_assignment_2: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture):
    out = stopped_after_assignment_2
    path = out / "assignments/epoch_0002.npy"
    original = np.load(path).astype(np.int64)
    altered = another_partition()
    assert nmi(original, altered, "geometric") < 0.2            # really another partition
    np.save(path, altered.astype(np.int32))

    # a re-clustering on resume would now give a third labelling, different from both
    reclustered = (np.arange(N) // (N // 8)).astype(np.int64)
    calls: list[int] = []

    def fake_assign(trunk, dataset, cfg, seed, device):
        calls.append(seed)
        return reclustered.copy(), {"clusters": {}, "empty_reseeded": 0, "seconds": {}}

    sampled: list[np.ndarray] = []
    real_sampler = deepcluster.SAMPLERS["uniform"]

    def spy_sampler(assignment, n, rng):
        sampled.append(assignment.copy())
        return real_sampler(assignment, n, rng)

    monkeypatch.setattr(cluster_pass, "assign", fake_assign)
    monkeypatch.setitem(deepcluster.SAMPLERS, "uniform", spy_sampler)
    capsys.readouterr()
    session = run_pretraining(opts(out, 2, resume=True))
    err = capsys.readouterr().err
    assert "epoch 2: restored the saved assignment (not re-clustering)" in err
    assert calls == []                                  # nothing was clustered on resume
    assert len(sampled) == 1 and np.array_equal(sampled[0], altered)   # epoch 2 trained on it
    rows = log_rows(out)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["assignment_sha256"] == digest16(altered)
    assert rows[1]["assignment_sha256"] != digest16(original)
    # the log's label metrics are those of the restored partition (geometric NMI, Hungarian)
    labels = session.labels
    assert np.array_equal(labels, fmnist_subset_labels())
    assert rows[1]["nmi_labels"] == pytest.approx(nmi(labels, altered, "geometric"), abs=1e-12)
    assert rows[1]["nmi_prev"] == pytest.approx(
        nmi(altered, np.load(out / "assignments/epoch_0001.npy"), "geometric"), abs=1e-12)
    assert np.array_equal(np.load(path), altered)       # the file itself was not rewritten


def test_the_next_epoch_clusters_again(stopped_after_assignment_2: Path,
                                       monkeypatch: pytest.MonkeyPatch):
    """Only the epoch resumed into restores; epoch 3 (no saved file for it) is clustered,
    and its nmi_prev compares with the restored epoch-2 assignment."""
    out = stopped_after_assignment_2
    altered = another_partition()
    np.save(out / "assignments/epoch_0002.npy", altered.astype(np.int32))
    seeds: list[dict[str, int]] = []
    real_assign = cluster_pass.assign

    def spy_assign(trunk, dataset, cfg, seed, device):
        seeds.append(seed)       # the embedded recipe's shared streams: one epoch seed
        return real_assign(trunk, dataset, cfg, seed, device)

    monkeypatch.setattr(cluster_pass, "assign", spy_assign)
    run_pretraining(opts(out, 3, resume=True))
    assert [s["kmeans"] for s in seeds] == [31 * 100_003 + 3]   # only epoch 3, its seed
    rows = log_rows(out)
    third = np.load(out / "assignments/epoch_0003.npy").astype(np.int64)
    assert rows[1]["assignment_sha256"] == digest16(altered)
    assert rows[2]["assignment_sha256"] == digest16(third)
    assert rows[2]["nmi_prev"] == pytest.approx(nmi(third, altered, "geometric"), abs=1e-12)


def test_a_killed_run_resumes_on_the_altered_file_from_the_command_line(tmp_path: Path):
    """The same through `dcbench pretrain`, killed by the after-assignment:2 fault point."""
    out = tmp_path / "run"
    env = {**os.environ, "DCBENCH_NO_PROGRESS": "1"}
    env.pop("DCBENCH_FAULT", None)
    args = [sys.executable, "-m", "dcbench", "pretrain", "--out", str(out), "--epochs", "2"]
    for k, v in TINY.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    killed = subprocess.run(args, capture_output=True, text=True, timeout=600,
                            env={**env, "DCBENCH_FAULT": "after-assignment:2"})
    assert killed.returncode == KILLED_EXIT, killed.stderr[-2000:]
    assert [r["epoch"] for r in log_rows(out)] == [1]
    altered = another_partition()
    np.save(out / "assignments/epoch_0002.npy", altered.astype(np.int32))
    resumed = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=600,
                             env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "epoch 2: restored the saved assignment" in resumed.stderr
    rows = log_rows(out)
    assert rows[1]["assignment_sha256"] == digest16(altered)
    assert rows[1]["nmi_labels"] == pytest.approx(
        nmi(fmnist_subset_labels(), altered, "geometric"), abs=1e-12)
