"""The pretraining methods by name, each with the options it reads.

The one list that the CLI's --method choices, each method's config and the refusal of an option
a method has no use for come from (a flag that is silently dropped makes a run that is not the
one its command line says). Light: no torch, so `dcbench --help` stays fast; the code that runs
a method is named here and imported on use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dcbench.did_you_mean import did_you_mean
from dcbench.errors import DcbenchError
from dcbench.plugins import load_group, reject

DEFAULT_SEED = 31      # every pretraining recipe's seed, the showcase's runs included

# options every method reads
COMMON = ("method", "data", "root", "data_root", "out", "epochs", "batch_size", "lr", "wd",
          "momentum", "seed", "max_images", "workers", "resume")
# the trunk recipe DeepCluster and the supervised baseline share (train_epoch.py, session.py)
TRUNK_RECIPE = ("arch", "sobel", "min_scale", "lr_schedule", "save_every", "amp",
                "seed_streams")


@dataclass(frozen=True)
class Method:
    name: str
    summary: str                 # what it trains on, for --help and the refusal
    options: tuple[str, ...]     # the pretrain options it reads beyond COMMON
    runner: str                  # "module:function" that runs it (imported on use)
    # True: the runner takes (opts, command) and runs the whole pretraining in its own loop
    # (JULE's periods); False: it runs one epoch of the trunk recipe on a Session
    own_loop: bool = False


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("deepcluster", "k-means on the trunk's features each epoch, the assignments the "
           "labels of the next",
           (*TRUNK_RECIPE, "k", "pca_dim", "pca_sample", "kmeans_iters", "clustering",
            "sampler", "reassign", "empty_clusters"),
           "dcbench.methods.deepcluster:run_epoch"),
    Method("supervised", "the same trunk and recipe trained on the true labels, no clusters",
           TRUNK_RECIPE, "dcbench.methods.supervised:run_epoch"),
    Method("jule", "agglomerative clustering and CNN updates in turn; its own options via --set",
           ("jule_options",), "dcbench.methods.jule:run", own_loop=True),
)}
BUILTIN = tuple(METHODS)
# third-party methods: the `dcbench.methods` entry points, each a Method
for _name, _method in load_group("dcbench.methods"):
    if not isinstance(_method, Method) or _method.name in METHODS:
        reject("dcbench.methods", _name, "not a Method with a name of its own")
    else:
        METHODS[_method.name] = _method


def flag(key: str) -> str:
    """The command-line flag of an option key."""
    return {"jule_options": "--set KEY=VALUE", "sobel": "--no-sobel"}.get(
        key, "--" + key.replace("_", "-"))


def get_method(name: str | None) -> Method:
    name = name or "deepcluster"
    if name not in METHODS:
        raise DcbenchError(f"unknown method '{name}'{did_you_mean(name, METHODS)}; choose one "
                           f"of: {', '.join(METHODS)}")
    return METHODS[name]


def check_options(opts: dict[str, Any]) -> Method:
    """The method `opts` name, after refusing every option it does not read that was given
    (a value other than None: the CLI passes None for a flag left at its default)."""
    method = get_method(opts.get("method"))
    allowed = set(COMMON) | set(method.options)
    given = [k for k, v in opts.items() if v is not None and k not in allowed
             and not (k == "jule_options" and not v) and not (k == "resume" and not v)]
    if given:
        names = ", ".join(flag(k) for k in given)
        own = ", ".join(flag(k) for k in method.options)
        verb, it = ("is not an option", "it") if len(given) == 1 else ("are not options", "them")
        raise DcbenchError(f"{names} {verb} of {method.name} ({method.summary}); "
                           f"drop {it}: {method.name} takes {own} beside the options every "
                           f"method takes (dcbench pretrain --help)")
    return method
