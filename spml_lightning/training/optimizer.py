"""The optimizer of ``SPMLModule``: Adam over named parameter groups at batch-scaled rates.

Three kinds of group, each named so that its rate is logged (``lr/<name>``) and
can be set again on a resumed fit:

* ``backbone`` -- the backbone's trainable parameters, at ``lr``;
* ``head`` -- the linear head, at ``lr * lr_mult`` (the references train the
  fresh head faster than the pretrained backbone);
* a loss's own groups (``SPMLLoss.optimizer_groups``, e.g. ROLE's
  ``label_estimates``), at the multiples of ``lr`` the loss sets.

Every rate is first scaled to the batch of a step by ``lr_scaling``
(:mod:`spml_lightning.training.lr_scaling`). Adam keeps torch's settings (betas
0.9 and 0.999, eps 1e-8), the references'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from spml_lightning.losses import SPMLLoss
from spml_lightning.training.lr_scaling import check_lr_scaling, scaled_lr

__all__ = [
    "ADAM_SETTINGS",
    "OptimizerSettings",
    "adam_optimizer",
    "apply_group_rates",
    "parameter_groups",
]

#: Adam's moment decays and epsilon: torch's defaults, the references'.
ADAM_SETTINGS: dict[str, Any] = {"betas": (0.9, 0.999), "eps": 1e-8}


@dataclass(frozen=True)
class OptimizerSettings:
    """The hyper-parameters the optimizer is built from (``SPMLModule``'s of the same names).

    Attributes:
        lr: Adam learning rate of the backbone, for a batch of ``lr_batch_size``
            images when ``lr_scaling`` is not ``none``.
        lr_mult: the head learns at ``lr_mult * lr``.
        lr_scaling: ``none``, ``sqrt`` or ``linear`` (see ``lr_scaling``).
        lr_batch_size: the batch ``lr`` was set for; needed by every rule but ``none``.
    """

    lr: float
    lr_mult: float = 10.0
    lr_scaling: str = "none"
    lr_batch_size: int | None = None

    def __post_init__(self) -> None:
        if not (0 < self.lr < math.inf and 0 < self.lr_mult < math.inf):  # nan fails too
            raise ValueError(
                f"lr and lr_mult must be finite positive numbers, got lr={self.lr}, "
                f"lr_mult={self.lr_mult}."
            )
        check_lr_scaling(self.lr_scaling, self.lr_batch_size)

    def backbone_lr(self, batch_size: int | None) -> float:
        """``lr`` scaled to ``batch_size`` (None: not known, only with ``lr_scaling`` none)."""
        if self.lr_scaling == "none":
            return self.lr
        if batch_size is None:
            raise ValueError(f"lr_scaling {self.lr_scaling!r} needs the batch size of a step.")
        return scaled_lr(self.lr, self.lr_scaling, batch_size, self.lr_batch_size)


def parameter_groups(
    backbone: nn.Module,
    head: nn.Module,
    loss: SPMLLoss,
    settings: OptimizerSettings,
    batch_size: int | None = None,
) -> list[dict[str, Any]]:
    """The named parameter groups with their rates for a step of ``batch_size`` images.

    Args:
        backbone: its parameters with ``requires_grad`` form the ``backbone`` group.
        head: the ``head`` group.
        loss: its ``optimizer_groups`` (at the scaled ``lr``) follow.
        settings: the rates and their scaling rule.
        batch_size: images per optimiser step (loader batch x processes x
            accumulation); needed unless ``settings.lr_scaling`` is ``none``.
    """
    lr = settings.backbone_lr(batch_size)
    return [
        {
            "params": [p for p in backbone.parameters() if p.requires_grad],
            "lr": lr,
            "name": "backbone",
        },
        {"params": list(head.parameters()), "lr": lr * settings.lr_mult, "name": "head"},
        *loss.optimizer_groups(lr),
    ]


def adam_optimizer(
    backbone: nn.Module,
    head: nn.Module,
    loss: SPMLLoss,
    settings: OptimizerSettings,
    batch_size: int | None = None,
) -> torch.optim.Adam:
    """Adam with :data:`ADAM_SETTINGS` over the :func:`parameter_groups` (same arguments).

    Under an ``lr_scaling`` rule, says the batch and the rates it gives (one line, rank 0).
    """
    groups = parameter_groups(backbone, head, loss, settings, batch_size)
    if settings.lr_scaling != "none":
        rank_zero_info(
            f"lr_scaling {settings.lr_scaling}: batch {batch_size} instead of "
            f"{settings.lr_batch_size}, backbone lr {groups[0]['lr']:.3g} (lr {settings.lr:.3g}), "
            f"head lr {groups[1]['lr']:.3g}."
        )
    return torch.optim.Adam(groups, lr=groups[0]["lr"], **ADAM_SETTINGS)


def apply_group_rates(optimizer: torch.optim.Optimizer, groups: list[dict[str, Any]]) -> int:
    """Set each named group of ``optimizer`` to the rate of its namesake in ``groups``.

    A restored optimizer state carries the checkpoint's rates (and Adam settings);
    a resumed fit with a new ``lr``, ``lr_mult`` or batch size trains at the new
    ones, with :data:`ADAM_SETTINGS`. Groups of an optimizer of one's own
    (unnamed, or other names) are left alone.

    Returns:
        The number of groups set.
    """
    rates = {group["name"]: group["lr"] for group in groups}
    named = [group for group in optimizer.param_groups if group.get("name") in rates]
    for group in named:
        group.update(ADAM_SETTINGS, lr=rates[group["name"]])
    return len(named)
