"""The model zoo's DeepCluster convnets: tap shapes, early-stopping extraction, the Sobel front
end, state-dict key names of the released DeepCluster checkpoints (REFERENCE.md),
initialisation and seeding (ResNets and ViTs: tests/test_modern_trunks.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dcbench.errors import DcbenchError
from dcbench.models import MODELS, Trunk, build_model
from dcbench.models.sobel import SOBEL_X, SOBEL_Y

TAP_SHAPES = {
    "alexnet": {"conv1": (96, 55, 55), "conv2": (256, 27, 27), "conv3": (384, 13, 13),
                "conv4": (384, 13, 13), "conv5": (256, 13, 13), "fc6_pre": (4096,),
                "fc6": (4096,), "fc7_pre": (4096,), "fc7": (4096,)},
    "alexnet-small": {"conv1": (48, 32, 32), "conv2": (96, 16, 16), "conv3": (160, 8, 8),
                      "conv4": (160, 8, 8), "conv5": (96, 8, 8), "fc6_pre": (512,),
                      "fc6": (512,), "fc7_pre": (512,), "fc7": (512,)},
    "alexnet-small-wide": {"conv1": (96, 32, 32), "conv2": (192, 16, 16), "conv3": (320, 8, 8),
                           "conv4": (320, 8, 8), "conv5": (192, 8, 8), "fc6_pre": (1024,),
                           "fc6": (1024,), "fc7_pre": (1024,), "fc7": (1024,)},
    "vgg16": {"conv1": (64, 224, 224), "conv2": (128, 112, 112), "conv3": (256, 56, 56),
              "conv4": (512, 28, 28), "conv5": (512, 14, 14), "fc6_pre": (4096,),
              "fc6": (4096,), "fc7_pre": (4096,), "fc7": (4096,)},
    "jule-16": {"conv1": (50, 12, 12), "embed": (160,)},
    "jule-28": {"conv1": (50, 24, 24), "conv2": (50, 8, 8), "embed": (160,)},
    "jule-32": {"conv1": (50, 28, 28), "conv2": (50, 10, 10), "embed": (160,)},
    "jule-128": {"conv1": (50, 124, 124), "conv2": (50, 58, 58), "conv3": (50, 25, 25),
                 "conv4": (50, 9, 9), "embed": (160,)},
}
BATCH = {"alexnet": 2, "alexnet-small": 2, "alexnet-small-wide": 2, "vgg16": 1, "jule-16": 2,
         "jule-28": 2, "jule-32": 2, "jule-128": 2}
# the flat layer of JULE's released nets (REFERENCE.md / PROTOCOLS.md): MNIST, USPS, COIL; a
# floor-mode pool would give COIL 800, a pool after MNIST's second conv 800
JULE_FLAT = {"jule-28": 3200, "jule-16": 1800, "jule-128": 1250, "jule-32": 5000}

CONVNETS = sorted(a for a, cls in MODELS.items() if cls.FAMILY == "convnet")
ALEXNET_CONVS = [0, 4, 8, 11, 14]
VGG16_CONVS = [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]


@pytest.fixture(scope="module")
def models() -> dict[str, Trunk]:
    """One seeded Sobel model per arch, in eval mode (VGG16 is 138M parameters: build once)."""
    return {arch: build_model(arch, seed=0).eval() for arch in CONVNETS}


def _input(model: Trunk, arch: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    side = model.INPUT_SIZE
    return torch.randn(BATCH[arch], 3, side, side, generator=gen)


def test_every_arch_is_covered() -> None:
    assert set(CONVNETS) == set(TAP_SHAPES)
    assert set(MODELS) - set(CONVNETS) == {"resnet18", "resnet50", "vit-s16", "vit-b16"}


@pytest.mark.parametrize("arch", CONVNETS)
def test_tap_shapes_and_deepest_tap_matches_forward(arch: str, models) -> None:
    model = models[arch]
    x = _input(model, arch)
    with torch.no_grad():
        out = model.extract(x, model.tap_names())
        full = model(x)              # no top layer: forward ends at fc7
    assert model.top_layer is None
    assert set(out) == set(TAP_SHAPES[arch]) == set(model.tap_names())
    for tap, shape in TAP_SHAPES[arch].items():
        assert tuple(out[tap].shape) == (len(x), *shape), tap
    last = "embed" if arch.startswith("jule") else "fc7"
    assert torch.allclose(out[last], full, atol=1e-5)
    if arch.startswith("jule"):        # JULE's output is L2-normalised
        torch.testing.assert_close(full.norm(dim=1), torch.ones(len(x)))
        return
    assert torch.equal(out["fc7"], torch.relu(out["fc7_pre"]))
    assert torch.equal(out["fc6"], torch.relu(out["fc6_pre"]))
    assert (out["fc7_pre"] < 0).any() and (out["fc7"] >= 0).all()


@pytest.mark.parametrize("arch", sorted(JULE_FLAT))
def test_jule_nets_have_the_released_flat_layer(arch: str) -> None:
    assert MODELS[arch].FLAT_DIM == JULE_FLAT[arch]
    model = build_model(arch, sobel=False, seed=0)
    assert model.classifier[0].in_features == JULE_FLAT[arch]
    assert sum(isinstance(m, nn.MaxPool2d) and m.ceil_mode for m in model.features) == \
        {"jule-16": 1, "jule-28": 1, "jule-32": 1, "jule-128": 4}[arch]


@pytest.mark.parametrize("arch", ["alexnet", "alexnet-small"])
def test_extract_stops_after_deepest_tap(arch: str, models) -> None:
    model = models[arch]
    ran: list[str] = []
    conv3_at = model.CONV_TAPS["conv3"]
    hooks = [model.features[conv3_at + 1].register_forward_hook(lambda *_: ran.append("conv4")),
             model.classifier[0].register_forward_hook(lambda *_: ran.append("classifier"))]
    try:
        x = _input(model, arch)
        with torch.no_grad():
            out = model.extract(x, ["conv3", "conv1"])
            ref = model.extract(x, model.tap_names())
    finally:
        for h in hooks:
            h.remove()
    assert set(out) == {"conv1", "conv3"}
    assert ran == ["conv4", "classifier"]          # only the full extraction went past conv3
    assert torch.equal(out["conv3"], ref["conv3"])


def test_fc_tap_runs_all_features_but_not_past_itself(models) -> None:
    model = models["alexnet-small"]
    ran: list[int] = []
    hook = model.classifier[5].register_forward_hook(lambda *_: ran.append(5))
    try:
        with torch.no_grad():
            out = model.extract(_input(model, "alexnet-small"), ["fc6"])
    finally:
        hook.remove()
    assert list(out) == ["fc6"] and out["fc6"].shape == (2, 512)
    assert ran == []


def test_unknown_tap_is_refused(models) -> None:
    with pytest.raises(KeyError, match="conv9"):
        models["alexnet-small"].extract(torch.zeros(1, 3, 32, 32), ["conv9"])


def test_no_tap_requested_runs_nothing(models) -> None:
    assert models["alexnet-small"].extract(torch.zeros(1, 3, 32, 32), []) == {}


@pytest.mark.parametrize("arch", CONVNETS)
def test_sobel_on_and_off(arch: str) -> None:
    with torch.device("meta"):        # structure only: no weights drawn
        on, off = build_model(arch, sobel=True), build_model(arch, sobel=False)
    assert on.has_sobel and on.in_channels == 2 and on.features[0].in_channels == 2
    assert not off.has_sobel and off.in_channels == 3 and off.features[0].in_channels == 3
    assert not any(k.startswith("sobel.") for k in off.state_dict())
    assert {k for k in on.state_dict() if k.startswith("sobel.")} == {
        "sobel.0.weight", "sobel.0.bias", "sobel.1.weight", "sobel.1.bias"}
    assert all(not p.requires_grad for p in on.sobel.parameters())


def test_rgb_model_gives_the_same_taps() -> None:
    rgb = build_model("alexnet-small", sobel=False, seed=0).eval()
    with torch.no_grad():
        out = rgb.extract(torch.randn(2, 3, 32, 32), rgb.tap_names())
    assert {t: tuple(v.shape[1:]) for t, v in out.items()} == TAP_SHAPES["alexnet-small"]


def test_sobel_keys_and_kernels(models) -> None:
    sd = models["alexnet"].state_dict()
    assert sd["sobel.0.weight"].shape == (1, 3, 1, 1)
    assert torch.allclose(sd["sobel.0.weight"], torch.full((1, 3, 1, 1), 1 / 3))
    assert sd["sobel.1.weight"].shape == (2, 1, 3, 3)
    assert torch.equal(sd["sobel.1.weight"][0, 0], torch.tensor(SOBEL_X))
    assert torch.equal(sd["sobel.1.weight"][1, 0], torch.tensor(SOBEL_Y))
    assert torch.equal(torch.tensor(SOBEL_X), torch.tensor(
        [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]))
    assert torch.equal(torch.tensor(SOBEL_Y), torch.tensor(SOBEL_X).T)
    assert not sd["sobel.0.bias"].any() and not sd["sobel.1.bias"].any()


def _layer_indices(sd: dict[str, torch.Tensor], prefix: str, ndim: int) -> list[int]:
    return sorted(int(k.split(".")[1]) for k, v in sd.items()
                  if k.startswith(prefix) and k.endswith(".weight") and v.ndim == ndim)


def test_alexnet_keys_match_released_checkpoint(models) -> None:
    sd = models["alexnet"].trunk_state_dict()
    assert _layer_indices(sd, "features.", 4) == ALEXNET_CONVS
    assert _layer_indices(sd, "features.", 1) == [i + 1 for i in ALEXNET_CONVS]
    assert _layer_indices(sd, "classifier.", 2) == [1, 4]
    assert sd["features.0.weight"].shape == (96, 2, 11, 11)
    assert sd["features.14.weight"].shape == (256, 384, 3, 3)
    assert sd["classifier.1.weight"].shape == (4096, 9216)
    assert sd["classifier.4.weight"].shape == (4096, 4096)
    assert all(f"features.{i}.bias" in sd for i in ALEXNET_CONVS)   # convs keep their bias
    assert "features.1.running_var" in sd and "features.1.num_batches_tracked" in sd
    assert not any(k.startswith("top_layer.") for k in sd)


def test_vgg16_keys_match_released_checkpoint(models) -> None:
    sd = models["vgg16"].trunk_state_dict()
    assert _layer_indices(sd, "features.", 4) == VGG16_CONVS
    assert _layer_indices(sd, "features.", 1) == [i + 1 for i in VGG16_CONVS]
    assert _layer_indices(sd, "classifier.", 2) == [0, 3]
    assert sd["features.0.weight"].shape == (64, 2, 3, 3)
    assert sd["features.40.weight"].shape == (512, 512, 3, 3)
    assert sd["classifier.0.weight"].shape == (4096, 25088)
    assert sd["classifier.3.weight"].shape == (4096, 4096)


def test_alexnet_small_has_alexnet_layout(models) -> None:
    small = models["alexnet-small"].trunk_state_dict()
    big = models["alexnet"].trunk_state_dict()
    assert set(small) == set(big)


@pytest.mark.parametrize("arch", ["alexnet", "alexnet-small"])
def test_init_follows_deepcluster(arch: str, models) -> None:
    model = models[arch]
    for m in model.features:
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert not m.bias.any()
        elif isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            assert m.weight.std().item() == pytest.approx(math.sqrt(2 / n), rel=0.1)
            assert not m.bias.any()
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert len(linears) == 2
    for m in linears:
        assert m.weight.std().item() == pytest.approx(0.01, rel=0.05)
        assert abs(m.weight.mean().item()) < 1e-3 and not m.bias.any()


def test_top_layer_set_and_removed() -> None:
    model = build_model("alexnet-small", k=37, seed=0)
    assert model.top_layer.weight.shape == (37, 512)
    assert model.top_layer.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert not model.top_layer.bias.any()
    assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 37)
    assert set(model.state_dict()) - set(model.trunk_state_dict()) == {
        "top_layer.weight", "top_layer.bias"}
    model.set_top_layer(None)
    assert model.top_layer is None and model(torch.zeros(1, 3, 32, 32)).shape == (1, 512)


def test_build_model_seed_is_deterministic_and_isolated() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    a = build_model("alexnet-small", k=5, seed=7).state_dict()
    after = torch.rand(1)
    b = build_model("alexnet-small", k=5, seed=7).state_dict()
    c = build_model("alexnet-small", k=5, seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["features.0.weight"], c["features.0.weight"])
    torch.manual_seed(123)
    torch.rand(1)
    assert torch.equal(torch.rand(1), after) and before.shape == (1,)   # global RNG untouched


def test_unknown_arch_is_refused() -> None:
    with pytest.raises(DcbenchError, match="unknown arch 'resnet101'.*alexnet"):
        build_model("resnet101")
