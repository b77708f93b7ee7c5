"""Focal loss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from spml_lightning.losses.asl import AsymmetricLoss
from spml_lightning.losses.checks import Reduction, non_negative_float
from spml_lightning.losses.search_space import SearchRange

__all__ = ["FocalLoss"]


class FocalLoss(AsymmetricLoss):
    r"""Focal loss with unknown entries taken as negatives (Lin et al., ICCV 2017).

    "Focal Loss for Dense Object Detection", T.-Y. Lin et al., ICCV 2017, applied
    per label::

        observed positive:  -(1 - p)^γ · log p
        unknown:            -p^γ · log(1 - p)

    summed (``reduction="sum"``) or averaged over the ``B·C`` entries. It is ASL
    with ``γ+ = γ- = γ`` and no clipping, hence the subclass; as in the multi-label
    baselines of Ridnik et al. and Zhang et al. there is no α-balancing. γ = 2.

    Args:
        gamma: γ, >= 0 (0 gives AN).
        reduction: ``"sum"`` or ``"mean"`` over the ``B·C`` entries.
    """

    #: γ around the usual 2.
    search_space: ClassVar[Mapping[str, SearchRange]] = {
        "gamma": SearchRange.uniform(0.0, 4.0),
    }

    def __init__(self, gamma: float = 2.0, reduction: Reduction = "sum") -> None:
        gamma = non_negative_float("gamma", gamma, "focusing exponent")
        super().__init__(gamma_neg=gamma, gamma_pos=gamma, clip=0.0, reduction=reduction)
