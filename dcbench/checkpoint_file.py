"""Reading a checkpoint file safely: torch.load with weights_only, the zip's CRCs checked, the
known fields' types checked, and every failure one line that names the file, the field and
what to do. The state dict's layout (DeepCluster's, MoCo's, DINO's...) is not this module's
business: dcbench.checkpoint_layouts maps it.
"""

from __future__ import annotations

import argparse
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from dcbench.errors import CheckpointError


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
        # DINO's full checkpoints keep their argparse options as a Namespace: a plain
        # attribute bag, allowed by name (its values are still only plain containers)
        with torch.serialization.safe_globals([argparse.Namespace]):
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
    if isinstance(obj.get("state_dict"), dict):
        check_state(obj["state_dict"], str(p))
    elif all(isinstance(v, torch.Tensor) for v in obj.values()):
        check_state(obj, str(p))
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


# where a training checkpoint keeps its weights, besides a top-level state dict
CONTAINERS = ("state_dict", "teacher", "student", "classy_state_dict", "model")


def _check_fields(obj: dict[str, Any], p: Path) -> None:
    """Values of the known fields have their types (epoch 'abc' is refused, not recorded)."""
    if not any(c in obj for c in CONTAINERS) and not all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        other = next(k for k, v in obj.items() if not isinstance(v, torch.Tensor))
        raise CheckpointError(f"{p} has no state dict and is not a state dict itself (entry "
                              f"{shown(other)} is of type {type(obj[other]).__name__}, not a "
                              f"tensor); expected {{'state_dict': model.state_dict(), ...}}, "
                              f"model.state_dict() or a MoCo, SwAV, DINO or VISSL file")
    for key, (types, what) in _FIELDS.items():
        value = obj.get(key)
        if key in obj and value is not None and (
                not isinstance(value, types) or isinstance(value, bool)):
            raise CheckpointError(f"{p}: field '{key}' is {shown(value)} "
                                  f"({type(value).__name__}); expected {what}")
    for key in ("epoch", "k", "seed", "iteration"):
        if isinstance(obj.get(key), int) and obj[key] < 0:
            raise CheckpointError(f"{p}: field '{key}' is {obj[key]}; expected 0 or more")


def check_state(state: Any, where: str) -> dict[str, torch.Tensor]:
    """A state dict's keys are strings and its values tensors, floating for weights; `where`
    names it in the error (the file, and the field it came from)."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{where} is a {type(state).__name__}, not a state dict of "
                              f"parameter name -> tensor")
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{where}: state_dict key {shown(key)} is a "
                                  f"{type(key).__name__}, not a parameter name")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{where}: state_dict entry {shown(key)} is a "
                                  f"{type(value).__name__}, not a tensor")
        if not value.is_floating_point() and not key.endswith("num_batches_tracked"):
            raise CheckpointError(f"{where}: state_dict entry {shown(key)} holds {value.dtype} "
                                  f"values; weights and buffers are floating point (only "
                                  f"num_batches_tracked counts in integers)")
    return state


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
        raise CheckpointError(f"{p} holds NaN or inf values in {short_keys(bad, 3)}: the run "
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


def short_keys(keys: list[str], n: int = 6) -> str:
    """The first `n` keys for a one-line message, escaped, and how many more there are."""
    keys = [shown(k)[1:-1] for k in keys]       # escaped, without the quotes
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


