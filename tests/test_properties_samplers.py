"""Property-based tests (hypothesis) of the cluster samplers: the uniform sampler checked by
counting, the released one against its reading of uniform draws.
"""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis_settings import FEW, seeds  # tests/ is on sys.path

from dcbench.clustering.sampler import released, uniform_over_clusters

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
