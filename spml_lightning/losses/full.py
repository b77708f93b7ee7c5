"""The fully supervised upper bound: BCE on the true labels."""

from __future__ import annotations

from typing import ClassVar

from spml_lightning.losses.an import AssumeNegativeLoss

__all__ = ["FullLabelLoss"]


class FullLabelLoss(AssumeNegativeLoss):
    r"""Binary cross-entropy on the FULL label matrix (the upper bound of SPML).

    .. math::
        \ell = \frac{1}{BC} \sum_{b,c} \big[ y_{bc} (-\log p_{bc})
            + (1 - y_{bc}) (-\log(1 - p_{bc})) \big]

    This is the only loss that reads the true labels ``y``: it declares
    ``trains_on_targets``, and the module then passes the full labels in place of
    the observed ones. It is AN's formula applied to labels with nothing unknown,
    hence the subclass. "Full labels" row of the tables of Cole et al., CVPR 2021,
    and Chen et al., IJCAI 2024.
    """

    trains_on_targets: ClassVar[bool] = True
