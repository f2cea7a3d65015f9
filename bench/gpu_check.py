"""The CUDA check anyone with a GPU can run (and that we run whenever one is lent to us).

Runs `dcbench demo --quick` three ways into separate results folders and prints, per phase,
images/s (pretraining epochs, from log.jsonl) and seconds (each eval record), side by side:
  1. on the CPU (CUDA_VISIBLE_DEVICES=""), the reference;
  2. on CUDA in one process (autocast bf16, channels_last, faiss-gpu when installed);
  3. under `torchrun --nproc_per_node=1` (the nccl process group, one rank).
Checks on the way: the CUDA runs record device cuda:0 and amp bf16 (where supported), the
torchrun run records world_size 1 and the same assignment digests as the one-process CUDA run
for epoch 1, and faiss sees the GPUs when faiss-gpu is installed.

    python bench/gpu_check.py              # ~5 minutes on one GPU
    python bench/gpu_check.py --skip-cpu   # when the CPU reference is already there

Writes bench/results/gpu_check.json (device name, date, the table). On a machine without
CUDA it says so and exits 2: the README then keeps saying the CUDA path is untested.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results"


def run(label: str, cmd: list[str], env: dict[str, str]) -> float:
    print(f"[{label}] {' '.join(cmd)}", flush=True)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"[{label}] failed with exit code {proc.returncode}")
    return time.perf_counter() - t


def phases(results: Path) -> dict[str, float]:
    """images/s per pretraining run and seconds per eval record of one demo folder."""
    out: dict[str, float] = {}
    for log in sorted((results / "runs").glob("*/log.jsonl")):
        rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
        rates = [r["images_per_second"] for r in rows if r.get("images_per_second")]
        if rates:
            out[f"pretrain {log.parent.name} (img/s)"] = sum(rates) / len(rates)
    records = results / "records.jsonl"
    if records.exists():
        seen: dict[str, float] = {}
        for line in records.read_text().splitlines():
            r = json.loads(line)
            key = f"eval {r['task']} {r['checkpoint']['method']} (s)"
            seen[key] = max(seen.get(key, 0.0), float(r["seconds"]))
        out.update(seen)
    return out


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-cpu", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device visible: nothing to check (the README keeps the CUDA path marked "
              "untested)")
        raise SystemExit(2)
    import faiss

    device = torch.cuda.get_device_name(0)
    base = {**os.environ, "DCBENCH_NO_PROGRESS": "1"}
    folders = {name: ROOT / "results" / f"gpu_check_{name}" for name in ("cpu", "cuda", "ddp")}
    walls = {}
    if not args.skip_cpu:
        walls["cpu"] = run("cpu", [sys.executable, "-m", "dcbench", "demo", "--quick",
                                   "--results", str(folders["cpu"])],
                           {**base, "CUDA_VISIBLE_DEVICES": ""})
    walls["cuda"] = run("cuda", [sys.executable, "-m", "dcbench", "demo", "--quick",
                                 "--results", str(folders["cuda"])], base)
    out = folders["ddp"]
    walls["ddp"] = run("ddp", [sys.executable, "-m", "torch.distributed.run",
                               "--nproc_per_node=1", "-m", "dcbench", "pretrain", "--out",
                               str(out / "runs" / "deepcluster-fmnist"), "--epochs", "2",
                               "--max-images", "512", "--k", "10", "--batch-size", "64",
                               "--pca-dim", "32", "--workers", "0", "--seed", "31"], base)
    table = {name: phases(folder) for name, folder in folders.items() if folder.exists()}
    cuda_cfg = json.loads((folders["cuda"] / "runs" / "deepcluster-fmnist" / "config.json")
                          .read_text())
    ddp_log = [json.loads(x) for x in (out / "runs" / "deepcluster-fmnist" / "log.jsonl")
               .read_text().splitlines()]
    cuda_log = [json.loads(x) for x in (folders["cuda"] / "runs" / "deepcluster-fmnist" /
                                        "log.jsonl").read_text().splitlines()]
    checks = {
        "amp": cuda_cfg.get("amp"),
        "faiss_gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0,
        "ddp_world_size": ddp_log[0].get("ranks"),
        "ddp_epoch1_assignment_equals_cuda": ddp_log[0]["assignment_sha256"]
        == cuda_log[0]["assignment_sha256"],
    }
    keys = sorted({k for v in table.values() for k in v})
    print(f"\n{device}, {date.today()}")
    print(f"{'phase':55s} " + " ".join(f"{n:>10s}" for n in table))
    for k in keys:
        print(f"{k:55s} " + " ".join(f"{table[n].get(k, float('nan')):10.1f}" for n in table))
    print(f"{'wall (s)':55s} " + " ".join(f"{walls.get(n, float('nan')):10.1f}" for n in table))
    print("checks:", checks)
    OUT.mkdir(exist_ok=True)
    (OUT / "gpu_check.json").write_text(json.dumps(
        {"device": device, "date": str(date.today()), "phases": table, "wall_seconds": walls,
         "checks": checks}, indent=2) + "\n")


if __name__ == "__main__":
    main()
