"""dcbench's small-image recipes against the equivalent torchvision pipelines, per image, in
one run (the ratio is what matters; the absolute numbers move with the machine's load).

    python bench/bench_small_transforms.py           # ~20 s
"""

from __future__ import annotations

import time

from PIL import Image
from torchvision import transforms as T

from dcbench.data import build_dataset, get_dataset_spec, make_transform


def per_image_us(transform, images) -> float:
    t = time.perf_counter()
    for img in images:
        transform(img)
    return (time.perf_counter() - t) / len(images) * 1e6


def main() -> None:
    spec = get_dataset_spec("fashion-mnist")
    raw = build_dataset("fashion-mnist", "train", None).images[:3000]
    images = [Image.fromarray(a) for a in raw]
    rgb = T.Lambda(lambda im: im.convert("RGB"))
    tail = [rgb, T.ToTensor(), T.Normalize(spec.mean, spec.std)]
    torchvision = {
        "cluster": T.Compose([T.Pad(2), *tail]),
        "train": T.Compose([T.Pad(2), T.RandomResizedCrop(32, scale=(0.3, 1.0)),
                            T.RandomHorizontalFlip(), *tail]),
        "probe": T.Compose([T.Pad(2), T.RandomCrop(32, padding=2), T.RandomHorizontalFlip(),
                            *tail]),
    }
    print(f"{'recipe':8s} {'torchvision us':>15s} {'dcbench us':>11s} {'speed-up':>9s}")
    for recipe, reference in torchvision.items():
        ours = make_transform(recipe, spec.size, spec.mean, spec.std, spec.native, 0.3)
        a, b = per_image_us(reference, images), per_image_us(ours, images)
        print(f"{recipe:8s} {a:15.0f} {b:11.0f} {a / b:8.1f}x")


if __name__ == "__main__":
    main()
