"""A frozen trunk with each BatchNorm folded into the convolution before it.

In eval mode BatchNorm is a per-channel affine map, so conv -> BN equals one conv whose weights
and bias absorb it. Frozen passes (the probes' features, kNN, clustering, retrieval, the
pretraining's clustering pass) run on this copy: BatchNorm was 15 % of a linear-probe run's
time on 2 CPU cores (py-spy), and a folded conv costs the same as the plain one. Each trunk
names its conv -> BN pairs (`Trunk.conv_bn_pairs`); the folded BN becomes an Identity under
the same name, so every tap keeps its place, and the ReLUs no tap reads before run in place.
Outputs equal the unfolded trunk's up to float rounding (tests/test_fold_bn.py).
"""

from __future__ import annotations

import copy
import types

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from dcbench.errors import DcbenchError
from dcbench.models.trunk import Trunk


def _eval_only(self: nn.Module, mode: bool = True) -> nn.Module:
    if mode:
        raise DcbenchError("a frozen pass switched its trunk to train mode (dropout would change "
                           "its features); frozen tasks must keep the trunk in eval mode")
    return nn.Module.train(self, False)


def fold_into(trunk: Trunk) -> Trunk:
    """Fold `trunk`'s conv -> BatchNorm2d pairs in place (BN by its running statistics, as in
    eval mode); for a copy whose conv layers stay frozen. Returns `trunk`."""
    for parent, conv_name, bn_name in trunk.conv_bn_pairs():
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        setattr(parent, conv_name, fuse_conv_bn_eval(conv.eval(), bn.eval()))
        setattr(parent, bn_name, nn.Identity())
    for relu in trunk.foldable_relus():
        relu.inplace = True
    return trunk.to(memory_format=torch.channels_last)


def folded_copy(trunk: Trunk) -> Trunk:
    """An eval-mode copy of `trunk` whose conv -> BatchNorm2d pairs are one conv each; it
    refuses to be put in train mode."""
    out = fold_into(copy.deepcopy(trunk).eval())
    for p in out.parameters():
        p.requires_grad_(False)
    out.train = types.MethodType(_eval_only, out)     # folded BN has no train mode
    return out
