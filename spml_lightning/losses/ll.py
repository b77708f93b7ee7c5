"""Large Loss Rejection / Correction (LL-R, LL-Ct, LL-Cp)."""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor

from spml_lightning.losses.base import FrameworkLoss
from spml_lightning.losses.checks import fraction
from spml_lightning.losses.distributed import all_gather_rows
from spml_lightning.losses.functional import (
    neg_log_one_minus_sigmoid,
    neg_log_sigmoid,
    pseudo_label_loss,
)
from spml_lightning.losses.search_space import SearchRange
from spml_lightning.losses.state import PerSampleStateLoss, StateKind

__all__ = [
    "LargeLossModificationLoss",
    "LargeLossPermanentCorrectionLoss",
    "LargeLossRejectionLoss",
    "LargeLossTemporaryCorrectionLoss",
]


class LargeLossModificationLoss(FrameworkLoss):
    r"""AN loss with the largest-loss unknown entries of each batch modified.

    Kim et al., "Large Loss Matters in Weakly Supervised Multi-Label
    Classification", CVPR 2022. Unknown entries are assumed negative (AN,
    ``-log(1 - p)``), except the ``k`` unknown entries of the batch with the largest
    AN loss, which are likely false negatives: they are rejected (LL-R, weight
    ``v = 0``) or corrected to positives (LL-Ct / LL-Cp, ``k̂ = 1``: loss ``-log p``).
    Observed positives keep ``-log p``; the mean is over all ``B·C`` entries.

    ``k = ⌈B·C·r⌉`` (at most the number of unknown entries), with ``r`` the share
    modified in the current epoch (:meth:`modified_fraction`, from :meth:`set_epoch`);
    the first epoch is never modified. The ceiling is taken after rounding
    ``B·C·r`` to 9 decimals, so that float noise in ``r`` cannot add an entry.
    Ties at the k-th loss are broken by ``torch.topk`` (exactly k entries).

    Args:
        delta: Δ, the growth of the modified share per epoch (a fraction: 0.005
            is 0.5 %).
    """

    #: Δ over the three papers' values and the steps between them (LL-R/Ct/Cp alike).
    search_space: ClassVar[Mapping[str, SearchRange]] = {
        "delta": SearchRange.choice(0.001, 0.002, 0.003, 0.004, 0.005),
    }

    corrects: ClassVar[bool] = True
    """True: modified entries become positives; False: they are dropped."""

    def __init__(self, delta: float) -> None:
        super().__init__()
        self.delta = fraction("delta", delta, "share of the batch's entries modified per epoch")
        self._epoch = 0

    @abc.abstractmethod
    def modified_fraction(self) -> float:
        """r, the share of the batch's ``B·C`` entries modified in the current epoch."""

    def set_epoch(self, epoch: int, max_epochs: int, linear_init: int = 0) -> dict[str, float]:
        """Record the epoch, which sets the modified share.

        Returns:
            ``{"ll_modified_fraction": r}``.
        """
        self._epoch = int(epoch)
        return {"ll_modified_fraction": self.modified_fraction()}

    def num_modified(self, num_entries: int) -> int:
        """``k = ⌈B·C·r⌉`` for a batch of ``num_entries = B·C`` entries."""
        return math.ceil(round(num_entries * self.modified_fraction(), 9))

    def large_loss_mask(self, an_loss: Tensor, unknown: Tensor) -> Tensor:
        """Boolean mask of the k unknown entries with the largest AN loss.

        Args:
            an_loss: ``(B, C)`` AN losses of the entries (no gradient needed).
            unknown: ``(B, C)`` boolean mask of the unknown entries.

        Returns:
            ``(B, C)`` boolean mask with ``min(k, number of unknown entries)`` entries set.
        """
        k = min(self.num_modified(an_loss.numel()), an_loss.numel())
        mask = torch.zeros_like(unknown)
        if k > 0:
            # Positives rank last (-inf) and are dropped again below: no count of the
            # unknown entries is needed, hence no device synchronisation.
            candidates = torch.where(unknown, an_loss.detach(), -torch.inf).flatten()
            mask.view(-1)[torch.topk(candidates, k).indices] = True
        return mask & unknown

    def unknown_loss(self, z: Tensor, unknown: Tensor, index: Tensor | None) -> Tensor:
        """AN, with the large-loss entries dropped (v = 0) or corrected (k̂ = 1)."""
        negative = neg_log_one_minus_sigmoid(z)
        modified = self.large_loss_mask(negative, unknown)
        self.on_modified(modified, index)
        if self.corrects:
            return pseudo_label_loss(modified.float(), neg_log_sigmoid(z), negative)
        return (~modified).float() * negative

    def on_modified(self, modified: Tensor, index: Tensor | None) -> None:
        """Hook called with the entries modified in this batch (default: nothing)."""
        return None

    def extra_repr(self) -> str:
        """Summarise the hyper-parameters for ``print(loss)``."""
        return f"delta={self.delta}"


class LargeLossRejectionLoss(LargeLossModificationLoss):
    """LL-R (Kim et al., CVPR 2022): drop the largest-loss unknown entries.

    ``r = (e - 1)·Δ`` in the 1-based epoch e, Δ = 0.5 %. Per entry: ``-log p`` on
    observed positives, ``0`` on the ``k`` rejected entries, ``-log(1 - p)`` on the
    other unknowns (v = 0 on rejected entries); see :class:`LargeLossModificationLoss`.
    """

    corrects: ClassVar[bool] = False

    def __init__(self, delta: float = 0.005) -> None:
        super().__init__(delta=delta)

    def modified_fraction(self) -> float:
        """``r = epoch·Δ`` (0-based epoch): 0 in the first epoch, growing by Δ."""
        return self._epoch * self.delta


class LargeLossTemporaryCorrectionLoss(LargeLossModificationLoss):
    """LL-Ct (Kim et al., CVPR 2022): the largest-loss unknown entries are positives for this step.

    ``r = (e - 1)·Δ`` in the 1-based epoch e, Δ = 0.2 %. Per entry: ``-log p`` on
    observed positives and on the ``k`` corrected entries (k̂ = 1), ``-log(1 - p)`` on
    the other unknowns; see :class:`LargeLossModificationLoss`.
    """

    def __init__(self, delta: float = 0.002) -> None:
        super().__init__(delta=delta)

    def modified_fraction(self) -> float:
        """``r = epoch·Δ`` (0-based epoch): 0 in the first epoch, growing by Δ."""
        return self._epoch * self.delta


class LargeLossPermanentCorrectionLoss(PerSampleStateLoss, LargeLossModificationLoss):
    """LL-Cp (Kim et al., CVPR 2022): flip the largest-loss unknown entries to positives for good.

    ``r = Δ`` from the second epoch on (0 in the first), Δ = 0.1 %: in each batch
    ``k = ⌈B·C·Δ⌉`` unknown entries are corrected as in LL-Ct (loss ``-log p``).
    The flips are per-sample state (``corrections``, ``N x C`` booleans): a flipped
    entry counts as an observed positive in every later step (and epoch), and is
    saved in checkpoints. Flips are made only in training mode; under DDP every
    rank gathers the flips of all ranks after each step, so the corrections stay
    identical everywhere.
    """

    sample_state: ClassVar[dict[str, StateKind]] = {"corrections": "buffer"}
    # Registered by bind_train_set (or loaded from a checkpoint).
    corrections: Tensor

    def __init__(self, delta: float = 0.001) -> None:
        super().__init__(delta=delta)

    def modified_fraction(self) -> float:
        """``r = Δ`` from the second epoch on, 0 in the first."""
        return self.delta if self._epoch >= 1 else 0.0

    def initial_sample_state(self, observed: Tensor) -> dict[str, Tensor]:
        """No entry corrected yet."""
        return {"corrections": torch.zeros(observed.shape, dtype=torch.bool)}

    def positive_mask(self, observed: Tensor, index: Tensor | None) -> Tensor:
        """Observed positives and the entries corrected in earlier steps."""
        rows = self.sample_rows(index, observed.shape[0])
        return (observed > 0.5) | self.corrections[rows].to(observed.device)

    def on_modified(self, modified: Tensor, index: Tensor | None) -> None:
        """Store this step's flips, gathered from every rank (training mode only)."""
        if not self.training:
            return
        rows = self.sample_rows(index, modified.shape[0])
        batch_pos, classes = modified.nonzero(as_tuple=True)
        samples, classes = all_gather_rows(rows[batch_pos.to(rows.device)], classes.to(rows.device))
        self.corrections[samples, classes] = True
