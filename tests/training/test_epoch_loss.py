"""The epoch's mean training loss, weighted by batch size."""

from __future__ import annotations

import pytest
import torch

from spml_lightning.training.epoch_loss import EpochLossMean


def test_the_mean_is_weighted_by_batch_size_and_starts_again():
    mean = EpochLossMean()
    assert mean.pop() is None
    mean.add(torch.tensor(1.0), 3)
    mean.add(torch.tensor(3.0), 1)
    assert mean.pop().item() == pytest.approx(1.5)
    assert mean.pop() is None
    mean.add(torch.tensor(2.0), 2)
    mean.reset()
    assert mean.pop() is None
