"""BatchNorm folding for frozen passes: the folded copy computes what the trunk computes."""

from __future__ import annotations

import torch
from torch import nn

from dcbench.models import build_model
from dcbench.models.fold_bn import folded_copy

TAPS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6_pre", "fc6", "fc7_pre", "fc7")


def trained_like(arch: str) -> nn.Module:
    """A trunk whose BN layers are far from identity (a fresh one has mean 0, var 1, so a
    folding that ignored them would still pass)."""
    model = build_model(arch, seed=0).eval()
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(c, generator=gen) * 3 + 0.2)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.3)
    return model


def test_folded_taps_equal_the_trunks_and_leave_it_untouched():
    model = trained_like("alexnet-small")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model.extract(x, TAPS)
        folded = folded_copy(model)
        got = folded.extract(x, TAPS)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.features)
    assert sum(isinstance(m, nn.Identity) for m in folded.features) == 5
    for tap in TAPS:       # fc6_pre / fc7_pre survive: the classifier's ReLUs stay out of place
        torch.testing.assert_close(got[tap], want[tap], rtol=1e-4, atol=1e-5)
    assert (got["fc6_pre"] < 0).any()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert model.features[1].__class__ is nn.BatchNorm2d


def test_folding_uses_the_running_statistics_not_the_batch():
    """A batch of one image: batch statistics would make every BN output zero."""
    model = trained_like("alexnet-small")
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model.extract(x, ["conv1"])["conv1"]
        got = folded_copy(model).extract(x, ["conv1"])["conv1"]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert float(got.abs().sum()) > 1.0
