"""The epoch's mean training loss, summed on the device.

Reading a loss back every step costs a device synchronisation per step; the
sum stays on the device until the epoch ends.
"""

from __future__ import annotations

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
