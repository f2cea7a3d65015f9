"""bf16 autocast against float32 on this CPU: why `--amp auto` trains in bf16 on AMX CPUs.

Measured side by side in one run, alternating the two precisions, best of 3 rounds each:
- the training step of `dcbench pretrain` on Fashion-MNIST (alexnet-small, Sobel, batch 256,
  100 pseudo-classes: forward, cross-entropy, backward, SGD with momentum), in-memory batch;
- the clustering pass's frozen extraction (BatchNorm folded, fc7 tap, batch 256);
- how far the bf16 features are from the float32 ones (relative error of the fc7 rows, and
  the cosine between them), the price of the speed.
Printed as ratios; JSON in bench/results/cpu_bf16.json.

    .venv/bin/python bench/bench_cpu_bf16.py        # ~1 minute on 2 cores
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from dcbench.extract import prepare, to_device
from dcbench.models import build_model
from dcbench.models.fold_bn import folded_copy
from dcbench.precision import autocast, native_bf16
from dcbench.threads import configure_threads

BATCH, K, STEPS, ROUNDS = 256, 100, 12, 3
CPU = torch.device("cpu")


def train_rate(amp: str) -> float:
    torch.manual_seed(0)
    model = prepare(build_model("alexnet-small", seed=0, k=K), CPU).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-5)
    x, y = torch.randn(BATCH, 3, 32, 32), torch.randint(0, K, (BATCH,))

    def step() -> None:
        with autocast(CPU, amp):
            out = model(to_device(x, CPU))
        loss = torch.nn.functional.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    t = time.perf_counter()
    for _ in range(STEPS):
        step()
    return STEPS * BATCH / (time.perf_counter() - t)


def extract(frozen, x: torch.Tensor, amp: str) -> torch.Tensor:
    with torch.inference_mode(), autocast(CPU, amp):
        return frozen.extract(to_device(x, CPU), ["fc7"])["fc7"].float()


def extract_rate(frozen, amp: str) -> float:
    x = torch.randn(BATCH, 3, 32, 32)
    extract(frozen, x, amp)
    t = time.perf_counter()
    for _ in range(STEPS):
        extract(frozen, x, amp)
    return STEPS * BATCH / (time.perf_counter() - t)


def main() -> None:
    configure_threads()
    frozen = folded_copy(prepare(build_model("alexnet-small", seed=0, k=K), CPU).eval())
    best: dict[str, float] = {}
    for _ in range(ROUNDS):
        for amp in ("off", "bf16"):
            for key, rate in ((f"train_{amp}", train_rate(amp)),
                              (f"extract_{amp}", extract_rate(frozen, amp))):
                best[key] = max(best.get(key, 0.0), rate)
    x = torch.randn(1024, 3, 32, 32)
    f32, b16 = extract(frozen, x, "off"), extract(frozen, x, "bf16")
    out = {**{k: round(v, 1) for k, v in best.items()},
           "train_ratio": best["train_bf16"] / best["train_off"],
           "extract_ratio": best["extract_bf16"] / best["extract_off"],
           "fc7_relative_error": float((b16 - f32).norm() / f32.norm()),
           "fc7_min_cosine": float(torch.nn.functional.cosine_similarity(b16, f32).min()),
           "amx": native_bf16(CPU), "threads": torch.get_num_threads(), "batch": BATCH}
    print(f"AMX: {out['amx']} ({out['threads']} threads)")
    print(f"training step  float32 {best['train_off']:.0f} img/s, bf16 {best['train_bf16']:.0f}"
          f" img/s: {out['train_ratio']:.2f}x")
    print(f"extraction     float32 {best['extract_off']:.0f} img/s, bf16 "
          f"{best['extract_bf16']:.0f} img/s: {out['extract_ratio']:.2f}x")
    print(f"fc7 features   relative error {out['fc7_relative_error']:.2e}, lowest cosine "
          f"{out['fc7_min_cosine']:.4f}")
    path = Path(__file__).parent / "results" / "cpu_bf16.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
