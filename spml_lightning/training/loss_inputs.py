"""The per-sample batch entries a loss takes besides the logits, labels and index.

A loss names them in ``SPMLLoss.batch_inputs`` (GPR and VLPL: ``pseudo_positive``, a
prior's pseudo-positives, which the datamodule's training items carry when
``data.init_args.prior`` is set). A fit whose training set does not provide them is
refused when it starts, not at its first step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from spml_lightning.losses import SPMLLoss

__all__ = ["check_loss_inputs", "loss_inputs"]


def _missing_message(loss: SPMLLoss, missing: list[str]) -> str:
    return (
        f"The loss {type(loss).__name__} learns from {', '.join(missing)} in every training "
        "batch, which this training set does not provide: give the datamodule a prior "
        "(data.init_args.prior: a scores file or a provider; docs/guides/priors.md), or choose "
        "another loss."
    )


def check_loss_inputs(loss: SPMLLoss, train_dataset: Any) -> None:
    """Refuse a training set whose items lack an entry the loss takes.

    Args:
        loss: the loss.
        train_dataset: the training set (its ``extras`` name the extra entries of its items;
            a cached-features view reads them from the image dataset it serves).

    Raises:
        ValueError: Naming the missing entries and how to provide them.
    """
    if not loss.batch_inputs:
        return
    dataset = getattr(train_dataset, "dataset", train_dataset)  # a CachedFeatureDataset
    provided = getattr(dataset, "extras", {}) or getattr(train_dataset, "extras", {})
    missing = [name for name in loss.batch_inputs if name not in provided]
    if missing:
        raise ValueError(_missing_message(loss, missing))


def loss_inputs(loss: SPMLLoss, batch: Mapping[str, Any]) -> dict[str, Tensor]:
    """The batch's entries the loss takes, by name (keyword arguments of its ``forward``).

    Raises:
        ValueError: If the batch lacks one.
    """
    missing = [name for name in loss.batch_inputs if name not in batch]
    if missing:
        raise ValueError(_missing_message(loss, missing))
    return {name: batch[name] for name in loss.batch_inputs}
