"""Vision-Language Pseudo-Labels (VLPL): EM plus a prior's pseudo-positives."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from spml_lightning.losses.base import autocast_disabled
from spml_lightning.losses.checks import fraction, positive_float
from spml_lightning.losses.em import EntropyMaximizationLoss
from spml_lightning.losses.functional import (
    neg_log_one_minus_sigmoid,
    neg_log_sigmoid,
    pseudo_label_loss,
)
from spml_lightning.losses.pseudo_positive import PSEUDO_POSITIVE, entry_kinds

__all__ = ["VisionLanguagePseudoLabelLoss"]


class VisionLanguagePseudoLabelLoss(EntropyMaximizationLoss):
    r"""VLPL's loss: EM on the unknowns, label-smoothed BCE on pseudo-positives (Xing et al.).

    "Vision-Language Pseudo-Labels for Single-Positive Multi-Label Learning", X. Xing et
    al., CVPR Workshops 2024, arXiv:2310.15985. Implemented from the paper's description
    (the project's SPEC §8); its method section could not be read here (only its
    abstract), so no equation numbers are quoted. Its released code was read for its
    settings (below), never copied.

    With ``p = sigmoid(z)``, ``o`` the observed label and ``PL`` the prior's
    pseudo-positive (VLPL: where CLIP's ``softmax(cos(image, text)/T)`` over the classes
    exceeds a threshold, ``spml_lightning.priors.policies``), each entry is one kind::

        o = 1 (observed positive):        -log p
        o = 0, PL = 1 (pseudo-positive):  β_pos·[ρ·(-log p) + (1 - ρ)·(-log(1 - p))]
        o = 0, PL = 0 (unknown):          -α·H(p) = α·[p log p + (1 - p) log(1 - p)]

    averaged over all ``B·C`` entries. The entropy term is EM's
    (:class:`~spml_lightning.losses.EntropyMaximizationLoss`), with gradient.

    Where this follows a reading of the paper: a pseudo-positive gets only its
    pseudo-label term (not EM's too), as every entry of GPR Loss is one kind. The paper
    also names negative pseudo-labels. Its released code has a rule for them (the
    lowest-scoring share of the classes, with a ``0.1/0.9``-smoothed negative term
    weighted ``β_neg``), but its settings turn it off on every data set (a share of 0,
    ``β_neg`` 0): the published setting learns from pseudo-positives only, as here.

    Published settings: ``β_pos`` 0.7, ``ρ`` 0.9 (the paper's 0.9/0.1 smoothing), a
    threshold of 0.3 on the softmax scores (searched over 0.1-0.3), ``T`` 0.01. The EM
    weight ``α`` per data set (``configs/losses/vlpl_*.yaml``): VOC 0.2, COCO 0.1,
    NUS-WIDE 0.1, CUB 0.01, the released code's settings, which are EM's published ones.

    Args:
        alpha: Weight α of the entropy of the unknowns, > 0.
        beta_pos: Weight of a pseudo-positive's term, > 0.
        rho: Target of a pseudo-positive (label smoothing), in [0, 1].

    Raises:
        ValueError: On an invalid hyper-parameter, or in ``forward`` without pseudo-positives.
    """

    batch_inputs: ClassVar[tuple[str, ...]] = (PSEUDO_POSITIVE,)

    def __init__(self, alpha: float = 0.2, beta_pos: float = 0.7, rho: float = 0.9) -> None:
        super().__init__(alpha=alpha)
        self.beta_pos = positive_float("beta_pos", beta_pos, "weight of the pseudo-positives")
        self.rho = fraction(
            "rho", rho, "target of a pseudo-positive", allow_zero=True, allow_one=True
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
            pseudo = self.beta_pos * pseudo_label_loss(
                self.rho, neg_log_sigmoid(z), neg_log_one_minus_sigmoid(z)
            )
            entries = kinds.combine(
                self.observed_loss(z), pseudo, self.unknown_loss(z, kinds.unknown, index)
            )
            return entries.mean()

    def extra_repr(self) -> str:
        """Summarise the hyper-parameters for ``print(loss)``."""
        return f"{super().extra_repr()}, beta_pos={self.beta_pos}, rho={self.rho}"
