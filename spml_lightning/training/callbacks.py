"""Training callbacks of the SPML protocol.

The reference's stopping rule, and one checkpoint for all ranks.
"""

from __future__ import annotations

import math
from typing import Any

import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from spml_lightning.training.checkpoint_files import read_checkpoint

__all__ = ["DropFromBestStopping", "SameCheckpointOnEveryRank", "check_same_checkpoint"]


class DropFromBestStopping(Callback):
    """Stop when the monitored metric falls more than ``max_drop`` below its best.

    This is the stopping rule of the reference code (stop when val mAP is more
    than 2 points below the best epoch so far), which Lightning's
    ``EarlyStopping`` (patience-based) does not express. The metric is the same
    on every rank (it is computed on gathered predictions), so every rank takes
    the same decision.

    Args:
        monitor: logged metric to watch.
        max_drop: largest tolerated drop below the best value; ``inf`` disables stopping.
        mode: ``max`` if larger is better, ``min`` otherwise.
    """

    def __init__(self, monitor: str = "val/mAP", max_drop: float = 2.0, mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}.")
        if not max_drop >= 0:
            raise ValueError(f"max_drop must be >= 0 (inf disables stopping), got {max_drop}.")
        self.monitor = monitor
        self.max_drop = float(max_drop)
        self.mode = mode
        self.best: float | None = None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Track the best value of the metric; stop the fit once it drops more than max_drop."""
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if not math.isfinite(value):
            return
        sign = 1.0 if self.mode == "max" else -1.0
        if self.best is None or sign * (value - self.best) > 0:
            self.best = value
        elif sign * (self.best - value) > self.max_drop:
            rank_zero_info(
                f"Stopping: {self.monitor} = {value:.3f} is more than {self.max_drop} below "
                f"the best {self.best:.3f}."
            )
            trainer.should_stop = True

    def state_dict(self) -> dict:
        """The best value so far, so that a resumed fit stops where the full one would."""
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the best value so far from a checkpoint."""
        self.best = state_dict.get("best")


def _training_position(ckpt_path: str | None) -> tuple | None:
    """What a checkpoint starts a run from: (epoch, global step), or None without one."""
    if ckpt_path is None:
        return None
    if "://" in str(ckpt_path):
        return (str(ckpt_path),)  # remote: every process reads the same object
    checkpoint = read_checkpoint(ckpt_path)
    return (checkpoint.get("epoch"), checkpoint.get("global_step"))


def check_same_checkpoint(ckpt_path: str | None) -> None:
    """Raise on every rank unless all ranks start from the same checkpoint.

    Each process resolves ``--ckpt_path best|last`` in its own view of
    ``default_root_dir``. On several machines whose ``default_root_dir`` is not
    one shared folder, only the machine of global rank 0 (the one that writes
    checkpoints) finds them: the others would start from scratch (``fit
    --ckpt_path last``) or from an older run while rank 0 resumes, and the ranks
    would train different epochs and hang in a collective. Checkpoints are
    compared by the (epoch, global step) they hold, so a shared folder mounted
    at different paths, or a copy per machine, passes. A collective: every rank
    must call it (a no-op without a process group or with one process).

    Args:
        ckpt_path: the checkpoint this process resolved, or None.

    Raises:
        RuntimeError: on every rank, listing what each rank found.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    found: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(found, (ckpt_path, _training_position(ckpt_path)))
    if len({position for _, position in found}) == 1:
        return
    lines = "\n".join(
        f"  rank {rank}: {path or 'no checkpoint (starts from scratch)'}"
        + (f" (epoch {position[0]}, step {position[1]})" if position and len(position) == 2 else "")
        for rank, (path, position) in enumerate(found)
    )
    raise RuntimeError(
        "The processes of this run would start from different checkpoints:\n"
        f"{lines}\nEach process looks for --ckpt_path best|last under its own "
        "--trainer.default_root_dir; on several machines it must be a folder every machine shares "
        "(or pass --ckpt_path with a file every machine has)."
    )


class SameCheckpointOnEveryRank(Callback):
    """Runs :func:`check_same_checkpoint` on the checkpoint a run resolved.

    It does so in ``setup``, once the ranks are joined.

    Args:
        ckpt_path: the checkpoint this process resolved, or None.
    """

    def __init__(self, ckpt_path: str | None) -> None:
        self.ckpt_path = ckpt_path

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Raise on every rank unless all ranks resolved the same checkpoint."""
        check_same_checkpoint(self.ckpt_path)
