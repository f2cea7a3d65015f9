"""Read and write checkpoints: dcbench's, the released DeepCluster files, plain state dicts and
`random:ARCH[:SEED]` pseudo-checkpoints, always loaded strictly.

Written format (DeepCluster's, plus provenance): {'epoch', 'arch', 'state_dict', 'optimizer',
'method', 'k', 'seed', 'config', 'code_version', 'dcbench_version'}; `epoch` counts completed
epochs as in the original code. Loading never uses strict=False: a missing trunk weight or an
unexpected key is refused with a one-line list of what differs. Only `num_batches_tracked`
(absent from old files) may be missing, and the top layer is optional.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import dcbench
from dcbench.atomic import atomic_torch_save
from dcbench.did_you_mean import did_you_mean
from dcbench.errors import CheckpointError
from dcbench.models import MODELS, Trunk, build_model
from dcbench.provenance import code_version, sha256_file, sha256_text

RANDOM_SPEC = re.compile(r"^random(?P<rgb>-rgb)?:(?P<arch>[\w-]+)(?::(?P<seed>\d+))?$")
# torchvision's vgg16_bn keeps its 1000-way classifier at classifier.6
HEAD_PREFIXES = ("top_layer.", "classifier.6.")


@dataclass
class CheckpointInfo:
    """What a loaded trunk came from (goes into every result record)."""

    path: str
    sha256: str
    arch: str
    sobel: bool
    format: str                     # dcbench | deepcluster | state_dict | random
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

    def as_record(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "arch": self.arch,
                "sobel": self.sobel, "format": self.format, "epoch": self.epoch,
                "method": self.method, "k": self.k, "data": self.data,
                "weights_sha256": self.weights_sha256}


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


def read_file(path: str | os.PathLike) -> dict[str, Any]:
    """torch.load with weights_only, turning every failure into a one-line CheckpointError
    that says what the file is and what to do."""
    p = Path(path)
    if p.is_dir():
        inside = p / "checkpoint.pth.tar"
        hint = (f"pass {inside}" if inside.is_file() else "pass a .pth / .pth.tar file")
        raise CheckpointError(f"--ckpt {p} is a folder, not a checkpoint file; {hint}")
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}; pass a file path, a pretrained/ "
                              f"name or random:ARCH[:SEED]")
    with open(p, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"{p} is empty (0 bytes); it was cut while being written or "
                              f"downloaded: {_recovery(p)}")
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise CheckpointError(f"{p} is not a PyTorch checkpoint (neither torch.save's zip nor "
                              f"a pickle); pass a file written by torch.save")
    if head.startswith(b"PK\x03\x04"):
        _check_crc(p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise CheckpointError(f"{p} holds Python objects beyond tensors, which dcbench "
                                  f"does not unpickle (weights_only); re-save it as "
                                  f"torch.save({{'state_dict': model.state_dict()}}, path)"
                                  ) from None
        raise CheckpointError(f"{p} is truncated or corrupt ({type(e).__name__}); "
                              f"{_recovery(p)}") from None
    except Exception as e:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"{p} is truncated or corrupt ({type(e).__name__}); "
                              f"{_recovery(p)}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p} holds a {type(obj).__name__}, not a checkpoint dict; "
                              f"save a state dict or {{'state_dict': ...}}")
    _check_fields(obj, p)
    return obj


def _check_crc(p: Path) -> None:
    """torch.load does not check the zip's CRCs: a flipped byte inside a tensor loads as a
    wrong weight (-8.4e36) and would be evaluated and recorded. zipfile does check them."""
    try:
        with zipfile.ZipFile(p) as z:
            unpacked = sum(i.file_size for i in z.infolist())
            if unpacked > 2 * p.stat().st_size + 2**20:   # torch.save stores, never packs
                raise CheckpointError(f"{p} unpacks to {unpacked:,} bytes from "
                                      f"{p.stat().st_size:,} (compressed members: not written "
                                      f"by torch.save, possibly a zip bomb); {_recovery(p)}")
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"{p} is truncated or corrupt ({type(e).__name__}); "
                              f"{_recovery(p)}") from None
    if bad is not None:
        raise CheckpointError(f"{p} is corrupt: its member {shown(bad)} fails the zip CRC "
                              f"check (bytes changed after it was written); {_recovery(p)}")


# the fields of dcbench's and DeepCluster's format, with what each must hold where present
_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "epoch": ((int,), "a whole number of epochs"),
    "iteration": ((int,), "a whole number"),
    "arch": ((str,), "an arch name"),
    "method": ((str,), "a method name"),
    "k": ((int,), "a whole number of clusters"),
    "seed": ((int,), "a whole number"),
    "state_dict": ((dict,), "a dict of parameter name -> tensor"),
    "optimizer": ((dict,), "an optimizer state dict"),
    "config": ((dict,), "a dict of options"),
    "history": ((list,), "a list of per-epoch rows"),
}


def _check_fields(obj: dict[str, Any], p: Path) -> None:
    """Values of the known fields have their types (epoch 'abc' is refused, not recorded);
    a state dict's keys are strings and its values tensors, floating for weights."""
    if "state_dict" not in obj and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        other = next(k for k, v in obj.items() if not isinstance(v, torch.Tensor))
        raise CheckpointError(f"{p} has no 'state_dict' and is not a state dict itself "
                              f"(entry {shown(other)} is of type {type(obj[other]).__name__}, "
                              f"not a tensor); "
                              f"expected {{'state_dict': model.state_dict(), ...}} or "
                              f"model.state_dict()")
    for key, (types, what) in _FIELDS.items():
        value = obj.get(key)
        if key in obj and value is not None and (
                not isinstance(value, types) or isinstance(value, bool)):
            raise CheckpointError(f"{p}: field '{key}' is {shown(value)} "
                                  f"({type(value).__name__}); expected {what}")
    for key in ("epoch", "k", "seed", "iteration"):
        if isinstance(obj.get(key), int) and obj[key] < 0:
            raise CheckpointError(f"{p}: field '{key}' is {obj[key]}; expected 0 or more")
    state = obj.get("state_dict", obj)
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{p}: state_dict key {shown(key)} is a "
                                  f"{type(key).__name__}, not a parameter name")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{p}: state_dict entry {shown(key)} is a "
                                  f"{type(value).__name__}, not a tensor")
        if not value.is_floating_point() and not key.endswith("num_batches_tracked"):
            raise CheckpointError(f"{p}: state_dict entry {shown(key)} holds {value.dtype} "
                                  f"values; weights and buffers are floating point (only "
                                  f"num_batches_tracked counts in integers)")


def shown(value: Any, limit: int = 80) -> str:
    """A value as it may appear in a one-line message: control characters escaped (a key
    holding a newline cannot print a fake second line), long values cut."""
    text = repr(value) if not isinstance(value, str) else "'" + value.encode(
        "unicode_escape").decode("ascii").replace("'", "\\'") + "'"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_resumable(path: str | os.PathLike, needs: tuple[str, ...] = ()) -> dict[str, Any]:
    """A run folder's checkpoint, checked for what an exact resume needs before anything of
    it is used: the weights (finite: a diverged run is not continued), the optimizer state,
    the epoch, and the method's own fields `needs`."""
    p = Path(path)
    obj = read_file(p)
    for key in ("state_dict", "optimizer", "epoch", *needs):
        if obj.get(key) is None:
            raise CheckpointError(f"{p} has no {key} ({'None' if key in obj else 'absent'}), "
                                  f"so the run cannot resume exactly from it; "
                                  f"{_recovery(p)}")
    bad = [k for k, v in obj["state_dict"].items()
           if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{p} holds NaN or inf values in {_short(bad, 3)}: the run "
                              f"diverged before it was saved; {_recovery(p)}, with a lower "
                              f"--lr")
    return obj


def _recovery(p: Path) -> str:
    """What to do with a damaged file: a run folder keeps older checkpoints to fall back to."""
    kept = sorted(p.parent.glob("checkpoint_*.pth.tar"))
    if p.name == "checkpoint.pth.tar" and kept:
        return (f"its run folder keeps {kept[-1].name}: copy it over {p.name} and --resume "
                f"from there")
    if p.name == "checkpoint.pth.tar":
        return ("delete it and rerun the pretraining with --resume (it restarts the lost "
                "epochs), or copy it again")
    return "download or copy it again"


def normalize_keys(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Strip DataParallel/DDP wrappers: 'module.x' -> 'x', 'features.module.0' -> 'features.0'."""
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"state_dict entry {shown(key)} is a "
                                  f"{type(value).__name__}, not a tensor")
        k = key[len("module."):] if key.startswith("module.") else key
        out[k.replace(".module.", ".")] = value
    return out


def infer_arch(state: dict[str, torch.Tensor]) -> str:
    """The arch whose trunk keys and shapes match the state dict exactly."""
    sobel = "sobel.0.weight" in state
    for arch in MODELS:
        with torch.device("meta"):      # shapes only: no weights drawn (VGG16 is 138M params)
            ref = build_model(arch, sobel=sobel).trunk_state_dict()
        trunk = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
        same_keys = set(ref) - {k for k in ref if k.endswith("num_batches_tracked")} <= set(trunk)
        if same_keys and set(trunk) <= set(ref) and all(
                tuple(ref[k].shape) == tuple(v.shape) for k, v in trunk.items()):
            return arch
    raise CheckpointError("cannot tell the architecture of this state dict: "
                          + closest_arch(state, sobel))


def closest_arch(state: dict[str, torch.Tensor], sobel: bool) -> str:
    """Name the arch the state dict nearly fits and the keys that differ (a user's missing
    key should be named, not hidden behind 'matches nothing')."""
    trunk = {k for k in state if not k.startswith(HEAD_PREFIXES)}
    best = None
    for arch in MODELS:
        with torch.device("meta"):
            ref = build_model(arch, sobel=sobel).trunk_state_dict()
        need = {k for k in ref if not k.endswith("num_batches_tracked")}
        missing, extra = sorted(need - trunk), sorted(trunk - set(ref))
        shapes = sorted(k for k in trunk & need if tuple(state[k].shape) != tuple(ref[k].shape))
        score = len(missing) + len(extra) + len(shapes)
        if best is None or score < best[0]:
            best = (score, arch, missing, extra, shapes)
    _, arch, missing, extra, shapes = best
    parts = ([f"missing {_short(missing)}"] if missing else []) + (
        [f"unexpected {_short(extra)}"] if extra else []) + (
        [f"other shapes for {_short(shapes)}"] if shapes else [])
    return (f"closest is {arch} (sobel={sobel}), but it has " + "; ".join(parts)
            + f"; dcbench reads trunks of: {', '.join(MODELS)}")


def _short(keys: list[str], n: int = 6) -> str:
    keys = [shown(k)[1:-1] for k in keys]       # escaped, without the quotes
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_into(model: Trunk, state: dict[str, torch.Tensor], source: str) -> None:
    """Strictly load a trunk (and an optional head) into `model`; refuse any difference."""
    head = {k: v for k, v in state.items() if k.startswith(HEAD_PREFIXES)}
    trunk = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    ref = model.trunk_state_dict()
    missing = sorted(k for k in ref if k not in trunk and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in trunk if k not in ref)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} trunk keys: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys: {_short(unexpected)}")
        raise CheckpointError(f"{source} does not fit {model.ARCH} "
                              f"(sobel={model.has_sobel}): " + "; ".join(parts))
    bad = [f"{k} {tuple(v.shape)} vs {tuple(ref[k].shape)}" for k, v in trunk.items()
           if tuple(v.shape) != tuple(ref[k].shape)]
    if bad:
        raise CheckpointError(f"{source} does not fit {model.ARCH}: shape mismatch "
                              f"{_short(bad, 3)}")
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
    arch, seed, sobel = m["arch"], int(m["seed"] or 0), m["rgb"] is None
    if arch not in MODELS:
        raise CheckpointError(f"unknown arch '{arch}' in '{spec}'{did_you_mean(arch, MODELS)}; "
                              f"choose one of: {', '.join(MODELS)}")
    model = build_model(arch, sobel=sobel, seed=seed)
    canonical = f"random{'' if sobel else '-rgb'}:{arch}:{seed}"
    info = CheckpointInfo(path=canonical, sha256=sha256_text(canonical), arch=arch, sobel=sobel,
                          format="random", epoch=0, method="random" if sobel else "random-rgb",
                          seed=seed)
    return model, info


def _arch_of(state: dict[str, torch.Tensor], path: Path) -> str:
    try:
        return infer_arch(state)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None


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
    if "state_dict" in obj:
        state = normalize_keys(obj["state_dict"])
        fmt = "dcbench" if "dcbench_version" in obj else "deepcluster"
        arch = obj.get("arch") or _arch_of(state, path)
    else:
        state = normalize_keys(obj)
        fmt, arch = "state_dict", _arch_of(state, path)
    if arch not in MODELS:
        raise CheckpointError(f"{path}: arch '{arch}' is not one of {', '.join(MODELS)}")
    if known and known.get("arch") not in (None, arch):
        raise CheckpointError(f"{path} holds a {arch} but pretrained/manifest.json says "
                              f"'{spec}' is a {known['arch']}; re-download {known['url']}")
    sobel = "sobel.0.weight" in state
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path} holds NaN or inf values in {_short(bad, 3)}: the run "
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
        path=str(path), sha256=sha, arch=arch, sobel=sobel, format=fmt,
        epoch=obj.get("epoch"), method=obj.get("method") or (
            "deepcluster" if fmt == "deepcluster" else None),
        k=k, seed=obj.get("seed"),
        data=(obj.get("config") or {}).get("data") or known.get("data"),
        provenance={key: obj[key] for key in ("config", "code_version", "dcbench_version")
                    if key in obj},
        weights_sha256=state_sha256(model),
        clusters=_run_clusters(obj),
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
