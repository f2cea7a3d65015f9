"""PCA-whitening + L2 normalisation, the preprocessing DeepCluster applies before clustering.

Fitted from streamed moments (count, sum, sum of outer products, in float64) so the features
never have to be held whole: a sample is enough to fit, and rows are reduced batch by batch.
Matches faiss.PCAMatrix(d, p, eigen_power=-0.5) followed by row L2 normalisation: centre,
project on the top-p eigenvectors of the covariance, scale each by eigenvalue^-1/2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dcbench.progress import say


class Moments:
    """Running count, sum and X^T X of rows (float64, on the rows' device), mergeable across
    ranks. Rows are shifted by the first batch's mean before accumulating, which keeps the
    covariance free of cancellation when features have a large mean."""

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.shift: torch.Tensor | None = None
        self.s1 = torch.zeros(dim, dtype=torch.float64)
        self.s2 = torch.zeros(dim, dim, dtype=torch.float64)

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().double()
        if self.shift is None:
            self.shift = x.mean(0).cpu()
            self.s1, self.s2 = self.s1.to(x.device), self.s2.to(x.device)
        x = x - self.shift.to(x.device)
        self.n += x.shape[0]
        self.s1 += x.sum(0)
        self.s2 += x.T @ x

    def all_reduce(self) -> None:
        """Sum the moments of every rank (no-op in a single process). Ranks shift by their
        own first batch, so moments are re-expressed around a common shift first."""
        from dcbench.distributed import all_reduce_sum, is_distributed

        if not is_distributed():
            return
        d = self.s1.numel()
        shift = self.shift if self.shift is not None else torch.zeros(d, dtype=torch.float64)
        s1, s2 = self.s1.cpu(), self.s2.cpu()
        # about the origin: sum x = s1 + n c ; sum x x^T = s2 + c s1^T + s1 c^T + n c c^T
        common = all_reduce_sum(torch.cat([shift * self.n, torch.tensor([float(self.n)],
                                                                        dtype=torch.float64)]))
        total = common[-1].item()
        c_new = common[:-1] / max(total, 1.0)
        delta = shift - c_new                     # re-centre this rank's sums on c_new
        s2 = s2 + torch.outer(delta, s1) + torch.outer(s1, delta) + self.n * torch.outer(delta,
                                                                                         delta)
        s1 = s1 + self.n * delta
        packed = all_reduce_sum(torch.cat([s1, s2.flatten()]))
        self.n, self.shift = int(total), c_new
        self.s1, self.s2 = packed[:d].clone(), packed[d:].reshape(d, d).clone()


@dataclass
class PCAWhitening:
    mean: torch.Tensor        # (d,) float32
    proj: torch.Tensor        # (d, p) float32, eigenvectors scaled by eigenvalue^-1/2
    eigenvalues: torch.Tensor  # (p,) float64, for diagnostics

    @classmethod
    def from_moments(cls, m: Moments, dim: int, eps: float = 1e-8,
                     rel_floor: float | None = None) -> PCAWhitening:
        """rel_floor: clamp eigenvalues below rel_floor * max up to that value and scale by
        eigenvalue^-1/2 with no eps, as DeepCluster's eval_retrieval.py PCA does (1e-5) for
        R-MAC; `eigenvalues` then holds the clamped values. None keeps the faiss behaviour."""
        if m.n < 2:
            raise ValueError("PCA needs at least two rows")
        dim = min(dim, m.s1.numel())
        s1, s2 = m.s1.cpu(), m.s2.cpu()
        centred_mean = s1 / m.n                            # mean of the shifted rows
        cov = s2 / m.n - torch.outer(centred_mean, centred_mean)
        mean = centred_mean + (m.shift if m.shift is not None else 0.0)
        evals, evecs = torch.linalg.eigh(cov)              # ascending
        if rel_floor is not None:
            if evals[-1] <= 0:
                raise ValueError("PCA needs rows that are not all identical")
            evals = evals.clamp(min=rel_floor * evals[-1].item())
        # Directions the sample does not span (n - 1 at most; fewer when rows repeat) have
        # eigenvalues at round-off level: whitening would scale that noise by ~1e4. Cap.
        # (R-MAC's rel_floor clamps them instead, as eval_retrieval.py does.)
        rank = min(m.n - 1, int((evals > evals[-1].clamp(min=0) * 1e-9).sum()))
        if rel_floor is None and rank < dim:
            say(f"PCA: the {m.n} sampled rows span only {rank} dimensions; reducing to {rank} "
                f"instead of {dim} (use more images or a smaller PCA dimension)")
            dim = max(1, rank)
        evals, evecs = evals.flip(0)[:dim], evecs.flip(1)[:, :dim]
        # A fixed sign per component keeps the projection identical across runs and ranks.
        signs = torch.sign(evecs[evecs.abs().argmax(0), torch.arange(dim)])
        evecs = evecs * torch.where(signs == 0, 1.0, signs)
        scale = evals.rsqrt() if rel_floor is not None else (evals.clamp(min=0) + eps).rsqrt()
        return cls(mean.float(), (evecs * scale).float(), evals)

    @classmethod
    def fit(cls, x: torch.Tensor | np.ndarray, dim: int,
            rel_floor: float | None = None) -> PCAWhitening:
        x = torch.as_tensor(x)
        m = Moments(x.shape[1])
        m.add(x)
        return cls.from_moments(m, dim, rel_floor=rel_floor)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Centre, project, whiten, then L2-normalise each row (float32, on x's device)."""
        y = (x.float() - self.mean.to(x.device)) @ self.proj.to(x.device)
        return torch.nn.functional.normalize(y, dim=1)


def pca_whiten_l2(x: np.ndarray, dim: int) -> np.ndarray:
    """In-memory convenience: fit on x and reduce it (float32)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return PCAWhitening.fit(t, dim).transform(t).numpy()
