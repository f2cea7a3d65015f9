"""The conv1 filters of one or more checkpoints as image grids (the paper's Fig. 4 style).

A Sobel trunk's conv1 does not see colour: its input is the two Sobel gradients (d/dx, d/dy
of the grey image), so each of its two input channels is drawn as its own grey grid instead
of a false-colour picture. An RGB trunk's conv1 is drawn in colour. Every filter is scaled on
its own (zero is mid-grey, the largest |weight| of the filter is black or white / full
colour), as in the paper, so weak and strong filters are equally readable.

Pixel size: 100 dpi x figure_size(panels): 240 x 290 px per panel (at least 400 px wide).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from dcbench.models import Trunk
from dcbench.report.pictures import Ckpt, ckpt_label, load_for_pictures
from dcbench.report.plot import Plot

PANEL_INCHES = (2.4, 2.9)
GAP = 1                        # pixels between filters in a grid


def conv1_weights(trunk: Trunk) -> np.ndarray:
    """(out, in, kh, kw) float32 weights of the trunk's first conv after the Sobel front end
    (`features.0`, a ResNet's `conv1`, a ViT's patch embedding)."""
    sobel = set(trunk.sobel.modules()) if trunk.sobel is not None else set()
    conv = next(m for m in trunk.modules() if isinstance(m, nn.Conv2d) and m not in sobel)
    return conv.weight.detach().float().cpu().numpy()


def scale_per_filter(weights: np.ndarray) -> np.ndarray:
    """Map each filter to [0, 1] with 0 -> 0.5, symmetric in its own largest |weight|."""
    peak = np.abs(weights).reshape(len(weights), -1).max(axis=1)
    peak = np.where(peak > 0, peak, 1.0).reshape(-1, *([1] * (weights.ndim - 1)))
    return 0.5 + 0.5 * weights / peak


def tile(filters: np.ndarray, background: float = 1.0) -> np.ndarray:
    """(n, kh, kw[, 3]) images in [0, 1] -> one near-square mosaic with GAP-pixel gutters."""
    n, kh, kw = filters.shape[:3]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    shape = (rows * (kh + GAP) - GAP, cols * (kw + GAP) - GAP, *filters.shape[3:])
    out = np.full(shape, background, dtype=np.float32)
    for i, f in enumerate(filters):
        r, c = divmod(i, cols)
        out[r * (kh + GAP):r * (kh + GAP) + kh, c * (kw + GAP):c * (kw + GAP) + kw] = f
    return out


def filter_panels(trunk: Trunk) -> list[tuple[str, np.ndarray]]:
    """(caption, mosaic) per panel: one colour mosaic (RGB input), or one grey mosaic per
    input channel (Sobel: d/dx and d/dy; any other channel count: channel i)."""
    scaled = scale_per_filter(conv1_weights(trunk))
    cin = scaled.shape[1]
    if cin == 3 and not trunk.has_sobel:
        return [("RGB", tile(scaled.transpose(0, 2, 3, 1)))]
    names = ["Sobel d/dx", "Sobel d/dy"] if trunk.has_sobel and cin == 2 else \
        [f"channel {i}" for i in range(cin)]
    return [(names[i], tile(scaled[:, i])) for i in range(cin)]


def figure_size(panels: int) -> tuple[float, float]:
    return max(4.0, PANEL_INCHES[0] * panels), PANEL_INCHES[1]


def filters_plot(ckpts: Sequence[Ckpt], device: torch.device | str = "cpu") -> Plot:
    """conv1 filters of each checkpoint side by side (figures/conv1_filters.png)."""
    title = "conv1 filters"
    drawn = []
    for trunk, info in load_for_pictures(ckpts, device):
        for caption, mosaic in filter_panels(trunk):
            drawn.append((ckpt_label(info), caption, mosaic))
    fig = Figure(figsize=figure_size(len(drawn)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(drawn)))
    for ax, (label, caption, mosaic) in zip(axes, drawn):
        grey = mosaic.ndim == 2
        ax.imshow(mosaic, cmap="gray" if grey else None, vmin=0.0, vmax=1.0,
                  interpolation="nearest")
        ax.set_title(f"{label}\n{caption}", fontsize="x-small")
        ax.set_xticks([])
        ax.set_yticks([])
    notes = ["What to see: trained filters are smooth oriented edges and blobs (Sobel: "
             "gradient detectors on the grey image; RGB: also colour blobs); a random trunk's "
             "are noise.",
             "Each filter is scaled to its own largest |weight| (mid-grey = 0). A Sobel trunk's "
             "conv1 takes 2 channels (the x and y gradients), drawn as two grey grids."]
    return Plot("conv1_filters", title, fig, notes=notes)
