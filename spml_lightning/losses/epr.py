"""Expected Positive Regularization (EPR)."""

from __future__ import annotations

import torch
from torch import Tensor

from spml_lightning.losses.base import FrameworkLoss
from spml_lightning.losses.checks import positive_float
from spml_lightning.losses.functional import expected_positive_regularizer

__all__ = ["ExpectedPositiveRegularizationLoss"]


class ExpectedPositiveRegularizationLoss(FrameworkLoss):
    r"""Observed positives only, plus a penalty on the expected number of positives.

    .. math::
        \ell = \frac{1}{BC} \sum_{b,c} s_{bc} (-\log p_{bc})
            + \frac{1}{C^2} \Big( \frac{1}{B} \sum_{b} \sum_{c} p_{bc} - k \Big)^2

    In the GR framework: :math:`v = 0` on unknown entries, plus the batch-level
    regulariser. Cole et al., "Multi-Label Learning from Single Positive Labels",
    CVPR 2021. k is the expected number of positives per image, which they take
    from the training labels: VOC 1.5, COCO 2.9, NUS-WIDE 1.9, CUB 31.4
    (``configs/losses/epr*.yaml``).

    Args:
        expected_positives: k, > 0.
    """

    def __init__(self, expected_positives: float = 1.5) -> None:
        super().__init__()
        self.expected_positives = positive_float(
            "expected_positives", expected_positives, "expected number of positives per image"
        )

    def unknown_loss(self, z: Tensor, unknown: Tensor, index: Tensor | None) -> Tensor:
        """Zero: unknown entries enter only through the regulariser (v = 0)."""
        return torch.zeros_like(z)

    def batch_loss(self, z: Tensor) -> Tensor:
        """``(mean_b Σ_c p - k)² / C²``."""
        return expected_positive_regularizer(torch.sigmoid(z), self.expected_positives)

    def extra_repr(self) -> str:
        """Summarise the hyper-parameters for ``print(loss)``."""
        return f"expected_positives={self.expected_positives}"
