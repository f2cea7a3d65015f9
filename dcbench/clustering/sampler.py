"""Which images an epoch trains on: uniform over clusters (the paper) or the released code's
size-proportional behaviour (kept as a named option to reproduce it).

Uniform: each non-empty cluster contributes the same number of draws (with replacement when
it is smaller), equivalent to weighting the loss by the inverse cluster size. Released: the
original sampler draws dataset indices uniformly over clusters but the dataset it indexes is
ordered by cluster, so position i picks the i-th image of that ordering: in effect images are
sampled in proportion to their cluster's size.
"""

from __future__ import annotations

import numpy as np


def uniform_over_clusters(assignment: np.ndarray, n_samples: int,
                          rng: np.random.Generator) -> np.ndarray:
    """n_samples dataset indices, the same share from every non-empty cluster, shuffled.
    Images with assignment -1 (unreadable) are never drawn."""
    clusters = np.unique(assignment[assignment >= 0])
    per = n_samples // len(clusters) + 1
    order = np.argsort(assignment, kind="stable")
    sorted_a = assignment[order]
    starts = np.searchsorted(sorted_a, clusters, side="left")
    ends = np.searchsorted(sorted_a, clusters, side="right")
    picks = []
    for s, e in zip(starts, ends):
        members = order[s:e]
        picks.append(rng.choice(members, size=per, replace=len(members) < per))
    out = np.concatenate(picks)
    rng.shuffle(out)
    return out[:n_samples]


def released(assignment: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """The released code's effective draw: uniform indices read as positions in the
    cluster-ordered image list."""
    drawn = uniform_over_clusters(assignment, n_samples, rng)
    valid = np.flatnonzero(assignment >= 0)
    cluster_ordered = valid[np.argsort(assignment[valid], kind="stable")]
    # the original indexed a list of only the clustered images; map dataset index -> position
    position = np.searchsorted(valid, drawn)
    return cluster_ordered[position]


SAMPLERS = {"uniform": uniform_over_clusters, "released": released}
