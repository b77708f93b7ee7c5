"""What the losses that learn from a prior's pseudo-positives share: their batch input.

A vision-language prior (``spml_lightning.priors``) proposes, for each training
image, classes it believes present although unobserved: the pseudo-positives.
The datamodule puts them in every training batch as ``pseudo_positive``, a
``(B, C)`` 0/1 matrix keyed like the rest of the item by the dataset ``index``;
a loss that needs them names the key in ``SPMLLoss.batch_inputs`` and takes it
as a keyword argument of ``forward``. This file checks it and splits a batch's
entries into the three kinds these losses treat differently.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from spml_lightning.losses.checks import check_binary_labels

__all__ = ["PSEUDO_POSITIVE", "EntryKinds", "entry_kinds"]

PSEUDO_POSITIVE = "pseudo_positive"
"""The batch key (and keyword argument) of the pseudo-positive matrix."""


class EntryKinds(NamedTuple):
    """Boolean ``(B, C)`` masks of a batch's entries; every entry is exactly one kind.

    Attributes:
        positive: observed positives.
        pseudo: unobserved entries the prior proposes as positive.
        unknown: the other unobserved entries.
    """

    positive: Tensor
    pseudo: Tensor
    unknown: Tensor

    def combine(self, positive: Tensor, pseudo: Tensor, unknown: Tensor) -> Tensor:
        """``(B, C)`` per-entry losses: each entry takes the loss of its kind."""
        return torch.where(self.positive, positive, torch.where(self.pseudo, pseudo, unknown))


def entry_kinds(observed: Tensor, pseudo_positive: Tensor | None, owner: str) -> EntryKinds:
    """Split the entries into observed positives, pseudo-positives and unknowns.

    A pseudo-positive on an observed positive counts as observed: the observation wins.

    Args:
        observed: ``(B, C)`` fp32 observed labels.
        pseudo_positive: ``(B, C)`` pseudo-positives in {0, 1}, any numeric dtype.
        owner: the loss's name, for the messages.

    Raises:
        ValueError: If ``pseudo_positive`` is missing, of another shape, or not 0/1.
    """
    if pseudo_positive is None:
        raise ValueError(
            f"{owner} learns from a prior's pseudo-positives: pass them as "
            f"loss(logits, observed, index, {PSEUDO_POSITIVE}=...) (a fit gets them from "
            "data.init_args.prior; docs/guides/priors.md)."
        )
    if pseudo_positive.shape != observed.shape:
        raise ValueError(
            f"{owner}: {PSEUDO_POSITIVE} has shape {tuple(pseudo_positive.shape)}, the observed "
            f"labels {tuple(observed.shape)}; they must describe the same images and classes."
        )
    pseudo_positive = pseudo_positive.to(observed.device)
    check_binary_labels(pseudo_positive, PSEUDO_POSITIVE, "pass 1 for a pseudo-positive, else 0")
    positive = observed > 0.5
    pseudo = (pseudo_positive > 0.5) & ~positive
    return EntryKinds(positive, pseudo, ~positive & ~pseudo)
