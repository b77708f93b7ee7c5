"""Hill loss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from torch import Tensor

from spml_lightning.losses.base import FrameworkLoss
from spml_lightning.losses.checks import Reduction, check_reduction, non_negative_float
from spml_lightning.losses.functional import focal_positive_loss, hill_negative_loss
from spml_lightning.losses.search_space import SearchRange

__all__ = ["HillLoss"]


class HillLoss(FrameworkLoss):
    r"""Hill loss: focal-margin positives, Hill-shaped unknowns (Zhang et al., 2021).

    "Simple and Robust Loss Design for Multi-Label Learning with Missing Labels",
    Y. Zhang et al., arXiv:2112.07368. Per entry::

        observed positive:  -(1 - p_m)^γ · log p_m,    p_m = sigmoid(z - m)
        unknown:            (λ - p) · p²

    summed over the batch (``reduction="sum"``, as the reference) or averaged. In
    the GR framework: ``k̂ = 0``, ``v = 1``, ``L3 = (λ - p)·p²``, and ``L1`` the
    focal-margin loss. Defaults λ = 1.5, m = 1, γ = 2 (the paper's).

    Args:
        lam: λ of the negative part.
        margin: m, the logit margin of positives.
        gamma: γ, the focusing exponent of positives, >= 0.
        reduction: ``"sum"`` (reference) or ``"mean"`` over the ``B·C`` entries.
    """

    #: λ and γ around the paper's 1.5 and 2.
    search_space: ClassVar[Mapping[str, SearchRange]] = {
        "lam": SearchRange.uniform(1.0, 2.0),
        "gamma": SearchRange.uniform(0.0, 4.0),
    }

    def __init__(
        self,
        lam: float = 1.5,
        margin: float = 1.0,
        gamma: float = 2.0,
        reduction: Reduction = "sum",
    ) -> None:
        super().__init__()
        self.lam = non_negative_float("lam", lam, "lambda of Hill's negative loss (lam - p)·p²")
        self.margin = non_negative_float("margin", margin, "logit margin of the positive loss")
        self.gamma = non_negative_float("gamma", gamma, "focusing exponent of the positive loss")
        self.reduction = check_reduction(reduction)

    def observed_loss(self, z: Tensor) -> Tensor:
        """Focal-margin loss ``-(1 - p_m)^γ·log p_m``."""
        return focal_positive_loss(z, self.gamma, self.margin)

    def unknown_loss(self, z: Tensor, unknown: Tensor, index: Tensor | None) -> Tensor:
        """``(λ - p)·p²`` (k̂ = 0, v = 1)."""
        return hill_negative_loss(z, self.lam)

    def extra_repr(self) -> str:
        """Summarise the hyper-parameters for ``print(loss)``."""
        return (
            f"lam={self.lam}, margin={self.margin}, gamma={self.gamma}, "
            f"reduction={self.reduction!r}"
        )
