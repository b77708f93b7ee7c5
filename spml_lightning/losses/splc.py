"""Self-Paced Loss Correction (SPLC)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor

from spml_lightning.losses.base import FrameworkLoss
from spml_lightning.losses.checks import (
    Reduction,
    check_reduction,
    fraction,
    non_negative_float,
    whole_number,
)
from spml_lightning.losses.functional import (
    focal_negative_loss,
    focal_positive_loss,
    pseudo_label_loss,
)
from spml_lightning.losses.search_space import SearchRange

__all__ = ["SelfPacedLossCorrectionLoss"]


class SelfPacedLossCorrectionLoss(FrameworkLoss):
    r"""SPLC: focal losses; confident unknown entries corrected to positives (Zhang et al., 2021).

    "Simple and Robust Loss Design for Multi-Label Learning with Missing Labels",
    Y. Zhang et al., arXiv:2112.07368. Per entry, with ``p̂`` the (detached)
    probability::

        observed positive:  -(1 - p_m)^γ · log p_m,      p_m = sigmoid(z - m)
        unknown, p̂ > τ:     -(1 - p)^γ · log p           (from epoch start_epoch)
        other unknown:      -p^γ · log(1 - p)

    summed over the batch (``reduction="sum"``, as the reference) or averaged. In
    the GR framework the unknown entries have the hard pseudo-label
    ``k̂ = 1[p̂ > τ]`` (0 before ``start_epoch``), ``v = 1``, ``L2`` the focal loss of a
    positive and ``L3`` that of a negative. As in the reference, the corrected
    entries use the positive focal loss WITHOUT the margin (the margin shifts only
    the observed positives' logits). The correction is recomputed at every step
    and stores nothing. Defaults τ = 0.6, correction from the second epoch
    (``start_epoch=1``, 0-based, read from :meth:`set_epoch`), m = 1, γ = 2.

    Args:
        tau: τ, probability above which an unknown entry counts as positive.
        start_epoch: 0-based epoch from which entries are corrected.
        margin: m, the logit margin of observed positives.
        gamma: γ, the focusing exponent, >= 0.
        reduction: ``"sum"`` (reference) or ``"mean"`` over the ``B·C`` entries.
    """

    #: τ and γ around the paper's 0.6 and 2.
    search_space: ClassVar[Mapping[str, SearchRange]] = {
        "tau": SearchRange.uniform(0.5, 0.9),
        "gamma": SearchRange.uniform(0.0, 4.0),
    }

    def __init__(
        self,
        tau: float = 0.6,
        start_epoch: int = 1,
        margin: float = 1.0,
        gamma: float = 2.0,
        reduction: Reduction = "sum",
    ) -> None:
        super().__init__()
        self.tau = fraction("tau", tau, "probability threshold of the loss correction")
        self.start_epoch = whole_number(
            "start_epoch", start_epoch, "first 0-based epoch with correction"
        )
        self.margin = non_negative_float("margin", margin, "logit margin of the positive loss")
        self.gamma = non_negative_float("gamma", gamma, "focusing exponent")
        self.reduction = check_reduction(reduction)
        self._epoch = 0

    def set_epoch(self, epoch: int, max_epochs: int, linear_init: int = 0) -> dict[str, float]:
        """Record the epoch (the correction starts at ``start_epoch``).

        Returns:
            ``{"splc_active": 1.0 or 0.0}``.
        """
        self._epoch = int(epoch)
        return {"splc_active": float(self.correcting)}

    @property
    def correcting(self) -> bool:
        """Whether unknown entries are corrected in the current epoch."""
        return self._epoch >= self.start_epoch

    def observed_loss(self, z: Tensor) -> Tensor:
        """Focal-margin loss ``-(1 - p_m)^γ·log p_m``."""
        return focal_positive_loss(z, self.gamma, self.margin)

    def unknown_loss(self, z: Tensor, unknown: Tensor, index: Tensor | None) -> Tensor:
        """Focal loss against the hard pseudo-label ``1[p̂ > τ]`` (k̂), v = 1."""
        if self.correcting:
            k = (torch.sigmoid(z).detach() > self.tau).float()
        else:
            k = torch.zeros_like(z)
        return pseudo_label_loss(
            k, focal_positive_loss(z, self.gamma), focal_negative_loss(z, self.gamma)
        )

    def extra_repr(self) -> str:
        """Summarise the hyper-parameters for ``print(loss)``."""
        return (
            f"tau={self.tau}, start_epoch={self.start_epoch}, margin={self.margin}, "
            f"gamma={self.gamma}, reduction={self.reduction!r}"
        )
