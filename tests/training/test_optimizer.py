"""The optimizer part: named groups at batch-scaled rates, Adam, a resumed fit's rates."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spml_lightning.losses import GRLoss, OnlineLabelEstimationLoss
from spml_lightning.training.optimizer import (
    ADAM_SETTINGS,
    OptimizerSettings,
    adam_optimizer,
    apply_group_rates,
    parameter_groups,
)


def _role() -> OnlineLabelEstimationLoss:
    loss = OnlineLabelEstimationLoss()
    loss.set_num_classes(3)
    loss.bind_train_set(torch.eye(3)[[0, 1, 2, 0]])
    return loss


def test_groups_are_named_and_scaled_to_the_step_s_batch():
    backbone, head = nn.Linear(4, 5), nn.Linear(5, 3)
    backbone.bias.requires_grad_(False)  # a frozen parameter is left out
    settings = OptimizerSettings(lr=1e-3, lr_mult=10.0, lr_scaling="sqrt", lr_batch_size=8)
    groups = parameter_groups(backbone, head, _role(), settings, batch_size=32)
    rates = {group["name"]: group["lr"] for group in groups}
    assert rates == pytest.approx({"backbone": 2e-3, "head": 2e-2, "label_estimates": 2e-3 * 10})
    assert groups[0]["params"] == [backbone.weight]


def test_adam_has_torch_s_settings_and_says_the_scaled_rates(info_lines):
    settings = OptimizerSettings(lr=1e-3, lr_mult=1.0, lr_scaling="linear", lr_batch_size=8)
    adam = adam_optimizer(nn.Linear(4, 5), nn.Linear(5, 3), GRLoss(), settings, batch_size=16)
    assert isinstance(adam, torch.optim.Adam)
    assert {(tuple(g["betas"]), g["eps"], g["lr"]) for g in adam.param_groups} == {
        ((0.9, 0.999), 1e-8, 2e-3)
    }
    assert any(line.startswith("lr_scaling linear: batch 16 instead of 8") for line in info_lines)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "lr and lr_mult must be finite positive numbers"),
        ({"lr": 1e-3, "lr_mult": -1.0}, "lr and lr_mult must be finite positive numbers"),
        ({"lr": 1e-3, "lr_scaling": "sqrt"}, "give model.lr_batch_size"),
        ({"lr": 1e-3, "lr_scaling": "sqrt_betas", "lr_batch_size": 8}, "one of none, sqrt, linear"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OptimizerSettings(**kwargs)


def test_a_rule_without_the_batch_is_refused():
    settings = OptimizerSettings(lr=1e-3, lr_scaling="sqrt", lr_batch_size=8)
    with pytest.raises(ValueError, match="needs the batch size"):
        parameter_groups(nn.Linear(2, 2), nn.Linear(2, 2), GRLoss(), settings)


def test_a_resumed_fit_s_rates_and_adam_settings_replace_the_restored_ones():
    backbone, head, own = nn.Linear(4, 5), nn.Linear(5, 3), nn.Linear(2, 2)
    restored = torch.optim.Adam(
        [
            {"params": backbone.parameters(), "lr": 1.0, "name": "backbone", "betas": (0.8, 0.99)},
            {"params": head.parameters(), "lr": 1.0, "name": "head", "eps": 1e-9},
            {"params": own.parameters(), "lr": 1.0},  # a group of one's own
        ]
    )
    settings = OptimizerSettings(lr=1e-3, lr_mult=2.0)
    assert apply_group_rates(restored, parameter_groups(backbone, head, GRLoss(), settings)) == 2
    backbone_group, head_group, own_group = restored.param_groups
    assert backbone_group["lr"] == 1e-3 and math.isclose(head_group["lr"], 2e-3)
    for group in (backbone_group, head_group):
        assert tuple(group["betas"]) == ADAM_SETTINGS["betas"] and group["eps"] == 1e-8
    assert own_group["lr"] == 1.0
