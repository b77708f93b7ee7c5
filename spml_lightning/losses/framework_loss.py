"""The shape shared by the losses of the GR framework."""

from __future__ import annotations

import abc

import torch
from torch import Tensor

from spml_lightning.losses.base import SPMLLoss, autocast_disabled
from spml_lightning.losses.checks import Reduction
from spml_lightning.losses.framework import neg_log_sigmoid

__all__ = ["FrameworkLoss"]


class FrameworkLoss(SPMLLoss):
    r"""An SPML loss in the shape of the GR framework (SPEC §2-§3).

    For the entry (b, c) with logit ``z`` and observed label ``s``::

        positive (s = 1):  L1(z)                                  observed_loss
        unknown  (s = 0):  v · [ k̂·L2(z) + (1 - k̂)·L3(z) ]        unknown_loss

    reduced over all ``B·C`` entries (``reduction``: mean, the default, or sum),
    plus an optional batch-level term (EPR's regulariser, :meth:`batch_loss`).
    Subclasses pick ``k̂``, ``v`` and ``L1``-``L3`` from the blocks of
    :mod:`spml_lightning.losses.framework` and may redefine which entries count as
    positive (:meth:`positive_mask`, for LL-Cp's permanent corrections). Everything
    runs in fp32 with autocast disabled.
    """

    reduction: Reduction = "mean"

    def positive_mask(self, observed: Tensor, index: Tensor | None) -> Tensor:
        """Entries treated as positives (default: the observed positives).

        Args:
            observed: ``(B, C)`` fp32 observed labels.
            index: ``(B,)`` dataset indices, or None.

        Returns:
            Boolean ``(B, C)`` mask.
        """
        return observed > 0.5

    def observed_loss(self, z: Tensor) -> Tensor:
        """``L1``, the loss of a positive entry (default ``-log p``)."""
        return neg_log_sigmoid(z)

    @abc.abstractmethod
    def unknown_loss(self, z: Tensor, unknown: Tensor, index: Tensor | None) -> Tensor:
        """``v·[k̂·L2 + (1 - k̂)·L3]``, the loss of the unknown entries.

        Args:
            z: ``(B, C)`` fp32 logits.
            unknown: Boolean ``(B, C)`` mask of the unknown entries (the values at
                the other entries are discarded).
            index: ``(B,)`` dataset indices, or None.

        Returns:
            ``(B, C)`` element-wise losses, finite everywhere.
        """

    def batch_loss(self, z: Tensor) -> Tensor | None:
        """A batch-level term added to the reduced loss (default: none)."""
        return None

    def forward(self, logits: Tensor, observed: Tensor, index: Tensor | None = None) -> Tensor:
        """Compute the loss of a batch.

        Args:
            logits: ``(B, C)`` raw scores, any float dtype.
            observed: ``(B, C)`` observed labels in {0, 1}.
            index: ``(B,)`` dataset indices (used by losses with per-sample state).

        Returns:
            The fp32 scalar loss.
        """
        z, s = self.prepare_inputs(logits, observed)
        with autocast_disabled(z):
            positive = self.positive_mask(s, index)
            entries = torch.where(positive, self.observed_loss(z), self.unknown_loss(z, ~positive, index))
            loss = entries.sum() if self.reduction == "sum" else entries.mean()
            extra = self.batch_loss(z)
            return loss if extra is None else loss + extra
