"""Assume Negative (AN): every unknown label is treated as a negative."""

from __future__ import annotations

import torch
from torch import Tensor

from spml_lightning.losses.base import SPMLLoss, autocast_disabled
from spml_lightning.losses.framework import neg_log_one_minus_sigmoid, neg_log_sigmoid

__all__ = ["AssumeNegativeLoss"]


class AssumeNegativeLoss(SPMLLoss):
    r"""Binary cross-entropy with every unknown label taken as negative.

    .. math::
        \ell = \frac{1}{BC} \sum_{b,c} \big[ s_{bc} (-\log p_{bc}) + (1 - s_{bc}) (-\log(1 - p_{bc})) \big]

    In the GR framework: :math:`\hat k = 0`, :math:`v = 1`, :math:`L_3 = -\log(1-p)`.
    The standard SPML baseline of Cole et al., "Multi-Label Learning from Single
    Positive Labels", CVPR 2021. Computed in logit space
    (``softplus(-z)``/``softplus(z)``), so it stays finite for any logit.
    """

    def forward(self, logits: Tensor, observed: Tensor, index: Tensor | None = None) -> Tensor:
        z, s = self.prepare_inputs(logits, observed)
        with autocast_disabled(z):
            positive = s > 0.5
            return torch.where(positive, neg_log_sigmoid(z), neg_log_one_minus_sigmoid(z)).mean()
