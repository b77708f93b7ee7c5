"""Assume Negative (AN): every unknown label is treated as a negative."""

from __future__ import annotations

from torch import Tensor

from spml_lightning.losses.base import FrameworkLoss
from spml_lightning.losses.functional import neg_log_one_minus_sigmoid

__all__ = ["AssumeNegativeLoss"]


class AssumeNegativeLoss(FrameworkLoss):
    r"""Binary cross-entropy with every unknown label taken as negative.

    .. math::
        \ell = \frac{1}{BC} \sum_{b,c} \big[ s_{bc} (-\log p_{bc})
            + (1 - s_{bc}) (-\log(1 - p_{bc})) \big]

    In the GR framework: :math:`\hat k = 0`, :math:`v = 1`, :math:`L_3 = -\log(1-p)`.
    The standard SPML baseline of Cole et al., "Multi-Label Learning from Single
    Positive Labels", CVPR 2021. Computed in logit space
    (``softplus(-z)``/``softplus(z)``), so it stays finite for any logit.
    """

    def unknown_loss(self, z: Tensor, unknown: Tensor, index: Tensor | None) -> Tensor:
        """``L3 = -log(1 - p)`` (k̂ = 0, v = 1)."""
        return neg_log_one_minus_sigmoid(z)
