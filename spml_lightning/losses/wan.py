"""Weak Assume Negative (WAN): unknown labels are down-weighted negatives."""

from __future__ import annotations

from torch import Tensor

from spml_lightning.losses.base import FrameworkLoss
from spml_lightning.losses.functional import neg_log_one_minus_sigmoid

__all__ = ["WeakAssumeNegativeLoss"]


class WeakAssumeNegativeLoss(FrameworkLoss):
    r"""AN with the unknown entries weighted by :math:`1/(C-1)`.

    .. math::
        \ell = \frac{1}{BC} \sum_{b,c} \Big[ s_{bc} (-\log p_{bc})
            + (1 - s_{bc}) \frac{-\log(1 - p_{bc})}{C - 1} \Big]

    In the GR framework: :math:`\hat k = 0`, :math:`v = 1/(C-1)`,
    :math:`L_3 = -\log(1-p)`. Each image then weighs its one observed positive as
    much as all its unknowns together. Cole et al., "Multi-Label Learning from
    Single Positive Labels", CVPR 2021 (the "WAN" baseline).
    """

    def unknown_loss(self, z: Tensor, unknown: Tensor, index: Tensor | None) -> Tensor:
        """``-log(1 - p) / (C - 1)`` (k̂ = 0, v = 1/(C-1)).

        Raises:
            ValueError: With a single class, where the weight is undefined.
        """
        num_classes = z.shape[1]
        if num_classes < 2:
            raise ValueError(
                "WeakAssumeNegativeLoss needs at least 2 classes (its weight is 1 / (C - 1))."
            )
        return neg_log_one_minus_sigmoid(z) / (num_classes - 1)
