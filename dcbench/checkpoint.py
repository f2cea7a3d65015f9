"""Load any checkpoint as a trunk, strictly, and write dcbench's: dcbench's own files, the
released DeepCluster files, the field's releases (torchvision, MoCo, SwAV / DeepCluster-v2,
DINO, VISSL, timm; their key layouts in dcbench.checkpoint_layouts) and
`random:ARCH[:SEED]` pseudo-checkpoints. Reading a file safely is dcbench.checkpoint_file's.

Written format (DeepCluster's, plus provenance): {'epoch', 'arch', 'state_dict', 'optimizer',
'method', 'k', 'seed', 'config', 'code_version', 'dcbench_version'}; `epoch` counts completed
epochs as in the original code. Loading never uses strict=False: a missing trunk weight or an
unexpected key is refused with a one-line list of what differs. Only `num_batches_tracked`
(absent from old files) may be missing, and the top layer is optional; what a layout drops
(projection heads, a key encoder) is named in the record.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import dcbench
from dcbench.atomic import atomic_torch_save
from dcbench.checkpoint_file import read_file, short_keys
from dcbench.checkpoint_layouts import TRIED, map_layout
from dcbench.did_you_mean import did_you_mean
from dcbench.errors import CheckpointError
from dcbench.models import MODELS, Trunk, build_model
from dcbench.provenance import code_version, sha256_file, sha256_text

RANDOM_SPEC = re.compile(r"^random(?P<rgb>-rgb)?:(?P<arch>[\w-]+)(?::(?P<seed>\d+))?$")
# a plain state dict's layout, named by the family its trunk is of
PLAIN_NAMES = {"convnet": "state_dict", "resnet": "torchvision", "vit": "timm"}
# layouts that say which method trained the weights (moco-v3 -> moco, dino-teacher -> dino)
FOREIGN = ("moco", "moco-v3", "swav", "dino-teacher", "dino-student")


@dataclass
class CheckpointInfo:
    """What a loaded trunk came from (goes into every result record)."""

    path: str
    sha256: str
    arch: str
    sobel: bool
    format: str                     # the layout: dcbench, deepcluster, torchvision, moco, ...
    epoch: int | None = None
    method: str | None = None
    k: int | None = None
    seed: int | None = None
    data: str | None = None         # the pretraining dataset, where known
    provenance: dict[str, Any] = field(default_factory=dict)
    # the trunk's weights and buffers (state_sha256): equal for a bit-identical re-training,
    # whose file (run timings inside) hashes differently; the report keys checkpoints on it
    weights_sha256: str | None = None
    # a JULE run's final clusters (labels, and the data, split and max_images they are of),
    # read with the trunk so no task opens the file again
    clusters: dict[str, Any] | None = None
    dropped: tuple[str, ...] = ()   # what the layout left out (heads, a key encoder)

    def as_record(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "arch": self.arch,
                "sobel": self.sobel, "format": self.format, "epoch": self.epoch,
                "method": self.method, "k": self.k, "data": self.data,
                "weights_sha256": self.weights_sha256, "dropped": list(self.dropped)}


def save_checkpoint(path: str | os.PathLike, model: Trunk, *, epoch: int, method: str,
                    optimizer: dict | None = None, seed: int | None = None,
                    config: dict | None = None, extra: dict | None = None) -> None:
    """Write a checkpoint in the DeepCluster format plus provenance, atomically."""
    k = model.top_layer.out_features if model.top_layer is not None else None
    obj = {
        "epoch": epoch, "arch": model.ARCH, "state_dict": model.state_dict(),
        "optimizer": optimizer, "method": method, "k": k, "seed": seed,
        "config": config or {}, "code_version": code_version(),
        "dcbench_version": dcbench.__version__,
    }
    obj.update(extra or {})
    atomic_torch_save(obj, path)


def tensor_sha256(t: torch.Tensor) -> str:
    """The sha256 of a tensor's values, whatever its device or memory layout."""
    data = t.detach().cpu().contiguous()
    raw = data.view(torch.int16) if data.dtype == torch.bfloat16 else data
    return hashlib.sha256(raw.numpy().tobytes()).hexdigest()


def state_sha256(model: Trunk) -> str:
    """One digest of a trunk's state (weights and BN buffers, not the per-epoch head): what a
    saved cluster assignment was computed from."""
    h = hashlib.sha256()
    for name, t in sorted(model.trunk_state_dict().items()):
        h.update(name.encode())
        h.update(tensor_sha256(t).encode())
    return h.hexdigest()


def infer_arch(state: dict[str, torch.Tensor]) -> str:
    """The arch whose trunk keys and shapes match the state dict exactly."""
    sobel = "sobel.0.weight" in state
    for arch in MODELS:
        with torch.device("meta"):      # shapes only: no weights drawn (VGG16 is 138M params)
            ref = build_model(arch, sobel=sobel).trunk_state_dict()
        trunk = {k: v for k, v in state.items() if not k.startswith(MODELS[arch].HEAD_PREFIXES)}
        same_keys = set(ref) - {k for k in ref if k.endswith("num_batches_tracked")} <= set(trunk)
        if same_keys and set(trunk) <= set(ref) and all(
                tuple(ref[k].shape) == tuple(v.shape) for k, v in trunk.items()):
            return arch
    raise CheckpointError("cannot tell the architecture of this state dict: "
                          + closest_arch(state, sobel))


def closest_arch(state: dict[str, torch.Tensor], sobel: bool) -> str:
    """Name the arch the state dict nearly fits and the keys that differ (a user's missing
    key should be named, not hidden behind 'matches nothing')."""
    best = None
    for arch in MODELS:
        with torch.device("meta"):
            ref = build_model(arch, sobel=sobel).trunk_state_dict()
        trunk = {k for k in state if not k.startswith(MODELS[arch].HEAD_PREFIXES)}
        need = {k for k in ref if not k.endswith("num_batches_tracked")}
        missing, extra = sorted(need - trunk), sorted(trunk - set(ref))
        shapes = sorted(k for k in trunk & need if tuple(state[k].shape) != tuple(ref[k].shape))
        score = len(missing) + len(extra) + len(shapes)
        if best is None or score < best[0]:
            best = (score, arch, missing, extra, shapes)
    _, arch, missing, extra, shapes = best
    parts = ([f"missing {short_keys(missing)}"] if missing else []) + (
        [f"unexpected {short_keys(extra)}"] if extra else []) + (
        [f"other shapes for {short_keys(shapes)}"] if shapes else [])
    return (f"closest is {arch} (sobel={sobel}), but it has " + "; ".join(parts)
            + f"; dcbench reads trunks of: {', '.join(MODELS)}")


def load_into(model: Trunk, state: dict[str, torch.Tensor], source: str) -> None:
    """Strictly load a trunk (and an optional head) into `model`; refuse any difference."""
    head = {k: v for k, v in state.items() if k.startswith(model.HEAD_PREFIXES)}
    trunk = {k: v for k, v in state.items() if not k.startswith(model.HEAD_PREFIXES)}
    ref = model.trunk_state_dict()
    missing = sorted(k for k in ref if k not in trunk and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in trunk if k not in ref)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} trunk keys: {short_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys: {short_keys(unexpected)}")
        raise CheckpointError(f"{source} does not fit {model.ARCH} "
                              f"(sobel={model.has_sobel}): " + "; ".join(parts))
    bad = [f"{k} {tuple(v.shape)} vs {tuple(ref[k].shape)}" for k, v in trunk.items()
           if tuple(v.shape) != tuple(ref[k].shape)]
    if bad:
        raise CheckpointError(f"{source} does not fit {model.ARCH}: shape mismatch "
                              f"{short_keys(bad, 3)}")
    full = dict(trunk)
    for k in ref:
        if k not in full:                       # only num_batches_tracked can be absent
            full[k] = torch.zeros_like(ref[k])
    if head:
        w = next((v for k, v in head.items() if k.endswith(".weight")), None)
        b = next((v for k, v in head.items() if k.endswith(".bias")), None)
        if (len(head) != 2 or w is None or b is None or w.ndim != 2
                or w.shape[1] != model.FC_DIM or tuple(b.shape) != (w.shape[0],)):
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in sorted(head.items()))
            raise CheckpointError(f"{source}: head ({shapes}) does not fit {model.ARCH}; "
                                  f"expected a weight (k, {model.FC_DIM}) and a bias (k,)")
        if model.top_layer is None or model.top_layer.out_features != w.shape[0]:
            model.set_top_layer(w.shape[0])     # keep an existing head (optimizers hold it)
        full.update({"top_layer." + k.rsplit(".", 1)[1]: v for k, v in head.items()})
    else:
        model.set_top_layer(None)
    model.load_state_dict(full, strict=True)


def _random(spec: str) -> tuple[Trunk, CheckpointInfo]:
    m = RANDOM_SPEC.match(spec)
    assert m is not None
    arch, seed = m["arch"], int(m["seed"] or 0)
    if arch not in MODELS:
        raise CheckpointError(f"unknown arch '{arch}' in '{spec}'{did_you_mean(arch, MODELS)}; "
                              f"choose one of: {', '.join(MODELS)}")
    sobel = m["rgb"] is None and MODELS[arch].SOBEL_BY_DEFAULT   # ResNets, ViTs: RGB
    model = build_model(arch, sobel=sobel, seed=seed)
    rgb = not sobel and MODELS[arch].SOBEL_BY_DEFAULT
    canonical = f"random{'-rgb' if rgb else ''}:{arch}:{seed}"
    info = CheckpointInfo(path=canonical, sha256=sha256_text(canonical), arch=arch, sobel=sobel,
                          format="random", epoch=0, method="random-rgb" if rgb else "random",
                          seed=seed)
    return model, info


def _arch_of(state: dict[str, torch.Tensor], path: Path, layout: str) -> str:
    try:
        return infer_arch(state)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e} (its weights read as the {layout} layout; "
                              f"layouts tried: {TRIED})") from None


def load_trunk(spec: str, device: torch.device | str = "cpu") -> tuple[Trunk, CheckpointInfo]:
    """Any checkpoint dcbench reads -> (trunk in eval mode on `device`, where it came from).

    `spec` is a file path, a name from pretrained/ (e.g. deepcluster-alexnet), or
    `random:ARCH[:SEED]` / `random-rgb:ARCH[:SEED]` for the Random baselines.
    """
    if RANDOM_SPEC.match(spec):
        model, info = _random(spec)
        return model.to(device).eval(), info
    if spec.startswith(("random:", "random-rgb:")):     # not a file named random...
        raise CheckpointError(f"bad random checkpoint spec '{spec}'; use random:ARCH[:SEED] or "
                              f"random-rgb:ARCH[:SEED], ARCH one of {', '.join(MODELS)}")
    from dcbench.zoo import manifest, resolve_pretrained

    path = resolve_pretrained(spec)
    known = manifest().get(spec, {})
    obj = read_file(path)
    mapped = map_layout(obj, str(path))
    state = mapped.state
    own = mapped.layout in ("dcbench", "deepcluster")     # files whose 'arch' names ours
    arch = (own and obj.get("arch")) or _arch_of(state, path, mapped.layout)
    if arch not in MODELS:
        raise CheckpointError(f"{path}: arch '{arch}' is not one of {', '.join(MODELS)}")
    layout = mapped.layout
    if layout == "plain" or (layout == "deepcluster" and MODELS[arch].FAMILY != "convnet"):
        layout = PLAIN_NAMES.get(MODELS[arch].FAMILY, "state_dict")
    if known and known.get("arch") not in (None, arch):
        raise CheckpointError(f"{path} holds a {arch} but pretrained/manifest.json says "
                              f"'{spec}' is a {known['arch']}; re-download {known['url']}")
    sobel = "sobel.0.weight" in state
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path} holds NaN or inf values in {short_keys(bad, 3)}: the run "
                              f"that wrote it diverged; use an earlier checkpoint")
    model = build_model(arch, sobel=sobel)
    load_into(model, state, str(path))
    k = model.top_layer.out_features if model.top_layer is not None else None
    sha = sha256_file(path)
    if known.get("sha256") and known["sha256"] != sha:
        raise CheckpointError(f"{path} has sha256 {sha[:12]}.. but pretrained/manifest.json "
                              f"expects {known['sha256'][:12]}.. for '{spec}'; re-download "
                              f"{known['url']}")
    info = CheckpointInfo(
        path=str(path), sha256=sha, arch=arch, sobel=sobel, format=layout,
        epoch=obj.get("epoch") if isinstance(obj.get("epoch"), int) else None,
        method=obj.get("method") or ("deepcluster" if layout == "deepcluster" else
                                     layout.split("-")[0] if layout in FOREIGN else None),
        k=k, seed=obj.get("seed"),
        data=(obj.get("config") or {}).get("data") or known.get("data"),
        provenance={key: obj[key] for key in ("config", "code_version", "dcbench_version")
                    if key in obj},
        weights_sha256=state_sha256(model),
        clusters=_run_clusters(obj), dropped=mapped.dropped,
    )
    return model.to(device).eval(), info


def _run_clusters(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The clusters a JULE checkpoint's run ended with (None for any other checkpoint)."""
    if obj.get("method") != "jule" or "labels" not in obj:
        return None
    run = obj.get("config") or {}
    return {"labels": obj["labels"], "final": bool((obj.get("history") or [{}])[-1].get("final")),
            "data": run.get("data"), "split": run.get("split"),
            "max_images": run.get("max_images")}
