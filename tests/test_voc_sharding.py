"""The VOC tasks under torchrun: each rank takes its part of every global batch, one step
averages the ranks' gradients weighted by the images each read, and a batch that does not
split over the ranks is refused before any work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dcbench.errors import DcbenchError


def test_the_ranks_parts_of_each_global_batch_are_disjoint_and_make_it_up(monkeypatch):
    from dcbench.tasks.voc.sharding import my_part

    order = [7, 3, 9, 1, 4, 4, 0, 8, 2, 5, 6, 1]       # 3 global batches of 4 (repeats kept)
    assert my_part(order, 4) == order                   # one process: everything
    monkeypatch.setenv("WORLD_SIZE", "2")
    parts = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        parts.append(my_part(order, 4))
    assert parts == [[7, 9, 4, 0, 2, 6], [3, 1, 4, 8, 5, 1]]
    for b in range(3):             # the loader's b-th batch of 2 on each rank = global batch b
        assert sorted(parts[0][2 * b:2 * b + 2] + parts[1][2 * b:2 * b + 2]) == \
            sorted(order[4 * b:4 * b + 4])


def test_test_rows_are_whole_batches_of_one_process_dealt_to_the_ranks(monkeypatch):
    """Batches of 3 over 10 images: rank 0 measures batches [0-2] and [6-8], rank 1 [3-5] and
    [9]: every batch is the one a single process pads and scores (striding the images would
    pad [0, 2, 4] together and change the scores of padded batches: detection did)."""
    from dcbench.tasks.voc.sharding import my_test_rows

    assert my_test_rows(10, 3) is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    rows = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        rows.append(my_test_rows(10, 3))
    assert rows == [[0, 1, 2, 6, 7, 8], [3, 4, 5, 9]]


def test_rank_seeds_leave_one_process_unchanged_and_differ_per_rank(monkeypatch):
    from dcbench.tasks.voc.sharding import rank_seed

    assert rank_seed(5) == 5
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert rank_seed(5) != 5 and rank_seed(5) != rank_seed(6)


@pytest.mark.parametrize(("task", "key", "value", "fix"), [
    ("voc-cls", "batch_size", 3, "batch_size=2"),
    ("voc-det", "images_per_batch", 5, "images_per_batch=4"),
    ("voc-seg", "batch_size", 1, "batch_size=2"),
])
def test_a_global_batch_that_does_not_split_over_the_ranks_is_refused(
        task, key, value, fix, tmp_path: Path, monkeypatch):
    from dcbench.evaluate import run_eval

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(DcbenchError, match=rf"{task}: {key} {value} does not split over 2 "
                                           rf"ranks .* pass --set {fix}"):
        run_eval({"task": task, "ckpt": "random:alexnet-small", "quick": True,
                  "results": str(tmp_path), "overrides": (f"{key}={value}",)})
    assert not (tmp_path / "records.jsonl").exists()


STEP_SCRIPT = """
import sys, torch
from torch.nn import functional as F
from dcbench import distributed
from dcbench.tasks.voc.common import sgd_step
from dcbench.tasks.voc.sharding import sync_model

class Quiet:
    def close(self):
        pass

distributed.init()
torch.manual_seed(distributed.rank())       # a different draw per rank: sync_model fixes it
model = torch.nn.Linear(5, 3)
sync_model(model)
unused = torch.nn.Parameter(torch.ones(3))    # in the optimizer, never in the loss
opt = torch.optim.SGD([*model.parameters(), unused], lr=0.5, momentum=0.9, weight_decay=0.01)
g = torch.Generator().manual_seed(0)
x, y = torch.randn(4, 5, generator=g), torch.randint(0, 3, (4,), generator=g)
case = sys.argv[2]
mine = [0, 1, 2] if case == "empty" else [0, 1, 2, 3]        # one process: the global batch
if distributed.is_distributed():                              # rank 0 reads 3 images, rank 1
    mine = [[0, 1, 2], [] if case == "empty" else [3]][distributed.rank()]   # 1 or none
losses = []
for it in range(3):
    loss = F.cross_entropy(model(x[mine]), y[mine]) if mine else None
    losses.append(sgd_step(opt, loss, len(mine), "t", "s", it, Quiet(),
                           clip=(list(model.parameters()), 0.2)))
states = distributed.all_gather_object({**{k: v.clone() for k, v in model.state_dict().items()},
                                       "unused": unused.detach().clone()})
if distributed.is_main():
    torch.save({"losses": losses, "states": states}, sys.argv[1])
"""


@pytest.mark.slow
@pytest.mark.parametrize("case", ["uneven", "empty"])
def test_a_step_on_two_ranks_is_the_step_on_the_global_batch(case: str, tmp_path: Path):
    """Rank 0 reads 3 images and rank 1 reads 1 (or none): the weights after three clipped
    momentum steps equal one process's on the 4 (or 3) images, on both ranks, and a parameter
    no loss uses is left alone (no weight decay) as in one process. Fails without the
    gradient reduction, with an unweighted mean of the ranks' losses, without sync_model, when
    a rank without images skips the collective, or when an unused parameter gets a zero
    gradient."""
    script = tmp_path / "step.py"
    script.write_text(STEP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one.pt"), case],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_port=29561", str(script), str(tmp_path / "two.pt"), case],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert b["losses"] == pytest.approx(a["losses"], rel=1e-6)
    for state in b["states"]:                       # both ranks hold the single-process weights
        for key, value in a["states"][0].items():
            assert torch.allclose(state[key], value, atol=1e-6), (case, key)
    assert torch.equal(a["states"][0]["unused"], torch.ones(3))
