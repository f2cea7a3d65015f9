"""The image transforms (transforms.py, small_transforms.py): shapes, determinism, the small
recipes against torchvision's with the same seeds; and seeded subsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcbench.data import (
    build_dataset,
    make_transform,
    subset,
    targets_of,
)

# ---------------------------------------------------------------- subsets and transforms


def test_subset_is_seeded_sorted_and_keeps_targets(tiny_image_folder: Path) -> None:
    ds = build_dataset("image-folder", "train", None, root=tiny_image_folder)
    a, b, c = subset(ds, 7, seed=3), subset(ds, 7, seed=3), subset(ds, 7, seed=4)
    assert a.indices == b.indices and a.indices != c.indices
    assert a.indices == sorted(a.indices) and len(a) == 7
    assert a.targets == [ds.targets[i] for i in a.indices]
    assert a.classes == ds.classes
    assert list(targets_of(a)) == a.targets
    assert subset(ds, None, seed=0) is ds and subset(ds, len(ds), seed=0) is ds


@pytest.mark.parametrize("recipe", ["cluster", "train", "probe", "eval"])
def test_transform_shapes(recipe: str) -> None:
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 300, 3), np.uint8))
    assert make_transform(recipe, "large")(photo).shape == (3, 224, 224)
    gray28 = Image.fromarray(np.zeros((28, 28), np.uint8))
    assert make_transform(recipe, "small", native=28)(gray28).shape == (3, 32, 32)
    rgb40 = Image.fromarray(np.zeros((40, 40, 3), np.uint8))
    assert make_transform(recipe, "small", native=40)(rgb40).shape == (3, 32, 32)


def test_deterministic_recipes_are_deterministic() -> None:
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 256, (260, 300, 3), np.uint8))
    for recipe in ("cluster", "eval"):
        tf = make_transform(recipe, "large")
        assert torch.equal(tf(photo), tf(photo))
    tf = make_transform("train", "large")
    torch.manual_seed(0)
    first = tf(photo)
    torch.manual_seed(1)
    assert not torch.equal(first, tf(photo))


def test_small_recipes_match_torchvision_and_are_seeded() -> None:
    from torchvision import transforms as T

    rng = np.random.default_rng(2)
    gray = Image.fromarray(rng.integers(0, 256, (28, 28), np.uint8))
    mean, std = (0.3, 0.3, 0.3), (0.35, 0.35, 0.35)
    reference = T.Compose([T.Pad(2), T.Lambda(lambda im: im.convert("RGB")), T.ToTensor(),
                           T.Normalize(mean, std)])
    for recipe in ("cluster", "eval"):
        ours = make_transform(recipe, "small", mean, std, native=28)(gray)
        torch.testing.assert_close(ours, reference(gray), atol=1e-5, rtol=0)
    for recipe in ("train", "probe"):
        tf = make_transform(recipe, "small", mean, std, native=28, min_scale=0.3)
        torch.manual_seed(0)
        views = torch.stack([tf(gray) for _ in range(64)])
        torch.manual_seed(0)
        assert torch.equal(views, torch.stack([tf(gray) for _ in range(64)]))
        assert len({v.numpy().tobytes() for v in views}) > 16     # the views differ
        flipped = [torch.equal(v, v.flip(-1)) for v in views]      # a random image is not
        assert not any(flipped)                                   # symmetric: no view is
    # a probe view is the padded image shifted by at most 2 px, maybe flipped
    torch.manual_seed(0)
    base = make_transform("eval", "small", mean, std, native=28)(gray)
    view = make_transform("probe", "small", mean, std, native=28)(gray)
    pad = torch.nn.functional.pad(base, (2, 2, 2, 2), value=-mean[0] / std[0])
    shifts = [pad[:, i:i + 32, j:j + 32] for i in range(5) for j in range(5)]
    assert any(torch.allclose(view, s) or torch.allclose(view, s.flip(-1)) for s in shifts)


def test_transform_rejects_unknown_recipe_and_size() -> None:
    with pytest.raises(ValueError, match="recipe"):
        make_transform("nope", "large")
    with pytest.raises(ValueError, match="size"):
        make_transform("eval", "medium")
