"""Where each of the field's releases keeps a trunk's weights: one pure key mapping per layout,
detected from the file's own structure and tried in a fixed order.

Specific layouts (each recognised by keys no other layout has):
- dino: a training checkpoint with `teacher` / `student` ({`module.`}`backbone.*` + `head.*`);
  the teacher is evaluated, as DINO's evaluations do; the projection head is dropped.
- vissl: `classy_state_dict` -> `base_model` -> `model` -> `trunk` (`_feature_blocks.*`).
- moco: MoCo v1/v2, `state_dict` with `module.encoder_q.*`; the key encoder, the queue and the
  query encoder's projection `fc` are dropped.
- moco-v3: `module.base_encoder.*`; the momentum encoder, the predictor and the projection
  head (`fc` of a ResNet, `head` of a ViT) are dropped.
- swav: SwAV and DeepCluster-v2, `module.*` with `projection_head.*` and `prototypes.*`,
  both dropped.
Otherwise the weights are the file's `state_dict` (dcbench's own format, or DeepCluster's
released files) or the file itself (a plain state dict: torchvision's ResNets, timm's ViTs);
a `model` entry is read like `state_dict`. Two specific layouts matching one file is refused as
ambiguous. Which trunk the mapped keys are is dcbench.checkpoint's job (infer_arch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from dcbench.checkpoint_file import check_state, shown
from dcbench.errors import CheckpointError

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Mapped:
    """A file's trunk weights under dcbench's names, and what was left out (by name)."""

    layout: str
    state: State
    dropped: tuple[str, ...] = ()


def strip_wrappers(state: State) -> State:
    """'module.x' -> 'x' (DataParallel / DDP), 'features.module.0' -> 'features.0'
    (DeepCluster's DataParallel around `features`)."""
    out = {}
    for key, value in state.items():
        k = key[len("module."):] if key.startswith("module.") else key
        out[k.replace(".module.", ".")] = value
    return out


def _under(state: State, prefix: str) -> State:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _drop(state: State, parts: dict[str, str]) -> tuple[State, tuple[str, ...]]:
    """`state` without the keys under each prefix of `parts` (prefix -> what it is); the
    names of the parts that were present."""
    kept = {k: v for k, v in state.items() if not k.startswith(tuple(parts))}
    dropped = tuple(f"{p.rstrip('.')} ({what})" for p, what in parts.items()
                    if any(k.startswith(p) for k in state))
    return kept, dropped


def _weights(obj: dict[str, Any], where: str) -> State:
    """The file's state dict: its `state_dict` or `model` entry, or the file itself."""
    for name in ("state_dict", "model"):
        if isinstance(obj.get(name), dict):
            return check_state(obj[name], f"{where} field '{name}'")
    return check_state(obj, where)


def _has_prefix(obj: dict[str, Any], *prefixes: str) -> bool:
    try:
        keys = _weights(obj, "")
    except CheckpointError:
        return False
    return any(k.startswith(prefixes) for k in keys)


def _dino(obj: dict[str, Any], where: str) -> Mapped:
    which = "teacher" if "teacher" in obj else "student"
    state = strip_wrappers(check_state(obj[which], f"{where} field '{which}'"))
    backbone = _under(state, "backbone.")
    if not backbone:
        raise CheckpointError(f"{where}: field '{which}' has no backbone.* keys (DINO keeps "
                              f"the trunk there); its keys start {shown(next(iter(state), ''))}")
    _, dropped = _drop(state, {"head.": "the DINO projection head"})
    if which == "teacher" and "student" in obj:
        dropped += ("student (DINO's evaluations use the teacher)",)
    return Mapped(f"dino-{which}", backbone, dropped)


def _vissl(obj: dict[str, Any], where: str) -> Mapped:
    node: Any = obj
    path = []
    for name in ("classy_state_dict", "base_model", "model", "trunk"):
        path.append(name)
        if not isinstance(node, dict) or name not in node:
            raise CheckpointError(f"{where}: VISSL checkpoint without {'.'.join(path)}; "
                                  f"expected classy_state_dict.base_model.model.trunk")
        node = node[name]
    state = strip_wrappers(check_state(node, f"{where} field {'.'.join(path)}"))
    heads = obj["classy_state_dict"]["base_model"]["model"].get("heads")
    return Mapped("vissl", _under(state, "_feature_blocks.") or state,
                  ("heads (VISSL's training heads)",) if heads else ())


def _moco(obj: dict[str, Any], where: str) -> Mapped:
    state = strip_wrappers(_weights(obj, where))
    trunk, dropped = _drop(_under(state, "encoder_q."), {"fc.": "the projection head"})
    dropped = tuple(f"encoder_q.{d}" for d in dropped)
    dropped += _drop(state, {"encoder_k.": "the key encoder", "queue": "the negatives queue"})[1]
    return Mapped("moco", trunk, dropped)


def _moco_v3(obj: dict[str, Any], where: str) -> Mapped:
    state = strip_wrappers(_weights(obj, where))
    trunk, dropped = _drop(_under(state, "base_encoder."),
                           {"fc.": "the projection head", "head.": "the projection head"})
    dropped = tuple(f"base_encoder.{d}" for d in dropped)
    dropped += _drop(state, {"momentum_encoder.": "the momentum encoder",
                             "predictor.": "the predictor"})[1]
    return Mapped("moco-v3", trunk, dropped)


def _swav(obj: dict[str, Any], where: str) -> Mapped:
    trunk, dropped = _drop(strip_wrappers(_weights(obj, where)),
                           {"projection_head.": "the projection head",
                            "prototypes.": "the prototypes"})
    return Mapped("swav", trunk, dropped)


@dataclass(frozen=True)
class Layout:
    name: str
    detect: Callable[[dict[str, Any]], bool]
    take: Callable[[dict[str, Any], str], Mapped]


SPECIFIC: tuple[Layout, ...] = (
    Layout("dino", lambda o: "teacher" in o or "student" in o, _dino),
    Layout("vissl", lambda o: "classy_state_dict" in o, _vissl),
    Layout("moco", lambda o: _has_prefix(o, "module.encoder_q.", "encoder_q."), _moco),
    Layout("moco-v3", lambda o: _has_prefix(o, "module.base_encoder.", "base_encoder."),
           _moco_v3),
    Layout("swav", lambda o: _has_prefix(o, "module.prototypes.", "prototypes.",
                                         "module.projection_head.", "projection_head."), _swav),
)
TRIED = ", ".join([*(layout.name for layout in SPECIFIC), "dcbench", "deepcluster",
                   "plain state dict"])


def map_layout(obj: dict[str, Any], where: str) -> Mapped:
    """The trunk weights of a checkpoint read by checkpoint_file.read_file, under dcbench's
    names; `where` (the file) names it in errors."""
    hits = [layout for layout in SPECIFIC if layout.detect(obj)]
    if len(hits) > 1:
        raise CheckpointError(f"{where} fits more than one checkpoint layout "
                              f"({', '.join(h.name for h in hits)}), so which weights are the "
                              f"trunk is ambiguous; save the trunk alone as "
                              f"torch.save(trunk.state_dict(), path)")
    if hits:
        return hits[0].take(obj, where)
    state = strip_wrappers(_weights(obj, where))
    if "dcbench_version" in obj:
        return Mapped("dcbench", state)
    if isinstance(obj.get("state_dict"), dict) or isinstance(obj.get("model"), dict):
        return Mapped("deepcluster", state)
    return Mapped("plain", state)
