"""Regularized Online Label Estimation (ROLE)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from spml_lightning.losses.base import autocast_disabled
from spml_lightning.losses.checks import positive_float, whole_number
from spml_lightning.losses.functional import (
    expected_positive_regularizer,
    neg_log_one_minus_sigmoid,
    neg_log_sigmoid,
    pseudo_label_loss,
)
from spml_lightning.losses.search_space import SearchRange
from spml_lightning.losses.state import PerSampleStateLoss, StateKind

__all__ = ["OnlineLabelEstimationLoss"]

UNKNOWN_INIT_PROBABILITY: float = 0.6
"""Unknown entries start at a logit drawn from U(-logit(0.6), +logit(0.6))."""

POSITIVE_INIT_PROBABILITY: float = 0.995
"""Observed positives start at logit(0.995)."""


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


class OnlineLabelEstimationLoss(PerSampleStateLoss):
    r"""ROLE: the classifier and a learned label matrix teach each other (Cole et al., CVPR 2021).

    A learnable logit matrix ``g`` (N x C, one row per training sample, the
    per-sample state) holds label estimates :math:`\hat e = \sigma(g[\text{index}])`.
    With :math:`p = \sigma(z)` the classifier's probabilities and ``s`` the observed
    labels of the batch::

        ℓ = 1/(BC) Σ_bc [ ½ s·(-log p - log ê)
                          + ½ cross(p, sg(ê)) + ½ cross(ê, sg(p)) ]
            + ½ (R(p) + R(ê))

        cross(x, y) = -[y·log x + (1 - y)·log(1 - x)]
        R(x)        = (mean_b Σ_c x_bc - k)² / C²        (EPR's regulariser)

    where ``sg`` stops the gradient: each predictor is fitted to the other's
    current guess. In the GR framework each cross term is the soft-label loss
    ``k̂·L2 + (1 - k̂)·L3`` with ``k̂`` the other predictor's output.

    ``g`` starts at logit(0.995) on observed positives and uniform in
    ``(-logit(0.6), +logit(0.6))`` elsewhere, drawn from a generator seeded by
    ``init_seed`` so that every DDP rank (and a re-run) builds the same matrix
    without a broadcast. It is an ``nn.Parameter`` trained by the module's Adam at
    ``lr_mult`` x the backbone learning rate (:meth:`optimizer_groups`, 10x in the
    paper); under DDP its gradient is all-reduced like any weight's, so the
    estimates stay identical on every rank. A row only receives gradient from
    its own sample (Adam's momentum then keeps moving a row for a few steps after
    its sample was seen, exactly as in the reference).

    k is the expected number of positives per image, as for EPR (Cole et al.):
    VOC 1.5, COCO 2.9, NUS-WIDE 1.9, CUB 31.4.

    Args:
        expected_positives: k, > 0.
        lr_mult: The estimates learn at ``lr_mult`` x the backbone learning rate.
        init_seed: Seed of the random initial estimates of the unknown entries.
    """

    #: The label estimates' learning-rate multiplier around the reference's 10.
    search_space: ClassVar[Mapping[str, SearchRange]] = {
        "lr_mult": SearchRange.log_uniform(1.0, 100.0),
    }

    sample_state: ClassVar[dict[str, StateKind]] = {"label_estimates": "parameter"}
    # Registered by bind_train_set (or loaded from a checkpoint).
    label_estimates: nn.Parameter

    def __init__(
        self, expected_positives: float = 1.5, lr_mult: float = 10.0, init_seed: int = 0
    ) -> None:
        super().__init__()
        self.expected_positives = positive_float(
            "expected_positives", expected_positives, "expected number of positives per image"
        )
        self.lr_mult = positive_float(
            "lr_mult", lr_mult, "learning-rate multiplier of the label estimates"
        )
        self.init_seed = whole_number("init_seed", init_seed, "seed of the initial label estimates")

    def initial_sample_state(self, observed: Tensor) -> dict[str, Tensor]:
        """Logits: logit(0.995) on observed positives, U(-logit(0.6), logit(0.6)) elsewhere."""
        generator = torch.Generator().manual_seed(self.init_seed)
        bound = _logit(UNKNOWN_INIT_PROBABILITY)
        logits = (torch.rand(observed.shape, generator=generator) * 2 - 1) * bound
        logits[observed.cpu() > 0.5] = _logit(POSITIVE_INIT_PROBABILITY)
        return {"label_estimates": logits}

    def optimizer_groups(self, lr: float) -> list[dict[str, Any]]:
        """The label estimates, for Adam at ``lr_mult`` x ``lr``.

        Raises:
            ValueError: If the loss is not bound to a training set yet.
        """
        if self.num_train_samples is None:
            raise ValueError(
                "OnlineLabelEstimationLoss must be bound to the training set before the optimizer "
                "is built: call loss.bind_train_set(train_observed_matrix) first."
            )
        return [
            {"params": [self.label_estimates], "lr": lr * self.lr_mult, "name": "label_estimates"}
        ]

    def forward(self, logits: Tensor, observed: Tensor, index: Tensor | None = None) -> Tensor:
        """Compute the ROLE loss of a batch.

        Args:
            logits: ``(B, C)`` raw scores of the classifier, any float dtype.
            observed: ``(B, C)`` observed labels in {0, 1}.
            index: ``(B,)`` dataset indices of the samples (required).

        Returns:
            The fp32 scalar loss; its gradient reaches both the logits and the
            rows ``index`` of the label estimates.
        """
        z, s = self.prepare_inputs(logits, observed)
        rows = self.sample_rows(index, z.shape[0])
        with autocast_disabled(z):
            g = self.label_estimates[rows].to(z.device).float()
            positive = s > 0.5
            p, e = torch.sigmoid(z), torch.sigmoid(g)
            positive_terms = torch.where(
                positive, neg_log_sigmoid(z) + neg_log_sigmoid(g), torch.zeros_like(z)
            )
            cross_classifier = pseudo_label_loss(
                e.detach(), neg_log_sigmoid(z), neg_log_one_minus_sigmoid(z)
            )
            cross_estimator = pseudo_label_loss(
                p.detach(), neg_log_sigmoid(g), neg_log_one_minus_sigmoid(g)
            )
            entries = 0.5 * positive_terms + 0.5 * (cross_classifier + cross_estimator)
            regularizer = 0.5 * (
                expected_positive_regularizer(p, self.expected_positives)
                + expected_positive_regularizer(e, self.expected_positives)
            )
            return entries.mean() + regularizer

    def extra_repr(self) -> str:
        """Summarise the hyper-parameters for ``print(loss)``."""
        return (
            f"expected_positives={self.expected_positives}, lr_mult={self.lr_mult}, "
            f"num_train_samples={self.num_train_samples}"
        )
