"""Run a function in 2 CPU processes joined by a gloo process group.

Loss-level DDP tests use this instead of a Lightning strategy: the processes are
forked (a spawned child re-imports torch and the test module, ~10 s on 2 cores),
so a worker may be any module-level function of the test file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _run_rank(
    rank: int, world_size: int, init_file: str, worker: Callable[..., None], args: tuple
) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        torch.set_num_threads(1)
        worker(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def run_ranks(worker: Callable[..., None], tmp_path: Path, *args: Any, world_size: int = 2) -> None:
    """Call ``worker(rank, world_size, *args)`` in ``world_size`` forked processes.

    A worker reports back by writing files (e.g. ``torch.save`` into ``tmp_path``);
    an exception in any rank fails the call.
    """
    init_file = tmp_path / "process_group"
    mp.start_processes(
        _run_rank,
        args=(world_size, str(init_file), worker, args),
        nprocs=world_size,
        start_method="fork",
    )
