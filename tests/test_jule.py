"""JULE: the triplet loss by hand, the batch organiser, the config schema, and a short run on
digits whose checkpoint goes through the clustering and linear-probe tasks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dcbench.errors import DcbenchError
from dcbench.evaluate import run_eval
from dcbench.methods import jule, run_pretraining


def test_triplet_loss_equals_hand_computed_triplets():
    # 4 points on a line (not normalised: the loss only needs distances), clusters 0 0 1 1
    z = torch.tensor([[0.0], [1.0], [3.0], [0.5]])
    y = torch.tensor([0, 0, 1, 1])
    gen = torch.Generator().manual_seed(0)
    loss, n = jule.triplet_loss(z, y, negatives=20, gamma=1.0, margin=0.2, gen=gen)
    # pairs (0,1) and (2,3); one other cluster in the batch -> 1 negative drawn from 2 points
    assert n == 2
    # the drawn negatives are random: check against every choice the rule allows
    d2 = (z - z.T) ** 2
    options = []
    for n0 in (2, 3):
        for n1 in (0, 1):
            a = max(0.0, float(d2[0, 1] - d2[0, n0] + 0.2))
            b = max(0.0, float(d2[2, 3] - d2[2, n1] + 0.2))
            options.append((a + b) / 2)
    # (0,1,2): 1-9+.2 -> 0; (0,1,3): 1-.25+.2 = .95; (2,3,0): 6.25-9+.2 -> 0;
    # (2,3,1): 6.25-4+.2 = 2.45
    assert sorted(options) == pytest.approx([0.0, 0.475, 1.225, 1.7])
    assert float(loss) in [pytest.approx(o) for o in options]


def test_triplet_loss_weights_the_positive_term_by_gamma_and_uses_every_negative():
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 3.0]])
    y = torch.tensor([0, 0, 1, 2])
    loss, n = jule.triplet_loss(z, y, negatives=5, gamma=2.0, margin=0.0,
                                gen=torch.Generator().manual_seed(1))
    # one pair (0,1), negatives = min(5, 3 clusters - 1) = 2: points 2 and 3
    # 2*1 - 4 -> 0 ; 2*1 - 9 -> 0
    assert n == 2 and float(loss) == 0.0
    loss, _ = jule.triplet_loss(z, y, negatives=5, gamma=5.0, margin=0.0,
                                gen=torch.Generator().manual_seed(1))
    assert float(loss) == pytest.approx(((5 - 4) + 0) / 2)


def test_triplet_loss_without_pairs_or_negatives_is_zero_with_no_triplets():
    z = torch.randn(4, 3, requires_grad=True)
    for y in (torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 0, 0])):
        loss, n = jule.triplet_loss(z, y, 20, 1.0, 0.2, torch.Generator().manual_seed(0))
        assert n == 0 and float(loss.detach()) == 0.0


def test_organiser_sees_every_image_once_in_same_cluster_chunks():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 503)
    batches = jule.organise(labels, batch=100, chunk=10, rng=np.random.default_rng(1))
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(503))
    assert all(len(b) <= 100 for b in batches)
    assert all(len(np.unique(labels[b])) >= 2 for b in batches[:-1])   # negatives exist
    # whole chunks: per cluster, every batch holds a multiple of 10 of its members except the
    # one batch that holds its last (short) chunk
    for c, size in enumerate(np.bincount(labels)):
        counts = [int((labels[b] == c).sum()) for b in batches]
        odd = [k % 10 for k in counts if k % 10]
        assert odd == ([size % 10] if size % 10 else []), c


def test_lr_follows_the_inv_schedule():
    cfg = {"lr": 0.01}
    assert jule.lr_at(cfg, 0) == 0.01
    assert jule.lr_at(cfg, 10_000) == pytest.approx(0.01 * 2 ** -0.75)


@pytest.mark.parametrize(("sets", "message"), [
    ({"eta": 1.5}, r"--set eta=1.5 is out of range: expected a number in \(0, 1\]"),
    ({"eta": 0}, r"--set eta=0 is out of range"),
    ({"k_s": 0}, r"--set k_s=0 is out of range: expected an integer in \[1, inf\)"),
    ({"bogus": 1}, "has no such option"),
    ({"margin": "wide"}, r"--set margin=wide: expected a number in \[0, inf\)"),
    ({"split": "train"}, "has splits all"),
])
def test_bad_jule_options_are_refused_before_any_work(tmp_path: Path, sets, message):
    with pytest.raises(DcbenchError, match=message):
        run_pretraining({"method": "jule", "data": "digits", "out": str(tmp_path / "run"),
                         "jule_options": sets})
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def jule_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("jule") / "run"
    run_pretraining({"method": "jule", "data": "digits", "out": str(out), "epochs": 1,
                     "seed": 5})
    return out


def test_a_short_run_reaches_the_target_and_records_sf_and_rc(jule_run: Path):
    log = [json.loads(x) for x in (jule_run / "log.jsonl").read_text().splitlines()]
    assert log[0]["n_clusters"] > 100                  # the 1-NN components of the pixels
    assert [r["n_clusters"] for r in log][-1] == 10
    final = log[-1]
    assert final["final"] and final["n_images"] == 1797
    ckpt = torch.load(jule_run / "checkpoint.pth.tar", weights_only=False)
    assert ckpt["arch"] == "jule-32" and ckpt["method"] == "jule"
    labels = np.asarray(ckpt["labels"])
    assert len(labels) == 1797 and labels.max() == 9
    from dcbench.clustering.metrics import all_metrics
    from dcbench.data.real.digits import digits_28px
    assert all_metrics(digits_28px()[1], labels) == pytest.approx(final["jule_sf"])
    # resuming a finished run does nothing more
    row = run_pretraining({"method": "jule", "data": "digits", "out": str(jule_run),
                           "epochs": 1, "seed": 5, "resume": True})
    assert row["epoch"] == final["epoch"]


def test_jule_checkpoint_through_the_clustering_table_settings(jule_run: Path, tmp_path: Path):
    ckpt = str(jule_run / "checkpoint.pth.tar")
    records = run_eval({"task": "clustering", "ckpt": ckpt, "settings": ("jule-sf", "jule-rc"),
                        "results": str(tmp_path), "overrides": ("dataset=digits",)})
    final = [json.loads(x) for x in (jule_run / "log.jsonl").read_text().splitlines()][-1]
    got = {(r.setting, r.metric): r.value for r in records}
    assert got[("jule-sf", "nmi_geometric")] == pytest.approx(final["jule_sf"]["nmi_geometric"])
    # JULE-RC re-clusters the checkpoint's outputs exactly as the run did at its end
    assert got[("jule-rc", "nmi_geometric")] == pytest.approx(final["jule_rc"]["nmi_geometric"],
                                                              abs=1e-6)
    with pytest.raises(DcbenchError, match="clustered digits all"):
        run_eval({"task": "clustering", "ckpt": ckpt, "settings": ("jule-sf",),
                  "results": str(tmp_path), "quick": True})


def test_jule_sf_refuses_a_checkpoint_that_is_not_jules(tmp_path: Path):
    with pytest.raises(DcbenchError, match="needs a JULE checkpoint"):
        run_eval({"task": "clustering", "ckpt": "random:alexnet-small", "settings": ("jule-sf",),
                  "results": str(tmp_path), "overrides": ("dataset=digits",), "quick": True})


def test_jule_checkpoint_runs_the_linear_probe_on_the_layers_it_has(jule_run: Path,
                                                                    tmp_path: Path):
    ckpt = str(jule_run / "checkpoint.pth.tar")
    records = run_eval({"task": "linear-fmnist", "ckpt": ckpt, "results": str(tmp_path),
                        "quick": True})
    assert sorted({r.setting for r in records}) == ["conv1", "conv2"]
    with pytest.raises(DcbenchError, match="jule-32 has no layer conv5"):
        run_eval({"task": "linear-fmnist", "ckpt": ckpt, "settings": ("conv5",),
                  "results": str(tmp_path), "quick": True})


def test_deepcluster_flags_are_refused_for_jule_not_ignored(tmp_path: Path):
    with pytest.raises(DcbenchError, match="--k, --reassign, --clustering are not options of "
                                           "jule"):
        run_pretraining({"method": "jule", "data": "digits", "out": str(tmp_path / "run"),
                         "k": 50, "reassign": 2.0, "clustering": "kmeans"})
    assert not (tmp_path / "run").exists()


def test_a_target_above_the_images_is_refused_and_leaves_no_run_folder(tmp_path: Path):
    out = tmp_path / "run"
    with pytest.raises(DcbenchError, match="target 5000 clusters needs more than the 1797"):
        run_pretraining({"method": "jule", "data": "digits", "out": str(out),
                         "jule_options": {"target": 5000}})
    assert not out.exists()
