"""Why alexnet-small has widths 48-96-160-160-96 and runs channels_last.

Training and eval throughput (images/s, batch 256, 32x32, Sobel input) of three width
choices, NCHW vs channels_last, measured in one run so the ratios compare like with like.

    python bench/bench_alexnet_small_width.py        # ~1 minute on 2 cores
"""

from __future__ import annotations

import time

import torch
from torch import nn

from dcbench.models.convnet import conv_bn_relu
from dcbench.threads import configure_threads

WIDTHS = [(64, 128, 192, 192, 128), (48, 96, 160, 160, 96), (32, 64, 128, 128, 64)]


def make(w: tuple[int, ...]) -> nn.Module:
    a, b, c, d, e = w
    return nn.Sequential(
        *conv_bn_relu(2, a, 5, 1, 2), nn.MaxPool2d(2), *conv_bn_relu(a, b, 3, 1, 1),
        nn.MaxPool2d(2), *conv_bn_relu(b, c, 3, 1, 1), *conv_bn_relu(c, d, 3, 1, 1),
        *conv_bn_relu(d, e, 3, 1, 1), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(e * 16, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 100))


def throughput(w: tuple[int, ...], channels_last: bool, steps: int = 4) -> tuple[float, float]:
    torch.manual_seed(0)
    m = make(w)
    x, y = torch.randn(256, 2, 32, 32), torch.randint(0, 100, (256,))
    if channels_last:
        m, x = m.to(memory_format=torch.channels_last), x.contiguous(
            memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    for i in range(steps + 1):
        if i == 1:
            t = time.perf_counter()
        loss = nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    train = steps * 256 / (time.perf_counter() - t)
    m.eval()
    with torch.inference_mode():
        m(x)
        t = time.perf_counter()
        for _ in range(steps):
            m(x)
    return train, steps * 256 / (time.perf_counter() - t)


def main() -> None:
    configure_threads()
    base = None
    print(f"{'widths':>24} {'layout':>14} {'train img/s':>12} {'eval img/s':>11} {'train x':>8}")
    for w in WIDTHS:
        for cl in (False, True):
            tr, ev = throughput(w, cl)
            base = base or tr
            print(f"{str(w):>24} {'channels_last' if cl else 'NCHW':>14} {tr:12.0f} {ev:11.0f} "
                  f"{tr / base:8.2f}")


if __name__ == "__main__":
    main()
