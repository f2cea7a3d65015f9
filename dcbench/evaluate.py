"""`dcbench eval`: run one registered task on any checkpoint and record it (the request is
checked first, without torch, by dcbench.eval_request, which also lists the tasks).

Everything that can be refused is refused before any work: the task, its settings and options,
the checkpoint, the arch against the task's input size, and the presence of its data. Then,
per seed: settings already recorded for this checkpoint hash and config hash are skipped
(unless --force), everything is seeded, the trunk's state (weights and BN buffers) is
fingerprinted, the task runs, and a frozen-trunk task must leave the fingerprint bit-identical
(as MoCo checks) or nothing is recorded. Each measurement becomes one Record line.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any

import numpy as np
import torch

import dcbench
from dcbench import distributed, tasks
from dcbench.checkpoint import CheckpointInfo, load_trunk, tensor_sha256
from dcbench.data.registry import ensure_root
from dcbench.errors import DcbenchError
from dcbench.eval_request import (  # noqa: F401  (parse_*, task_table: the CLI and tests)
    EvalRequest,
    check_request,
    parse_overrides,
    parse_value,
    task_table,
)
from dcbench.extract import prepare
from dcbench.models import Trunk
from dcbench.models.fold_bn import folded_copy
from dcbench.precision import eval_amp_name
from dcbench.progress import say
from dcbench.provenance import code_version, config_hash
from dcbench.results import (
    Record,
    cache_key,
    computing,
    recorded_keys,
    results_dir,
    save_records,
)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def state_fingerprint(trunk: Trunk) -> dict[str, str]:
    """A sha256 per state-dict tensor (weights and BN buffers), layout-independent."""
    return {name: tensor_sha256(t) for name, t in trunk.state_dict().items()}


def check_frozen(task: tasks.Task, before: dict[str, str], after: dict[str, str]) -> None:
    changed = sorted(k for k in before if before[k] != after.get(k)) + sorted(
        k for k in after if k not in before)
    if changed:
        shown = ", ".join(changed[:4]) + (f" (+{len(changed) - 4} more)" if len(changed) > 4
                                          else "")
        raise DcbenchError(f"task '{task.name}' changed the frozen trunk ({len(changed)} "
                           f"tensors differ: {shown}); nothing was recorded")


def make_records(task: tasks.Task, measurements: list[tasks.Measurement],
                 settings: list[str], info: CheckpointInfo, ctx: tasks.RunContext,
                 config: dict[str, Any], chash: str, started: str, seconds: float,
                 command: str) -> list[Record]:
    out = []
    for m in measurements:
        if m.setting not in settings:
            raise DcbenchError(f"task '{task.name}' returned a measurement for setting "
                               f"'{m.setting}', which was not run ({', '.join(settings)})")
        out.append(Record(
            task=task.name, setting=m.setting, dataset=m.dataset, split=m.split,
            metric=m.metric, value=float(m.value),
            best=None if m.best is None else float(m.best), best_epoch=m.best_epoch,
            epochs=m.epochs, checkpoint=info.as_record(), seed=ctx.seed, config=config,
            config_hash=chash, code_version=code_version(),
            dcbench_version=dcbench.__version__, started=started, seconds=round(seconds, 3),
            device=str(ctx.device), world_size=distributed.world_size(), quick=ctx.quick,
            command=command, extra={**m.extra, "run_settings": list(settings),
                                    "amp": eval_amp_name(ctx.device)}))
    return out


def summary(records: list[Record]) -> str:
    """A small table of what was just measured."""
    lines = [f"{'task':16s} {'setting':8s} {'seed':>4s} {'metric':15s} {'final':>9s} "
             f"{'best':>9s} {'epoch':>5s}"]
    for r in records:
        best = "" if r.best is None else f"{r.best:9.3f}"
        epoch = "" if r.best_epoch is None else str(r.best_epoch)
        lines.append(f"{r.task:16s} {r.setting:8s} {r.seed:4d} {r.metric:15s} {r.value:9.3f} "
                     f"{best:>9s} {epoch:>5s}")
    return "\n".join(lines)


def run_frozen_checked(task: tasks.Task, trunk: Trunk, settings: list[str],
                       ctx: tasks.RunContext) -> list[tasks.Measurement]:
    """Seed everything and run; a frozen task must leave the trunk bit-identical, a task
    that trains it gets the trunk back as it was (the next seed starts from the checkpoint)."""
    seed_everything(ctx.seed)
    if not task.frozen:
        initial = copy.deepcopy(trunk.state_dict())
        measurements = task.run(trunk, settings, ctx)
        trunk.load_state_dict(initial)
        return measurements
    # an eval-only task gets BatchNorm folded into the convs: the same outputs, faster
    folded = folded_copy(trunk) if task.eval_only else trunk
    before = state_fingerprint(folded)
    measurements = task.run(folded, settings, ctx)
    check_frozen(task, before, state_fingerprint(folded))
    return measurements


@dataclass
class Prepared:
    """A checked eval request resolved against its checkpoint: what run_eval runs and what the
    skip test compares with the records."""
    request: EvalRequest
    ctx: tasks.RunContext
    config: dict[str, Any]
    chash: str
    trunk: Trunk
    info: CheckpointInfo
    settings: list[str]

    def recorded(self) -> set[tuple]:
        """The cache keys already in the records (none with --force: everything reruns)."""
        r = self.request
        return set() if r.opts.get("force") else recorded_keys(r.results)

    def todo(self, seed: int, done: set[tuple]) -> list[str]:
        """The settings of `seed` not yet recorded for this checkpoint and config."""
        return [s for s in self.settings
                if cache_key(self.request.task.name, s, self.info.sha256, self.chash, seed)
                not in done]


Loaded = Callable[[str, torch.device], tuple[Trunk, CheckpointInfo]]


def prepare_request(opts: dict[str, Any], request: EvalRequest | None = None,
                    load: Loaded | None = None) -> Prepared:
    """Check the request, hash its config, load its checkpoint (with `load`, a caller's
    loader that keeps checkpoints loaded across requests: the demo's) and resolve its
    settings."""
    request = request or check_request(opts)
    opts, task = request.opts, request.task
    device = distributed.pick_device()
    ctx = tasks.RunContext(device=device, data_root=opts.get("data_root"),
                           out_dir=results_dir(request.results), quick=bool(opts.get("quick")),
                           workers=opts.get("workers"), options=request.options)
    config = {**task.config(ctx), "quick": ctx.quick, "options": request.options}  # checks them
    if distributed.is_distributed():
        distributed.init()                  # each rank reads its share; rank 0 records
    trunk, info = (load or load_trunk)(opts["ckpt"], device)
    ctx.checkpoint = info
    trunk = prepare(trunk, device).eval()
    named = list(opts.get("settings") or ())
    every = "all" in named and "all" not in task.settings     # VOC's "all" is a setting name
    settings = task.settings_for(trunk, request.settings,
                                 "all" if every else "named" if named else "default")
    return Prepared(request, ctx, config, config_hash(config), trunk, info, settings)


def unrecorded(opts: dict[str, Any], load: Loaded | None = None) -> tuple[int, int]:
    """(runs not yet recorded, runs in all) of an eval request, one run per setting and seed:
    what `run_eval` would compute now (the demo's ETA leaves out what it will skip)."""
    prep = prepare_request(opts, load=load)
    r, done = prep.request, prep.recorded()
    seeds = range(r.first_seed, r.first_seed + r.n_seeds)
    return sum(len(prep.todo(seed, done)) for seed in seeds), len(prep.settings) * r.n_seeds


def run_eval(opts: dict[str, Any], command: str = "",
             request: EvalRequest | None = None, load: Loaded | None = None) -> list[Record]:
    """Run `opts['task']` on `opts['ckpt']` for every seed; return the records written.
    `request`: the already checked request (the CLI checks it before importing torch);
    `load`: see prepare_request."""
    prep = prepare_request(opts, request, load)
    task, ctx, config, chash, trunk, info = (prep.request.task, prep.ctx, prep.config,
                                             prep.chash, prep.trunk, prep.info)
    first, n_seeds, results = prep.request.first_seed, prep.request.n_seeds, prep.request.results
    settings = prep.settings
    task.check(trunk, ctx)
    for name in task.data_needed(ctx):
        # builds an embedded set (rank 0 first under torchrun), else says where to put it
        distributed.main_first(partial(ensure_root, name, data_root=ctx.data_root))

    written: list[Record] = []
    skipped: dict[tuple[str, ...], list[int]] = {}      # settings already recorded -> seeds
    for seed in range(first, first + n_seeds):
        # one eval of a (task, checkpoint, config, seed) at a time: a second identical one
        # waits, then finds the records and skips instead of computing and appending twice
        with computing(results_dir(results), (task.name, info.sha256, chash, seed)):
            todo = prep.todo(seed, prep.recorded())
            skipped.setdefault(tuple(s for s in settings if s not in todo), []).append(seed)
            if not todo:
                continue
            ctx.seed = seed
            started = datetime.now(timezone.utc).isoformat(timespec="seconds")
            t0 = time.perf_counter()
            failure = None
            try:
                measurements = run_frozen_checked(task, trunk, todo, ctx)
            except tasks.SettingsFinishedBeforeAFailure as e:    # record what finished
                measurements, failure = e.finished, e.cause
                done = ", ".join(dict.fromkeys(m.setting for m in e.finished))
                say(f"{task.name}: {done} finished "
                    f"before the failure below and is recorded; the same command runs "
                    f"only what is missing")
            records = make_records(task, measurements, todo, info, ctx, config, chash,
                                   started, time.perf_counter() - t0, command)
            if distributed.is_main():
                save_records(records, results)
            distributed.barrier()
            written.extend(records)
            if failure is not None:
                raise failure
    for names, seeds in skipped.items():      # one line per eval, not one per setting
        if names:
            say(f"skip {task.name} {' '.join(names)} seed{'s' if len(seeds) > 1 else ''} "
                f"{' '.join(map(str, seeds))}: already recorded for this checkpoint and "
                f"config ({chash}); --force reruns {'it' if len(names) == 1 else 'them'}")
    if written:
        print(summary(written))
    return written
