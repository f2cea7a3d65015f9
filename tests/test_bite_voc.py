"""VOC detection AP on cases picked so that the mutants bench/mutation.py found surviving give
another number: tied scores among mixed scores (numpy's default quicksort reorders ties once
there are more than 16 entries) and scores of an unsigned dtype (negated without a float cast,
0 stays 0 and ranks first)."""

from __future__ import annotations

import numpy as np

from dcbench.tasks.voc.metrics import detection_ap

GT = [np.array([[1.0, 1.0, 10.0, 10.0]])]       # one image, one object
HARD = [np.array([False])]
FAR = (50.0, 50.0, 60.0, 60.0)                  # IoU 0 with the object


def test_ties_among_mixed_scores_keep_input_order() -> None:
    # 17 detections scored i % 2: the eight scored 1 rank first, in input order 1, 3, 5, ...;
    # only detection 5 hits. Ranked FP, FP, TP: precision 1/3 at recall 1 -> AP 1/3.
    # (np.argsort's default kind orders the tied 1s as 1, 3, 7, 5, ...: AP 1/4.)
    boxes = np.array([(1.0, 1.0, 10.0, 10.0) if i == 5 else FAR for i in range(17)])
    scores = (np.arange(17) % 2).astype(np.float64)
    ap = detection_ap(np.zeros(17, np.int64), scores, boxes, GT, HARD, use_07=False)
    assert ap == 1 / 3


def test_unsigned_scores_rank_by_value() -> None:
    # uint8 scores 0 (the hit) and 200 (a miss): ranked miss, hit -> precision 0, 1/2 at
    # recall 0, 1 -> AP 1/2. Negating the uint8 scores without the float cast gives 0 and 56,
    # which ranks the hit first: AP 1.
    boxes = np.array([(1.0, 1.0, 10.0, 10.0), FAR])
    scores = np.array([0, 200], dtype=np.uint8)
    ap = detection_ap(np.zeros(2, np.int64), scores, boxes, GT, HARD, use_07=False)
    assert ap == 0.5
