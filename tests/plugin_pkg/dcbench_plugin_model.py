"""A third-party trunk, through the `dcbench.models` entry points: alexnet-small at half its
width, named by its ARCH."""

from __future__ import annotations

from dcbench.models.alexnet_small import AlexNetSmall


class AlexNetSmallHalf(AlexNetSmall):
    ARCH = "alexnet-small-half"
    WIDTHS = (24, 48, 80, 80, 48)
    FLAT_DIM = WIDTHS[4] * 4 * 4
    FC_DIM = 256
