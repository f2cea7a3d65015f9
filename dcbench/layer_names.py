"""Every trunk family's tap names, without torch: task declarations list them as settings
(`dcbench tasks` and the request check run before torch loads). The trunk classes return
these same tuples (tests/test_modern_trunks.py checks they agree)."""

CONVNET_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
CONVNET_FC = ("fc6", "fc7")
RESNET_TAPS = ("conv1", "res2", "res3", "res4", "res5", "res5avg")
VIT_TAPS = ("cls", "cls4", "avgpool", "cls+avgpool", "patch")
# what a layer task runs without --setting on the modern trunks (Trunk.ROLES), for help texts
ROLE_DEFAULTS = {"probe": "a ResNet: conv1 res2 res3 res4 res5 res5avg, a ViT: cls4 cls+avgpool",
                 "embed": "a ResNet: res5avg, a ViT: cls"}


def with_modern(layers: tuple[str, ...]) -> tuple[str, ...]:
    """`layers` followed by the ResNet and ViT taps (each name once)."""
    return tuple(dict.fromkeys((*layers, *RESNET_TAPS, *VIT_TAPS)))
