"""Per-image costs of the paper-scale phases on THIS machine, for docs/SCALE.md's plan.

Measured in one run (AlexNet with Sobel and BN at 224 px, batch 64, the thread budget):
- extraction: eval-mode forward to fc7 with BatchNorm folded (the clustering pass, the probes'
  frozen features), seconds per image;
- training step: forward + cross-entropy on k = 10000 + backward + SGD, seconds per image;
- k-means: one Lloyd iteration (faiss search + means) on N x 256 points, k = 10000, seconds per
  point (scaled from N = 50,000);
- PCA: fitting the moments of 4096-d rows, seconds per row.
Writes bench/results/per_image.json; docs/SCALE.md multiplies these by the paper's sizes.

    python bench/bench_per_image.py          # ~3 minutes on 2 cores
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("DCBENCH_NO_PROGRESS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dcbench.clustering.kmeans import kmeans  # noqa: E402
from dcbench.clustering.pca import Moments  # noqa: E402
from dcbench.extract import prepare, to_device  # noqa: E402
from dcbench.models import build_model  # noqa: E402
from dcbench.models.fold_bn import folded_copy  # noqa: E402
from dcbench.threads import configure_threads  # noqa: E402


def per_image(fn, batch: int, seconds: float = 20.0) -> float:
    fn()                                    # warm-up
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        fn()
        n += batch
    return (time.perf_counter() - t) / n


def main() -> None:
    threads = configure_threads()
    torch.manual_seed(0)
    device = torch.device("cpu")
    batch = 64
    x = to_device(torch.randn(batch, 3, 224, 224), device)
    model = prepare(build_model("alexnet", sobel=True, k=10000), device)
    frozen = folded_copy(model.eval())

    def extract() -> None:
        with torch.inference_mode():
            frozen.extract(x, ["fc7_pre"])

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-5)
    y = torch.randint(0, 10000, (batch,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    out = {"threads": threads, "extract_s_per_image": per_image(extract, batch),
           "train_s_per_image": per_image(step, batch)}
    pts = np.random.default_rng(0).standard_normal((50_000, 256)).astype(np.float32)
    t = time.perf_counter()
    kmeans(pts, 10_000, niter=2, seed=0)
    out["kmeans_s_per_point_per_iter"] = (time.perf_counter() - t) / 2 / len(pts)
    rows = torch.randn(4096, 4096)
    m = Moments(4096)
    t = time.perf_counter()
    for _ in range(3):
        m.add(rows)
    out["pca_moments_s_per_row"] = (time.perf_counter() - t) / (3 * len(rows))
    for k, v in out.items():
        print(f"{k:32s} {v:.3g}")
    path = Path(__file__).parent / "results" / "per_image.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
