"""`dcbench report --pictures`: the conv1 filters, the nearest neighbours and the top
activations of named checkpoints, drawn on one image set and written as PNGs. Above the three
figure modules and pictures.py (the images and checkpoints they share)."""

from __future__ import annotations

import os
from pathlib import Path

from dcbench.report.activations import top_activation_plot
from dcbench.report.filters import filters_plot
from dcbench.report.neighbours import neighbours_plot
from dcbench.report.pictures import (
    DEFAULT_DATASET,
    DEFAULT_IMAGES,
    check_fits,
    load_for_pictures,
    load_test_images,
)
from dcbench.report.plot import Plot


def picture_plots(ckpts: list[str], out_folder: str | os.PathLike,
                  data_root: str | os.PathLike | None = None, device: str = "cpu", *,
                  dataset: str = DEFAULT_DATASET, max_images: int | None = DEFAULT_IMAGES
                  ) -> list[Plot]:
    """Draw the conv1 filters, the nearest neighbours and the top activations of `ckpts` and
    write them as PNGs under `out_folder`; return the plots (one top-activation figure per
    checkpoint)."""
    loaded = load_for_pictures(ckpts, device)
    images = load_test_images(dataset, data_root, max_images)
    for trunk, info in loaded:
        check_fits(trunk, images, info)         # before any figure is written
    plots = [filters_plot(loaded, device), neighbours_plot(loaded, images=images, device=device)]
    plots += [top_activation_plot(pair, images=images, device=device) for pair in loaded]
    names = [p.name for p in plots]
    for i, plot in enumerate(plots):
        if names.count(plot.name) > 1:          # two checkpoints of the same run folder
            plot.name = f"{plot.name}_{i}"
    for plot in plots:
        plot.save(Path(out_folder))
    return plots
