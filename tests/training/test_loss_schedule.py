"""The loss schedule part: the span it covers, one move per epoch, a checkpoint's restore."""

from __future__ import annotations

import pytest
import torch

from spml_lightning.losses import AsymmetricPseudoLabelLoss, GRLoss
from spml_lightning.training.loss_schedule import LossSchedule, schedule_epochs


def test_the_span_is_schedule_epochs_else_max_epochs_and_leaves_epochs_after_linear_init():
    assert schedule_epochs(None, 8) == 8
    assert schedule_epochs(5, 8, linear_init=2) == 5
    with pytest.raises(ValueError, match="set --trainer.max_epochs"):
        schedule_epochs(None, -1)
    with pytest.raises(ValueError, match="linear_init \\(3\\) must be smaller .* \\(3\\)"):
        schedule_epochs(None, 3, linear_init=3)


def test_apply_moves_the_loss_and_says_for_which_epoch():
    loss, schedule = GRLoss(), LossSchedule()
    assert schedule.state is None and not schedule.is_set_for(0)
    values = schedule.apply(loss, 2, 3, 0)
    assert values == pytest.approx({**values, "w": 4 / 3, "mu": 0.8})
    assert schedule.state == {"epoch": 2, "max_epochs": 3, "linear_init": 0}
    assert schedule.is_set_for(2) and not schedule.is_set_for(1)


def test_scores_are_asked_for_only_when_given_and_the_loss_needs_them():
    loss = AsymmetricPseudoLabelLoss(warmup_epochs=1)
    loss.set_num_classes(2)
    loss.bind_train_set(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    asked = []

    def score():
        asked.append(True)
        return torch.arange(2), torch.zeros(2, 2)

    schedule = LossSchedule()
    schedule.apply(loss, 1, 4, 0, None)  # mid-epoch: never rescored
    assert not asked
    schedule.apply(loss, 1, 4, 0, score)
    assert asked == [True]


def test_restore_sets_the_loss_to_the_checkpoint_s_epoch_without_claiming_it_ran():
    loss, schedule = GRLoss(), LossSchedule()
    schedule.restore(loss, {"epoch": 2, "max_epochs": 3, "linear_init": 0})
    assert schedule.state == {"epoch": 2, "max_epochs": 3, "linear_init": 0}
    assert not schedule.is_set_for(2)  # a mid-epoch resume still applies it in this process
