"""Property-based tests (hypothesis) of the PCA-whitening against faiss's PCAMatrix and of the
streamed moments, then hand cases from bench/mutation.py survivors.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis_settings import SOME, seeds  # tests/ is on sys.path

from dcbench.clustering.pca import Moments, PCAWhitening

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
