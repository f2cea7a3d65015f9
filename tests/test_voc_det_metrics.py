"""VOC detection AP (py-faster-rcnn voc_eval.py / devkit VOCevaldet.m) on hand-worked cases:
the matching rules (difficult, duplicates, +1 IoU, strict 0.5), both AP rules, ranking."""

from __future__ import annotations

import numpy as np
import pytest

from dcbench.tasks.voc.metrics import detection_ap, mean_ap, voc_ap

EMPTY = np.zeros((0, 4))


def _gt(*boxes: tuple[int, int, int, int], difficult: tuple[bool, ...] = ()) -> tuple:
    """(boxes (n, 4), difficult (n,)) for one image; difficult defaults to all False."""
    b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    return b, np.array(difficult or (False,) * len(b), dtype=bool)


def _ap(dets: list[tuple[int, float, tuple]], images: list[tuple], use_07: bool) -> float:
    """detection_ap from [(image, score, box)] and [_gt(...)] per image."""
    return detection_ap(
        np.array([d[0] for d in dets], dtype=np.int64),
        np.array([d[1] for d in dets], dtype=np.float64),
        np.array([d[2] for d in dets], dtype=np.float64).reshape(-1, 4),
        [im[0] for im in images], [im[1] for im in images], use_07)


@pytest.mark.parametrize("use_07", [True, False])
def test_perfect_detector_scores_one(use_07: bool) -> None:
    images = [_gt((1, 1, 10, 10), (20, 20, 60, 45)),
              _gt((5, 5, 30, 30), (40, 1, 50, 9), difficult=(False, True)),  # never detected
              _gt((100, 80, 200, 190))]
    dets = [(0, 0.2, (1, 1, 10, 10)), (0, 0.9, (20, 20, 60, 45)),
            (1, 0.5, (5, 5, 30, 30)), (2, 0.1, (100, 80, 200, 190))]
    assert _ap(dets, images, use_07) == 1.0


# Hand-worked case. npos = 4 (A, B, C, E; D is difficult).
#   image 0: A (1,1,10,10), B (21,21,40,40)     image 1: C (1,1,20,20), D (31,31,50,50) difficult
#   image 2: E (1,1,10,10)
# Detections in score order (given to detection_ap shuffled):
#   0.9 img0 (1,1,10,10)   = A, IoU 1                                  -> TP (A matched)
#   0.8 img1 (31,31,50,50) = D, IoU 1, difficult                       -> ignored
#   0.7 img2 (1,1,9,6)     on E: +1 IoU 9*6/100 = 0.54 > 0.5           -> TP
#                          (without +1: 8*5/81 = 0.494 -> FP)
#   0.6 img0 (2,2,10,10)   on A: IoU 81/100, A already matched         -> FP (duplicate)
#   0.5 img1 (1,1,20,20)   = C                                         -> TP
#   0.4 img0 (21,21,40,30) on B: IoU 20*10/400 = 0.5, not > 0.5        -> FP (B never found;
#                          the devkit's >= would make it a TP)
# cum tp 1,1,2,2,3,3  cum fp 0,0,0,1,1,2
# recall    1/4, 1/4, 1/2, 1/2, 3/4, 3/4
# precision 1,   1,   1,   2/3, 3/4, 3/5
# 11-point: t = 0, .1, .2, .3, .4, .5 -> max precision 1; t = .6, .7 -> 3/4; t = .8, .9, 1 -> 0
#   AP07 = (6 + 2 * 3/4) / 11 = 15/22 = 0.6818...
# area: envelope 1 up to recall 1/2, 3/4 up to 3/4, 0 after
#   AP = 1/4 * 1 + 1/4 * 1 + 1/4 * 3/4 + 1/4 * 0 = 11/16 = 0.6875
HAND_IMAGES = [_gt((1, 1, 10, 10), (21, 21, 40, 40)),
               _gt((1, 1, 20, 20), (31, 31, 50, 50), difficult=(False, True)),
               _gt((1, 1, 10, 10))]
HAND_DETS = [(0, 0.6, (2, 2, 10, 10)), (1, 0.5, (1, 1, 20, 20)), (0, 0.9, (1, 1, 10, 10)),
             (0, 0.4, (21, 21, 40, 30)), (2, 0.7, (1, 1, 9, 6)), (1, 0.8, (31, 31, 50, 50))]


def test_hand_worked_case_both_rules() -> None:
    ap07 = _ap(HAND_DETS, HAND_IMAGES, use_07=True)
    ap10 = _ap(HAND_DETS, HAND_IMAGES, use_07=False)
    assert ap07 == pytest.approx(15 / 22)
    assert ap10 == pytest.approx(11 / 16)
    assert ap07 != pytest.approx(ap10)
    # the same curve straight into voc_ap
    rec = np.array([1, 1, 2, 2, 3, 3]) / 4
    prec = np.array([1, 1, 1, 2 / 3, 3 / 4, 3 / 5])
    assert voc_ap(rec, prec, use_07=True) == pytest.approx(15 / 22)
    assert voc_ap(rec, prec, use_07=False) == pytest.approx(11 / 16)


def test_11_point_thresholds_are_py_faster_rcnns() -> None:
    # np.arange(0, 1.1, 0.1)[6] is 0.6000000000000001, so a recall of exactly 3/5 misses
    # t = 0.6: AP = 6/11 (thresholds 0 .. 0.5), not the 7/11 of t = k/10.
    assert voc_ap(np.array([0.2, 0.4, 0.6]), np.ones(3), use_07=True) == pytest.approx(6 / 11)


@pytest.mark.parametrize("use_07", [True, False])
def test_detections_on_images_without_objects_are_false_positives(use_07: bool) -> None:
    images = [_gt((1, 1, 10, 10)), (EMPTY, np.zeros(0, dtype=bool))]
    # ranked: FP (0.9, empty image), FP (0.8, empty image), TP (0.5)
    # recall 0, 0, 1; precision 0, 0, 1/3 -> both rules 1/3 (1.0 if the FPs were dropped)
    dets = [(0, 0.5, (1, 1, 10, 10)), (1, 0.9, (1, 1, 10, 10)), (1, 0.8, (3, 3, 8, 8))]
    assert _ap(dets, images, use_07) == pytest.approx(1 / 3)


def test_class_without_non_difficult_ground_truth_is_nan_and_left_out_of_the_mean() -> None:
    no_gt = _ap([(0, 0.9, (1, 1, 10, 10))], [(EMPTY, np.zeros(0, dtype=bool))] * 2, True)
    only_difficult = _ap([(0, 0.9, (1, 1, 10, 10))],
                         [_gt((1, 1, 10, 10), difficult=(True,))], False)
    assert np.isnan(no_gt) and np.isnan(only_difficult)
    assert mean_ap(np.array([no_gt, 0.25, only_difficult, 0.75])) == pytest.approx(0.5)


@pytest.mark.parametrize("use_07", [True, False])
def test_higher_scored_duplicate_takes_the_match(use_07: bool) -> None:
    # The exact box (listed first, score 0.3) comes after a looser one (IoU 81/100, 0.9):
    # ranked TP (0.9), FP (0.3) -> precision 1, 1/2 at recall 1, 1 -> AP 1.0.
    # Matching in input order would give FP, TP -> precision 0, 1/2 -> AP 0.5.
    images = [_gt((1, 1, 10, 10))]
    dets = [(0, 0.3, (1, 1, 10, 10)), (0, 0.9, (2, 2, 10, 10))]
    assert _ap(dets, images, use_07) == pytest.approx(1.0)


@pytest.mark.parametrize("use_07", [True, False])
def test_tied_scores_keep_input_order(use_07: bool) -> None:
    # 20 images, one object each; 20 misses then 20 exact hits, all scored 0.5.
    # Input order: precision peaks at 20/40 at recall 1 -> AP 0.5 under both rules; a sort
    # that reverses ties (np.argsort(score)[::-1]) would rank the hits first -> 1.0.
    images = [_gt((1, 1, 10, 10))] * 20
    misses = [(i, 0.5, (50, 50, 60, 60)) for i in range(20)]
    hits = [(i, 0.5, (1, 1, 10, 10)) for i in range(20)]
    assert _ap(misses + hits, images, use_07) == pytest.approx(0.5)
    assert _ap(hits + misses, images, use_07) == pytest.approx(1.0)


@pytest.mark.parametrize("image", [3, -1])
def test_image_index_out_of_range_is_rejected(image: int) -> None:
    images = [_gt((1, 1, 10, 10))] * 3
    with pytest.raises(ValueError, match="det_image"):
        _ap([(0, 0.9, (1, 1, 10, 10)), (image, 0.5, (1, 1, 10, 10))], images, True)


def test_mismatched_lengths_are_rejected() -> None:
    boxes, hard = _gt((1, 1, 10, 10))
    with pytest.raises(ValueError, match="det_score"):
        detection_ap(np.array([0, 0]), np.array([0.9]), np.ones((2, 4)), [boxes], [hard], True)
    with pytest.raises(ValueError, match="gt_difficult"):
        detection_ap(np.array([0]), np.array([0.9]), np.ones((1, 4)), [boxes], [], True)
    with pytest.raises(ValueError, match="image 0"):
        detection_ap(np.array([0]), np.array([0.9]), np.ones((1, 4)), [boxes],
                     [np.zeros(2, dtype=bool)], True)
