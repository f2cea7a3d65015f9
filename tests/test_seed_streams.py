"""The seeds of a pretraining epoch: one independent stream per source of randomness (the PCA
sample, the k-means init, the sampler, the head, the augmentation) for the paper-protocol
runs, or the one shared epoch seed with which the embedded recipe's showcase runs were made."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_pretrain import pretrain, weights

from dcbench.errors import DcbenchError
from dcbench.faults import KILLED_EXIT
from dcbench.methods import cluster_pass, run_pretraining
from dcbench.methods.config import differences, resolve
from dcbench.methods.session import STREAMS, epoch_seed, stream_seeds


def test_shared_streams_are_the_epoch_seed_and_independent_ones_all_differ():
    assert stream_seeds(31, 2, "shared") == dict.fromkeys(STREAMS, 31 * 100_003 + 2)
    ind = stream_seeds(31, 2, "independent")
    assert set(ind) == set(STREAMS) and len(set(ind.values())) == len(STREAMS)
    assert ind == stream_seeds(31, 2, "independent")           # a resume replays them
    # each depends on both the seed and the epoch, and none is the shared epoch seed
    for other in (stream_seeds(31, 3, "independent"), stream_seeds(32, 2, "independent")):
        assert all(ind[k] != other[k] for k in STREAMS)
    assert epoch_seed(31, 2) not in ind.values()
    with pytest.raises(DcbenchError, match="unknown seed_streams 'one'"):
        stream_seeds(31, 2, "one")


def test_paper_runs_default_to_independent_streams_and_old_runs_resume_as_shared():
    paper = resolve({"data": "imagenet", "out": "x"})
    small = resolve({"data": "fashion-mnist", "out": "x"})
    assert (paper["seed_streams"], small["seed_streams"]) == ("independent", "shared")
    old = {k: v for k, v in small.items() if k != "seed_streams"}
    assert differences(old, small) == []
    assert differences(old, {**small, "seed_streams": "independent"}) == ["seed_streams"]


def test_each_stream_reaches_its_consumer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The PCA sample and the k-means get their own stream's seed (not each other's, not the
    epoch seed), the sampler draws from its own."""
    got: dict[str, list[int]] = {"pca_sample": [], "kmeans": []}
    real_reduce, real_cluster = cluster_pass.reduced_features, cluster_pass.cluster

    def spy_reduce(*args, seed, **kwargs):
        got["pca_sample"].append(seed)
        return real_reduce(*args, seed=seed, **kwargs)

    def spy_cluster(x, algorithm, k, seed, niter, empty="paper"):
        got["kmeans"].append(seed)
        return real_cluster(x, algorithm, k, seed, niter, empty)

    monkeypatch.setattr(cluster_pass, "reduced_features", spy_reduce)
    monkeypatch.setattr(cluster_pass, "cluster", spy_cluster)
    run_pretraining({"data": "fashion-mnist", "out": str(tmp_path / "run"), "epochs": 2,
                     "max_images": 256, "k": 8, "batch_size": 64, "workers": 0,
                     "pca_dim": 32, "seed_streams": "independent"})
    want = [stream_seeds(31, e, "independent") for e in (1, 2)]
    assert got == {name: [w[name] for w in want] for name in got}


def test_an_independent_streams_run_resumes_exactly_and_differs_from_shared(tmp_path: Path):
    """Killed inside epoch 2, the resume ends with the uninterrupted run's bits; the shared-seed
    run of the same config trains other weights (the flag reaches the training)."""
    args = ["--epochs", "2", "--seed-streams", "independent"]
    straight = tmp_path / "straight"
    pretrain(straight, *args)
    cut = tmp_path / "cut"
    assert pretrain(cut, *args, fault="mid-train:2", check=False).returncode == KILLED_EXIT
    pretrain(cut, *args, "--resume")
    a, b = weights(straight / "checkpoint.pth.tar"), weights(cut / "checkpoint.pth.tar")
    assert all((a[k] == b[k]).all() for k in a)
    for e in (1, 2):
        name = f"assignments/epoch_{e:04d}.npy"
        assert np.array_equal(np.load(straight / name), np.load(cut / name))
    assert json.loads((straight / "config.json").read_text())["seed_streams"] == "independent"
    shared = tmp_path / "shared"
    pretrain(shared, "--epochs", "1", "--seed-streams", "shared")
    assert not np.array_equal(np.load(shared / "assignments/epoch_0001.npy"),
                              np.load(straight / "assignments/epoch_0001.npy"))
