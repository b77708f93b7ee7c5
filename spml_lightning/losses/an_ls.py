"""Assume Negative with label smoothing (AN-LS)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from torch import Tensor

from spml_lightning.losses.base import FrameworkLoss
from spml_lightning.losses.checks import fraction
from spml_lightning.losses.functional import (
    neg_log_one_minus_sigmoid,
    neg_log_sigmoid,
    pseudo_label_loss,
)
from spml_lightning.losses.search_space import SearchRange

__all__ = ["LabelSmoothedAssumeNegativeLoss"]


class LabelSmoothedAssumeNegativeLoss(FrameworkLoss):
    r"""AN with label smoothing ε on both sides (ε = 0.1).

    .. math::
        \ell_{bc} = \begin{cases}
            (1-\varepsilon)(-\log p) + \varepsilon(-\log(1-p)) & s = 1 \\
            (1-\varepsilon)(-\log(1-p)) + \varepsilon(-\log p) & s = 0
        \end{cases}
        \qquad \ell = \tfrac{1}{BC} \textstyle\sum_{b,c} \ell_{bc}

    In the GR framework: unknown entries have the constant soft label
    :math:`\hat k = \varepsilon`, :math:`v = 1`, :math:`L_2 = -\log p`,
    :math:`L_3 = -\log(1-p)`; observed positives the soft label :math:`1-\varepsilon`.
    Cole et al., "Multi-Label Learning from Single Positive Labels", CVPR 2021
    (the "AN-LS" baseline, ``ls_coef = 0.1``).

    Args:
        smoothing: ε in [0, 1); 0 gives AN.
    """

    #: The smoothing around the reference's 0.1.
    search_space: ClassVar[Mapping[str, SearchRange]] = {
        "smoothing": SearchRange.uniform(0.0, 0.3),
    }

    def __init__(self, smoothing: float = 0.1) -> None:
        super().__init__()
        self.smoothing = fraction(
            "smoothing", smoothing, "label-smoothing coefficient", allow_zero=True
        )

    def observed_loss(self, z: Tensor) -> Tensor:
        """Cross-entropy against the soft label ``1 - ε``."""
        return pseudo_label_loss(
            1 - self.smoothing, neg_log_sigmoid(z), neg_log_one_minus_sigmoid(z)
        )

    def unknown_loss(self, z: Tensor, unknown: Tensor, index: Tensor | None) -> Tensor:
        """Cross-entropy against the soft label ``ε`` (k̂ = ε, v = 1)."""
        return pseudo_label_loss(self.smoothing, neg_log_sigmoid(z), neg_log_one_minus_sigmoid(z))

    def extra_repr(self) -> str:
        """Summarise the hyper-parameters for ``print(loss)``."""
        return f"smoothing={self.smoothing}"
