"""Training callbacks of the SPML protocol."""

from __future__ import annotations

import math

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["DropFromBestStopping"]


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
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best = state_dict.get("best")
