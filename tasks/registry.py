"""The task registry: a task registers its name, the settings it offers and the datasets it
needs; third-party packages add tasks through the `dcbench.tasks` entry-point group.

A task is a class with `run(trunk, settings, ctx) -> list[Measurement]`. It does not write
records itself: dcbench.evaluate turns measurements into records, checks the cache, and
verifies that a frozen trunk stayed frozen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcbench.did_you_mean import did_you_mean
from dcbench.errors import DcbenchError
from dcbench.plugins import load_group

if TYPE_CHECKING:             # the registry loads without torch: `dcbench tasks` needs none
    import torch

    from dcbench.checkpoint import CheckpointInfo
    from dcbench.models import Trunk

ENTRY_POINT_GROUP = "dcbench.tasks"


@dataclass
class RunContext:
    """What every task run gets besides the trunk."""

    device: torch.device
    seed: int = 0
    data_root: str | None = None
    out_dir: Path = Path("results")
    quick: bool = False
    workers: int | None = None
    options: dict[str, Any] = field(default_factory=dict)   # task-specific --set key=value
    # what the evaluated --ckpt is, as loaded once (a JULE run's final clusters included)
    checkpoint: CheckpointInfo | None = None


@dataclass
class Measurement:
    """One number a task measured; dcbench.evaluate adds the provenance to make a Record."""

    setting: str
    dataset: str
    split: str
    metric: str
    value: float
    best: float | None = None
    best_epoch: int | None = None
    epochs: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class SettingsFinishedBeforeAFailure(Exception):
    """A task that runs its settings one after another (the VOC tasks: FC6-8, then ALL) and
    failed in a later one raises this with the measurements of the settings it finished, so
    they are recorded before the failure (`cause`) is reported: hours of FC6-8 training are
    not lost to a diverged ALL run."""

    def __init__(self, finished: list[Measurement], cause: BaseException) -> None:
        super().__init__(str(cause))
        self.finished = finished
        self.cause = cause


class Task:
    """Base class. Subclasses set the class attributes and implement `run`."""

    name: str = ""
    settings: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    description: str = ""
    frozen: bool = True             # the trunk must be bit-identical after the run
    eval_only: bool = False         # only eval-mode forwards: it gets a BN-folded copy
    shards: bool = False            # splits its work across torchrun's ranks (else: refused)
    settings_apart: bool = False    # trains each setting on its own (VOC) rather than all in
    #                                 one pass (a probe's layers): a preflight meters each
    default_settings: tuple[str, ...] | None = None   # what `--setting` defaults to
    # settings that are layers: without --setting a trunk runs its taps of this role
    # (Trunk.role: "probe", "embed"), e.g. a ResNet's conv1, res2..res5, res5avg for a probe
    layer_role: str | None = None
    options: dict[str, Any] = {}    # the `--set KEY=VALUE` options and their defaults
    option_fields: dict[str, Any] = {}  # their types/ranges where dcbench.schema's differ

    def config(self, ctx: RunContext) -> dict[str, Any]:
        """The resolved hyperparameters of a run (recorded and hashed into the cache key)."""
        return {}

    def data_needed(self, ctx: RunContext) -> tuple[str, ...]:
        """The datasets this run reads (checked for presence before any work)."""
        return self.datasets

    def check(self, trunk: Trunk, ctx: RunContext) -> None:
        """Refuse, before any work, a trunk or data this task cannot run on."""

    def shown_options(self) -> list[str]:
        """Its --set options as `dcbench tasks` lists them: KEY=DEFAULT."""
        return [f"{k}={v}" for k, v in self.options.items()]

    def settings_for(self, trunk: Trunk, settings: list[str], asked: str) -> list[str]:
        """The settings `trunk` runs. `asked`: "named" (--setting NAME...: a layer the trunk
        has not is refused), "all" (--setting all: every layer setting the trunk has) or
        "default" (a layer task runs the trunk's taps of its role, e.g. a ResNet's res5avg
        for kNN; other tasks their defaults, less layers the trunk has not: a JULE net has
        no conv3)."""
        from dcbench.models import MODELS
        from dcbench.progress import say

        all_taps = {t for m in MODELS.values() for t in m.tap_names()}
        if asked == "default" and self.layer_role:
            settings = [t for t in trunk.role(self.layer_role) if t in self.settings]
        missing = [s for s in settings if s in all_taps and s not in trunk.tap_names()]
        if missing and asked == "named":
            raise DcbenchError(f"{trunk.ARCH} has no layer {', '.join(missing)}; its layers: "
                               f"{', '.join(trunk.tap_names())}")
        kept = [s for s in settings if s not in missing]
        if not kept:
            raise DcbenchError(f"task '{self.name}' has no setting for a {trunk.ARCH} (it has "
                               f"layers {', '.join(trunk.tap_names())}); pass --setting")
        if missing and asked == "default":
            say(f"{self.name}: {trunk.ARCH} has no {', '.join(missing)}; running "
                f"{', '.join(kept)}")
        return kept

    def run(self, trunk: Trunk, settings: list[str], ctx: RunContext) -> list[Measurement]:
        raise NotImplementedError


TASKS: dict[str, type[Task]] = {}


def register_task(name: str, settings: tuple[str, ...] = ("default",),
                  datasets: tuple[str, ...] = ()) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: `@register_task("voc-cls", settings=("fc6-8", "all"))`."""
    def wrap(cls: type[Task]) -> type[Task]:
        if name in TASKS and TASKS[name] is not cls:
            raise DcbenchError(f"task '{name}' is registered twice ({TASKS[name].__module__} "
                               f"and {cls.__module__})")
        cls.name, cls.settings = name, tuple(settings)
        cls.datasets = tuple(datasets) or cls.datasets
        TASKS[name] = cls
        return cls
    return wrap


def load_plugins() -> None:
    """Import every module that registers tasks through the `dcbench.tasks` entry points."""
    load_group(ENTRY_POINT_GROUP)


def get_task(name: str) -> Task:
    load_plugins()
    if name not in TASKS:
        raise DcbenchError(f"unknown task '{name}'{did_you_mean(name, TASKS)}; valid tasks: "
                           f"{', '.join(sorted(TASKS))}")
    return TASKS[name]()


def expand_settings(task: Task, requested: list[str] | None) -> list[str]:
    """'all' (or nothing) -> the task's settings; unknown names -> an error listing valid ones."""
    if not requested:
        return list(task.default_settings or task.settings)
    out: list[str] = []
    for s in requested:
        if s == "all" and "all" not in task.settings:
            out.extend(x for x in task.settings if x not in out)
        elif s in task.settings:
            if s not in out:
                out.append(s)
        else:
            raise DcbenchError(f"task '{task.name}' has no setting '{s}'; valid settings: "
                               f"{', '.join(task.settings)}" +
                               ("" if "all" in task.settings else ", all"))
    return out
