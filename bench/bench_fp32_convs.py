"""How close alexnet-small's float32 training step is to what the CPU can do (issue 38).

On a CPU without AMX pretraining runs in float32. This times each of alexnet-small's five
convolutions at the demo's batch (256, 32 px inputs), forward and forward+backward, in
channels_last (what dcbench uses) and in contiguous NCHW, and prints GFLOP/s per layer; then
the whole training step (forward, cross-entropy on 100 pseudo-classes, backward, SGD) in
images/s and the share of it the convolutions take. If the convolutions already run near the
CPU's practical float32 peak, no kernel or layout choice can halve the step: only a smaller
recipe can. JSON in bench/results/fp32_convs.json, with the CPU it ran on.

    .venv/bin/python bench/bench_fp32_convs.py        # ~1 minute on 2 cores
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from dcbench.models import build_model
from dcbench.models.alexnet_small import AlexNetSmall
from dcbench.threads import configure_threads

BATCH, REPEATS = 256, 6


def conv_shapes() -> list[tuple[str, int, int, int, int]]:
    """(layer, in channels, out channels, kernel, input side) of alexnet-small's convs."""
    c1, c2, c3, c4, c5 = AlexNetSmall.WIDTHS
    return [("conv1", 2, c1, 5, 32), ("conv2", c1, c2, 3, 16), ("conv3", c2, c3, 3, 8),
            ("conv4", c3, c4, 3, 8), ("conv5", c4, c5, 3, 8)]


def time_conv(cin: int, cout: int, k: int, side: int, channels_last: bool,
              input_grad: bool) -> tuple[float, float]:
    """Seconds per forward and per backward of one convolution at the demo's batch."""
    conv = torch.nn.Conv2d(cin, cout, k, 1, k // 2)
    x = torch.randn(BATCH, cin, side, side)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(input_grad)
    grad = torch.ones_like(conv(x))           # the measured backward's own gradient layout
    for _ in range(3):
        conv(x).backward(grad)
    t = time.perf_counter()
    for _ in range(REPEATS):
        conv(x)
    forward = (time.perf_counter() - t) / REPEATS
    t = time.perf_counter()
    for _ in range(REPEATS):
        conv(x).backward(grad)
    return forward, (time.perf_counter() - t) / REPEATS - forward


def train_step_images_per_second() -> float:
    model = build_model("alexnet-small", seed=0, k=100).to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-5)
    x = torch.randn(BATCH, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (BATCH,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    t = time.perf_counter()
    for _ in range(REPEATS * 2):
        step()
    return REPEATS * 2 * BATCH / (time.perf_counter() - t)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    threads = configure_threads()
    rows, conv_seconds = [], 0.0
    for name, cin, cout, k, side in conv_shapes():
        macs = BATCH * side * side * cout * cin * k * k
        input_grad = name != "conv1"       # the Sobel output needs no gradient
        for layout in ("channels_last", "nchw"):
            fwd, bwd = time_conv(cin, cout, k, side, layout == "channels_last", input_grad)
            bwd_flops = (4 if input_grad else 2) * macs
            rows.append({"layer": name, "layout": layout, "forward_ms": 1e3 * fwd,
                         "backward_ms": 1e3 * bwd, "forward_gflops": 2 * macs / fwd / 1e9,
                         "backward_gflops": bwd_flops / bwd / 1e9})
            if layout == "channels_last":
                conv_seconds += fwd + bwd
            print(f"{name} {layout:13s} forward {1e3 * fwd:6.1f} ms "
                  f"{2 * macs / fwd / 1e9:6.1f} GFLOP/s   backward {1e3 * bwd:6.1f} ms "
                  f"{bwd_flops / bwd / 1e9:6.1f} GFLOP/s", flush=True)
    ips = train_step_images_per_second()
    share = conv_seconds / (BATCH / ips)
    print(f"training step: {ips:.0f} images/s; the five convolutions (channels_last) take "
          f"{100 * share:.0f} % of it")
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    out = {"cpu": cpu_name(), "amx": bool(amx),
           "threads": threads, "batch": BATCH, "convs": rows, "train_images_per_second": ips,
           "conv_share_of_step": share}
    path = Path(__file__).parent / "results" / "fp32_convs.json"
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
