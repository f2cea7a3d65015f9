"""What a few conv5 filters respond to: their top-9 test images, the receptive-field crops
around the strongest response, and a synthetic image that maximises each filter.

Top images: each image's score for a filter is the largest value of that filter's channel
(post-ReLU) over all positions; the 9 highest scores win, ties broken by the lower index.
The crop is the window of the unit's theoretical receptive field (from the kernel sizes,
strides and paddings of the Sobel front end and `features`) centred on the arg-max position;
the part outside the image is filled with the dataset's mean colour (what the trunk sees as a
zero input). At 32 px the conv5 field of alexnet-small (38 px) covers the whole image.

Synthetic images: gradient ascent on the input, in normalised pixel space, of the filter's
pre-ReLU response averaged over positions, from grey noise, with the usual regularisers:
random jitter (the image is rolled by up to `jitter` pixels before each step), L2 decay
(the image shrinks by a factor (1 - l2) each step), a Gaussian blur every `blur_every` steps,
and clipping to the valid pixel range. Steps are normalised by the gradient's mean |value|.
The defaults (48 steps) take about a second on CPU for alexnet-small at 32 px.

Pixel size: 100 dpi x figure_size(filters): 720 px wide, 230 px per filter + 50 px high.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from dcbench.models import Trunk
from dcbench.report.filters import tile
from dcbench.report.pictures import (
    DEFAULT_DATASET,
    DEFAULT_IMAGES,
    Ckpt,
    PictureImages,
    check_fits,
    ckpt_label,
    ckpt_stem,
    load_for_pictures,
    load_test_images,
)
from dcbench.report.plot import Plot

ROW_INCHES = 2.3


def top_activations(acts: np.ndarray, k: int) -> np.ndarray:
    """(C, k) image indices per channel, highest score first, from scores (N, C) or maps
    (N, C, ...) (scored by their maximum); ties go to the lower image index."""
    scores = np.asarray(acts)
    if scores.ndim > 2:
        scores = scores.reshape(scores.shape[0], scores.shape[1], -1).max(axis=2)
    k = min(k, scores.shape[0])
    return np.argsort(-scores, axis=0, kind="stable")[:k].T


@dataclass
class ChannelMaxima:
    """Per image and channel: the largest response and where it is on the (H, W) map."""

    values: np.ndarray           # (N, C) float32
    where: np.ndarray            # (N, C) flat position on the map
    shape: tuple[int, int]       # the map's (H, W)


def channel_maxima(trunk: Trunk, images: PictureImages, layer: str,
                   device: torch.device | str = "cpu") -> ChannelMaxima:
    values, where, shape = [], [], (1, 1)
    trunk.eval()
    with torch.inference_mode():
        for _, x in images.batches():
            act = trunk.extract(x.to(device), [layer])[layer].float()
            shape = (int(act.shape[2]), int(act.shape[3]))
            best, at = act.flatten(2).max(dim=2)
            values.append(best.cpu().numpy())
            where.append(at.cpu().numpy())
    return ChannelMaxima(np.concatenate(values), np.concatenate(where), shape)


def _geometry(m: nn.Module) -> tuple[int, int, int] | None:
    """(kernel, stride, padding) of a conv or pooling layer (square), None for the others."""
    if not isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        return None
    k, s, p = (v if isinstance(v, int) else v[0] for v in (m.kernel_size, m.stride, m.padding))
    d = getattr(m, "dilation", 1)
    d = d if isinstance(d, int) else d[0]
    return d * (k - 1) + 1, s, p


def receptive_field(trunk: Trunk, layer: str) -> tuple[int, int, float]:
    """(size, stride, centre of unit 0) in input pixels of a conv tap's units; unit i is
    centred at centre + i * stride (continuous coordinates: pixel j spans [j, j + 1))."""
    modules = list(trunk.sobel or []) + list(trunk.features)[:trunk.CONV_TAPS[layer] + 1]
    size, jump, centre = 1, 1, 0.5
    for m in modules:
        geo = _geometry(m)
        if geo is None:
            continue
        k, s, p = geo
        centre += ((k - 1) / 2 - p) * jump
        size += (k - 1) * jump
        jump *= s
    return size, jump, centre


def rf_crop(pixels: np.ndarray, row: int, col: int, field: tuple[int, int, float],
            fill: np.ndarray) -> np.ndarray:
    """The (size, size, 3) window of an (S, S, 3) image seen by map unit (row, col)."""
    size, jump, centre = field
    side = pixels.shape[0]
    padded = np.empty((side + 2 * size, side + 2 * size, 3), dtype=pixels.dtype)
    padded[:] = fill
    padded[size:size + side, size:size + side] = pixels
    top = size + int(math.floor(centre + row * jump - size / 2))
    left = size + int(math.floor(centre + col * jump - size / 2))
    return padded[top:top + size, left:left + size]


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A per-channel Gaussian blur (3 sigma radius, reflected borders)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = (g / g.sum()).view(1, 1, 1, -1).repeat(x.shape[1], 1, 1, 1)
    x = nn.functional.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = nn.functional.conv2d(x, g, groups=x.shape[1])
    return nn.functional.conv2d(x, g.transpose(2, 3), groups=x.shape[1])


def pre_activation(trunk: Trunk, layer: str) -> nn.Sequential:
    """The trunk up to a conv tap, stopping before the tap's ReLU (a gradient even where the
    unit is off)."""
    end = trunk.CONV_TAPS[layer]
    stop = end if isinstance(trunk.features[end], nn.ReLU) else end + 1
    front = list(trunk.sobel) if trunk.sobel is not None else []
    return nn.Sequential(*front, *list(trunk.features)[:stop])


def maximise(trunk: Trunk, layer: str, channels: Sequence[int], mean: np.ndarray,
             std: np.ndarray, steps: int = 48, lr: float = 0.1, jitter: int = 2,
             l2: float = 0.01, blur_every: int = 4, blur_sigma: float = 0.5, seed: int = 0,
             device: torch.device | str = "cpu") -> np.ndarray:
    """(F, S, S, 3) images in [0, 1], one per channel, that drive its mean response up."""
    net = pre_activation(trunk, layer).eval()
    side, n = trunk.INPUT_SIZE, len(channels)
    gen = torch.Generator().manual_seed(seed)
    m = torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1).to(device)
    s = torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1).to(device)
    lo, hi = (0 - m) / s, (1 - m) / s
    x = (0.1 * torch.randn(n, 1, side, side, generator=gen)).repeat(1, 3, 1, 1).to(device)
    pick = torch.as_tensor(list(channels), dtype=torch.long, device=device)
    for step in range(steps):
        x.requires_grad_(True)
        dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=gen))
        out = net(torch.roll(x, shifts=(dy, dx), dims=(2, 3)))
        score = out[torch.arange(n, device=device), pick].mean(dim=(1, 2)).sum()
        (grad,) = torch.autograd.grad(score, x)
        with torch.no_grad():
            step_size = lr / (grad.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-12)
            x = (x + step_size * grad) * (1.0 - l2)
            if blur_every and (step + 1) % blur_every == 0:
                x = blur(x, blur_sigma)
            x = torch.maximum(torch.minimum(x, hi), lo)
    pixels = (x.detach() * s + m).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return np.stack([stretch(p) for p in pixels])


def stretch(img: np.ndarray) -> np.ndarray:
    """Contrast-stretch to the 1st-99th percentile (synthetic images are faint)."""
    lo, hi = np.percentile(img, [1, 99])
    return np.clip((img - lo) / (hi - lo), 0, 1) if hi > lo else np.full_like(img, 0.5)


def pick_filters(values: np.ndarray, n: int, seed: int) -> list[int]:
    """n channels drawn with a seed, among those that fire on some image (all if too few)."""
    live = np.flatnonzero(values.max(axis=0) > 0)
    pool = live if len(live) >= n else np.arange(values.shape[1])
    chosen = np.random.default_rng(seed).choice(pool, size=min(n, len(pool)), replace=False)
    return sorted(int(c) for c in chosen)


def figure_size(filters: int) -> tuple[float, float]:
    return 7.2, ROW_INCHES * filters + 0.5


def top_activation_plot(ckpt: Ckpt, layer: str = "conv5", filters: Sequence[int] | None = None,
                        n_filters: int = 4, top: int = 9, steps: int = 48, seed: int = 0,
                        images: PictureImages | None = None, dataset: str = DEFAULT_DATASET,
                        data_root: str | os.PathLike | None = None,
                        max_images: int | None = DEFAULT_IMAGES,
                        device: torch.device | str = "cpu") -> Plot:
    """Per filter: its top images, their receptive-field crops and its synthetic image
    (figures/top_activations_<checkpoint>.png)."""
    images = images if images is not None else load_test_images(dataset, data_root, max_images)
    ((trunk, info),) = load_for_pictures([ckpt], device)
    check_fits(trunk, images, info)
    label = ckpt_label(info)
    title = f"Top activations and synthetic images of {layer} filters: {label}"
    maxima = channel_maxima(trunk, images, layer, device)
    chosen = list(filters) if filters is not None else pick_filters(maxima.values, n_filters,
                                                                    seed)
    tops = top_activations(maxima.values[:, chosen], top)
    field = receptive_field(trunk, layer)
    fill = np.round(images.mean * 255).astype(np.uint8)
    synthetic = maximise(trunk, layer, chosen, images.mean, images.std, steps=steps,
                         seed=seed, device=device)
    fig = Figure(figsize=figure_size(len(chosen)), layout="constrained")
    axes = np.asarray(fig.subplots(len(chosen), 3, squeeze=False))
    for row, channel in enumerate(chosen):
        best = tops[row]
        whole = tile(np.stack([images.pixels[i] / 255.0 for i in best]))
        crops = [rf_crop(images.pixels[i], *divmod(int(maxima.where[i, channel]),
                                                   maxima.shape[1]), field, fill)
                 for i in best]
        panels = [(whole, f"{layer} #{channel}: top {len(best)}"),
                  (tile(np.stack(crops) / 255.0), f"receptive field {field[0]} px"),
                  (synthetic[row], f"synthetic ({steps} steps)")]
        for ax, (img, caption) in zip(axes[row], panels):
            ax.imshow(img, interpolation="nearest")
            ax.set_title(caption, fontsize="x-small")
            ax.set_xticks([])
            ax.set_yticks([])
        scores = maxima.values[best, channel]
        axes[row][0].set_xlabel(f"max {scores[0]:.2f} .. {scores[-1]:.2f}", fontsize="xx-small")
    notes = ["What to see: a trained trunk's top images for one filter share a class or a "
             "shape and its synthetic image shows a repeated pattern; a random trunk's mix "
             "classes and its synthetic images are noise.",
             f"Filters {', '.join(map(str, chosen))} of {layer} (seed {seed}) over "
             f"{len(images)} {images.dataset} {images.split} images; score = the channel's "
             f"largest response. Synthetic: {steps} steps of gradient ascent with jitter, L2 "
             f"decay and blur, contrast-stretched."]
    return Plot(f"top_activations_{ckpt_stem(info)}", title, fig, notes=notes)
