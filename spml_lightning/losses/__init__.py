"""SPML losses: plain ``torch.nn.Module`` objects, one registry name per loss.

``LOSSES`` maps the names used in configs and the CLI to the loss classes;
:func:`get_loss_class` looks one up.
"""

from __future__ import annotations

from spml_lightning.losses.base import SPMLLoss, loss_from_config
from spml_lightning.losses.an import AssumeNegativeLoss
from spml_lightning.losses.full import FullLabelLoss
from spml_lightning.losses.gr import GRLoss

LOSSES: dict[str, type[SPMLLoss]] = {
    "full": FullLabelLoss,
    "AN": AssumeNegativeLoss,
    "GR": GRLoss,
}
"""Registry of the losses by name (as in SPEC §3's table)."""


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
    raise ValueError(f"unknown loss name {name!r}; valid names are {sorted(LOSSES)}.")


__all__ = ["LOSSES", "AssumeNegativeLoss", "FullLabelLoss", "GRLoss", "SPMLLoss", "get_loss_class", "loss_from_config"]
