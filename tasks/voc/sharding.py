"""How a VOC task splits its work over torchrun's ranks (in one process every function here
is the identity and reduced_step is not called: one process needs no torch.distributed).

Training: the global batch keeps its size; each of W ranks takes every W-th image of each
global batch (`my_part`), and one step averages the ranks' gradients weighted by the images
each one read (`reduced_step`): the step of the global batch's mean loss, whatever a rank
skipped. The ranks start from rank 0's weights and stay equal (the same update on the same
values). Measuring: each rank reads every W-th test batch; the scores are summed over ranks.
"""

from __future__ import annotations

import torch
from torch import nn

from dcbench import distributed
from dcbench.data import make_loader
from dcbench.errors import DcbenchError

from ..registry import RunContext


def rank_seed(seed: int) -> int:
    """The seed of this rank's crops and dropout: `seed` on rank 0 (a single process is
    unchanged), a distinct stream on every other rank."""
    return seed + 1_000_003 * distributed.rank()


def my_part(order: list[int], batch: int) -> list[int]:
    """This rank's images of each global batch of `order` (batch // W of them, in order)."""
    world = distributed.world_size()
    if world == 1:
        return order
    return [i for b in range(0, len(order), batch) for i in order[b:b + batch][
        distributed.rank()::world]]


def train_loader(data, order: list[int], batch: int, ctx: RunContext, collate=None):
    """This rank's loader over the global batches of `order` (batch // W images of each),
    its crops and dropout seeded from rank_seed(ctx.seed)."""
    torch.manual_seed(rank_seed(ctx.seed))
    return make_loader(data, batch // distributed.world_size(), sampler=my_part(order, batch),
                       workers=ctx.workers, seed=rank_seed(ctx.seed), collate=collate)


def summed_count(count: int) -> int:
    """A count summed over the ranks (unchanged in one process)."""
    return int(distributed.all_reduce_sum(torch.tensor([count]))[0])


def my_test_rows(n: int, batch: int) -> list[int] | None:
    """This rank's test images: every W-th batch of `batch` consecutive images, so each batch
    holds the images (and the padding to the largest) it holds in one process: the scores of
    an image do not depend on the number of ranks. None in one process (all, in order)."""
    world = distributed.world_size()
    if world == 1:
        return None
    return [i for b in range(distributed.rank() * batch, n, world * batch)
            for i in range(b, min(b + batch, n))]


def sync_model(model: nn.Module) -> None:
    """Every rank takes rank 0's parameters and buffers (the heads are drawn at random)."""
    if not torch.distributed.is_initialized():
        return
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            buf = t.detach().to(distributed._comm_device()).clone()
            torch.distributed.broadcast(buf, 0)
            t.copy_(buf.to(t.device))


def reduced_step(opt: torch.optim.Optimizer, loss: torch.Tensor | None, n: int, task: str,
                 setting: str, it: int, progress,
                 clip: tuple[list[nn.Parameter], float] | None = None) -> float | None:
    """One SGD step on the global batch: `loss` is this rank's mean loss over its `n` images
    (None when it read none). Every rank takes the same step, or raises the same error;
    returns the global mean loss (None when no rank read an image)."""
    finite = loss is None or bool(torch.isfinite(loss))
    stats = distributed.all_reduce_sum(torch.tensor(
        [float(n if loss is not None else 0),
         float(loss.detach()) * n if loss is not None and finite else 0.0,
         0.0 if finite else 1.0], dtype=torch.float64))
    total, loss_sum, bad = float(stats[0]), float(stats[1]), int(stats[2])
    if bad:
        progress.close()
        raise DcbenchError(f"{task} {setting}: the loss became non-finite on {bad} rank(s) at "
                           f"iteration {it}; lower --set lr=...")
    if total == 0:
        return None
    opt.zero_grad(set_to_none=True)
    if loss is not None:
        (loss * (n / total)).backward()      # this rank's share of the global mean
    params = [p for g in opt.param_groups for p in g["params"]]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = distributed.all_reduce_sum(torch.cat(
        [torch.tensor([float(p.grad is not None) for p in params], device=params[0].device),
         *(g.reshape(-1).float() for g in grads)]))
    used, offset = flat[:len(params)], len(params)
    for i, (p, g) in enumerate(zip(params, grads)):
        # a parameter no rank used keeps grad None: SGD skips it (no decay, no momentum), as
        # in one process
        p.grad = flat[offset:offset + g.numel()].view_as(p).to(p.dtype) if used[i] else None
        offset += g.numel()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(*clip)
    opt.step()
    return loss_sum / total

