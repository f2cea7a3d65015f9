"""R-MAC image descriptors as DeepCluster's Table 5 builds them (its eval_retrieval.py, after
Tolias et al., "Particular object retrieval with integral max-pooling of CNN activations", ICLR
2016): regional max-pooling over a fixed multi-scale grid on the conv5 map, L2, PCA-whitening
learned on the other dataset, L2, sum over regions, L2, dot-product ranking.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from dcbench.clustering.pca import PCAWhitening

Pool = Literal["max", "gem"]

#: Eigenvalues below this fraction of the largest are clamped to it (eval_retrieval.py PCA).
EIG_FLOOR = 1e-5


def rmac_regions(h: int, w: int, levels: int = 3,
                 overlap: float = 0.4) -> list[tuple[int, int, int, int]]:
    """Square regions (x, y, width, height) of the R-MAC grid on an h x w feature map.

    Follows eval_retrieval.py's get_rmac_region_coordinates (Tolias et al.'s Matlab) step by
    step, duplicates included, so the sum over regions weights them as the original does. Level
    l has side floor(2 min(h, w) / (l + 1)); the long side gets `idx` extra regions, idx chosen
    so neighbours overlap by about `overlap`. Deviation for tiny maps only: levels whose side
    would be 0 pixels (the original slices an empty region and fails) are left out.
    """
    if h < 1 or w < 1 or levels < 1:
        raise ValueError(f"need a non-empty map and levels >= 1, got {h}x{w}, L={levels}")
    short, long_ = min(h, w), max(h, w)
    # 2..7 regions on the long side; float32 and the original's (w^2 - w b)/w^2 form, as numpy 1
    # evaluated it there, so exact ties (e.g. 3 x 11) break the same way
    steps = np.arange(2, 8, dtype=np.float32)
    s32, o32 = np.float32(short), np.float32(overlap)
    b = np.float32(long_ - short) / (steps - np.float32(1))
    idx = int(np.argmin(np.abs((s32 * s32 - s32 * b) / (s32 * s32) - o32))) + 1  # Matlab 1-index
    wd = idx if h < w else 0
    hd = idx if h > w else 0

    def starts(size: int, side: int, level: int, extra: int) -> list[int]:
        half = math.floor(side / 2 - 1)
        n = level + extra - 1
        step = (size - side) / n if n > 0 else 0.0
        return [math.floor(half + step * i) - half for i in range(n + 1)]

    regions: list[tuple[int, int, int, int]] = []
    for level in range(1, levels + 1):
        side = math.floor(2 * short / (level + 1))
        if side < 1:
            continue
        for y in starts(h, side, level, hd):
            for x in starts(w, side, level, wd):
                # shifted back inside where the rounding overflows, as the original does
                regions.append((min(x, w - side), min(y, h - side), side, side))
    return regions


def _pool(x: torch.Tensor, pool: Pool, p: float) -> torch.Tensor:
    if pool == "max":
        return x.amax(dim=(-2, -1))
    if pool == "gem":  # Radenovic et al., TPAMI 2019 (cirtorch's gem, eps 1e-6)
        return x.clamp(min=1e-6).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)
    raise ValueError(f"pool must be 'max' or 'gem', got {pool!r}")


def rmac_vectors(conv5: torch.Tensor, levels: int = 3, overlap: float = 0.4,
                 pool: Pool = "max", p: float = 3.0) -> torch.Tensor:
    """Regional vectors of one image's (C, H, W) conv5 map: per R-MAC region, spatial max (or
    GeM with exponent p) then L2 -> (R, C). Leading batch dims pass through: (B, C, H, W) ->
    (B, R, C). An all-zero region stays zero (the original divides by its zero norm: NaN).
    """
    if conv5.dim() < 3:
        raise ValueError(f"expected (..., C, H, W), got shape {tuple(conv5.shape)}")
    h, w = conv5.shape[-2:]
    pooled = [_pool(conv5[..., y:y + s, x:x + s], pool, p)
              for x, y, s, _ in rmac_regions(h, w, levels, overlap)]
    return F.normalize(torch.stack(pooled, dim=-2).float(), dim=-1)


def fit_whitening(regional: torch.Tensor | np.ndarray, dim: int = 512) -> PCAWhitening:
    """PCA-whitening of regional vectors (rows) as eval_retrieval.py's PCA: centre,
    eigendecomposition, eigenvalues below 1e-5 x max clamped, top `dim`, P = D^-1/2 V^T.

    Capped at the number of rows as well as of columns: with fewer rows than `dim` the extra
    components would be null directions scaled by the clamp, amplifying noise (the original,
    always fitted on far more than 512 regions, never meets this case).
    """
    x = torch.as_tensor(regional)
    if x.dim() != 2:
        raise ValueError(f"expected (rows, C), got shape {tuple(x.shape)}")
    return PCAWhitening.fit(x, min(dim, x.shape[0]), rel_floor=EIG_FLOOR)


def aggregate(regional_per_image: Sequence[torch.Tensor],
              whitening: PCAWhitening | None) -> torch.Tensor:
    """One descriptor per image: whiten each regional vector, L2, sum over the image's regions,
    L2 (eval_retrieval.py's rmac with a PCA) -> (N, D). whitening=None skips the whitening step
    (plain R-MAC: sum of the L2-normalised regional vectors, L2)."""
    if not regional_per_image:
        raise ValueError("no images to aggregate")
    counts = torch.tensor([r.shape[0] for r in regional_per_image])
    rows = torch.cat([r.reshape(r.shape[0], -1) for r in regional_per_image]).float()
    rows = whitening.transform(rows) if whitening is not None else F.normalize(rows, dim=1)
    owner = torch.repeat_interleave(torch.arange(len(counts), device=rows.device),
                                    counts.to(rows.device))
    summed = rows.new_zeros(len(counts), rows.shape[1]).index_add_(0, owner, rows)
    return F.normalize(summed, dim=1)


def rank(queries: torch.Tensor | np.ndarray, database: torch.Tensor | np.ndarray,
         chunk: int = 1024) -> torch.Tensor:
    """Database indices of each query by descending dot product -> (Q, N) int64. Ties keep
    database order (stable sort), so the ranking is deterministic."""
    q = torch.as_tensor(queries).float()
    db = torch.as_tensor(database).float().to(q.device)
    if q.dim() != 2 or db.dim() != 2 or q.shape[1] != db.shape[1]:
        raise ValueError(f"need (Q, D) and (N, D), got {tuple(q.shape)} and {tuple(db.shape)}")
    out = [torch.argsort(q[i:i + chunk] @ db.T, dim=1, descending=True, stable=True)
           for i in range(0, q.shape[0], chunk)]
    return torch.cat(out).long() if out else torch.empty(0, db.shape[0], dtype=torch.long)
