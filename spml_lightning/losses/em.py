"""Entropy Maximization (EM) on the unknown labels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor

from spml_lightning.losses.base import FrameworkLoss
from spml_lightning.losses.checks import positive_float
from spml_lightning.losses.functional import (
    neg_log_one_minus_sigmoid,
    neg_log_sigmoid,
    pseudo_label_loss,
)
from spml_lightning.losses.search_space import SearchRange

__all__ = ["EntropyMaximizationLoss"]


class EntropyMaximizationLoss(FrameworkLoss):
    r"""BCE on observed positives, entropy maximization on unknown entries.

    .. math::
        \ell_{bc} = \begin{cases}
            -\log p & s = 1 \\
            -\alpha\, H(p) = \alpha \big[ p \log p + (1-p) \log(1-p) \big] & s = 0
        \end{cases}
        \qquad \ell = \tfrac{1}{BC} \textstyle\sum_{b,c} \ell_{bc}

    In the GR framework: :math:`\hat k = p` (WITH gradient), :math:`v = -\alpha`,
    :math:`L_2 = -\log p`, :math:`L_3 = -\log(1-p)`, since
    :math:`p(-\log p) + (1-p)(-\log(1-p)) = H(p)`. Its gradient on an unknown
    entry is :math:`\alpha\, p (1-p)\, z`: it pushes every unknown away from
    confident predictions of either sign. Zhou et al., "Acknowledging the Unknown
    for Multi-label Learning with Single Positive Labels", ECCV 2022, whose
    per-dataset α are: VOC 0.2, COCO 0.1, NUS-WIDE 0.1, CUB 0.01.

    Args:
        alpha: Weight α of the entropy term, > 0.
    """

    #: α over the published values (VOC 0.2, COCO/NUS 0.1, CUB 0.01).
    search_space: ClassVar[Mapping[str, SearchRange]] = {
        "alpha": SearchRange.log_uniform(0.005, 0.5),
    }

    def __init__(self, alpha: float = 0.2) -> None:
        super().__init__()
        self.alpha = positive_float("alpha", alpha, "weight of the entropy of the unknown labels")

    def unknown_loss(self, z: Tensor, unknown: Tensor, index: Tensor | None) -> Tensor:
        """``-α·H(p)`` (k̂ = p with gradient, v = -α)."""
        entropy = pseudo_label_loss(
            torch.sigmoid(z), neg_log_sigmoid(z), neg_log_one_minus_sigmoid(z)
        )
        return -self.alpha * entropy

    def extra_repr(self) -> str:
        """Summarise the hyper-parameters for ``print(loss)``."""
        return f"alpha={self.alpha}"
