"""A meter the training and extraction loops report their steps to, idle unless a preflight
(dcbench.preflight) switched it on: it times a few real steps of a run, keeps their losses,
and stops the run after its budget by raising StepBudgetReached.

A loop calls `begin(name, planned)` once with the steps the full run takes in it, then
`step(images, loss)` after each step. Idle, both return at once (no device sync).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

WARMUP_STEPS = 2        # first steps left out of the rate: allocator, caches, cudnn autotune


class StepBudgetReached(Exception):
    """Raised by `step` when the meter has seen its budget of steps (or a non-finite loss):
    the preflight catches it; nothing else should."""


@dataclass
class Phase:
    """One metered loop: a setting's training, a probe's epochs, a feature extraction pass."""

    name: str
    planned: int                  # steps the full run takes in this loop
    unit: str = "it"
    limited: bool = True          # stopped at the budget (False: one-time work, timed only)
    started: float = field(default_factory=time.perf_counter)
    ends: list[float] = field(default_factory=list)    # perf_counter at each step's end
    images: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.ends)

    def timed(self) -> tuple[int, float, int]:
        """(steps, seconds, images) after the warm-up steps (all of them when too few); a
        loop that took no step (an empty split) has (0, 0.0, 0)."""
        if not self.ends:
            return 0, 0.0, 0
        skip = WARMUP_STEPS if self.steps > 2 * WARMUP_STEPS else 0
        start = self.ends[skip - 1] if skip else self.started
        return self.steps - skip, self.ends[-1] - start, sum(self.images[skip:])

    def seconds_per_step(self) -> float:
        n, secs, _ = self.timed()
        return secs / n if n else math.nan

    def images_per_second(self) -> float:
        _, secs, images = self.timed()
        return images / secs if secs > 0 else math.nan

    def projected_seconds(self) -> float:
        return self.seconds_per_step() * self.planned

    def first_non_finite(self) -> int | None:
        """The 1-based step whose loss was NaN or inf, if any."""
        return next((i + 1 for i, v in enumerate(self.losses) if not math.isfinite(v)), None)

    def loss_trend(self) -> tuple[float, float] | None:
        """(mean loss of the first half of the steps, of the second half); None with fewer
        than 4 losses, too few to say whether it falls."""
        if len(self.losses) < 4:
            return None
        half = len(self.losses) // 2
        first, last = self.losses[:half], self.losses[-half:]
        return sum(first) / len(first), sum(last) / len(last)


class StepMeter:
    """The steps of the phases a run went through, up to `budget` steps in one phase."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.phases: list[Phase] = []

    def begin(self, name: str, planned: int, unit: str, limited: bool) -> None:
        self.phases.append(Phase(name, planned, unit, limited))

    def step(self, images: int, loss: float | None) -> None:
        if not self.phases:
            self.begin("steps", 0, "it", True)
        phase = self.phases[-1]
        phase.ends.append(time.perf_counter())
        phase.images.append(images)
        if loss is not None:
            phase.losses.append(loss)
            if not math.isfinite(loss):
                raise StepBudgetReached(f"{phase.name}: loss {loss} at step {phase.steps}")
        if phase.limited and phase.steps >= self.budget:
            raise StepBudgetReached(f"{phase.name}: {phase.steps} steps")


_active: StepMeter | None = None


@contextmanager
def metering(budget: int) -> Iterator[StepMeter]:
    """Switch the meter on for the steps run inside the block."""
    global _active
    meter, previous = StepMeter(budget), _active
    _active = meter
    try:
        yield meter
    finally:
        _active = previous


def begin(name: str, planned: int, unit: str = "it", limited: bool = True) -> None:
    """A loop of `planned` steps starts (a no-op unless metering); `limited=False` for
    one-time work that the steps after it need (proposals): timed, never cut short."""
    if _active is not None:
        _active.begin(name, planned, unit, limited)


def step(images: int, loss: object = None) -> None:
    """A step over `images` images ended with `loss` (a float or a 0-d tensor; a no-op
    unless metering, so an idle meter never syncs a device)."""
    if _active is not None:
        _active.step(images, None if loss is None else float(loss))
