"""Exchanging per-sample loss-state updates between DDP ranks.

Losses with per-sample state keep the WHOLE state on every rank and apply every
rank's updates: each rank contributes the rows it changed (dataset indices and
new values) and receives everybody's with :func:`all_gather_rows`. Nothing here
relies on DDP broadcasting buffers. Without an initialised process group
everything is a no-op, so the losses work unchanged in a single process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["all_gather_rows", "first_occurrences", "world_size"]


def world_size() -> int:
    """Number of ranks of the default process group (1 without one)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def all_gather_rows(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Concatenate, in rank order, the rows every rank passes.

    Every rank must call this at the same point (it is a collective). Ranks may
    pass different numbers of rows (even none); the tensors passed together must
    all have that same number of rows, and the same trailing shape and dtype on
    every rank. Boolean tensors travel as ``uint8`` (not every backend has bool).

    Args:
        *tensors: Tensors whose first dimension indexes the rows.

    Returns:
        One tensor per input with the rows of all ranks, rank 0's first.

    Raises:
        ValueError: If the tensors disagree on their number of rows.
    """
    if not tensors:
        return ()
    rows = tensors[0].shape[0]
    if any(t.shape[0] != rows for t in tensors):
        raise ValueError(
            f"all_gather_rows needs tensors with the same number of rows, found "
            f"{[t.shape[0] for t in tensors]}."
        )
    ranks = world_size()
    if ranks == 1:
        return tensors
    device = tensors[0].device
    count = torch.tensor([rows], dtype=torch.long, device=device)
    counts = [torch.zeros_like(count) for _ in range(ranks)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    most = max(sizes)
    gathered = []
    for tensor in tensors:
        send = tensor.to(torch.uint8) if tensor.dtype == torch.bool else tensor
        # all_gather needs equal shapes: pad to the longest contribution, then trim.
        padded = send.new_zeros((most, *send.shape[1:]))
        padded[:rows] = send
        received = [torch.empty_like(padded) for _ in range(ranks)]
        dist.all_gather(received, padded.contiguous())
        joined = torch.cat([part[:size] for part, size in zip(received, sizes, strict=True)])
        gathered.append(joined.to(torch.bool) if tensor.dtype == torch.bool else joined)
    return tuple(gathered)


def first_occurrences(index: Tensor) -> Tensor:
    """Positions of the first occurrence of each value of ``index``, ordered by value.

    A DistributedSampler pads the shards by repeating samples; after gathering,
    keeping one row per dataset index makes results independent of the number of
    ranks.

    Args:
        index: ``(n,)`` integer tensor.

    Returns:
        ``(m,)`` positions into ``index``, one per distinct value, by increasing value.
    """
    order = torch.argsort(index, stable=True)
    sorted_index = index[order]
    keep = torch.ones_like(sorted_index, dtype=torch.bool)
    keep[1:] = sorted_index[1:] != sorted_index[:-1]
    return order[keep]
