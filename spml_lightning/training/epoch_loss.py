"""The epoch's mean training loss, summed on the device, and its logging.

Reading a loss back every step costs a device synchronisation per step; the
sum stays on the device until the epoch ends.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["EpochLossMean"]


class EpochLossMean:
    """The batch-size-weighted mean of the losses added since the last :meth:`pop`."""

    def __init__(self) -> None:
        self._sum: Tensor | None = None
        self._count = 0

    def add(self, loss: Tensor, batch_size: int) -> None:
        """Add a batch's (detached, scalar) mean loss over ``batch_size`` samples."""
        if self._sum is None:
            self._sum = torch.zeros((), device=loss.device)
        self._sum += loss * batch_size
        self._count += batch_size

    def pop(self) -> Tensor | None:
        """The mean so far (None: nothing added), and start again."""
        mean = None if self._sum is None or not self._count else self._sum / self._count
        self.reset()
        return mean

    def reset(self) -> None:
        """Forget what was added (an interrupted fit left a partial sum)."""
        self._sum, self._count = None, 0

    def log_step(self, module: Any, loss: Tensor, batch_size: int) -> None:
        """Add a batch's loss; log it as ``train/loss_step`` on the trainer's logging steps.

        Never reads the loss back per step (a progress-bar value would sync the device
        every step), and calls ``module.log`` only when the logger writes the value: each
        call costs Python time (``bench/step_overhead.py``).

        Args:
            module: the LightningModule that logs.
            loss: the batch's detached scalar mean loss.
            batch_size: the samples it averages.
        """
        self.add(loss, batch_size)
        trainer = getattr(module, "_trainer", None)
        every = trainer.log_every_n_steps if trainer is not None else 0
        if every and (module.global_step + 1) % every == 0:
            module.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=batch_size)

    def log_epoch(self, module: Any) -> None:
        """Log the mean as ``train/loss_epoch`` (Lightning's on-epoch name and weighting)."""
        if (mean := self.pop()) is not None:
            module.log("train/loss_epoch", mean, on_step=False, on_epoch=True, prog_bar=True)
