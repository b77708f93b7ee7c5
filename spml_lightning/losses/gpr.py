"""Generalized Pseudo-Label Robust Loss (GPR Loss, AEVLP)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from torch import Tensor

from spml_lightning.losses.base import autocast_disabled
from spml_lightning.losses.checks import fraction, non_negative_float, positive_float
from spml_lightning.losses.functional import (
    expected_positive_regularizer,
    gaussian_weight,
    neg_log_one_minus_sigmoid,
    neg_log_sigmoid,
    pseudo_label_loss,
)
from spml_lightning.losses.gr import GRLoss
from spml_lightning.losses.pseudo_positive import PSEUDO_POSITIVE, entry_kinds

__all__ = ["GPRLoss"]


class GPRLoss(GRLoss):
    r"""GPR Loss: GR Loss plus a prior's pseudo-positives (Tran et al., ICCV 2025).

    "More Reliable Pseudo-labels, Better Performance: A Generalized Approach to Single
    Positive Multi-label Learning", L. Tran et al., ICCV 2025, arXiv:2508.20381 (the
    AEVLP framework: this loss and the DAMP pseudo-labels of
    ``spml_lightning.priors.policies``). Implemented from the paper's description of
    the loss (the project's SPEC §8); the paper's method section could not be read here
    (only its abstract), so no equation numbers are quoted. Its released code is under a
    non-commercial licence: it was read for its settings and behaviour (below), never
    copied.

    With ``z`` the logit, ``p = sigmoid(z)``, ``p̂ = p`` detached, ``o`` the observed label
    and ``PL`` the prior's pseudo-positive, each entry is one of three kinds::

        o = 1 (observed positive):       -log p
        o = 0, PL = 1 (pseudo-positive): (1 - clamp(V(p̂), 1 - λ1, 1 - λ2))
                                           · [ρ·(-log p) + (1 - ρ)·(-log(1 - p))]
        o = 0, PL = 0 (unknown):         V(p̂)·[K̂(p̂)·(1 - p^q2)/q2 + (1 - K̂(p̂))·(1 - (1 - p)^q3)/q3]

    averaged over all ``B·C`` entries, plus ``reg · (mean_b Σ_c p - k_exp)² / C²``
    (EPR's expected-positive regulariser, with gradient). ``K̂`` and ``V`` are GR Loss's
    (:class:`~spml_lightning.losses.GRLoss`, its epoch schedule of β and α and its
    forms of ``K̂``), detached. The weight of a pseudo-positive, ``1 - clamp(V, 1 - λ1,
    1 - λ2)``, lies in ``[λ2, λ1]``: high where the model disagrees with the prior
    (``V`` small), never zero, never above ``λ1``; ``ρ < 1`` smooths the pseudo-label.

    Differences from the released code (the paper's behaviour is what this class does):

    - the released code makes the pseudo-labels at every step from CLIP on the
      (randomly flipped) training view; here they are made once per image from cached
      scores (``data.init_args.prior``), the flipped copy's scores averaged in;
    - the paper's framework also names negative pseudo-labels; the released code picks
      the lowest-scoring share of the classes for them but writes them as unknowns, so it
      never produces any, and no rule for them is given, so there are none here;
    - the released code's pseudo-label model adds to each class prompt's CLIP text
      embedding the output of a three-layer graph convolution over a label-relation
      matrix, frozen at its random initialisation; the paper's description, as far as it
      could be read here, has no such step: here a class is its prompts' CLIP embedding
      (``spml_lightning.priors.OpenCLIPPrior``; the released configs' prompt is
      ``"a photo of a {}."``, the default template).

    Published settings (VOC / COCO / NUS-WIDE / CUB; ``configs/losses/gpr_*.yaml``):
    ``beta`` as GR's, ``(0, 2, -2, -2)`` / ``(0, 10, -2, -8)`` for the others; ``alpha``
    ``(0.5, 2, 0.8, 0.5)``; ``(q2, q3)`` ``(0.01, 1)``, CUB ``(0.01, 1.5)``;
    ``(λ1, λ2)`` ``(0.7, 0.4)`` / ``(0.7, 0.5)`` / ``(0.7, 0.5)`` / ``(0.8, 0.2)``;
    ``ρ`` 0.9; ``reg`` 0.05 / 0.001 / 0.001 / 0.01; ``k_exp`` 1.5 / 2.9 / 1.9 / 31.4.

    Args:
        beta: ``(w0, wT, b0, bT)`` of ``K̂``, as for GR Loss.
        alpha: ``(mu0, sigma0, muT, sigmaT)`` of ``V``, as for GR Loss.
        q2: Exponent of the robust positive loss, > 0.
        q3: Exponent of the robust negative loss, > 0.
        lambda1: Largest weight of a pseudo-positive, in (0, 1].
        lambda2: Smallest weight of a pseudo-positive, in [0, lambda1].
        rho: Target of a pseudo-positive (label smoothing), in [0, 1].
        reg: Weight of the expected-positive regulariser, >= 0 (0: none).
        expected_positives: ``k_exp``, the expected number of positives per image, > 0.
        k_form: ``K̂``'s form, as for GR Loss.
        bayes_a: ``a`` of the Bayes form, as for GR Loss.
        schedule: ``"reference"`` or ``"linear"``, as for GR Loss.
        num_classes: As for GR Loss (the learned ``K̂`` only).
        learned_lr: As for GR Loss.
        learned_momentum: As for GR Loss.
        learned_weight_decay: As for GR Loss.

    Raises:
        ValueError: On an invalid hyper-parameter (the message names it), or in
            ``forward`` without pseudo-positives.

    Example:
        >>> loss = GPRLoss()
        >>> observed = torch.tensor([[1, 0, 0], [0, 1, 0]])
        >>> pseudo = torch.tensor([[0, 1, 0], [0, 0, 0]])
        >>> loss(torch.zeros(2, 3), observed, pseudo_positive=pseudo).shape
        torch.Size([])
    """

    batch_inputs: ClassVar[tuple[str, ...]] = (PSEUDO_POSITIVE,)

    def __init__(
        self,
        beta: Sequence[float] = (0.0, 2.0, -2.0, -2.0),
        alpha: Sequence[float] = (0.5, 2.0, 0.8, 0.5),
        q2: float = 0.01,
        q3: float = 1.0,
        lambda1: float = 0.7,
        lambda2: float = 0.4,
        rho: float = 0.9,
        reg: float = 0.05,
        expected_positives: float = 1.5,
        k_form: Literal["sigmoid", "bayes", "learned"] = "sigmoid",
        bayes_a: float = 1 / 1.46,
        schedule: Literal["reference", "linear"] = "reference",
        num_classes: int | None = None,
        learned_lr: float = 0.1,
        learned_momentum: float = 0.9,
        learned_weight_decay: float = 1e-3,
    ) -> None:
        super().__init__(
            beta=beta,
            alpha=alpha,
            q2=q2,
            q3=q3,
            k_form=k_form,
            bayes_a=bayes_a,
            schedule=schedule,
            num_classes=num_classes,
            learned_lr=learned_lr,
            learned_momentum=learned_momentum,
            learned_weight_decay=learned_weight_decay,
        )
        self.lambda1 = fraction(
            "lambda1", lambda1, "largest weight of a pseudo-positive", allow_one=True
        )
        self.lambda2 = fraction(
            "lambda2", lambda2, "smallest weight of a pseudo-positive", allow_zero=True
        )
        if self.lambda2 > self.lambda1:
            raise ValueError(
                f"lambda2={lambda2} must not exceed lambda1={lambda1}: a pseudo-positive's "
                "weight lies in [lambda2, lambda1]."
            )
        self.rho = fraction(
            "rho", rho, "target of a pseudo-positive", allow_zero=True, allow_one=True
        )
        self.reg = non_negative_float("reg", reg, "weight of the expected-positive regulariser")
        self.expected_positives = positive_float(
            "expected_positives", expected_positives, "expected number of positives per image"
        )

    def pseudo_positive_loss(self, z: Tensor) -> Tensor:
        """``(1 - clamp(V(p̂), 1 - λ1, 1 - λ2))·[ρ·(-log p) + (1 - ρ)·(-log(1 - p))]``."""
        params = self.current
        v = gaussian_weight(torch.sigmoid(z).detach(), params.mu, params.sigma)
        weight = 1 - v.clamp(1 - self.lambda1, 1 - self.lambda2)
        return weight * pseudo_label_loss(
            self.rho, neg_log_sigmoid(z), neg_log_one_minus_sigmoid(z)
        )

    def forward(
        self,
        logits: Tensor,
        observed: Tensor,
        index: Tensor | None = None,
        pseudo_positive: Tensor | None = None,
    ) -> Tensor:
        """Compute the loss of a batch.

        Args:
            logits: ``(B, C)`` raw scores, any float dtype.
            observed: ``(B, C)`` observed labels in {0, 1}.
            index: ``(B,)`` dataset indices (unused).
            pseudo_positive: ``(B, C)`` the prior's pseudo-positives in {0, 1}.

        Returns:
            The fp32 scalar loss.
        """
        z, s = self.prepare_inputs(logits, observed)
        with autocast_disabled(z):
            kinds = entry_kinds(s, pseudo_positive, type(self).__name__)
            entries = kinds.combine(
                self.observed_loss(z),
                self.pseudo_positive_loss(z),
                self.unknown_loss(z, kinds.unknown, index),
            )
            loss = entries.mean()
            if self.reg == 0:
                return loss
            regularizer = expected_positive_regularizer(torch.sigmoid(z), self.expected_positives)
            return loss + self.reg * regularizer

    def extra_repr(self) -> str:
        """Summarise the hyper-parameters for ``print(loss)``."""
        return (
            f"{super().extra_repr()}, lambda1={self.lambda1}, lambda2={self.lambda2}, "
            f"rho={self.rho}, reg={self.reg}, expected_positives={self.expected_positives}"
        )
