"""One cache built by several processes (DDP ranks): each computes a share, one writes.

Used by the feature extraction (``extraction.py``) and the prior scoring
(``spml_lightning.priors.provider``). Rank 0 looks once whether the cache is stale and
tells every process; when it is, each process computes the rows ``rank, rank +
world_size, ...`` of each array into a float32 shard in a folder beside the cache, rank 0
interleaves the shards into the cache (taking the cache's lock, writing atomically:
``store.build_or_reuse``) and removes them, and the others then reuse the cache.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.utilities import rank_zero_info

from spml_lightning.features.store import CachedFeatures, build_or_reuse, read_cache

__all__ = ["SharedExtraction", "shard_name", "shared_build"]


@dataclass(frozen=True)
class SharedExtraction:
    """The processes that share one cache's computation (DDP ranks), and how they meet.

    Each computes the rows ``rank, rank + world_size, ...`` of every array; rank 0
    writes the cache from the shards; the others reuse it.

    Attributes:
        rank: this process's rank, 0 to ``world_size - 1``.
        world_size: the number of processes.
        barrier: returns once every process called it (Lightning: ``strategy.barrier``).
        broadcast: returns rank 0's argument on every process (``strategy.broadcast``).
    """

    rank: int
    world_size: int
    barrier: Callable[[], Any]
    broadcast: Callable[[Any], Any]

    @classmethod
    def of_trainer(cls, trainer: Any) -> SharedExtraction | None:
        """A Lightning trainer's processes, or None when it runs one (or there is no trainer)."""
        if trainer is None or trainer.world_size <= 1:
            return None
        strategy = trainer.strategy
        return cls(trainer.global_rank, trainer.world_size, strategy.barrier, strategy.broadcast)

    def rows(self, count: int) -> list[int]:
        """This process's share of ``count`` rows."""
        return list(range(self.rank, count, self.world_size))


def shard_name(name: str, shared: SharedExtraction) -> str:
    """The file stem of a process's shard of the array ``name``."""
    return f"{name}.rank{shared.rank}"


def shared_build(
    path: Path,
    fingerprint: Mapping[str, Any],
    write: Callable[[Path], list[str]],
    write_share: Callable[[Path, SharedExtraction], list[str]],
    shared: SharedExtraction,
    *,
    dtype: str | None = None,
    cache_name: str = "Feature cache",
    contents: str = "features",
    work: str = "extraction",
) -> CachedFeatures:
    """The cache at ``path``, computed by all of ``shared``'s processes when it is stale.

    Args:
        path: the cache folder.
        fingerprint: what the arrays are made from.
        write: writes every row alone (``build_or_reuse``'s): used when the cache turns
            out valid after all (and to verify it).
        write_share: writes this process's rows of each array, as float32
            ``<name>.rank<k>.npy`` files (:func:`shard_name`), into the folder it is
            given, and returns the arrays' names.
        shared: the processes (every one calls this).
        dtype: the cache's dtype (default: the shards').
        cache_name: how the messages name the cache (``store.build_or_reuse``).
        contents: how they name what it holds.
        work: how they name the computation (``extraction``, ``scoring``).
    """
    decision = None
    if shared.rank == 0:  # one look decides for every process
        stale = read_cache(path, fingerprint, contents)[0] is None
        decision = (stale, str(path.with_name(f"{path.name}.shards-{uuid.uuid4().hex}")))
    stale, shards_name = shared.broadcast(decision)
    reuse = {"cache_name": cache_name, "contents": contents}
    if not stale:
        return build_or_reuse(path, fingerprint, write, **reuse)
    shards = Path(shards_name)
    rank_zero_info(
        f"{cache_name} {path}: {shared.world_size} processes share the {work}, each every "
        f"{shared.world_size}th image; rank 0 writes the cache."
    )
    shards.mkdir(parents=True, exist_ok=True)
    names = write_share(shards, shared)
    shared.barrier()  # every shard is written

    def interleave(folder: Path) -> list[str]:
        for name in names:
            parts = [
                np.load(shards / f"{name}.rank{rank}.npy", mmap_mode="r")
                for rank in range(shared.world_size)
            ]
            shape = (sum(len(part) for part in parts), *parts[0].shape[1:])
            out = np.lib.format.open_memmap(
                folder / f"{name}.npy", "w+", dtype or parts[0].dtype, shape
            )
            for rank, part in enumerate(parts):
                out[rank :: shared.world_size] = part
            out.flush()
            del out, parts
        return names

    cache = None
    if shared.rank == 0:
        try:
            cache = build_or_reuse(path, fingerprint, interleave, **reuse)
        finally:
            shutil.rmtree(shards, ignore_errors=True)
    shared.barrier()  # the cache is in place
    return cache if cache is not None else build_or_reuse(path, fingerprint, write, **reuse)
