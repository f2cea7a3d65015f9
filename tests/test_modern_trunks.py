"""ResNet and ViT trunks and the field's checkpoint layouts (issue 32): one random trunk written
in each layout loads to bit-identical features, the dropped heads are named, and every
mismatch is refused with the key named."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
import torchvision

from dcbench.checkpoint import load_trunk
from dcbench.errors import CheckpointError
from dcbench.layer_names import RESNET_TAPS, ROLE_DEFAULTS, VIT_TAPS
from dcbench.models import MODELS, build_model

SIDE = 64          # small inputs: the layouts, not the resolution, are under test


def test_the_torch_free_tap_names_are_the_trunks_own() -> None:
    for arch, cls in MODELS.items():
        if cls.FAMILY == "resnet":
            assert cls.tap_names() == RESNET_TAPS, arch
        if cls.FAMILY == "vit":
            assert cls.tap_names() == VIT_TAPS, arch
        if cls.FAMILY in ("resnet", "vit"):
            for role, text in ROLE_DEFAULTS.items():
                assert " ".join(cls.role(role)) in text, (arch, role)


def test_resnet_is_torchvision_key_for_key_and_output_for_output() -> None:
    ours = build_model("resnet18", sobel=False, seed=3).eval()
    tv = torchvision.models.resnet18(weights=None)
    trunk_keys = {k for k in tv.state_dict() if not k.startswith("fc.")}
    assert set(ours.trunk_state_dict()) == trunk_keys
    tv.load_state_dict({**ours.trunk_state_dict(), "fc.weight": tv.fc.weight,
                        "fc.bias": tv.fc.bias})
    tv.fc = torch.nn.Identity()
    x = torch.randn(2, 3, SIDE, SIDE)
    with torch.no_grad():
        taps = ours.extract(x, ["res4", "res5avg"])
        assert torch.equal(tv.eval()(x), taps["res5avg"])
        assert taps["res4"].shape == (2, 256, SIDE // 16, SIDE // 16)


def test_vit_taps_are_dino_s() -> None:
    """cls4 is the normed CLS of the last four blocks (DINO's eval_linear, n=4); cls+avgpool
    the last block's CLS beside the mean of its patch tokens; patch their grid."""
    vit = build_model("vit-s16", sobel=False, seed=0).eval()
    x = torch.randn(1, 3, SIDE, SIDE)               # 4 x 4 patches: the position grid resized
    with torch.no_grad():
        taps = vit.extract(x, vit.tap_names())
        tokens = vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
        h = torch.cat([vit.cls_token, tokens], 1) + vit.position(4, 4)
        cls = []
        for block in vit.blocks:
            h = block(h)
            cls.append(vit.norm(h)[:, 0])
    assert torch.equal(taps["cls4"], torch.cat(cls[-4:], 1))
    assert torch.equal(taps["cls"], cls[-1])
    last = vit.norm(h)
    assert torch.allclose(taps["cls+avgpool"], torch.cat([last[:, 0], last[:, 1:].mean(1)], 1))
    assert taps["patch"].shape == (1, 384, 4, 4)
    assert torch.equal(taps["patch"][0, :, 1, 2], last[0, 1 + 1 * 4 + 2])
    # an R-MAC query crop off the patch grid (50 x 70 px): padded to 64 x 80, nothing dropped
    with torch.no_grad():
        crop = torch.randn(1, 3, 50, 70)
        padded = torch.nn.functional.pad(crop, (0, 10, 0, 14))
        assert torch.equal(vit.extract(crop, ["patch"])["patch"],
                           vit.extract(padded, ["patch"])["patch"])
    assert vit.extract(crop, ["patch"])["patch"].shape == (1, 384, 4, 5)


def _resnet_layouts(model) -> dict[str, dict]:
    """One ResNet-50's weights as each project releases them (heads drawn at random)."""
    trunk = model.trunk_state_dict()
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g)

    mlp = {"fc.0.weight": rand(2048, 2048), "fc.0.bias": rand(2048),
           "fc.2.weight": rand(128, 2048), "fc.2.bias": rand(128)}
    prefixed = {f"module.{k}": v for k, v in trunk.items()}
    return {
        "torchvision": {**trunk, "fc.weight": rand(1000, 2048), "fc.bias": rand(1000)},
        "moco": {"epoch": 800, "arch": "resnet50", "state_dict": {
            **{f"module.encoder_q.{k}": v for k, v in {**trunk, **mlp}.items()},
            **{f"module.encoder_k.{k}": v.clone() for k, v in trunk.items()},
            "module.queue": rand(128, 16), "module.queue_ptr": torch.zeros(1)}},
        "swav": {**prefixed, "module.projection_head.0.weight": rand(2048, 2048),
                 "module.prototypes.weight": rand(3000, 128)},
        "dino": {"epoch": 100, "args": argparse.Namespace(arch="resnet50", lr=0.03),
                 "teacher": {**{f"backbone.{k}": v for k, v in trunk.items()},
                             "head.mlp.0.weight": rand(64, 2048)},
                 "student": {f"module.backbone.{k}": v + 1 for k, v in trunk.items()}},
        "vissl": {"classy_state_dict": {"base_model": {"model": {
            "trunk": {f"_feature_blocks.{k}": v for k, v in trunk.items()},
            "heads": {"0.clf.0.weight": rand(1000, 2048)}}}}, "iteration": 5},
    }


def test_a_resnet50_in_every_layout_loads_to_identical_features(tmp_path: Path) -> None:
    source = build_model("resnet50", sobel=False, seed=5).eval()
    x = torch.randn(2, 3, SIDE, SIDE)
    with torch.no_grad():
        want = source.extract(x, ["res3", "res5avg"])
    seen = {}
    for layout, obj in _resnet_layouts(source).items():
        path = tmp_path / f"{layout}.pth"
        torch.save(obj, path)
        trunk, info = load_trunk(str(path))
        with torch.no_grad():
            got = trunk.extract(x, ["res3", "res5avg"])
        assert all(torch.equal(got[k], want[k]) for k in want), layout
        assert info.arch == "resnet50" and not info.sobel
        seen[layout] = (info.format, info.dropped, info.weights_sha256, info.k)
    assert {k: v[0] for k, v in seen.items()} == {
        "torchvision": "torchvision", "moco": "moco", "swav": "swav", "dino": "dino-teacher",
        "vissl": "vissl"}
    assert len({v[2] for v in seen.values()}) == 1          # one trunk: one weights hash
    assert seen["torchvision"][3] == 1000                   # its fc loads as the top layer
    assert seen["moco"][1] == ("encoder_q.fc (the projection head)",
                               "encoder_k (the key encoder)", "queue (the negatives queue)")
    assert seen["swav"][1] == ("projection_head (the projection head)",
                               "prototypes (the prototypes)")
    assert seen["dino"][1] == ("head (the DINO projection head)",
                               "student (DINO's evaluations use the teacher)")
    assert seen["vissl"][1] == ("heads (VISSL's training heads)",)


def test_a_vit_in_the_timm_dino_and_moco_v3_layouts(tmp_path: Path) -> None:
    source = build_model("vit-s16", sobel=False, seed=2).eval()
    trunk = source.trunk_state_dict()
    x = torch.randn(1, 3, SIDE, SIDE)
    with torch.no_grad():
        want = source.extract(x, ["cls4"])["cls4"]
    files = {
        "timm": {**trunk, "head.weight": torch.zeros(1000, 384), "head.bias": torch.zeros(1000)},
        "dino-teacher": {"teacher": {f"backbone.{k}": v for k, v in trunk.items()}},
        "moco-v3": {"state_dict": {
            **{f"module.base_encoder.{k}": v for k, v in trunk.items()},
            "module.base_encoder.head.0.weight": torch.zeros(8, 384),
            "module.momentum_encoder.cls_token": torch.zeros(1, 1, 384),
            "module.predictor.0.weight": torch.zeros(8, 8)}},
    }
    for layout, obj in files.items():
        torch.save(obj, tmp_path / "f.pth")
        vit, info = load_trunk(str(tmp_path / "f.pth"))
        with torch.no_grad():
            assert torch.equal(vit.extract(x, ["cls4"])["cls4"], want), layout
        assert (info.arch, info.format) == ("vit-s16", layout)


def _refusal(tmp_path: Path, obj) -> str:
    torch.save(obj, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as e:
        load_trunk(str(tmp_path / "bad.pth"))
    return str(e.value)


def test_a_wrong_missing_or_misshapen_key_and_an_unknown_layout_are_refused_by_name(
        tmp_path: Path) -> None:
    trunk = build_model("resnet18", sobel=False, seed=0).trunk_state_dict()
    renamed = {("layer3.0.conv9.weight" if k == "layer3.0.conv1.weight" else k): v
               for k, v in trunk.items()}
    msg = _refusal(tmp_path, renamed)
    assert "closest is resnet18" in msg and "missing layer3.0.conv1.weight" in msg
    assert "unexpected layer3.0.conv9.weight" in msg
    missing = {k: v for k, v in trunk.items() if k != "layer4.1.bn2.running_var"}
    assert "missing layer4.1.bn2.running_var" in _refusal(tmp_path, missing)
    shaped = {**trunk, "layer2.0.conv1.weight": torch.zeros(128, 64, 1, 1)}
    assert "other shapes for layer2.0.conv1.weight" in _refusal(tmp_path, shaped)
    unknown = {"encoder.stem.weight": torch.zeros(8, 3, 3, 3)}
    msg = _refusal(tmp_path, {"state_dict": unknown})
    assert "cannot tell the architecture" in msg and "unexpected encoder.stem.weight" in msg
    both = {"state_dict": {"module.encoder_q.conv1.weight": torch.zeros(1),
                           "module.prototypes.weight": torch.zeros(1)}}
    assert "more than one checkpoint layout (moco, swav)" in _refusal(tmp_path, both)
    dino = {"teacher": {"head.last_layer.weight": torch.zeros(4, 4)}}
    assert "field 'teacher' has no backbone.* keys" in _refusal(tmp_path, dino)
