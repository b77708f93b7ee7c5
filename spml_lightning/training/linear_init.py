"""Cole et al.'s ``linear_init`` protocol: a linear phase on cached features, then fine-tuning.

One ``spml fit`` runs both phases of Cole et al. (CVPR 2021) as epochs of one
trainer. The first ``linear_init`` epochs train the head (and the loss's own
per-sample parameters, ROLE's label estimates) on the frozen backbone's cached
features; the following epochs train the whole network on images, starting from
that head and those estimates. What changes at the boundary:

* the data: the datamodule's training and validation sets are the cached
  features' during the linear phase and the images' afterwards. The loaders are
  requested again at every epoch (``reload_dataloaders_every_n_epochs = 1``), and
  each request serves the sets of the phase of the epoch it is for, so a fit
  resumed in either phase, at any epoch, reads what the uninterrupted fit read;
* the optimizer: Cole's fine-tuning is a second run with a new Adam, so the first
  fine-tuning epoch starts with empty Adam moments (the rates of each phase are
  the module's business: ``SPMLModule(linear_lr=...)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["check_linear_init_strategy", "restart_optimizer", "serve_by_phase"]

_SPLITS = ("train", "val")


def serve_by_phase(
    datamodule: Any, trainer: Any, cached: Mapping[str, Any], linear_epochs: int
) -> None:
    """Make ``datamodule`` serve ``cached`` sets before epoch ``linear_epochs``, images after.

    The datamodule's ``train_dataset``/``val_dataset`` at the call are the image sets.
    Its ``train_dataloader``/``val_dataloader`` are replaced, on this instance only, by
    ones that first put in place the sets of the phase of ``trainer.current_epoch``.

    Args:
        datamodule: an ``SPMLDataModule`` set up for ``fit``.
        trainer: the fitting trainer; its ``reload_dataloaders_every_n_epochs`` is set to 1.
        cached: the ``CachedFeatureDataset`` of each of ``train`` and ``val``.
        linear_epochs: the epochs of the linear phase.
    """
    images = {split: getattr(datamodule, f"{split}_dataset") for split in _SPLITS}
    for split in _SPLITS:
        # The class's method: a second fit on this datamodule wraps the original again.
        original = getattr(type(datamodule), f"{split}_dataloader").__get__(datamodule)

        def request(split: str = split, original: Any = original) -> Any:
            linear = trainer.current_epoch < linear_epochs
            setattr(datamodule, f"{split}_dataset", (cached if linear else images)[split])
            return original()

        setattr(datamodule, f"{split}_dataloader", request)
    if trainer.reload_dataloaders_every_n_epochs != 1:
        # Lightning requests the loaders again only every n epochs (never with 0): the
        # boundary, and the first epoch of a resumed fit, must get their phase's sets.
        rank_zero_info(
            "train_mode=linear_init: the loaders are requested at every epoch "
            "(reload_dataloaders_every_n_epochs=1), so that each epoch reads its phase's data."
        )
        trainer.reload_dataloaders_every_n_epochs = 1


def restart_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Forget ``optimizer``'s moments: the fine-tuning phase starts a new Adam, as Cole's does."""
    optimizer.state.clear()
    rank_zero_info(
        "train_mode=linear_init: the linear phase is over; fine-tuning the whole network on "
        "images from its head, with a new Adam."
    )


def check_linear_init_strategy(strategy: Any, world_size: int) -> None:
    """Refuse DDP that would fail at the first step of the linear phase.

    In the linear phase the backbone is not in the graph (its features are cached), so
    DDP must be told that some parameters get no gradient. It cannot leave the backbone
    out as ``linear_fixed_features`` does: the backbone trains in the second phase.

    Raises:
        ValueError: Under several processes without ``find_unused_parameters``, naming the
            strategy to use.
    """
    # The DDP kwargs the strategy will wrap the model with (no public accessor).
    kwargs = getattr(strategy, "_ddp_kwargs", None)
    if world_size > 1 and kwargs is not None and not kwargs.get("find_unused_parameters"):
        raise ValueError(
            "train_mode=linear_init under DDP: the backbone gets no gradient during the linear "
            "phase, which DDP refuses unless told: use --trainer.strategy "
            "ddp_find_unused_parameters_true."
        )
