"""Clustering metrics: NMI (normalisation named), ACC (Hungarian matching) and ARI.

sklearn's NMI default is 'arithmetic'; JULE reports 'geometric'. Every caller says which.
"""

from __future__ import annotations

import numpy as np

# scikit-learn and scipy are imported where used: together about 0.6 s, which every command
# that only lists or checks would pay


def nmi(a: np.ndarray, b: np.ndarray, average_method: str) -> float:
    if average_method not in ("arithmetic", "geometric", "min", "max"):
        raise ValueError(f"unknown NMI normalisation '{average_method}'")
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(a, b, average_method=average_method))


def acc(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Accuracy under the best one-to-one matching of clusters to labels (Hungarian).
    With more clusters than labels, unmatched clusters count as errors."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics.cluster import contingency_matrix

    c = contingency_matrix(labels, clusters)
    rows, cols = linear_sum_assignment(c, maximize=True)
    return float(c[rows, cols].sum() / len(labels))


def ari(labels: np.ndarray, clusters: np.ndarray) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(labels, clusters))


def all_metrics(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    """NMI (geometric and arithmetic), ACC and ARI of a clustering against labels."""
    return {
        "nmi_geometric": nmi(labels, clusters, "geometric"),
        "nmi_arithmetic": nmi(labels, clusters, "arithmetic"),
        "acc": acc(labels, clusters),
        "ari": ari(labels, clusters),
    }


def size_stats(assignment: np.ndarray, k: int) -> dict[str, float]:
    """Cluster-size statistics for the training log."""
    sizes = np.bincount(assignment[assignment >= 0], minlength=k)
    nonempty = sizes[sizes > 0]
    return {"k": int(k), "nonempty": int(len(nonempty)), "min": int(nonempty.min()),
            "max": int(nonempty.max()), "median": float(np.median(nonempty)),
            "std": float(nonempty.std())}
