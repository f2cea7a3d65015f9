"""Hand-computed clustering metrics on small cases where the wrong formula gives another
number (issue 20, rows 1 and 2): NMI's normalisation and ACC's matching.

labels [0, 0, 1, 1, 2, 2] against clusters [0, 0, 0, 1, 1, 1]:
    cells (0,0) = 2, (1,0) = 1, (1,1) = 1, (2,1) = 2 of 6; p(label) p(cluster) = 1/6 each
    H(labels) = ln 3, H(clusters) = ln 2, I = 2 (1/3) ln(2) + 2 (1/6) ln(1) = (2/3) ln 2
    NMI geometric  = I / sqrt(ln 3 ln 2) = 0.529541
    NMI arithmetic = I / ((ln 3 + ln 2) / 2) = 0.515804
labels [0, 0, 0, 0, 1, 1] against clusters [0, 0, 1, 1, 2, 2]:
    Hungarian (one cluster per label): 0 -> 0 (2), 2 -> 1 (2): 4 / 6
    argmax matching (each cluster its majority label): 6 / 6
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from dcbench.clustering import metrics
from dcbench.methods.deepcluster import label_metrics
from dcbench.methods.run_dir import RunDir

LABELS_NMI = np.array([0, 0, 1, 1, 2, 2])
CLUSTERS_NMI = np.array([0, 0, 0, 1, 1, 1])
_I = (2 / 3) * math.log(2)
NMI_GEOMETRIC = _I / math.sqrt(math.log(3) * math.log(2))          # 0.529541
NMI_ARITHMETIC = _I / ((math.log(3) + math.log(2)) / 2)             # 0.515804

LABELS_ACC = np.array([0, 0, 0, 0, 1, 1])
CLUSTERS_ACC = np.array([0, 0, 1, 1, 2, 2])
ACC_HUNGARIAN = 4 / 6                                               # argmax matching: 1.0

# ARI of the NMI case: pairs together in both 2, in labels 3, in clusters 6, of 15 pairs;
# expected index 3 * 6 / 15 = 1.2, max index (3 + 6) / 2 = 4.5: (2 - 1.2) / (4.5 - 1.2)
ARI_NMI_CASE = (2 - 1.2) / (4.5 - 1.2)                              # 0.2424


def test_hand_computed_constants_are_the_issue_values():
    assert round(NMI_GEOMETRIC, 4) == 0.5295 and round(NMI_ARITHMETIC, 4) == 0.5158
    assert round(ACC_HUNGARIAN, 3) == 0.667


def test_nmi_geometric_is_not_arithmetic_on_a_non_trivial_case():
    assert metrics.nmi(LABELS_NMI, CLUSTERS_NMI, "geometric") == pytest.approx(NMI_GEOMETRIC,
                                                                              abs=1e-12)
    assert metrics.nmi(LABELS_NMI, CLUSTERS_NMI, "arithmetic") == pytest.approx(NMI_ARITHMETIC,
                                                                               abs=1e-12)


def test_recorded_metrics_name_their_normalisation_correctly():
    """all_metrics is what the clustering task records: each key holds its own formula."""
    got = metrics.all_metrics(LABELS_NMI, CLUSTERS_NMI)
    assert got == pytest.approx({"nmi_geometric": NMI_GEOMETRIC,
                                 "nmi_arithmetic": NMI_ARITHMETIC,
                                 "acc": 4 / 6, "ari": ARI_NMI_CASE}, abs=1e-12)


def test_acc_is_the_hungarian_matching_not_argmax():
    assert metrics.acc(LABELS_ACC, CLUSTERS_ACC) == pytest.approx(ACC_HUNGARIAN, abs=1e-12)
    assert metrics.all_metrics(LABELS_ACC, CLUSTERS_ACC)["acc"] == pytest.approx(ACC_HUNGARIAN,
                                                                                 abs=1e-12)


def test_acc_with_fewer_clusters_than_labels_counts_the_unmatched_label_as_errors():
    # 3 labels, 2 clusters: only two labels can be matched: 2 + 2 of 6
    assert metrics.acc(LABELS_NMI, np.array([0, 0, 1, 1, 1, 1])) == pytest.approx(4 / 6)


def test_acc_ignores_cluster_ids_and_label_ids():
    renamed = np.array([5, 2, 9])[CLUSTERS_ACC]
    assert metrics.acc(LABELS_ACC + 7, renamed) == pytest.approx(ACC_HUNGARIAN)


def _session(tmp_path, labels, previous=None):
    run = RunDir(tmp_path / "run")
    if previous is not None:
        run.save_assignment(1, np.asarray(previous), {})
    return SimpleNamespace(run=run, labels=None if labels is None else np.asarray(labels))


def test_the_pretraining_log_records_geometric_nmi_and_hungarian_acc(tmp_path):
    """label_metrics builds log.jsonl's nmi_labels / nmi_labels_arithmetic / acc_labels /
    ari_labels / nmi_prev columns (dcbench/methods/deepcluster.py)."""
    s = _session(tmp_path, LABELS_NMI, previous=LABELS_NMI)    # epoch 1 = the labels
    row = label_metrics(s, CLUSTERS_NMI, 2)
    assert row == pytest.approx({"nmi_prev": NMI_GEOMETRIC, "nmi_labels": NMI_GEOMETRIC,
                                 "nmi_labels_arithmetic": NMI_ARITHMETIC,
                                 "acc_labels": 100.0 * 4 / 6, "ari_labels": ARI_NMI_CASE},
                                abs=1e-9)


def test_the_pretraining_log_acc_is_hungarian_in_percent(tmp_path):
    row = label_metrics(_session(tmp_path, LABELS_ACC), CLUSTERS_ACC, 1)
    assert row["acc_labels"] == pytest.approx(100.0 * ACC_HUNGARIAN, abs=1e-9)
    assert row["nmi_prev"] is None                      # epoch 1 has no previous assignment


def test_the_log_leaves_unreadable_images_out_of_every_metric(tmp_path):
    """-1 (unreadable) in this or the previous assignment drops that image from the NMI."""
    labels = np.concatenate([LABELS_NMI, [0, 1]])
    assignment = np.concatenate([CLUSTERS_NMI, [-1, -1]])
    previous = np.concatenate([LABELS_NMI, [2, 2]])
    row = label_metrics(_session(tmp_path, labels, previous), assignment, 2)
    assert row["nmi_labels"] == pytest.approx(NMI_GEOMETRIC, abs=1e-9)
    assert row["nmi_prev"] == pytest.approx(NMI_GEOMETRIC, abs=1e-9)
    assert row["acc_labels"] == pytest.approx(100.0 * 4 / 6, abs=1e-9)
    # a previous assignment with an unreadable image the current one has: dropped too
    previous2 = np.concatenate([LABELS_NMI, [-1, 0]])
    current2 = np.concatenate([CLUSTERS_NMI, [1, -1]])
    row2 = label_metrics(_session(tmp_path / "b", labels, previous2), current2, 2)
    assert row2["nmi_prev"] == pytest.approx(NMI_GEOMETRIC, abs=1e-9)


def test_without_labels_only_nmi_prev_is_logged(tmp_path):
    row = label_metrics(_session(tmp_path, None, previous=LABELS_NMI), CLUSTERS_NMI, 2)
    assert row == {"nmi_prev": pytest.approx(NMI_GEOMETRIC, abs=1e-9), "nmi_labels": None,
                   "nmi_labels_arithmetic": None, "acc_labels": None, "ari_labels": None}


def test_an_unknown_normalisation_is_refused_by_name():
    with pytest.raises(ValueError, match="^unknown NMI normalisation 'median'$"):
        metrics.nmi(LABELS_NMI, CLUSTERS_NMI, "median")
