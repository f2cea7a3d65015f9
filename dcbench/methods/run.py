"""`run_pretraining`, what `dcbench pretrain` calls: resolve and print the config, set up the
device (and torchrun's process group), build or resume the session, then run the method's
epochs (catalog.py names the function of each), each ending with an atomic checkpoint and a
log line. JULE runs its own loop of periods.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

from dcbench import distributed as dist
from dcbench.methods.catalog import Method, get_method
from dcbench.methods.config import resolve
from dcbench.methods.session import Session, build_session
from dcbench.precision import amp_name
from dcbench.progress import say
from dcbench.threads import configure_threads


def runner(method: Method) -> Callable[..., Any]:
    """The function that runs `method` (catalog.py's "module:function")."""
    module, _, function = method.runner.partition(":")
    return getattr(importlib.import_module(module), function)


def _summary(row: dict[str, Any], total: int, eta: float) -> str:
    def f(key: str, fmt: str = "{:.3f}") -> str:
        v = row.get(key)
        return "-" if v is None else fmt.format(v)
    secs = " ".join(f"{k} {v:.0f}s" for k, v in row["seconds"].items())
    skipped = (f"  skipped {row['skipped_images']} unreadable images"
               if row.get("skipped_images") else "")
    return (f"epoch {row['epoch']}/{total}  loss {row['loss']:.3f}  nmi_labels "
            f"{f('nmi_labels')}  nmi_prev {f('nmi_prev')}  empty {f('empty_reseeded', '{}')}"
            f"{skipped}  | {secs} | ETA {eta / 60:.1f} min")


def run_pretraining(opts: dict[str, Any], command: str = "") -> Session | dict[str, Any]:
    """Run (or resume) a pretraining described by CLI-style options."""
    method = get_method(opts.get("method"))
    if method.own_loop:              # JULE: periods of merges + CNN updates
        return runner(method)(opts, command)
    cfg = resolve(opts)
    device = dist.init()
    cfg["world_size"] = dist.world_size()
    cfg["amp"] = amp_name(device, opts.get("amp") or "auto")   # dcbench.precision
    configure_threads()
    session = build_session(cfg, command, device, resume=bool(opts.get("resume")))
    epoch_fn = runner(method)
    total = cfg["epochs"]
    durations: list[float] = []
    for epoch in range(session.start_epoch + 1, total + 1):
        t0 = time.time()
        row = epoch_fn(session, epoch)
        session.history.append(row)
        session.save(epoch)
        dist.barrier()
        durations.append(time.time() - t0)
        eta = (total - epoch) * sum(durations) / len(durations)
        say(_summary(row, total, eta))
    if session.start_epoch >= total:
        say(f"{session.run.path} already has {session.start_epoch} epochs (--epochs {total})")
    return session
