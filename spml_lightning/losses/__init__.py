"""SPML losses: plain ``torch.nn.Module`` objects, one registry name per loss.

``LOSSES`` maps the names used in configs and the CLI (the names the papers'
comparison tables use, e.g. Chen et al., IJCAI 2024) to the loss classes;
:func:`get_loss_class` looks one up. Every loss but ROLE is a
:class:`FrameworkLoss`, an instance of the GR framework built from the blocks of
:mod:`spml_lightning.losses.functional`.

Layout: ``base.py`` (:class:`SPMLLoss`, :class:`FrameworkLoss`),
``adapter.py`` (a plain module loss with the ``SPMLLoss`` hooks),
``functional.py`` (the per-entry blocks: L1-L3, k̂, v, ...), ``checks.py``
(every argument check), ``state.py`` (per-sample state), ``distributed.py``
(exchanging state updates under DDP), and one file per loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from spml_lightning.losses.adapter import ModuleLoss
from spml_lightning.losses.an import AssumeNegativeLoss
from spml_lightning.losses.an_ls import LabelSmoothedAssumeNegativeLoss
from spml_lightning.losses.asl import AsymmetricLoss
from spml_lightning.losses.base import FrameworkLoss, SPMLLoss, loss_from_config
from spml_lightning.losses.em import EntropyMaximizationLoss
from spml_lightning.losses.em_apl import AsymmetricPseudoLabelLoss
from spml_lightning.losses.epr import ExpectedPositiveRegularizationLoss
from spml_lightning.losses.focal import FocalLoss
from spml_lightning.losses.full import FullLabelLoss
from spml_lightning.losses.gpr import GPRLoss
from spml_lightning.losses.gr import GRLoss
from spml_lightning.losses.hill import HillLoss
from spml_lightning.losses.ll import (
    LargeLossPermanentCorrectionLoss,
    LargeLossRejectionLoss,
    LargeLossTemporaryCorrectionLoss,
)
from spml_lightning.losses.role import OnlineLabelEstimationLoss
from spml_lightning.losses.splc import SelfPacedLossCorrectionLoss
from spml_lightning.losses.state import PerSampleStateLoss
from spml_lightning.losses.vlpl import VisionLanguagePseudoLabelLoss
from spml_lightning.losses.wan import WeakAssumeNegativeLoss

LOSSES: dict[str, type[SPMLLoss]] = {
    "full": FullLabelLoss,
    "AN": AssumeNegativeLoss,
    "AN-LS": LabelSmoothedAssumeNegativeLoss,
    "WAN": WeakAssumeNegativeLoss,
    "EPR": ExpectedPositiveRegularizationLoss,
    "ROLE": OnlineLabelEstimationLoss,
    "EM": EntropyMaximizationLoss,
    "EM+APL": AsymmetricPseudoLabelLoss,
    "LL-R": LargeLossRejectionLoss,
    "LL-Ct": LargeLossTemporaryCorrectionLoss,
    "LL-Cp": LargeLossPermanentCorrectionLoss,
    "Hill": HillLoss,
    "SPLC": SelfPacedLossCorrectionLoss,
    "Focal": FocalLoss,
    "ASL": AsymmetricLoss,
    "GR": GRLoss,
    "GPR": GPRLoss,
    "VLPL": VisionLanguagePseudoLabelLoss,
}
"""Registry of the losses by name: the baselines every SPML paper compares against, GR, and
the losses that learn from a vision-language prior's pseudo-positives (GPR, VLPL)."""


def get_loss_class(name: str) -> type[SPMLLoss]:
    """Return the loss class registered under ``name``.

    The lookup is exact first, then case-insensitive (``"gr"`` finds ``"GR"``).

    Args:
        name: A key of :data:`LOSSES`.

    Returns:
        The loss class.

    Raises:
        ValueError: If no loss has that name; the message lists the valid names.
    """
    if name in LOSSES:
        return LOSSES[name]
    by_lower = {key.lower(): cls for key, cls in LOSSES.items()}
    if isinstance(name, str) and name.lower() in by_lower:
        return by_lower[name.lower()]
    raise ValueError(
        f"unknown loss name {name!r}; valid names are {list(LOSSES)}, or give a class path "
        f"such as spml_lightning.losses.GRLoss."
    )


def as_spml_loss(loss: nn.Module | str | Mapping[str, Any] | None) -> SPMLLoss:
    """The ``SPMLLoss`` a model trains with, from any form a user or a checkpoint gives.

    Args:
        loss: an ``SPMLLoss`` (itself); a plain ``nn.Module`` (wrapped in a
            :class:`ModuleLoss`); a registry name (``"AN"``: that loss with its defaults;
            ``spml_lightning.losses.LOSSES``); a ``{"class_path", "init_args"}`` config
            (what checkpoints store); None (``GRLoss()``, the reference settings).

    Raises:
        TypeError: If ``loss`` is none of these.
    """
    if loss is None:
        return GRLoss()
    if isinstance(loss, str):  # a registry name: `spml fit --model.loss AN`
        return get_loss_class(loss)()
    if isinstance(loss, Mapping):  # the loss config stored in a checkpoint
        return loss_from_config(loss)
    if isinstance(loss, SPMLLoss):
        return loss
    if not isinstance(loss, nn.Module):
        raise TypeError(
            f"loss must be an SPML loss module (e.g. spml_lightning.losses.GRLoss) or an "
            f"nn.Module computing loss(logits, observed), got {type(loss).__name__}."
        )
    return ModuleLoss(loss)


__all__ = [
    "ModuleLoss",
    "as_spml_loss",
    "LOSSES",
    "AssumeNegativeLoss",
    "AsymmetricLoss",
    "AsymmetricPseudoLabelLoss",
    "EntropyMaximizationLoss",
    "ExpectedPositiveRegularizationLoss",
    "FocalLoss",
    "FrameworkLoss",
    "FullLabelLoss",
    "GPRLoss",
    "GRLoss",
    "HillLoss",
    "LabelSmoothedAssumeNegativeLoss",
    "LargeLossPermanentCorrectionLoss",
    "LargeLossRejectionLoss",
    "LargeLossTemporaryCorrectionLoss",
    "OnlineLabelEstimationLoss",
    "PerSampleStateLoss",
    "SPMLLoss",
    "SelfPacedLossCorrectionLoss",
    "VisionLanguagePseudoLabelLoss",
    "WeakAssumeNegativeLoss",
    "get_loss_class",
    "loss_from_config",
]
