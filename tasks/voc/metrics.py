"""The VOC metrics, each as the protocol's own code computes it.

Classification (DeepCluster's eval_voc_classif.py, PROTOCOLS.md): per class, scikit-learn's
`average_precision_score` (non-interpolated AP: the sum over ranks of precision x recall
step, no 11-point sampling) on the rows whose label for that class is not 0 (difficult);
mAP is the mean over the classes that have a positive.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score


def classification_ap(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class AP (NaN where a class has no positive) from (N, C) scores and (N, C) labels
    in {1, -1, 0}; rows labelled 0 for a class are left out of that class's ranking."""
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in shape")
    out = np.full(labels.shape[1], np.nan)
    for c in range(labels.shape[1]):
        keep = labels[:, c] != 0
        truth = labels[keep, c] == 1
        if truth.any():
            out[c] = average_precision_score(truth, scores[keep, c])
    return out


def mean_ap(per_class: np.ndarray) -> float:
    """Mean over the classes that have a positive (NaN entries left out)."""
    valid = per_class[~np.isnan(per_class)]
    if valid.size == 0:
        raise ValueError("no class has a positive example: mAP is undefined")
    return float(valid.mean())
