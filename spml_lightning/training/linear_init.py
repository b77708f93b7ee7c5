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
* the starting point: Cole's linear run ends by reverting to its best-validated
  epoch, so fine-tuning starts from the head and the loss's state of the linear
  epoch whose validation was best, by the metric and mode the checkpoints are
  selected by (``val/mAP``, highest, by default): :class:`BestLinearEpoch`;
* the optimizer: Cole's fine-tuning is a second run with a new Adam, so the first
  fine-tuning epoch starts with empty Adam moments (the rates of each phase are
  the module's business: ``SPMLModule(linear_lr=...)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

__all__ = [
    "BestLinearEpoch",
    "check_linear_init_strategy",
    "restart_optimizer",
    "serve_by_phase",
    "stop_serving_by_phase",
]

#: The parts of a model's state that the linear phase trains (and fine-tuning starts from).
_LINEAR_PARTS = ("head.", "loss.")

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


def stop_serving_by_phase(datamodule: Any) -> None:
    """Give ``datamodule`` its own loaders back (a later fit in another mode reuses it)."""
    for split in _SPLITS:
        vars(datamodule).pop(f"{split}_dataloader", None)


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


class BestLinearEpoch(Callback):
    """Start fine-tuning from the linear phase's best-validated epoch, as Cole's code does.

    After each validation of the linear phase it keeps a copy of the head's and the loss's
    state if the metric the checkpoints are selected by (``trainer.checkpoint_callback``'s
    ``monitor`` and ``mode``; ``val/mAP``, highest, without one) is the best so far; at the
    start of the first fine-tuning epoch it loads that copy into the model. The copy is in
    the checkpoints (``state_dict``), so a fit resumed in the linear phase starts fine-tuning
    from the same epoch as the uninterrupted fit.

    Args:
        linear_epochs: the epochs of the linear phase.
    """

    def __init__(self, linear_epochs: int) -> None:
        self.linear_epochs = linear_epochs
        self.best: float | None = None
        self.epoch: int | None = None
        self.state: dict[str, Tensor] = {}

    @staticmethod
    def _monitor(trainer: Any) -> tuple[str, str]:
        checkpoint = trainer.checkpoint_callback
        return getattr(checkpoint, "monitor", None) or "val/mAP", getattr(checkpoint, "mode", "max")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Keep the head's and the loss's state of a linear epoch better than the best so far."""
        if trainer.sanity_checking or trainer.current_epoch >= self.linear_epochs:
            return
        name, mode = self._monitor(trainer)
        if (metric := trainer.callback_metrics.get(name)) is None:
            return
        value = float(metric)
        if self.best is None or (value > self.best if mode == "max" else value < self.best):
            self.best, self.epoch = value, int(trainer.current_epoch)
            self.state = {
                key: tensor.detach().clone()
                for key, tensor in pl_module.state_dict().items()
                if key.startswith(_LINEAR_PARTS)
            }

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """At the first fine-tuning epoch, load the best linear epoch's head and loss state."""
        if trainer.current_epoch != self.linear_epochs:
            return
        name, _ = self._monitor(trainer)
        if not self.state:
            rank_zero_info(
                f"train_mode=linear_init: no validation of the linear phase logged {name}: "
                "fine-tuning starts from its last epoch."
            )
            return
        pl_module.load_state_dict(self.state, strict=False)
        rank_zero_info(
            f"train_mode=linear_init: fine-tuning starts from the linear phase's best epoch, "
            f"{self.epoch} ({name} {self.best:.4g})."
        )

    def state_dict(self) -> dict[str, Any]:
        """The best linear epoch so far: its metric, its number and its state."""
        return {"best": self.best, "epoch": self.epoch, "state": self.state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take a checkpoint's best linear epoch."""
        self.best, self.epoch = state_dict["best"], state_dict["epoch"]
        self.state = dict(state_dict["state"])
