"""Memory of the clustering pass grows as N x pca_dim, not N x D.

Runs dcbench's streaming feature reduction (methods.cluster_pass.reduced_features) on a
synthetic trunk whose fc7 has D = 4096 dims, for several N, each in a fresh process. Reports
the peak RSS (set by the PCA fit on a fixed-size sample: independent of N) and the RSS once
the N reduced rows exist; the growth per image is compared with the reduced rows
(pca_dim x 4 bytes) and with what holding the raw features would cost (D x 4 bytes).

    python bench/bench_pca_memory.py            # N = 100k, 200k, 400k; ~5 minutes on 2 cores
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

D, PCA_DIM, SAMPLE = 4096, 256, 5000


class Features4096(nn.Module):
    """Stands in for a trunk: a fixed random map from an 8x8 image to a 4096-d fc7_pre."""

    FC_DIM = D

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(3 * 8 * 8, D)

    def extract(self, x: torch.Tensor, taps):
        return {"fc7_pre": self.proj(x.flatten(1))}


class Noise(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        return torch.randn(3, 8, 8, generator=g), -1


def child(n: int) -> None:
    from dcbench.methods.cluster_pass import reduced_features

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    idx, rows, _ = reduced_features(Features4096(), Noise(n), pca_dim=PCA_DIM, pca_sample=SAMPLE,
                                    batch_size=512, workers=0, seed=0,
                                    device=torch.device("cpu"), amp="off")
    assert rows.shape == (n, PCA_DIM) and len(idx) == n
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    status = open("/proc/self/status").read()
    now = int(status.split("VmRSS:")[1].split()[0])
    print(json.dumps({"n": n, "peak_kib": peak, "base_kib": base, "end_kib": now}))


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [100_000, 200_000, 400_000]
    out = []
    for n in sizes:
        res = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True,
                             text=True, check=True,
                             env={**os.environ, "DCBENCH_NO_PROGRESS": "1"})
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(f"N = {n:>7}: peak RSS {out[-1]['peak_kib'] / 1024:8.1f} MiB, with the rows "
              f"{out[-1]['end_kib'] / 1024:8.1f} MiB; raw features would need "
              f"{n * D * 4 / 2**20:8.1f} MiB", flush=True)
    n = np.array([o["n"] for o in out], float)
    end = np.array([o["end_kib"] for o in out], float) * 1024
    slope = np.polyfit(n, end, 1)[0]
    print(f"\nmeasured growth:            {slope:8.0f} bytes per image")
    print(f"reduced rows (pca_dim={PCA_DIM}): {PCA_DIM * 4:8d} bytes per image")
    print(f"raw fc7 features (D={D}):   {D * 4:8d} bytes per image")
    print(f"ratio raw / measured:       {D * 4 / slope:8.1f}x")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(int(sys.argv[2]))
    else:
        main()
