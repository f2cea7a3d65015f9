"""Checkpoint files in the released DeepCluster format (REFERENCE.md), with seeded weights:
what a user's downloaded alexnet/ or vgg16/checkpoint.pth.tar looks like to dcbench, for
rehearsing the recipes on that format without the real files.

Only {'arch', 'epoch', 'state_dict'}; AlexNet's convs under DataParallel's
'features.module.', VGG16's under 'features.'; no num_batches_tracked; a Sobel front end;
a 10,000-way top layer; BatchNorm running statistics away from their initial 0 / 1, as in a
trained file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dcbench.models import build_model

RELEASED_K = 10_000


def write_released(arch: str, path: Path, seed: int = 0, k: int = RELEASED_K) -> Path:
    """Write a released-format `arch` ('alexnet' or 'vgg16') file at `path`."""
    model = build_model(arch, sobel=True, k=k, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.endswith("running_mean"):
            value = torch.randn(value.shape, generator=gen) * 0.1
        elif key.endswith("running_var"):
            value = torch.rand(value.shape, generator=gen) + 0.5
        if arch == "alexnet":
            key = key.replace("features.", "features.module.", 1)
        state[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"arch": arch, "epoch": 500, "state_dict": state}, path)
    return path
