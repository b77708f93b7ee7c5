"""losses/distributed.py and per-sample loss state under DDP: 2 CPU processes, gloo.

No Lightning here (test_distributed_fit.py runs a Lightning fit). all_gather_rows
must exchange uneven shards. Each rank trains on its own samples; afterwards the
state must be identical on both ranks and equal to what one process computes
from both ranks' samples.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from test_state import C, N, largest_unknown, logits_for, train_observed
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from spml_lightning.losses import (
    AsymmetricPseudoLabelLoss,
    LargeLossPermanentCorrectionLoss,
    OnlineLabelEstimationLoss,
)
from spml_lightning.losses.distributed import all_gather_rows

from ddp_harness import run_ranks

SHARDS = [torch.tensor([5, 9, 12, 30, 31, 2, 7, 20]), torch.tensor([1, 3, 14, 15, 26, 33, 38, 39])]


def _gather_worker(rank: int, world_size: int, out_dir: str) -> None:
    rows = 3 if rank == 0 else 0
    ids = torch.arange(rows) + 10 * rank
    flags = torch.ones(rows, 2, dtype=torch.bool)
    torch.save(all_gather_rows(ids, flags), os.path.join(out_dir, f"gather{rank}.pt"))


def test_all_gather_rows_with_uneven_shards(tmp_path: Path) -> None:
    run_ranks(_gather_worker, tmp_path, str(tmp_path))
    for rank in range(2):
        ids, flags = torch.load(tmp_path / f"gather{rank}.pt")
        assert ids.tolist() == [0, 1, 2] and flags.dtype == torch.bool and flags.shape == (3, 2)


def _ll_cp_worker(rank: int, world_size: int, out_dir: str) -> None:
    loss = LargeLossPermanentCorrectionLoss(delta=0.05).train()
    observed = train_observed()
    loss.bind_train_set(observed)
    loss.set_epoch(1, 8)
    index = SHARDS[rank]
    loss(logits_for(index, rank), observed[index], index)
    torch.save(loss.state_dict(), os.path.join(out_dir, f"llcp{rank}.pt"))


def test_ll_cp_corrections_are_gathered_from_every_rank(tmp_path: Path) -> None:
    run_ranks(_ll_cp_worker, tmp_path, str(tmp_path))
    states = [torch.load(tmp_path / f"llcp{r}.pt") for r in range(2)]
    assert torch.equal(states[0]["corrections"], states[1]["corrections"])
    expected = set()
    observed = train_observed()
    for rank, index in enumerate(SHARDS):
        flips = largest_unknown(logits_for(index, rank).numpy(), observed[index].bool().numpy(), 3)
        expected |= {(int(index[b]), c) for b, c in flips}
    assert {tuple(map(int, e)) for e in states[0]["corrections"].nonzero()} == expected
    assert len(expected) == 6


SCORES = torch.randn(N, C, generator=torch.Generator().manual_seed(7))


def _apl_worker(rank: int, world_size: int, out_dir: str) -> None:
    loss = AsymmetricPseudoLabelLoss(warmup_epochs=1)
    loss.bind_train_set(train_observed())
    loss.set_epoch(1, 4)
    # A DistributedSampler's shard: every other sample, padded by repeating.
    shard = torch.arange(rank, N + 1, 2) % N
    loss.update_from_train_scores(shard, SCORES[shard])
    torch.save(loss.state_dict(), os.path.join(out_dir, f"apl{rank}.pt"))


def test_apl_pseudo_labels_are_identical_and_use_all_shards(tmp_path: Path) -> None:
    run_ranks(_apl_worker, tmp_path, str(tmp_path))
    states = [torch.load(tmp_path / f"apl{r}.pt") for r in range(2)]
    assert torch.equal(states[0]["pseudo_labels"], states[1]["pseudo_labels"])
    single = AsymmetricPseudoLabelLoss(warmup_epochs=1)
    single.bind_train_set(train_observed())
    single.set_epoch(1, 4)
    single.update_from_train_scores(torch.arange(N), SCORES)
    assert torch.equal(states[0]["pseudo_labels"], single.pseudo_labels)
    assert int((single.pseudo_labels != -1).sum()) > 0


class HeadWithLoss(nn.Module):
    """A linear classifier and ROLE, as SPMLModule holds them."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Linear(4, C)
        self.loss = OnlineLabelEstimationLoss()
        self.loss.bind_train_set(train_observed())

    def forward(self, x: torch.Tensor, observed: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self.loss(self.head(x), observed, index)


def features(index: torch.Tensor) -> torch.Tensor:
    return torch.randn(N, 4, generator=torch.Generator().manual_seed(11))[index]


def optimizer_for(model: HeadWithLoss) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        [{"params": model.head.parameters()}, *model.loss.optimizer_groups(1e-2)], lr=1e-2
    )


def _role_worker(rank: int, world_size: int, out_dir: str) -> None:
    model = HeadWithLoss()
    ddp = DistributedDataParallel(model)
    optimizer = optimizer_for(model)
    observed = train_observed()
    for _ in range(2):
        index = SHARDS[rank]
        optimizer.zero_grad()
        ddp(features(index), observed[index], index).backward()
        optimizer.step()
    torch.save(model.loss.state_dict(), os.path.join(out_dir, f"role{rank}.pt"))


def test_role_estimates_stay_identical_and_learn_from_both_ranks(tmp_path: Path) -> None:
    run_ranks(_role_worker, tmp_path, str(tmp_path))
    states = [torch.load(tmp_path / f"role{r}.pt")["label_estimates"] for r in range(2)]
    assert torch.equal(states[0], states[1])
    # One process seeing both shards with the rank-averaged loss gives the same estimates.
    model = HeadWithLoss()
    start = model.loss.label_estimates.detach().clone()
    optimizer = optimizer_for(model)
    observed = train_observed()
    for _ in range(2):
        optimizer.zero_grad()
        sum(model(features(i), observed[i], i) for i in SHARDS).div(2).backward()
        optimizer.step()
    torch.testing.assert_close(states[0], model.loss.label_estimates.detach(), rtol=1e-5, atol=1e-6)
    seen = torch.cat(SHARDS)
    unseen = np.setdiff1d(np.arange(N), seen.numpy())
    assert torch.equal(states[0][unseen], start[unseen])
    assert (states[0][seen] != start[seen]).all()
