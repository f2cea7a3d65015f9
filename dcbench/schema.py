"""The one declaration of what every number a user can pass must look like.

`dcbench pretrain` flags, `dcbench eval` flags, every task's `--set KEY=VALUE` option and JULE's
options are checked here, before any work starts, against a `Field`: its type, its range (open
or closed at each end), its choices. The error names the flag, the value, what is allowed and
an example, on one line. A task option with no declaration here is refused by a test, so a new
task cannot slip an unchecked number through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dcbench.errors import DcbenchError


@dataclass(frozen=True)
class Field:
    kind: type                        # int, float, bool, str, or tuple (of positive numbers)
    low: float | None = None
    high: float | None = None
    low_open: bool = False            # True: value > low; False: value >= low
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    example: Any = None

    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.kind is bool:
            return "true or false"
        if self.kind is tuple:
            return "comma-separated positive numbers"
        if self.low is None and self.high is None:
            return f"any {self.kind.__name__}"
        lo = "-inf" if self.low is None else _num(self.low)
        hi = "inf" if self.high is None else _num(self.high)
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        return f"{'an integer' if self.kind is int else 'a number'} in {left}{lo}, {hi}{right}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def positive_int(example: int) -> Field:
    return Field(int, 1, example=example)


def nonneg_int(example: int) -> Field:
    return Field(int, 0, example=example)


def positive(example: float) -> Field:
    return Field(float, 0, low_open=True, example=example)


def nonneg(example: float) -> Field:
    return Field(float, 0, example=example)


def fraction(example: float, low_open: bool = False, high_open: bool = True) -> Field:
    return Field(float, 0, 1, low_open=low_open, high_open=high_open, example=example)


def check_value(flag: str, value: Any, field: Field, sep: str = " ") -> Any:
    """`value` as `field.kind` if it is allowed (None always is: the default), else a
    one-line DcbenchError naming the flag, the value and what is allowed. `sep` joins flag
    and value in the message (" " for --lr 0.1, "=" for --set lr=0.1)."""
    if value is None:
        return None
    where = f"{flag}{sep}{value}"
    example = f"; e.g. {flag}{sep}{field.example}" if field.example is not None else ""
    if field.kind is tuple:
        parts = value if isinstance(value, (list, tuple)) else str(value).split(",")
        try:
            out = tuple(float(x) for x in parts)
        except ValueError:
            out = ()
        if not out or not all(math.isfinite(x) and x > 0 for x in out):
            raise DcbenchError(f"{where}: expected {field.allowed()}, e.g. {flag}{sep}1,0.7")
        return out
    if field.kind is bool:
        if not isinstance(value, bool):
            raise DcbenchError(f"{where}: expected true or false{example}")
        return value
    if field.kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DcbenchError(f"{where}: expected {field.allowed()}{example}")
        if field.kind is int and (isinstance(value, float) and not float(value).is_integer()):
            raise DcbenchError(f"{where}: expected an integer ({field.allowed()}){example}")
        if isinstance(value, float) and not math.isfinite(value):
            raise DcbenchError(f"{where}: expected a finite number, {field.allowed()}{example}")
        value = field.kind(value)
    if field.choices and value not in field.choices:
        raise DcbenchError(f"{where}: expected {field.allowed()}")
    if field.kind in (int, float):
        too_low = field.low is not None and (value <= field.low if field.low_open
                                             else value < field.low)
        too_high = field.high is not None and (value >= field.high if field.high_open
                                               else value > field.high)
        if too_low or too_high:
            raise DcbenchError(f"{where} is out of range: expected {field.allowed()}{example}")
    return value


def check_values(values: dict[str, Any], fields: dict[str, Field], prefix: str = "--"
                 ) -> dict[str, Any]:
    """Check every declared key present in `values`; return them converted."""
    out = dict(values)
    for key, field in fields.items():
        if key in values:
            flag = f"{prefix}{key.replace('_', '-')}" if prefix == "--" else f"{prefix}{key}"
            out[key] = check_value(flag, values[key], field)
    return out


# -- dcbench pretrain (DeepCluster and the supervised baseline) ---------------------------
PRETRAIN: dict[str, Field] = {
    "k": Field(int, 2, example=100),
    "epochs": positive_int(10),
    "max_images": positive_int(5000),
    "batch_size": positive_int(256),
    "lr": positive(0.05),
    "wd": nonneg(1e-5),
    "momentum": fraction(0.9),
    "pca_dim": positive_int(128),
    "reassign": Field(float, 0, 100, low_open=True, example=1.0),
    "min_scale": fraction(0.3, low_open=True, high_open=False),
    "seed": nonneg_int(31),
    "save_every": nonneg_int(5),
    "workers": Field(int, 0, 64, example=2),
}

# -- dcbench eval --------------------------------------------------------------------------
EVAL: dict[str, Field] = {
    "seed": nonneg_int(0),
    "seeds": Field(int, 1, 100, example=3),
    "workers": Field(int, 0, 64, example=2),
}

# -- task options (`dcbench eval --set KEY=VALUE`): one meaning per name across tasks ---------
TASK_OPTIONS: dict[str, Field] = {
    # training of heads (linear probes, VOC)
    "epochs": positive_int(10),
    "iterations": positive_int(1000),
    "batch_size": positive_int(256),
    "images_per_batch": positive_int(2),
    "rois_per_image": positive_int(64),
    "lr": positive(0.01),
    "lr_step": positive_int(1000),
    "lr_gamma": fraction(0.1, low_open=True, high_open=False),
    "momentum": fraction(0.9),
    "weight_decay": nonneg(1e-4),
    "clip": positive(10.0),
    "schedule": Field(str, choices=("sqrt", "cosine", "constant")),
    "augment": Field(bool),
    "tencrop": Field(bool),
    "head_bn": Field(bool),
    "cache_mb": Field(int, 0, 1 << 20, example=1536),
    "evals": positive_int(4),
    "test_crops": positive_int(10),
    "scale_min": fraction(0.5, low_open=True, high_open=False),
    "scale_max": Field(float, 0, 1, low_open=True, example=1.0),
    "scale": Field(float, 0, 16, low_open=True, example=2.0),
    "loss": Field(str, choices=("sum", "mean")),
    # subsets
    "max_train": positive_int(1000),
    "max_test": positive_int(500),
    "max_images": positive_int(5000),
    # kNN and clustering
    "k": positive_int(20),
    "temperature": positive(0.07),
    "pca_dim": nonneg_int(128),
    "whiten": Field(bool),
    "niter": positive_int(20),
    "k_s": positive_int(20),
    "k_c": positive_int(5),
    "eta": fraction(0.9, low_open=True, high_open=False),
    "min_size": positive_int(1),
    # retrieval
    "levels": Field(int, 1, 8, example=3),
    "overlap": fraction(0.4),
    "pool": Field(str, choices=("max", "gem")),
    "whiten_images": positive_int(10000),
    "max_side": positive_int(1024),
    # detection sizes
    "train_max_size": positive_int(2000),
    "test_size": positive_int(600),
    "test_max_size": positive_int(1000),
    "size_factor": positive(1.0),
    # names of data and splits: strings the task checks against what exists
    "dataset": Field(str),
    "split": Field(str),
    "train_split": Field(str),
    "test_split": Field(str),
    "whiten_on": Field(str),
    "proposals": Field(str, choices=("auto", "mat", "opencv")),
    # lists a task parses itself (e.g. scales=1.0,0.7)
    "scales": Field(tuple),
    "train_sizes": Field(tuple),
}

# -- JULE's options (`dcbench pretrain --method jule --set KEY=VALUE`) -----------------------
JULE: dict[str, Field] = {
    "arch": Field(str, choices=("jule-16", "jule-28", "jule-32", "jule-128"),
                  example="jule-32"),
    "epochs": positive_int(20),
    "batch_size": Field(int, 2, example=100),
    "lr": positive(0.01),
    "momentum": fraction(0.9),
    "wd": nonneg(5e-5),
    "k_s": positive_int(20),
    "k_c": positive_int(5),
    "eta": fraction(0.9, low_open=True, high_open=False),
    "gamma": nonneg(2.0),
    "margin": nonneg(0.2),
    "negatives": positive_int(4),
    "target": Field(int, 2, example=10),
    "chunk": Field(int, 2, example=10000),
    "min_size": positive_int(1),
}


def option_field(task: Any, key: str) -> Field:
    """The declaration of a task option: the task's own (`option_fields`) or the shared one."""
    own = getattr(task, "option_fields", {}) or {}
    if key in own:
        return own[key]
    if key in TASK_OPTIONS:
        return TASK_OPTIONS[key]
    raise DcbenchError(f"task '{task.name}' option '{key}' has no declared type and range; "
                       f"declare it in the task's option_fields (dcbench/schema.py explains)")
