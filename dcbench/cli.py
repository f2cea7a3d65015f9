"""The `dcbench` command line. Thin: it parses options, then calls library functions.

Errors the user can fix (DcbenchError) are printed as one line and exit with status 2;
Ctrl-C exits with 130 and says how to resume.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from dcbench.errors import DcbenchError
from dcbench.methods.catalog import COMMON, DEFAULT_SEED, METHODS

# options several commands share, declared once
DATA_ROOT = click.option("--data-root", default=None, envvar="DCBENCH_DATA",
                         help="folder holding one sub-folder per dataset [env DCBENCH_DATA]")
RESULTS = click.option("--results", default=None, envvar="DCBENCH_RESULTS",
                       help="results folder [default: results; env DCBENCH_RESULTS]")


class ArchChoice(click.Choice):
    """--arch's choices: dcbench.models.MODELS without JULE's nets (JULE picks its own), read
    when needed, since the models' module loads torch (about a second)."""

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        from dcbench.models import MODELS
        from dcbench.models.jule_net import JULE_NETS

        return tuple(a for a in MODELS if a not in JULE_NETS)

    @choices.setter
    def choices(self, value: object) -> None:       # click's __init__ sets it: ignored
        pass


def _command_line() -> str:
    return "dcbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])


SEED_MAX = 2**32 - 1    # numpy's legacy seeds (np.random.seed); torch's go to 2**64 - 1


def _check_seed(seed: int | None, example: int) -> None:
    """A seed past what numpy and torch take failed mid-run (after pretrain had written its
    run folder) as an overflow: refuse it first, with the range."""
    from dcbench.schema import Field, check_value

    check_value("--seed", seed, Field(int, 0, SEED_MAX, example=example))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dcbench")
@click.option("--debug", is_flag=True, envvar="DCBENCH_DEBUG",
              help="show the full traceback of an error [env DCBENCH_DEBUG=1]")
def cli(debug: bool) -> None:
    """dcbench: DeepCluster-style unsupervised feature learning, benchmarked.

    Start with `dcbench demo --quick` (about a minute), then `dcbench demo`.
    """


@cli.command()
@click.option("--method", type=click.Choice(list(METHODS)), default="deepcluster",
              show_default=True, help="; ".join(f"{m.name}: {m.summary}"
                                                for m in METHODS.values()))
@click.option("--data", "data", default="fashion-mnist", show_default=True,
              help="dataset name (dcbench data list)")
@click.option("--root", default=None, help="this dataset's folder (overrides --data-root)")
@DATA_ROOT
@click.option("--arch", type=ArchChoice(), default=None,
              help="[default: alexnet-small on 32 px data, else alexnet]")
@click.option("--k", "k", type=int, default=None,
              help="number of clusters [default: 10000; 100 on fashion-mnist]")
@click.option("--epochs", type=int, default=None, help="epochs [default: 500; 10 on fashion-mnist]")
@click.option("--out", default=None, help="run folder (checkpoints, assignments, log.jsonl); "
              "required, except with --preflight")
@click.option("--max-images", type=int, default=None, help="train on a seeded random subset")
@click.option("--batch-size", type=int, default=None, help="[default: 256]")
@click.option("--lr", type=float, default=None, help="[default: 0.05]")
@click.option("--wd", type=float, default=None, help="weight decay [default: 1e-5]")
@click.option("--momentum", type=float, default=None, help="[default: 0.9]")
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default="constant",
              show_default=True, help="the trunk's lr over the epochs: the paper's constant "
              "rate, or a cosine decay to 0 (the standard-recipe supervised baseline)")
@click.option("--sobel/--no-sobel", default=None, help="fixed Sobel front end [default: on for "
              "DeepCluster's convnets, off for ResNets and ViTs]")
@click.option("--pca-dim", type=int, default=None, help="PCA dimension before k-means "
              "[default: 256; 128 on fashion-mnist]")
@click.option("--clustering", type=click.Choice(["kmeans", "pic"]), default="kmeans",
              show_default=True, help="k-means (faiss) or power iteration clustering")
@click.option("--sampler", type=click.Choice(["uniform", "released"]), default="uniform",
              show_default=True, help="uniform over clusters (the paper) or the released "
              "code's size-proportional sampling")
@click.option("--empty-clusters", type=click.Choice(["paper", "released"]), default=None,
              help="empty k-means clusters: the paper's rule (points moved) or the released "
              "code's (faiss's split) [default: released; paper on 32 px data]")
@click.option("--seed-streams", type=click.Choice(["independent", "shared"]), default=None,
              help="independent seeds per epoch for the PCA sample, k-means, sampler, head "
              "and augmentation, or one shared epoch seed [default: independent; shared on 32 "
              "px data]")
@click.option("--reassign", type=float, default=1.0, show_default=True,
              help="dataset passes between two clusterings")
@click.option("--min-scale", type=float, default=None,
              help="RandomResizedCrop lower scale [default: 0.08; 0.3 on 32 px data]")
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True)
@click.option("--resume", is_flag=True, help="continue the run in --out from its last epoch")
@click.option("--preflight", "preflight_steps", type=int, default=None, metavar="STEPS",
              help="check the data, run STEPS training steps (and the clustering pass) at "
              "full size on a subset, and project the full run's time on this machine; "
              "writes nothing")
@click.option("--json", "preflight_json", default=None, metavar="PATH",
              help="with --preflight: also write its measurements as JSON")
@click.option("--save-every", type=int, default=0, show_default=True,
              help="also keep checkpoint_<epoch>.pth.tar every N epochs (0: only the latest)")
@click.option("--workers", type=int, default=None, help="data loading workers per process")
@click.option("--amp", type=click.Choice(["auto", "bf16", "off"]), default="auto",
              show_default=True, help="bf16 autocast for training and the clustering pass: "
              "auto uses it where the hardware computes bf16 (a bf16 GPU, a CPU with AMX), "
              "off keeps float32")
@click.option("--set", "method_sets", multiple=True, metavar="KEY=VALUE",
              help="a method option (JULE: k_s, k_c, eta, margin, gamma, negatives, target, "
              "split, min_size; --epochs is its passes per period)")
def pretrain(**opts) -> None:
    """Train a DeepCluster, supervised or JULE checkpoint; resumable (DeepCluster and the
    supervised baseline also under torchrun).

    \b
    dcbench pretrain --data fashion-mnist --max-images 2000 --epochs 1 --out runs/try
        (a first trial: about 15 seconds on 2 CPU cores)
    dcbench pretrain --data fashion-mnist --out runs/dc-fmnist
    torchrun --nproc_per_node=2 -m dcbench pretrain --data imagenet --out runs/dc-in
    dcbench pretrain --method jule --data digits --out runs/jule-digits
    """
    from dcbench.errors import DcbenchError
    from dcbench.eval_request import parse_value
    from dcbench.methods import run_pretraining

    _check_seed(opts["seed"], DEFAULT_SEED)
    # a method's own flags left at their defaults are passed as None, so that the method
    # refuses only the flags given (catalog.check_options) and fills in its own defaults
    ctx = click.get_current_context()
    for key in opts:
        if key not in COMMON and ctx.get_parameter_source(key) == ParameterSource.DEFAULT:
            opts[key] = None
    sets = {}
    for item in opts.pop("method_sets") or ():
        if "=" not in item:
            raise DcbenchError(f"--set {item!r}: expected KEY=VALUE, e.g. --set eta=0.9")
        key, value = item.split("=", 1)
        sets[key.strip()] = parse_value(value)
    if sets and opts["method"] != "jule":
        raise DcbenchError(f"--set is for JULE's options; {opts['method']} takes its options "
                           f"as flags (dcbench pretrain --help)")
    opts["jule_options"] = sets
    steps, json_path = opts.pop("preflight_steps"), opts.pop("preflight_json")
    if steps is not None:
        from dcbench.methods.pretrain_preflight import preflight_pretraining

        preflight_pretraining(opts, steps, json_path)
        return
    if json_path:
        raise DcbenchError("--json goes with --preflight (a run writes its log.jsonl)")
    if not opts["out"]:
        raise click.UsageError("Missing option '--out' (the run folder).", ctx=ctx)
    run_pretraining(opts, command=_command_line())


@cli.command(name="eval")
@click.option("--task", required=True, help="a registered task (dcbench tasks)")
@click.option("--ckpt", required=True, help="checkpoint file, pretrained/ name "
              "(deepcluster-alexnet) or random:ARCH[:SEED] / random-rgb:ARCH[:SEED]")
@click.option("--setting", "settings", multiple=True,
              help="task setting (repeatable; 'all' = every setting) [default: the task's]")
@click.option("--seed", type=int, default=0, show_default=True, help="first seed")
@click.option("--seeds", type=int, default=1, show_default=True,
              help="run this many seeds (seed, seed+1, ...); the report shows mean +- std")
@click.option("--force", is_flag=True, help="run even if already recorded")
@click.option("--quick", is_flag=True, help="same code on a small subset (for tests)")
@DATA_ROOT
@RESULTS
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a task option, e.g. --set epochs=5 (see dcbench tasks)")
@click.option("--workers", type=int, default=None, help="data loading workers")
def eval_cmd(**opts) -> None:
    """Run one task of the registry on any checkpoint and record the result."""
    from dcbench.eval_request import check_request

    _check_seed(opts["seed"], 0)
    request = check_request(opts)   # a bad request is refused before torch loads (~1 s)
    from dcbench.evaluate import run_eval

    run_eval(opts, command=_command_line(), request=request)


@cli.command()
@click.option("--task", required=True, help="a registered task (dcbench tasks)")
@click.option("--ckpt", required=True, help="as for dcbench eval")
@click.option("--setting", "settings", multiple=True,
              help="task setting (repeatable) [default: the task's]")
@click.option("--steps", type=int, default=20, show_default=True,
              help="steps to run of each setting")
@click.option("--quick", is_flag=True, help="the task's small subset (for tests)")
@DATA_ROOT
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a task option, as for dcbench eval")
@click.option("--workers", type=int, default=None, help="data loading workers")
@click.option("--json", "json_path", default=None, metavar="PATH",
              help="also write the measurements as JSON (never into the results)")
def preflight(**opts) -> None:
    """Check a task's data and checkpoint, run a few steps of each setting at full size, and
    project the full run's time on this machine (images/s, peak memory, loss finite and
    falling). Records nothing."""
    from dcbench.eval_request import check_request

    opts.update(seed=0, seeds=1, force=True, results=None)
    check_request(opts)             # a bad request is refused before torch loads
    from dcbench.preflight import run_preflight

    run_preflight(opts, steps=opts["steps"], json_path=opts["json_path"])


@cli.command()
@DATA_ROOT
def tasks(data_root: str | None) -> None:
    """List every task with its settings and whether its data is found."""
    from dcbench.eval_request import task_table

    click.echo(task_table(data_root))


@cli.command()
@RESULTS
@click.option("--runs", multiple=True, help="pretraining run folders for the figures "
              "[default: results/runs/* and the folders of recorded checkpoints]")
@click.option("--best", is_flag=True, help="show best-epoch values instead of final values")
@click.option("--include-quick", is_flag=True, help="also show records of --quick runs")
@click.option("--pictures", "pictures", multiple=True, metavar="CKPT",
              help="also draw this checkpoint's conv1 filters, nearest neighbours and top "
              "activations (file, pretrained/ name or random:ARCH[:SEED]; repeatable)")
@click.option("--picture-images", type=click.IntRange(10, 100_000), default=2000,
              show_default=True, help="test images the pictures search")
@DATA_ROOT
def report(results: str | None, runs: tuple[str, ...], best: bool, include_quick: bool,
           pictures: tuple[str, ...], picture_images: int, data_root: str | None) -> None:
    """Regenerate the paper's tables and figures from the recorded results."""
    from dcbench.report import build_report

    path = build_report(results, list(runs) or None, best=best, include_quick=include_quick,
                        pictures=list(pictures), data_root=data_root,
                        picture_images=picture_images)
    click.echo(f"wrote {path}")


@cli.group()
def data() -> None:
    """List the registry, validate dataset roots, build the embedded sets."""


@data.command(name="list")
def data_list() -> None:
    """List the registered datasets."""
    from dcbench.data import DATASETS

    for name, spec in sorted(DATASETS.items()):
        click.echo(f"{name:14s} {spec.description}")


@data.command()
@click.argument("name")
@click.option("--root", default=None, help="this dataset's folder")
@DATA_ROOT
def validate(name: str, root: str | None, data_root: str | None) -> None:
    """Check a dataset's layout; print counts per split and class, or the first problem."""
    from dcbench.data import validate_dataset

    click.echo("\n".join(validate_dataset(name, root, data_root).lines()))


@data.command()
@click.argument("name", type=click.Choice(["fmnist-voc", "fmnist-oxford", "fmnist-paris"]))
@click.option("--out", default=None, help="where to build it [default: where dcbench looks "
              "for it: <data-root>/NAME, else $DCBENCH_CACHE/NAME or ~/.cache/dcbench/NAME]")
@click.option("--quick", is_flag=True, help="the small twin (NAME-quick) that --quick runs use")
@DATA_ROOT
def build(name: str, out: str | None, quick: bool, data_root: str | None) -> None:
    """Build an embedded set (deterministic, from Fashion-MNIST) in its real layout."""
    from dcbench.data import get_dataset_spec
    from dcbench.data.registry import candidate_roots

    name = get_dataset_spec(name).quick_variant if quick else name
    target = out or str(candidate_roots(name, data_root=data_root)[0])
    built = get_dataset_spec(name).builder(Path(target))
    click.echo(f"{name} at {built}")


@cli.command()
@click.option("--quick", is_flag=True, help="the same pipeline, small (minutes; for tests); "
              "writes to results/quick unless --results is given")
@click.option("--full", is_flag=True, help="the longer recipe (DeepCluster 10 clusterings x 3 "
              "passes, VOC in both settings, the standard supervised baseline, the k sweep: "
              "about 135 min on 2 cores); writes to results/full unless --results is given")
@RESULTS
@DATA_ROOT
def demo(quick: bool, full: bool, results: str | None, data_root: str | None) -> None:
    """Pretrain, evaluate and report on Fashion-MNIST (25 min with the install on 2 cores
    without AMX: README); writes to results/demo; resumes where it stopped."""
    from dcbench.demo import run_demo

    run_demo(quick=quick, results=results, data_root=data_root, full=full)


def _debug() -> bool:
    return "--debug" in sys.argv[1:] or os.environ.get("DCBENCH_DEBUG", "") not in ("", "0")


def main() -> None:
    """Run the CLI: user errors as one line (exit 2), anything unexpected as one line that
    says it is probably a bug (exit 1); tracebacks only with --debug."""
    try:
        cli(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted; run the same command again (with --resume for pretrain) to "
                   "continue", err=True)
        sys.exit(130)
    except click.exceptions.ClickException as e:
        ctx = getattr(e, "ctx", None)
        where = f" ({ctx.command_path} --help lists the options)" if ctx is not None else ""
        click.echo(f"error: {e.format_message()}{where}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except DcbenchError as e:
        if _debug():
            raise
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except OSError as e:
        if _debug():
            raise
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        click.echo(f"error: cannot access{where}: {e.strerror or e}; check the path, its "
                   f"permissions and free disk space (--debug shows the traceback)", err=True)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001  (the last line of defence: one line, not a trace)
        if _debug():
            raise
        first = (str(e).strip().splitlines() or [""])[0][:200]
        click.echo(f"error: unexpected {type(e).__name__}: {first} (probably a dcbench bug: "
                   f"rerun with --debug for the traceback and report it)", err=True)
        sys.exit(1)
    finally:
        if "torch.distributed" in sys.modules and os.environ.get("WORLD_SIZE"):
            from dcbench.distributed import shutdown

            shutdown()


if __name__ == "__main__":
    main()
