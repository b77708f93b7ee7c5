"""Asymmetric Loss (ASL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from torch import Tensor

from spml_lightning.losses.base import FrameworkLoss
from spml_lightning.losses.checks import (
    Reduction,
    check_reduction,
    fraction,
    non_negative_float,
)
from spml_lightning.losses.functional import focal_negative_loss, focal_positive_loss
from spml_lightning.losses.search_space import SearchRange

__all__ = ["AsymmetricLoss"]


class AsymmetricLoss(FrameworkLoss):
    r"""Asymmetric focusing and probability shifting (Ridnik et al., ICCV 2021).

    "Asymmetric Loss For Multi-Label Classification", T. Ridnik et al., ICCV 2021.
    Unknown entries are taken as negatives::

        observed positive:  -(1 - p)^γ+ · log p
        unknown:            -p_c^γ- · log(1 - p_c),     p_c = max(p - clip, 0)

    summed over the batch (``reduction="sum"``, as the reference) or averaged. In
    the GR framework: ``k̂ = 0``, ``v = 1``, ``L3`` the shifted focal negative loss.
    The focusing weights carry gradient (the loss as written in the paper).
    Defaults γ- = 4, γ+ = 0, clip = 0.05, the paper's multi-label setting, which the
    SPML comparisons (Zhang et al., arXiv:2112.07368; Chen et al., IJCAI 2024) reuse.

    Args:
        gamma_neg: γ-, focusing exponent of the unknown (negative) entries, >= 0.
        gamma_pos: γ+, focusing exponent of the positives, >= 0.
        clip: Probability margin of the negatives, in [0, 1).
        reduction: ``"sum"`` (reference) or ``"mean"`` over the ``B·C`` entries.
    """

    #: γ- and the clip around the paper's 4 and 0.05.
    search_space: ClassVar[Mapping[str, SearchRange]] = {
        "gamma_neg": SearchRange.uniform(0.0, 6.0),
        "clip": SearchRange.uniform(0.0, 0.2),
    }

    def __init__(
        self,
        gamma_neg: float = 4.0,
        gamma_pos: float = 0.0,
        clip: float = 0.05,
        reduction: Reduction = "sum",
    ) -> None:
        super().__init__()
        self.gamma_neg = non_negative_float(
            "gamma_neg", gamma_neg, "focusing exponent of the negatives"
        )
        self.gamma_pos = non_negative_float(
            "gamma_pos", gamma_pos, "focusing exponent of the positives"
        )
        self.clip = fraction("clip", clip, "probability margin of the negatives", allow_zero=True)
        self.reduction = check_reduction(reduction)

    def observed_loss(self, z: Tensor) -> Tensor:
        """``-(1 - p)^γ+·log p``."""
        return focal_positive_loss(z, self.gamma_pos)

    def unknown_loss(self, z: Tensor, unknown: Tensor, index: Tensor | None) -> Tensor:
        """``-p_c^γ-·log(1 - p_c)`` (k̂ = 0, v = 1)."""
        return focal_negative_loss(z, self.gamma_neg, self.clip)

    def extra_repr(self) -> str:
        """Summarise the hyper-parameters for ``print(loss)``."""
        return (
            f"gamma_neg={self.gamma_neg}, gamma_pos={self.gamma_pos}, clip={self.clip}, "
            f"reduction={self.reduction!r}"
        )
