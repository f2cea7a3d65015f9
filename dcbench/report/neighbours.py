"""Nearest neighbours of a few fixed test images in a trunk's feature space (the paper's
random-vs-trained query grid).

Features are a layer's activations averaged over space (fc layers as they are), compared by
cosine similarity: inner products of L2-normalised vectors in a faiss IndexFlatIP (exact
search). The queries are drawn once from a seeded generator, so every checkpoint in the
figure answers the same queries; a query is never its own neighbour. A neighbour is framed
green when its label is the query's, red otherwise: how often a trunk's neighbours share the
query's class is what separates random from trained features.

Pixel size: 100 dpi x figure_size(rows, k): (k + 1) x 110 px + 160 px wide, 110 px per query
row (all checkpoints' rows) + 60 px high.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import faiss
import numpy as np
import torch
from matplotlib.figure import Figure

from dcbench.report.pictures import (
    DEFAULT_DATASET,
    DEFAULT_IMAGES,
    Ckpt,
    PictureImages,
    check_fits,
    ckpt_label,
    load_for_pictures,
    load_test_images,
    pooled_features,
)
from dcbench.report.plot import Plot

MATCH, MISMATCH = (0.1, 0.7, 0.2), (0.85, 0.1, 0.1)
CELL_INCHES = 1.1


def normalise(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32, contiguous, as faiss wants); zero rows stay 0."""
    x = np.ascontiguousarray(features, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def nearest_neighbours(features: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) row indices of the k most cosine-similar rows to each query row, most similar
    first, the query itself excluded."""
    queries = np.asarray(queries, dtype=np.int64)
    if k >= len(features):
        raise ValueError(f"k={k} neighbours need more than {len(features)} images")
    x = normalise(features)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    _, found = index.search(x[queries], k + 1)
    out = np.empty((len(queries), k), dtype=np.int64)
    for row, (query, hits) in enumerate(zip(queries, found)):
        out[row] = [h for h in hits if h != query][:k]
    return out


def pick_queries(n_images: int, n_queries: int, seed: int) -> np.ndarray:
    """Fixed query rows: a seeded draw without replacement, in drawing order."""
    return np.random.default_rng(seed).choice(n_images, size=min(n_queries, n_images),
                                              replace=False)


def framed(pixels: np.ndarray, colour: tuple[float, float, float] | None) -> np.ndarray:
    """An (S, S, 3) uint8 image as [0, 1] floats inside a border of S/16 pixels (at least 2),
    white when `colour` is None."""
    img = pixels.astype(np.float32) / 255.0
    pad = max(2, img.shape[0] // 16)
    out = np.ones((img.shape[0] + 2 * pad, img.shape[1] + 2 * pad, 3), dtype=np.float32)
    if colour is not None:
        out[:] = colour
    out[pad:-pad, pad:-pad] = img
    return out


def figure_size(rows: int, k: int) -> tuple[float, float]:
    return CELL_INCHES * (k + 1) + 1.6, CELL_INCHES * rows + 0.6


def neighbours_plot(ckpts: Sequence[Ckpt], layer: str = "conv5", k: int = 3, n_queries: int = 4,
                    seed: int = 0, images: PictureImages | None = None,
                    dataset: str = DEFAULT_DATASET, data_root: str | os.PathLike | None = None,
                    max_images: int | None = DEFAULT_IMAGES,
                    device: torch.device | str = "cpu") -> Plot:
    """One block of query rows per checkpoint: the query, then its k nearest neighbours by
    cosine on `layer`'s pooled features (figures/nearest_neighbours.png)."""
    title = f"Nearest neighbours on {layer} (cosine)"
    images = images if images is not None else load_test_images(dataset, data_root, max_images)
    queries = pick_queries(len(images), n_queries, seed)
    blocks = []
    for trunk, info in load_for_pictures(ckpts, device):
        check_fits(trunk, images, info)
        feats = pooled_features(trunk, images, layer, device)
        hits = nearest_neighbours(feats, queries, k)
        unit = normalise(feats)
        sims = np.einsum("qd,qkd->qk", unit[queries], unit[hits])
        share = float((images.labels[hits] == images.labels[queries][:, None]).mean())
        blocks.append((ckpt_label(info), hits, sims, share))
    rows = len(blocks) * len(queries)
    fig = Figure(figsize=figure_size(rows, k), layout="constrained")
    axes = np.asarray(fig.subplots(rows, k + 1, squeeze=False))
    for b, (label, hits, sims, share) in enumerate(blocks):
        for q, query in enumerate(queries):
            row = axes[b * len(queries) + q]
            truth = int(images.labels[query])
            row[0].imshow(framed(images.pixels[query], None))
            row[0].set_title(f"query: {images.class_name(truth)}", fontsize="xx-small")
            if q == 0:
                row[0].set_ylabel(f"{label}\n{share:.0%} same class", fontsize="x-small")
            for j in range(k):
                hit = int(hits[q, j])
                same = int(images.labels[hit]) == truth
                row[j + 1].imshow(framed(images.pixels[hit], MATCH if same else MISMATCH))
                row[j + 1].set_title(f"cos {sims[q, j]:.3f}", fontsize="xx-small")
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
    notes = ["What to see: a trained trunk's neighbours share the query's class (green "
             "frames) and look alike; a random trunk's match on brightness and layout only.",
             f"{len(queries)} fixed queries (seed {seed}) among {len(images)} {images.dataset} "
             f"{images.split} images; {layer} averaged over space, exact cosine search (faiss "
             f"IndexFlatIP on L2-normalised vectors); green = same label, red = another."]
    notes += [f"{label}: {share:.0%} of the neighbours share the query's label"
              for label, _, _, share in blocks]
    return Plot("nearest_neighbours", title, fig, notes=notes)
