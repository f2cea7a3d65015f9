"""The loop the three VOC tasks share: train a copy per setting (FC6-8, ALL), each from the
same random state, and turn its measured history into one Measurement (the final value, the
best of the `evals` measurements and its iteration, the curve, the split sizes). A task
supplies its training function, its metric and the extras only it records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import Measurement, SettingsFinishedBeforeAFailure
from .common import from_one_rng_state


def measure_each_setting(settings: list[str], train: Callable[[str], dict[str, Any]], *,
                         metric: str, key: str, percent: bool, curve: dict[str, str],
                         dataset: str, split: str, iterations: int, sizes: dict[str, int],
                         extra: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
                         ) -> list[Measurement]:
    """`train(setting)` returns {"history": [{"iteration", "loss", key, ...}, ...],
    "skipped_train", "skipped_test", ...}; `key` is the history's metric (x 100 when
    `percent`), `curve` names the history values each curve point keeps (same scaling),
    `extra(result, final)` the task's own record fields. A setting that fails after others
    finished raises SettingsFinishedBeforeAFailure with theirs, for the caller to record."""
    scale = 100.0 if percent else 1.0
    out: list[Measurement] = []
    for setting in from_one_rng_state(settings):
        try:
            res = train(setting)
        except Exception as e:
            if out:
                raise SettingsFinishedBeforeAFailure(out, e) from e
            raise
        hist = res["history"]
        best = max(hist, key=lambda h: h[key])
        final = hist[-1]
        points = [{"iteration": h["iteration"], **{name: scale * h[k] if percent else h[k]
                                                   for name, k in curve.items()},
                   "train_loss": h["loss"]} for h in hist]
        out.append(Measurement(
            setting=setting, dataset=dataset, split=split, metric=metric,
            value=scale * final[key] if percent else final[key],
            best=scale * best[key] if percent else best[key],
            best_epoch=best["iteration"], epochs=iterations,
            extra={**extra(res, final), "curve": points, "epoch_unit": "iteration",
                   "best_selected_on": split, **sizes,
                   "skipped_train": res["skipped_train"],
                   "skipped_test": res["skipped_test"]}))
    return out
