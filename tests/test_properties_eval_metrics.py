"""Property-based tests (hypothesis) of the evaluation metrics against plain-loop
reimplementations: the VOC AP rules (area and 11-point), classification AP, mIoU, the Oxford
trapezoid AP and the revisited Easy / Medium / Hard mAP; then hand cases from mutation
survivors. Derandomised and few examples, so the file takes seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis_settings import FEW, seeds  # tests/ is on sys.path

from dcbench.retrieval import metrics as rmetrics
from dcbench.tasks.voc import metrics as voc

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


@pytest.mark.parametrize(("use_07", "brute"), [(False, brute_area_ap), (True, brute_11pt_ap)],
                         ids=["area rule", "11-point rule"])
@FEW
@given(data=ranked_hits())
def test_voc_ap_rule_matches_brute_force(use_07, brute, data):
    hits, npos = data
    assert voc.voc_ap(*curve(hits, npos), use_07=use_07) == pytest.approx(
        brute(hits, npos), abs=1e-12)


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
