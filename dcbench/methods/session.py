"""Everything a pretraining run carries from epoch to epoch, and how it is built or resumed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dcbench import distributed as dist
from dcbench.checkpoint import load_into, save_checkpoint
from dcbench.checkpoint_file import read_resumable
from dcbench.data import build_dataset, get_dataset_spec, make_transform, subset, targets_of
from dcbench.errors import DcbenchError
from dcbench.extract import prepare
from dcbench.faults import fault_point
from dcbench.methods.config import SEED_STREAMS, epoch_lr
from dcbench.methods.run_dir import RunDir
from dcbench.models import MODELS, Trunk, build_model
from dcbench.progress import say


def epoch_seed(seed: int, epoch: int) -> int:
    """The one seed of an epoch in runs with shared streams: resuming replays it exactly."""
    return seed * 100_003 + epoch


# Each source of randomness in an epoch (`augment` also seeds dropout and the loader workers).
STREAMS = ("pca_sample", "kmeans", "head", "sampler", "augment")


def stream_seeds(seed: int, epoch: int, mode: str) -> dict[str, int]:
    """One seed per stream of `epoch`. 'independent': children of SeedSequence([seed, epoch]),
    so no stream's draws depend on another's (the PCA sample, the k-means init, the sampler
    and the head each get their own); 'shared': epoch_seed for every stream, as runs made
    before the streams existed (and the embedded recipe's showcase runs) used."""
    if mode == "shared":
        return dict.fromkeys(STREAMS, epoch_seed(seed, epoch))
    if mode != "independent":
        raise DcbenchError(f"unknown seed_streams '{mode}'; choose one of: "
                           f"{', '.join(SEED_STREAMS)}")
    children = np.random.SeedSequence([seed, epoch]).spawn(len(STREAMS))
    return {name: int(child.generate_state(1, np.uint32)[0])
            for name, child in zip(STREAMS, children)}


@dataclass
class Session:
    cfg: dict[str, Any]
    command: str
    device: torch.device
    run: RunDir
    model: Trunk
    trunk_opt: torch.optim.Optimizer
    train_set: Dataset
    cluster_set: Dataset
    labels: np.ndarray | None
    missing_images: int = 0                   # listed in a file list but absent on disk
    start_epoch: int = 0                      # completed epochs at start
    history: list[dict[str, Any]] = field(default_factory=list)

    def epoch_seeds(self, epoch: int) -> dict[str, int]:
        """This run's stream_seeds for `epoch` (its seed_streams; runs saved before the key
        existed used shared streams)."""
        return stream_seeds(self.cfg["seed"], epoch, self.cfg.get("seed_streams", "shared"))

    def set_epoch_lr(self, epoch: int) -> float:
        """The trunk optimizer's lr for `epoch` (config.epoch_lr); returned for the log."""
        lr = epoch_lr(self.cfg, epoch)
        for group in self.trunk_opt.param_groups:
            group["lr"] = lr
        return lr

    def save(self, epoch: int) -> None:
        """Checkpoint (with the log history inside), optional kept copy, then the log view.
        Weights that diverged are not saved over the last good checkpoint (every rank checks:
        DDP keeps their weights equal, so all stop together)."""
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise DcbenchError(f"the weights became NaN or inf during epoch {epoch} ({bad[0]}"
                               f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}): the "
                               f"training diverged; not saved, the last good checkpoint is "
                               f"kept: lower --lr and start again (or --resume)")
        if not dist.is_main():
            return
        extra = {"history": self.history, "command": self.command}
        opt = self.trunk_opt.state_dict()
        fault_point("checkpoint-write", epoch)
        save_checkpoint(self.run.checkpoint, self.model, epoch=epoch, method=self.cfg["method"],
                        optimizer=opt, seed=self.cfg["seed"], config=self.cfg, extra=extra)
        every = self.cfg["save_every"]
        if every and epoch % every == 0:
            save_checkpoint(self.run.kept_checkpoint(epoch), self.model, epoch=epoch,
                            method=self.cfg["method"], optimizer=opt, seed=self.cfg["seed"],
                            config=self.cfg, extra=extra)
        fault_point("log-write", epoch)
        self.run.write_log(self.history)


def trunk_parameters(model: Trunk) -> list[torch.nn.Parameter]:
    """What the persistent optimizer trains: everything but the Sobel filter and the head."""
    return [p for name, p in model.named_parameters()
            if p.requires_grad and not name.startswith("top_layer.")]


def check_max_images(cfg: dict[str, Any], available: int) -> None:
    """--max-images above the dataset's size is refused, not clamped without a word."""
    if cfg["max_images"] is not None and cfg["max_images"] > available:
        raise DcbenchError(f"--max-images {cfg['max_images']} is more than the {available} "
                           f"images of {cfg['data']}; lower it or drop --max-images to use all")


def build_session(cfg: dict[str, Any], command: str, device: torch.device,
                  resume: bool) -> Session:
    run = RunDir(cfg["out"])
    run.check(cfg, resume, lock=dist.is_main())   # nothing but the lock before the checks
    spec = get_dataset_spec(cfg["data"])
    common = {"size": spec.size, "mean": spec.mean, "std": spec.std, "native": spec.native,
              "side": MODELS[cfg["arch"]].INPUT_SIZE}      # a small set at the trunk's side
    train_t = make_transform("train", min_scale=cfg["min_scale"], **common)
    cluster_t = make_transform("cluster", **common)
    train_full = build_dataset(cfg["data"], "train", train_t, cfg["root"], cfg["data_root"])
    cluster_full = build_dataset(cfg["data"], "train", cluster_t, cfg["root"], cfg["data_root"])
    train_set = subset(train_full, cfg["max_images"], cfg["seed"])
    check_max_images(cfg, len(cluster_full))
    cluster_set = subset(cluster_full, cfg["max_images"], cfg["seed"])
    if cfg["method"] == "deepcluster" and cfg["clustering"] == "kmeans" \
            and cfg["k"] > len(cluster_set):
        raise DcbenchError(f"--k {cfg['k']} is larger than the {len(cluster_set)} images to "
                           f"cluster; lower --k or raise --max-images")
    # a checkpoint that cannot be resumed is refused before the config is rewritten
    ckpt = read_resumable(run.checkpoint) if resume and run.checkpoint.exists() else None
    if dist.is_main():
        run.create(cfg)
    dist.barrier()
    print_config(cfg)                       # after the checks: an error is not buried under it
    # the supervised head is drawn with the trunk, from the run's seed (drawn afterwards from
    # torch's unseeded default generator, it made the baseline differ run to run)
    k = (len(getattr(train_full, "classes", [])) or 1) if cfg["method"] == "supervised" else None
    model = build_model(cfg["arch"], sobel=cfg["sobel"], seed=cfg["seed"], k=k)
    model = prepare(model, device)
    params = trunk_parameters(model) + (list(model.top_layer.parameters())
                                        if cfg["method"] == "supervised" else [])
    opt = torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"],
                          weight_decay=cfg["wd"])
    session = Session(cfg, command, device, run, model, opt, train_set, cluster_set,
                      targets_of(train_set), int(getattr(train_full, "missing", 0)))
    if session.missing_images:
        say(f"{session.missing_images} listed images do not exist and are skipped (counted as "
            f"missing_images in log.jsonl)")
    if ckpt is not None:
        load_into(model, {k: v for k, v in ckpt["state_dict"].items()}, str(run.checkpoint))
        model.to(device)
        opt.load_state_dict(ckpt["optimizer"])
        session.start_epoch = int(ckpt["epoch"])
        session.history = [r for r in ckpt.get("history", []) if r["epoch"] <= ckpt["epoch"]]
        if dist.is_main():   # a kill between checkpoint and log left the log one epoch short
            run.write_log(session.history)
        say(f"resuming {run.path} after epoch {session.start_epoch}")
    elif resume:
        say(f"nothing to resume in {run.path}: starting from scratch")
    return session


def print_config(cfg: dict[str, Any]) -> None:
    """Print the resolved config first, as DINO does: a log starts with what was run."""
    say("config:\n" + "\n".join(f"  {k}: {json.dumps(v)}" for k, v in sorted(cfg.items())))
