"""Property-based tests (hypothesis) of the metrics and the clustering pieces against a
reference: sklearn / scipy / brute force for NMI, ACC and ARI, faiss for the k-means objective
and the PCA-whitening, counting for the uniform sampler, and plain-loop reimplementations of
the VOC AP rules, mIoU and the Oxford / revisited retrieval mAP.

Examples are derandomised (the same ones every run) and few, so the file takes seconds.
"""

from __future__ import annotations

import itertools
import os

import faiss
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from dcbench.clustering import metrics
from dcbench.clustering.kmeans import kmeans, reseed_empty
from dcbench.clustering.pca import Moments, PCAWhitening
from dcbench.clustering.sampler import released, uniform_over_clusters
from dcbench.retrieval import metrics as rmetrics
from dcbench.tasks.voc import metrics as voc

# bench/mutation.py sets DCBENCH_MUTATION: a failing example is then reported unshrunk, so a
# mutant fails in seconds instead of timing out while hypothesis minimises its example
PHASES = (tuple(Phase) if not os.environ.get("DCBENCH_MUTATION")
          else (Phase.explicit, Phase.reuse, Phase.generate))
FEW = settings(max_examples=40, deadline=None, derandomize=True, database=None, phases=PHASES,
               suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=15, deadline=None, derandomize=True, database=None, phases=PHASES,
                suppress_health_check=[HealthCheck.too_slow])

seeds = st.integers(0, 2**31 - 1)


@st.composite
def labelings(draw, max_n: int = 40, max_labels: int = 5, max_clusters: int = 6):
    """(labels, clusters): two integer labelings of the same n points, at least 2 points."""
    n = draw(st.integers(2, max_n))
    a = draw(st.lists(st.integers(0, max_labels - 1), min_size=n, max_size=n))
    b = draw(st.lists(st.integers(0, max_clusters - 1), min_size=n, max_size=n))
    return np.array(a), np.array(b)


def brute_force_acc(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Best one-to-one matching by trying every injective map of the smaller side."""
    ls, cs = np.unique(labels), np.unique(clusters)
    best = 0
    if len(cs) <= len(ls):
        for image in itertools.permutations(ls, len(cs)):
            best = max(best, sum(int(((clusters == c) & (labels == y)).sum())
                                 for c, y in zip(cs, image)))
    else:
        for image in itertools.permutations(cs, len(ls)):
            best = max(best, sum(int(((clusters == c) & (labels == y)).sum())
                                 for y, c in zip(ls, image)))
    return best / len(labels)


# --------------------------------------------------------------------- NMI, ACC, ARI


@FEW
@given(labelings())
def test_nmi_matches_sklearn_for_every_normalisation(ab):
    a, b = ab
    for method in ("arithmetic", "geometric", "min", "max"):
        want = normalized_mutual_info_score(a, b, average_method=method)
        assert metrics.nmi(a, b, method) == pytest.approx(want, abs=1e-12)
    rec = metrics.all_metrics(a, b)
    assert rec["nmi_geometric"] == pytest.approx(
        normalized_mutual_info_score(a, b, average_method="geometric"), abs=1e-12)
    assert rec["nmi_arithmetic"] == pytest.approx(
        normalized_mutual_info_score(a, b, average_method="arithmetic"), abs=1e-12)


@FEW
@given(labelings())
def test_acc_is_the_best_one_to_one_matching(ab):
    a, b = ab
    got = metrics.acc(a, b)
    assert got == pytest.approx(brute_force_acc(a, b), abs=1e-12)
    # and scipy's assignment on a contingency table counted here
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1), np.int64)
    np.add.at(table, (ai, bi), 1)
    r, c = linear_sum_assignment(-table)
    assert got == pytest.approx(table[r, c].sum() / len(a), abs=1e-12)
    assert metrics.all_metrics(a, b)["acc"] == got


@FEW
@given(labelings())
def test_ari_matches_sklearn_and_is_symmetric(ab):
    a, b = ab
    assert metrics.ari(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    assert metrics.ari(a, b) == pytest.approx(metrics.ari(b, a), abs=1e-12)
    assert metrics.all_metrics(a, b)["ari"] == metrics.ari(a, b)


@FEW
@given(labelings(), seeds)
def test_metrics_are_invariant_under_relabelling(ab, seed):
    a, b = ab
    rng = np.random.default_rng(seed)
    a2 = (rng.permutation(50) + 100)[a]                 # other ids, same partition
    b2 = rng.permutation(50)[b]
    before, after = metrics.all_metrics(a, b), metrics.all_metrics(a2, b2)
    assert after == pytest.approx(before, abs=1e-12)
    assert metrics.nmi(b, a, "geometric") == pytest.approx(before["nmi_geometric"], abs=1e-12)


@FEW
@given(st.integers(2, 40), st.integers(1, 6), seeds)
def test_a_perfect_clustering_scores_one_whatever_its_ids(n, k, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    clusters = rng.permutation(k)[labels] + 7
    got = metrics.all_metrics(labels, clusters)
    assert got["acc"] == 1.0
    if len(np.unique(labels)) > 1:
        assert got["nmi_geometric"] == pytest.approx(1.0) and got["ari"] == pytest.approx(1.0)


@FEW
@given(st.lists(st.integers(-1, 9), min_size=1, max_size=60))
def test_size_stats_counts_the_non_empty_clusters(values):
    a = np.array(values)
    assume((a >= 0).any())
    sizes = np.array([(a == c).sum() for c in range(10) if (a == c).sum() > 0])
    got = metrics.size_stats(a, 10)
    assert got == {"k": 10, "nonempty": len(sizes), "min": sizes.min(), "max": sizes.max(),
                   "median": pytest.approx(float(np.median(sizes))),
                   "std": pytest.approx(float(sizes.std()))}


# ------------------------------------------------------------------------- k-means


@st.composite
def blob_data(draw):
    seed = draw(seeds)
    k = draw(st.integers(2, 6))
    d = draw(st.integers(2, 8))
    n = draw(st.integers(10 * k, 60 * k))
    spread = draw(st.floats(0.5, 8.0))
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * spread
    x = centres[rng.integers(0, k, n)] + rng.standard_normal((n, d))
    return x.astype(np.float32), k, seed


@SOME
@given(blob_data())
def test_kmeans_objective_matches_faiss_from_the_same_start(data):
    """From the same initial centroids and with no empty cluster, Lloyd's iterations are
    faiss.Kmeans's: the same objective at every iteration both ran, and a final loss no worse
    than faiss's last."""
    x, k, seed = data
    ours = kmeans(x, k, niter=20, seed=seed, use_gpu=False)
    assume(ours.empty_reseeded == 0)
    init = x[np.random.default_rng(seed).choice(len(x), size=k, replace=False)].copy()
    km = faiss.Kmeans(x.shape[1], k, niter=20, seed=seed, max_points_per_centroid=10**6)
    km.train(x, init_centroids=init)
    assume(all(s["nsplit"] == 0 for s in km.iteration_stats))
    ref = np.array([s["obj"] for s in km.iteration_stats])
    m = min(len(ref), len(ours.losses))
    np.testing.assert_allclose(ours.losses[:m], ref[:m], rtol=1e-4)
    assert ours.loss <= ref[-1] * (1 + 1e-4) + 1e-4
    # the reported loss is the objective of the returned assignment and centroids
    recomputed = float(((x.astype(np.float64) - ours.centroids[ours.assignment]) ** 2).sum())
    assert ours.loss == pytest.approx(recomputed, rel=1e-4)
    # a local optimum: every point is at its nearest centroid, centroids are their means
    d2 = ((x[:, None, :] - ours.centroids[None]) ** 2).sum(-1)
    assert (d2[np.arange(len(x)), ours.assignment] <= d2.min(1) * (1 + 1e-4) + 1e-5).all()
    for j in range(k):
        np.testing.assert_allclose(ours.centroids[j], x[ours.assignment == j].mean(0),
                                   rtol=1e-4, atol=1e-4)


@SOME
@given(blob_data())
def test_kmeans_is_never_worse_than_its_first_iteration_and_fills_every_cluster(data):
    x, k, seed = data
    ours = kmeans(x, k, niter=10, seed=seed, use_gpu=False)
    assert np.bincount(ours.assignment, minlength=k).min() >= 1
    assert ours.loss <= ours.losses[0] * (1 + 1e-5) + 1e-4
    assert ours.assignment.dtype == np.int64 and ours.centroids.shape == (k, x.shape[1])


# ------------------------------------------------------------------------- samplers


@st.composite
def assignments(draw):
    sizes = draw(st.lists(st.integers(0, 40), min_size=1, max_size=8))
    assume(sum(sizes) > 0)
    unreadable = draw(st.integers(0, 5))
    seed = draw(seeds)
    a = np.concatenate([np.repeat(np.arange(len(sizes)), sizes), np.full(unreadable, -1)])
    return np.random.default_rng(seed).permutation(a), seed


@FEW
@given(assignments(), st.integers(1, 300))
def test_uniform_sampler_gives_every_cluster_the_same_share(data, n):
    a, seed = data
    drawn = uniform_over_clusters(a, n, np.random.default_rng(seed))
    clusters = np.unique(a[a >= 0])
    c = len(clusters)
    per = n // c + 1
    assert drawn.shape == (n,) and drawn.dtype.kind == "i"
    assert (a[drawn] >= 0).all()                                  # never an unreadable image
    counts = np.array([(a[drawn] == j).sum() for j in clusters])
    removed = c * per - n                                         # truncation of the shuffle
    assert counts.sum() == n
    assert counts.max() <= per and counts.min() >= per - removed
    for j in clusters:                   # a cluster with enough members is drawn without
        mine = drawn[a[drawn] == j]      # replacement: no image twice
        if (a == j).sum() >= per:
            assert len(np.unique(mine)) == len(mine)
    again = uniform_over_clusters(a, n, np.random.default_rng(seed))
    assert np.array_equal(drawn, again)


@FEW
@given(assignments(), st.integers(1, 300))
def test_uniform_sampler_draws_are_reproducible_from_index_order(data, n):
    """The exact draw for a seed: each cluster's members in ascending index order (a stable
    sort), `per` draws from each cluster in cluster order, then one shuffle. An unstable sort
    would give other images for the same seed on another numpy or machine."""
    a, seed = data
    rng = np.random.default_rng(seed)
    clusters = sorted({int(x) for x in a if x >= 0})
    per = n // len(clusters) + 1
    picks = []
    for c in clusters:
        members = np.array([i for i in range(len(a)) if a[i] == c])
        picks.append(rng.choice(members, size=per, replace=len(members) < per))
    want = np.concatenate(picks)
    rng.shuffle(want)
    got = uniform_over_clusters(a, n, np.random.default_rng(seed))
    assert got.tolist() == want[:n].tolist()


@FEW
@given(assignments(), st.integers(1, 300))
def test_released_sampler_reads_uniform_draws_as_cluster_ordered_positions(data, n):
    a, seed = data
    got = released(a, n, np.random.default_rng(seed))
    drawn = uniform_over_clusters(a, n, np.random.default_rng(seed))
    valid = [i for i in range(len(a)) if a[i] >= 0]
    by_cluster = sorted(valid, key=lambda i: (a[i], i))
    want = [by_cluster[valid.index(int(i))] for i in drawn]
    assert got.tolist() == want and (a[got] >= 0).all()


# ------------------------------------------------------------------------------ PCA


@st.composite
def pca_data(draw):
    seed = draw(seeds)
    d = draw(st.integers(3, 12))
    dout = draw(st.integers(1, d))
    n = draw(st.integers(8 * d, 40 * d))
    offset = draw(st.floats(-50.0, 50.0))
    rng = np.random.default_rng(seed)
    scales = np.geomspace(10.0, 0.5, d)                  # well separated eigenvalues
    rot, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = (rng.standard_normal((n, d)) * scales) @ rot + offset
    return x.astype(np.float32), dout


def align_signs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """b with each column's sign flipped to agree with a's."""
    s = np.sign((a * b).sum(0))
    return b * np.where(s == 0, 1.0, s)


@SOME
@given(pca_data())
def test_pca_whitening_matches_faiss_pcamatrix(data):
    x, dout = data
    d = x.shape[1]
    pca = faiss.PCAMatrix(d, dout, -0.5)
    pca.train(x)
    ref = pca.apply_py(x).astype(np.float64)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    ours = PCAWhitening.fit(torch.from_numpy(x), dout)
    got = ours.transform(torch.from_numpy(x)).numpy().astype(np.float64)
    np.testing.assert_allclose(align_signs(got, ref), got, atol=2e-3)
    eig = np.asarray(faiss.vector_to_array(pca.eigenvalues), np.float64)[:dout]
    ours_eig = ours.eigenvalues.numpy()        # faiss's are n times these (sums, not means)
    np.testing.assert_allclose(ours_eig / ours_eig[0], eig / eig[0], rtol=1e-3, atol=1e-5)
    # whitened before the L2 step: unit variance on each kept component
    y = (torch.from_numpy(x) - ours.mean) @ ours.proj
    np.testing.assert_allclose(y.double().var(0, unbiased=False).numpy(), 1.0, rtol=1e-3)


@SOME
@given(pca_data(), st.integers(1, 7))
def test_streamed_moments_equal_one_batch(data, parts):
    x, dout = data
    whole = PCAWhitening.fit(torch.from_numpy(x), dout)
    m = Moments(x.shape[1])
    for chunk in np.array_split(x, parts):
        if len(chunk):
            m.add(torch.from_numpy(chunk))
    streamed = PCAWhitening.from_moments(m, dout)
    t = torch.from_numpy(x)
    torch.testing.assert_close(streamed.transform(t), whole.transform(t), atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------- VOC metrics


@st.composite
def ranked_hits(draw):
    """A ranked list of hits / misses and a number of positives (some may never be found)."""
    hits = draw(st.lists(st.booleans(), min_size=1, max_size=30))
    npos = draw(st.integers(max(1, sum(hits)), sum(hits) + 5))
    return np.array(hits), npos


def brute_area_ap(hits: np.ndarray, npos: int) -> float:
    """Area rule: each found positive adds 1/npos times the best precision at its rank or
    any later one (the precision envelope)."""
    prec = [sum(hits[: i + 1]) / (i + 1) for i in range(len(hits))]
    return sum(max(prec[i:]) / npos for i in range(len(hits)) if hits[i])


def brute_11pt_ap(hits: np.ndarray, npos: int) -> float:
    """11-point rule at the thresholds py-faster-rcnn uses (np.arange(0, 1.1, 0.1))."""
    tp = 0
    points = []
    for i, h in enumerate(hits):
        tp += int(h)
        points.append((tp / npos, tp / (i + 1)))
    total = 0.0
    for t in np.arange(0.0, 1.1, 0.1):
        above = [p for r, p in points if r >= t]
        total += max(above) if above else 0.0
    return total / 11.0


def curve(hits: np.ndarray, npos: int) -> tuple[np.ndarray, np.ndarray]:
    tp = np.cumsum(hits)
    return tp / npos, tp / np.arange(1, len(hits) + 1)


@FEW
@given(ranked_hits())
def test_voc_ap_area_rule_matches_brute_force(data):
    hits, npos = data
    assert voc.voc_ap(*curve(hits, npos), use_07=False) == pytest.approx(
        brute_area_ap(hits, npos), abs=1e-12)


@FEW
@given(ranked_hits())
def test_voc_ap_11_point_rule_matches_brute_force(data):
    hits, npos = data
    assert voc.voc_ap(*curve(hits, npos), use_07=True) == pytest.approx(
        brute_11pt_ap(hits, npos), abs=1e-12)


def test_the_two_ap_rules_on_a_hand_case():
    # hits at ranks 1 and 3 of 4 with 2 positives: precision 1, 1/2, 2/3, 1/2
    hits = np.array([True, False, True, False])
    r, p = curve(hits, 2)
    assert voc.voc_ap(r, p, use_07=False) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # recall 0.5 up to rank 2, 1.0 from rank 3: t = 0..0.5 -> 1 (6 points), 0.6..1 -> 2/3 (5)
    assert voc.voc_ap(r, p, use_07=True) == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)


def brute_classification_ap(scores: np.ndarray, truth: np.ndarray) -> float:
    """Non-interpolated AP with distinct scores: mean precision at each positive's rank."""
    order = np.argsort(-scores)
    found, total = 0, 0.0
    for rank, i in enumerate(order, 1):
        if truth[i]:
            found += 1
            total += found / rank
    return total / truth.sum()


@FEW
@given(st.integers(2, 30), st.integers(1, 4), seeds)
def test_classification_ap_matches_brute_force(n, c, seed):
    rng = np.random.default_rng(seed)
    scores = rng.permutation(n * c).reshape(n, c).astype(np.float64)    # distinct
    labels = rng.choice([-1, 0, 1], size=(n, c))
    got = voc.classification_ap(scores, labels)
    for j in range(c):
        keep = labels[:, j] != 0
        truth = labels[keep, j] == 1
        if truth.any():
            assert got[j] == pytest.approx(brute_classification_ap(scores[keep, j], truth))
        else:
            assert np.isnan(got[j])
    if (~np.isnan(got)).any():
        assert voc.mean_ap(got) == pytest.approx(np.nanmean(got))


@st.composite
def segmentations(draw):
    n_classes = draw(st.integers(1, 5))
    size = draw(st.integers(1, 60))
    seed = draw(seeds)
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, n_classes, size)
    gt[rng.random(size) < 0.2] = 255                      # void
    pred = rng.integers(0, n_classes, size)
    return gt, pred, n_classes


@FEW
@given(segmentations())
def test_miou_and_pixel_accuracy_match_per_class_pixel_sets(data):
    gt, pred, n = data
    valid = gt != 255
    assume(valid.any())
    ious = []
    for c in range(n):
        inter = ((gt == c) & (pred == c) & valid).sum()
        union = (((gt == c) | (pred == c)) & valid).sum()
        ious.append(inter / union if union else np.nan)
    got = voc.segmentation_scores(voc.confusion_matrix(gt, pred, n))
    np.testing.assert_allclose(got["iou"], ious, equal_nan=True)
    assert got["miou"] == pytest.approx(np.nanmean(ious))
    assert got["pixel_acc"] == pytest.approx((gt == pred)[valid].mean())


@st.composite
def detections(draw):
    """Images with non-overlapping ground-truth boxes; each detection is either a copy of a
    box (IoU 1) or a box far from every box (IoU 0), with distinct scores."""
    n_img = draw(st.integers(1, 4))
    gts, hard = [], []
    for _ in range(n_img):
        m = draw(st.integers(0, 3))
        gts.append(np.array([[100 * j + 1, 1, 100 * j + 50, 50] for j in range(m)], float)
                   .reshape(m, 4))
        hard.append(np.array(draw(st.lists(st.booleans(), min_size=m, max_size=m)), bool))
    n_det = draw(st.integers(0, 12))
    dets = []
    for _ in range(n_det):
        i = draw(st.integers(0, n_img - 1))
        j = draw(st.integers(-1, len(gts[i]) - 1))        # -1: a miss
        dets.append((i, j))
    scores = np.random.default_rng(draw(seeds)).permutation(max(n_det, 1))[:n_det] + 0.5
    return gts, hard, dets, scores.astype(float)


def brute_detection_hits(gts, hard, dets, scores):
    """Greedy matching by decreasing score: (hit?) for every ranked detection that counts."""
    matched = set()
    out = []
    for d in sorted(range(len(dets)), key=lambda d: -scores[d]):
        i, j = dets[d]
        if j < 0:
            out.append(False)
        elif hard[i][j]:
            continue
        elif (i, j) in matched:
            out.append(False)
        else:
            matched.add((i, j))
            out.append(True)
    return np.array(out, bool)


@FEW
@given(detections())
def test_detection_ap_matches_brute_force_matching(data):
    gts, hard, dets, scores = data
    npos = sum(int((~h).sum()) for h in hard)
    det_image = np.array([i for i, _ in dets], np.int64)
    det_box = np.array([gts[i][j] if j >= 0 else [1000, 1000, 1050, 1050] for i, j in dets],
                       float).reshape(len(dets), 4)
    for use_07 in (False, True):
        got = voc.detection_ap(det_image, scores, det_box, gts, hard, use_07)
        if npos == 0:
            assert np.isnan(got)
            continue
        hits = brute_detection_hits(gts, hard, dets, scores)
        if len(hits) == 0:
            want = 0.0
        else:
            want = (brute_11pt_ap if use_07 else brute_area_ap)(hits, npos)
        assert got == pytest.approx(want, abs=1e-12)


# ----------------------------------------------------------------- retrieval mAP


@st.composite
def retrieval_query(draw):
    n = draw(st.integers(1, 25))
    seed = draw(seeds)
    rng = np.random.default_rng(seed)
    ranked = rng.permutation(n + 3)[:n]              # some database images may be absent
    kinds = rng.choice(3, size=n + 3, p=[0.5, 0.3, 0.2])   # 0 other, 1 positive, 2 junk
    return ranked, np.flatnonzero(kinds == 1), np.flatnonzero(kinds == 2)


def brute_original_ap(ranked, pos, junk) -> float:
    """compute_ap.cpp as written: loop over ranks, skip junk, trapezoids from precision 1."""
    pos, junk = set(pos.tolist()), set(junk.tolist())
    if not pos:
        return float("nan")
    ap, tp, j, old_rec, old_prec = 0.0, 0, 0, 0.0, 1.0
    for x in ranked.tolist():
        if x in junk:
            continue
        if x in pos:
            tp += 1
        rec, prec = tp / len(pos), tp / (j + 1)
        ap += (rec - old_rec) * (old_prec + prec) / 2.0
        old_rec, old_prec = rec, prec
        j += 1
    return ap


@FEW
@given(retrieval_query())
def test_original_ap_matches_compute_ap_cpp(q):
    ranked, pos, junk = q
    got = rmetrics.average_precision_original(ranked, pos, junk)
    want = brute_original_ap(ranked, pos, junk)
    if np.isnan(want):
        assert np.isnan(got)
    else:
        assert got == pytest.approx(want, abs=1e-12)


@FEW
@given(retrieval_query())
def test_revisited_ap_equals_the_original_with_the_same_junk(q):
    """revisitop's rank reduction by junk seen before a positive is compute_ap.cpp's
    skipping of junk, written on positive ranks: the two agree on every query."""
    ranked, pos, junk = q
    a = rmetrics.average_precision_revisited(ranked, pos, junk)
    b = rmetrics.average_precision_original(ranked, pos, junk)
    assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, abs=1e-12)


@FEW
@given(st.lists(retrieval_query(), min_size=1, max_size=4), seeds)
def test_map_original_and_revisited_average_the_queries(queries, seed):
    n = 30
    rng = np.random.default_rng(seed)
    ranks = np.stack([rng.permutation(n) for _ in queries])
    gnd_o, gnd_r = [], []
    for _, pos, junk in queries:
        half = len(pos) // 2
        gnd_o.append({"good": pos[:half], "ok": pos[half:], "junk": junk})
        gnd_r.append({"easy": pos[:half], "hard": pos[half:], "junk": junk})
    aps = [brute_original_ap(ranks[i], q[1], q[2]) for i, q in enumerate(queries)]
    kept = [a for a in aps if not np.isnan(a)]
    got = rmetrics.map_original(ranks, gnd_o)
    assert (np.isnan(got) and not kept) or got == pytest.approx(np.mean(kept), abs=1e-12)
    rev = rmetrics.map_revisited(ranks, gnd_r)
    for name, (pos_keys, junk_keys) in rmetrics.REVISITED_SETTINGS.items():
        per = []
        for i, g in enumerate(gnd_r):
            pos = np.concatenate([np.asarray(g[k], np.int64) for k in pos_keys])
            bad = np.concatenate([np.asarray(g[k], np.int64) for k in junk_keys])
            per.append(brute_original_ap(ranks[i], pos, bad))
        per = [a for a in per if not np.isnan(a)]
        assert (np.isnan(rev[name]) and not per) or rev[name] == pytest.approx(np.mean(per),
                                                                              abs=1e-12)
    assert (np.isnan(rev["medium"]) and np.isnan(got)) or rev["medium"] == pytest.approx(got)


# ------------------------------------------- targeted cases (from bench/mutation.py survivors)


def test_pca_rel_floor_clamps_small_eigenvalues_and_scales_without_eps():
    """R-MAC's variant (eval_retrieval.py): eigenvalues below rel_floor x max are raised to it
    and each component is scaled by eigenvalue^-1/2 exactly; fit passes rel_floor through."""
    rng = np.random.default_rng(3)
    # eigenvalues 1e-4 .. 1e-14: small enough that adding faiss's eps (1e-8) would show
    x = rng.standard_normal((400, 4)) * np.array([10.0, 3.0, 1.0, 1e-4]) * 1e-3
    xc = x - x.mean(0)
    w, v = np.linalg.eigh(xc.T @ xc / len(x))
    w, v = w[::-1], v[:, ::-1]
    floor = 1e-3 * w[0]
    clamped = np.maximum(w, floor)
    pca = PCAWhitening.fit(torch.from_numpy(x), 4, rel_floor=1e-3)
    np.testing.assert_allclose(pca.eigenvalues.numpy(), clamped, rtol=1e-6)
    assert pca.eigenvalues[-1].item() == pytest.approx(floor, rel=1e-9)
    proj = pca.proj.double().numpy()
    np.testing.assert_allclose(np.abs(proj), np.abs(v / np.sqrt(clamped)), rtol=1e-4, atol=1e-6)
    same = PCAWhitening.from_moments(_moments(x), 4, rel_floor=1e-3)
    torch.testing.assert_close(same.proj, pca.proj)


def test_pca_rel_floor_on_rank_one_rows_floors_the_exact_zeros():
    x = np.zeros((50, 3))
    x[:, 0] = np.random.default_rng(1).standard_normal(50)
    var = x[:, 0].var()
    pca = PCAWhitening.fit(torch.from_numpy(x), 3, rel_floor=1e-5)
    np.testing.assert_allclose(pca.eigenvalues.numpy(), [var, var * 1e-5, var * 1e-5],
                               rtol=1e-9)


def test_pca_of_tiny_features_keeps_every_spanned_dimension():
    """The rank test is relative to the largest eigenvalue: features of scale 1e-6 (all
    eigenvalues ~1e-12) still span their 5 dimensions."""
    x = (np.random.default_rng(2).standard_normal((300, 5)) * 1e-6).astype(np.float64)
    pca = PCAWhitening.fit(torch.from_numpy(x), 5)
    assert pca.proj.shape == (5, 5)
    # faiss's scaling (eigenvalue + 1e-8)^-1/2: eigenvalues ~1e-12 come out far below unit
    # variance (R-MAC's rel_floor variant alone scales by eigenvalue^-1/2)
    y = (torch.from_numpy(x) - pca.mean.double()) @ pca.proj.double()
    ev = pca.eigenvalues.numpy()
    np.testing.assert_allclose(y.var(0, unbiased=False).numpy(), ev / (ev + 1e-8), rtol=1e-3)


def _moments(x: np.ndarray) -> Moments:
    m = Moments(x.shape[1])
    m.add(torch.from_numpy(x))
    return m


def test_pca_refusals_name_their_reason():
    with pytest.raises(ValueError, match="^PCA needs at least two rows$"):
        PCAWhitening.fit(np.ones((1, 3), np.float32), 2)
    with pytest.raises(ValueError, match="^PCA needs rows that are not all identical$"):
        PCAWhitening.fit(np.ones((5, 3), np.float32), 2, rel_floor=1e-5)
    two = PCAWhitening.fit(np.array([[0.0, 1.0], [2.0, 1.0]], np.float32), 1)   # n = 2 is enough
    assert two.proj.shape == (2, 1)


def test_pca_signs_are_fixed_largest_entry_positive_and_rank_capped():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((300, 5)) * np.array([5.0, 4.0, 3.0, 2.0, 1.0])).astype(np.float32)
    pca = PCAWhitening.fit(x, 5)
    evecs = pca.proj.double() * pca.eigenvalues.clamp(min=0).add(1e-8).sqrt()
    top = evecs[evecs.abs().argmax(0), torch.arange(5)]
    assert (top > 0).all()
    # 4 rows span 3 dimensions: the PCA keeps 3, not the 5 asked for
    few = PCAWhitening.fit(x[:4], 5)
    assert few.proj.shape == (5, 3)
    # rows spanning exactly dim directions keep dim
    assert PCAWhitening.fit(x[:6], 5).proj.shape == (5, 5)


def test_retrieval_ground_truth_lists_may_be_missing():
    ranks = np.array([[0, 1, 2, 3]])
    assert rmetrics.map_original(ranks, [{"good": [1]}]) == pytest.approx(0.25)   # (0 + 1/2) / 2
    assert rmetrics.map_revisited(ranks, [{"easy": [1]}]) == pytest.approx(
        {"easy": 0.25, "medium": 0.25, "hard": float("nan")}, nan_ok=True)


def test_queries_without_positives_give_nan_without_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(rmetrics.map_original(np.array([[0, 1]]), [{"junk": [0]}]))
        assert np.isnan(rmetrics.average_precision_revisited(np.array([0, 1]), [], [0]))


def test_a_ranking_of_the_wrong_shape_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^ranks must be \(Q, N\) with Q = 2 queries, got "
                                         r"\(1, 3\)$"):
        rmetrics.map_original(np.zeros((1, 3), np.int64), [{"good": [0]}, {"good": [1]}])
    t = torch.tensor([[2, 0, 1]])
    assert rmetrics.map_original(t, [{"good": [0]}]) == rmetrics.map_original(t.numpy(),
                                                                               [{"good": [0]}])


def test_iou_of_hand_boxes_with_the_plus_one_convention():
    box = np.array([1.0, 1.0, 10.0, 10.0])                        # 10 x 10 pixels
    gts = np.array([[6.0, 3.0, 15.0, 12.0],                        # overlap 5 x 8 = 40
                    [20.0, 20.0, 30.0, 30.0],                      # none
                    [1.0, 1.0, 10.0, 10.0],                        # itself
                    [11.0, 1.0, 20.0, 10.0],                       # beside: 0 pixels
                    [1.0, 20.0, 10.0, 30.0]])                      # below: 0 pixels
    np.testing.assert_allclose(voc._iou(box, gts), [40 / 160, 0.0, 1.0, 0.0, 0.0])


def test_confusion_matrix_drops_void_and_out_of_range_ground_truth():
    hist = voc.confusion_matrix(np.array([0, 1, 3, 255, 2]), np.array([0, 2, 1, 1, 2]), 3)
    assert hist.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match=r"^ground truth \(2,\) and prediction \(3,\) differ"):
        voc.confusion_matrix(np.zeros(2, int), np.zeros(3, int), 2)


def test_absent_classes_give_nan_iou_without_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = voc.segmentation_scores(np.array([[2, 0, 0], [1, 1, 0], [0, 0, 0]]))
    np.testing.assert_allclose(got["iou"], [2 / 3, 1 / 2, np.nan])       # diag / (row + col - diag)
    assert got["miou"] == pytest.approx(7 / 12) and got["pixel_acc"] == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="^no labelled pixel in the set: mean IoU is undefined$"):
        voc.segmentation_scores(np.zeros((2, 2)))


def test_voc_metric_refusals_name_their_reason():
    with pytest.raises(ValueError, match=r"^scores \(2, 3\) and labels \(2, 2\) differ in shape$"):
        voc.classification_ap(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="^no class has a positive example: mAP is undefined$"):
        voc.mean_ap(np.array([np.nan]))
    with pytest.raises(ValueError, match=r"^recall \(2,\) and precision \(3,\): expected two 1-D "
                                         r"arrays of the same length$"):
        voc.voc_ap(np.zeros(2), np.zeros(3), use_07=False)
    with pytest.raises(ValueError, match=r"^recall \(1, 2\)"):
        voc.voc_ap(np.zeros((1, 2)), np.zeros((1, 2)), use_07=True)
    one = [np.array([[1.0, 1.0, 10.0, 10.0]])]
    with pytest.raises(ValueError, match="^det_image .*: expected 1-D integers$"):
        voc.detection_ap(np.array([0.0]), [1.0], [[1, 1, 10, 10]], one, [[False]], True)
    with pytest.raises(ValueError, match="^det_image .*: expected 1-D integers$"):
        voc.detection_ap(np.array([[0]]), [1.0], [[1, 1, 10, 10]], one, [[False]], True)
    with pytest.raises(ValueError, match="^det_score holds NaN: expected every detection to "
                                         "have a score$"):
        voc.detection_ap(np.array([0]), [np.nan], [[1, 1, 10, 10]], one, [[False]], True)
    with pytest.raises(ValueError, match=r"^1 gt_boxes entries but 2 gt_difficult: expected "
                                         r"one of each per image$"):
        voc.detection_ap(np.array([0]), [1.0], [[1, 1, 10, 10]], one, [[False], [False]], True)
    with pytest.raises(ValueError, match=r"^image 0: gt_boxes \(1, 5\), gt_difficult \(1,\): "
                                         r"expected \(n, 4\) and \(n,\)$"):
        voc.detection_ap(np.array([0]), [1.0], [[1, 1, 10, 10]], [np.ones((1, 5))], [[False]],
                         True)


def test_detection_ground_truth_as_plain_lists():
    """An image without boxes may come as [], difficult flags as 0/1 integers."""
    det_image = np.array([1, 1, 0])
    det_box = [[1, 1, 10, 10], [21, 1, 30, 10], [1, 1, 10, 10]]
    gt_boxes = [[], [[1, 1, 10, 10], [21, 1, 30, 10], [41, 1, 50, 10]]]
    difficult = [[], [0, 1, 0]]                       # 2 non-difficult boxes
    got = voc.detection_ap(det_image, [3.0, 2.0, 1.0], det_box, gt_boxes, difficult, False)
    # ranked: TP (recall 1/2, precision 1), difficult hit ignored, FP on the empty image
    assert got == pytest.approx(0.5)


@FEW
@given(st.integers(2, 6), st.integers(1, 3), st.integers(1, 5), seeds)
def test_reseeding_splits_donors_and_leaves_means_consistent(k_full, n_empty, d, seed):
    """Each empty cluster takes part of one cluster of two or more points: every cluster ends
    non-empty, only donors' points move, each touched centroid is its points' mean, and the
    count is the number of clusters that were empty."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((12 * k_full, d)).astype(np.float32)
    assign = rng.integers(0, k_full, len(x))
    assign[:k_full] = np.arange(k_full)                   # clusters 0..k_full-1 non-empty
    k = k_full + n_empty                                  # the last n_empty are empty
    centroids = np.zeros((k, d), np.float32)
    for j in range(k_full):
        centroids[j] = x[assign == j].mean(0)
    before = assign.copy()
    n = reseed_empty(x, assign, centroids, np.random.default_rng(seed))
    assert n == n_empty
    assert np.bincount(assign, minlength=k).min() >= 1
    moved = before != assign
    assert (assign[moved] >= k_full).all()                # points only move to new clusters
    for j in np.unique(np.concatenate([before[moved], assign[moved]])):
        np.testing.assert_allclose(centroids[j], x[assign == j].mean(0), rtol=1e-5, atol=1e-5)
    for j in set(range(k_full)) - set(before[moved].tolist()):
        np.testing.assert_allclose(centroids[j], x[before == j].mean(0), rtol=1e-5, atol=1e-5)


def test_kmeans_accepts_as_many_clusters_as_points():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    result = kmeans(x, 6, niter=3, seed=0, use_gpu=False)
    assert sorted(result.assignment.tolist()) == list(range(6)) and result.loss == 0.0
