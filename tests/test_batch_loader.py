"""The in-memory batch loader (Fashion-MNIST's fast path): the same batches the per-image
DataLoader gives where the recipe is deterministic, seeded crops where it is random, and the
right rows under Subsets, samplers and shuffling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dcbench.data import build_dataset, make_loader, make_transform, subset
from dcbench.data.batch_loader import InMemoryLoader, crop_boxes
from dcbench.data.real.fashion_mnist import MEAN, STD


def _data(root: Path, recipe: str, n: int = 300):
    t = make_transform(recipe, "small", (MEAN,) * 3, (STD,) * 3, 28, min_scale=0.3)
    return subset(build_dataset("fashion-mnist", "test", t, root=root), n, 0)


def test_eval_batches_equal_the_per_image_pipeline(fmnist_root: Path, monkeypatch) -> None:
    data = _data(fmnist_root, "eval")
    fast = make_loader(data, 64, sampler=[5, 3, 299, 0], workers=0)
    assert isinstance(fast, InMemoryLoader)
    monkeypatch.setenv("DCBENCH_PER_IMAGE_LOADER", "1")
    slow = make_loader(data, 64, sampler=[5, 3, 299, 0], workers=0)
    (a, ta, ia, _), = list(fast)
    (b, tb, ib, _), = list(slow)
    assert ia.tolist() == ib.tolist() == [5, 3, 299, 0]      # dataset indices, sampler order
    assert torch.equal(ta, tb)                                 # labels of the subset's rows
    assert torch.allclose(a, b, atol=1e-5)


def test_train_crops_are_seeded_and_fresh_each_pass(fmnist_root: Path) -> None:
    data = _data(fmnist_root, "train")
    one = make_loader(data, 50, shuffle=True, seed=7)
    two = make_loader(data, 50, shuffle=True, seed=7)
    first = [(x.clone(), i.clone()) for x, _, i, _ in one]
    again = [(x, i) for x, _, i, _ in two]
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(first, again))
    assert sorted(torch.cat([i for _, i in first]).tolist()) == list(range(300))
    second_pass = [i for _, _, i, _ in one]                    # a new order, as a DataLoader
    assert not torch.equal(torch.cat(second_pass), torch.cat([i for _, i in first]))
    assert len(one) == 6 and first[0][0].shape == (50, 3, 32, 32)


def test_crop_boxes_follow_the_recipe_scale(fmnist_root: Path) -> None:
    t = make_transform("train", "small", (MEAN,) * 3, (STD,) * 3, 28, min_scale=0.3)
    gen = torch.Generator().manual_seed(0)
    boxes = crop_boxes(t, 2000, gen)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / 1024
    assert area.min() >= 0.3 - 0.05 and area.max() <= 1.0
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 32).all()
    # ratios 3/4..4/3 with rounding: a square crop is not forced
    ratio = (boxes[:, 2] - boxes[:, 0]) / (boxes[:, 3] - boxes[:, 1])
    assert ratio.min() < 0.85 and ratio.max() > 1.2


def test_probe_recipe_is_a_padded_shift_of_the_base(fmnist_root: Path) -> None:
    data = _data(fmnist_root, "probe", n=20)
    base = _data(fmnist_root, "eval", n=20)
    (x, _, idx, _), = list(make_loader(data, 20, seed=1))
    (ref, _, _, _), = list(make_loader(base, 20, seed=1))
    background = float((0 - MEAN) / STD)
    for k in range(20):
        shifted = [torch.nn.functional.pad(ref[k], (2, 2, 2, 2), value=background)
                   [:, i:i + 32, j:j + 32] for i in range(5) for j in range(5)]
        options = shifted + [s.flip(-1) for s in shifted]
        assert any(torch.allclose(x[k], s, atol=1e-5) for s in options), int(idx[k])
    assert np.isclose(float(x.mean()), float(ref.mean()), atol=0.2)
