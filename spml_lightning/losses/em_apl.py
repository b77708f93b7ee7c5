"""Entropy Maximization with Asymmetric Pseudo-Labelling (EM+APL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor

from spml_lightning.losses.checks import (
    check_index_range,
    fraction,
    positive_float,
    whole_number,
)
from spml_lightning.losses.distributed import all_gather_rows, first_occurrences
from spml_lightning.losses.em import EntropyMaximizationLoss
from spml_lightning.losses.functional import (
    neg_log_one_minus_sigmoid,
    neg_log_sigmoid,
    pseudo_label_loss,
)
from spml_lightning.losses.search_space import SearchRange
from spml_lightning.losses.state import PerSampleStateLoss, StateKind

__all__ = ["AsymmetricPseudoLabelLoss", "UNASSIGNED"]

UNASSIGNED: float = -1.0
"""Value of ``pseudo_labels`` for an entry that has no pseudo-label."""


class AsymmetricPseudoLabelLoss(PerSampleStateLoss, EntropyMaximizationLoss):
    r"""EM loss plus soft negative pseudo-labels assigned epoch by epoch (Zhou et al., ECCV 2022).

    "Acknowledging the Unknown for Multi-label Learning with Single Positive
    Labels", D. Zhou et al., ECCV 2022 (EM+APL). Per entry, with ``s̃`` the stored
    pseudo-label::

        observed positive:          -log p
        pseudo-labelled unknown:    β · [ s̃·(-log p) + (1 - s̃)·(-log(1 - p)) ]
        other unknown:              -α·H(p)                      (EM)

    averaged over the ``B·C`` entries. In the GR framework a pseudo-labelled entry
    has the constant soft label ``k̂ = s̃`` and weight ``v = β``.

    **Pseudo-labelling (APL).** After every epoch ``e >= warmup_epochs`` (1-based),
    the training set is scored without augmentation, and for each class ``c`` the
    ``int(neg_proportion · U_c / (T - warmup_epochs))`` lowest-scored entries that
    are still unknown and unlabelled receive the soft negative pseudo-label
    ``s̃ = p`` (the model's probability then), ``U_c`` being the number of unknown
    entries of class ``c`` in the training set and ``T`` the number of epochs.
    The epoch comes from :meth:`set_epoch` like every schedule: at the start of
    0-based epoch ``E`` (just after 1-based epoch ``E``), :meth:`needs_train_scores`
    is True when ``E >= warmup_epochs``, and the module hands the scores of the
    training set to :meth:`update_from_train_scores`. Running the pass at the start
    of the next epoch rather than at the end of the previous one changes nothing
    for training (only validation runs in between) and keeps a run resumed from an
    end-of-epoch checkpoint identical to an uninterrupted one. The pass after the
    last epoch, which the reference also runs, would influence nothing and is
    not run.

    The pseudo-labels are per-sample state (``pseudo_labels``: ``N x C``, ``-1`` where
    none; ``apl_candidates``: the entries unknown in the training set); under DDP
    every rank scores its shard, the scores are gathered, and every rank makes the
    same assignment.

    The paper's per-dataset values: α VOC 0.2, COCO 0.1, NUS-WIDE 0.1, CUB 0.01;
    β VOC 0.02, COCO 0.9, NUS-WIDE 0.2, CUB 0.4; warm-up VOC 5, COCO 5, NUS-WIDE 4,
    CUB 3.

    Args:
        alpha: Weight α of the entropy term on unlabelled unknown entries.
        beta: Weight β of the pseudo-labelled entries.
        warmup_epochs: First (1-based) epoch after which pseudo-labels are
            assigned, >= 1 and smaller than the number of epochs.
        neg_proportion: Share of each class's unknown entries pseudo-labelled by
            the end of training (0.9).
    """

    #: EM's α, and β and the warm-up over the published values (β 0.02 to 0.9, warm-up 3 to 5).
    search_space: ClassVar[Mapping[str, SearchRange]] = {
        **EntropyMaximizationLoss.search_space,
        "beta": SearchRange.log_uniform(0.01, 1.0),
        "warmup_epochs": SearchRange.integers(1, 5),
    }

    # Per-sample state, registered by bind_train_set (or loaded from a checkpoint).
    pseudo_labels: Tensor
    apl_candidates: Tensor

    sample_state: ClassVar[dict[str, StateKind]] = {
        "pseudo_labels": "buffer",
        "apl_candidates": "buffer",
    }

    def __init__(
        self,
        alpha: float = 0.2,
        beta: float = 0.02,
        warmup_epochs: int = 5,
        neg_proportion: float = 0.9,
    ) -> None:
        super().__init__(alpha=alpha)
        self.beta = positive_float("beta", beta, "weight of the pseudo-labelled entries")
        self.warmup_epochs = whole_number(
            "warmup_epochs",
            warmup_epochs,
            "epochs before pseudo-labelling: pseudo-labels come from a model trained for an epoch",
            minimum=1,
        )
        self.neg_proportion = fraction(
            "neg_proportion",
            neg_proportion,
            "share of unknown entries pseudo-labelled",
            allow_one=True,
        )
        self._epoch: int | None = None
        self._max_epochs: int | None = None

    def initial_sample_state(self, observed: Tensor) -> dict[str, Tensor]:
        """No pseudo-label yet; every unknown entry is a candidate."""
        return {
            "pseudo_labels": torch.full(observed.shape, UNASSIGNED, dtype=torch.float32),
            "apl_candidates": observed == 0,
        }

    def set_epoch(self, epoch: int, max_epochs: int, linear_init: int = 0) -> dict[str, float]:
        """Record the epoch (the pseudo-labelling pass depends on it).

        Returns:
            ``{"apl_active": 1.0 or 0.0}``: whether pseudo-labels are assigned at
            the start of this epoch.

        Raises:
            ValueError: If ``warmup_epochs`` leaves no epoch for pseudo-labelling.
        """
        if self.warmup_epochs >= max_epochs:
            raise ValueError(
                f"warmup_epochs={self.warmup_epochs} must be smaller than the number of epochs "
                f"({max_epochs}); lower model.loss.init_args.warmup_epochs or train longer."
            )
        self._epoch, self._max_epochs = int(epoch), int(max_epochs)
        return {"apl_active": float(self.needs_train_scores())}

    def needs_train_scores(self) -> bool:
        """True at the start of 0-based epoch ``E >= warmup_epochs``."""
        return self._epoch is not None and self._epoch >= self.warmup_epochs

    def per_class_quota(self) -> list[int]:
        """Pseudo-labels per class and pass: ``int(neg_proportion · U_c / (T - warmup))``.

        Raises:
            ValueError: Before :meth:`set_epoch` (T unknown) or before the state exists.
        """
        if self._max_epochs is None or self.num_train_samples is None:
            raise ValueError("call bind_train_set(...) and set_epoch(...) before pseudo-labelling.")
        unknown_per_class = self.apl_candidates.sum(dim=0).tolist()
        span = self._max_epochs - self.warmup_epochs
        return [int(self.neg_proportion * count / span) for count in unknown_per_class]

    @torch.no_grad()
    def update_from_train_scores(self, index: Tensor, logits: Tensor) -> dict[str, float]:
        """Assign this epoch's pseudo-labels from the scores of the training set.

        Args:
            index: ``(n,)`` dataset indices scored on this rank.
            logits: ``(n, C)`` their logits (without augmentation).

        Returns:
            ``{"apl_assigned": pseudo-labels assigned now, "apl_total": assigned so far}``.

        Raises:
            ValueError: Before :meth:`bind_train_set` and :meth:`set_epoch`, or for an
                index outside the training set.
        """
        quota = torch.tensor(self.per_class_quota())
        state = self.pseudo_labels
        index = torch.as_tensor(index, device=state.device).long()
        index, logits = all_gather_rows(index, logits.detach().float().to(state.device))
        keep = first_occurrences(index)
        index, probs = index[keep], torch.sigmoid(logits[keep])
        check_index_range(index, state.shape[0], type(self).__name__)
        current = state[index]
        eligible = self.apl_candidates[index] & (current == UNASSIGNED)
        quota = quota.to(state.device)
        # Rank of every entry within its class among the eligible ones, lowest score first.
        order = torch.argsort(torch.where(eligible, probs, torch.inf), dim=0, stable=True)
        rank = torch.empty_like(order)
        positions = torch.arange(order.shape[0], device=order.device).unsqueeze(1).expand_as(order)
        rank.scatter_(0, order, positions)
        selected = eligible & (rank < quota.unsqueeze(0))
        state[index] = torch.where(selected, probs, current)
        return {
            "apl_assigned": float(selected.sum()),
            "apl_total": float((state != UNASSIGNED).sum()),
        }

    def unknown_loss(self, z: Tensor, unknown: Tensor, index: Tensor | None) -> Tensor:
        """β·[s̃·(-log p) + (1 - s̃)·(-log(1 - p))] where pseudo-labelled, EM elsewhere."""
        rows = self.sample_rows(index, z.shape[0])
        soft = self.pseudo_labels[rows].to(z.device)
        labelled = soft != UNASSIGNED
        pseudo = self.beta * pseudo_label_loss(
            soft.clamp(0, 1), neg_log_sigmoid(z), neg_log_one_minus_sigmoid(z)
        )
        return torch.where(labelled, pseudo, super().unknown_loss(z, unknown, index))

    def extra_repr(self) -> str:
        """Summarise the hyper-parameters for ``print(loss)``."""
        return (
            f"alpha={self.alpha}, beta={self.beta}, warmup_epochs={self.warmup_epochs}, "
            f"neg_proportion={self.neg_proportion}, num_train_samples={self.num_train_samples}"
        )
