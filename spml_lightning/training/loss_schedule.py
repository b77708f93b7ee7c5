"""The loss's epoch schedule: set once per epoch, stored in and restored from checkpoints.

Losses learn the epoch only through ``SPMLLoss.set_epoch`` (GR Loss's k̂ and
weight curves, LL's rejection rate, warm-ups); a loss that rescores the
training set (EM+APL) does so right after, at the start of an epoch only: a
mid-epoch resume restores the per-sample state that scoring produced.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

from spml_lightning.losses import SPMLLoss

__all__ = ["LossSchedule", "schedule_epochs"]


def schedule_epochs(
    schedule_epochs: int | None, max_epochs: int | None, linear_init: int = 0
) -> int:
    """The epochs the loss schedule spans: ``schedule_epochs``, else the trainer's ``max_epochs``.

    Raises:
        ValueError: If neither is a number of epochs >= 1 (naming the flags that set them),
            or ``linear_init`` (head-only epochs) leaves none to train the backbone.
    """
    epochs = schedule_epochs or max_epochs
    if epochs is None or epochs < 1:
        raise ValueError(
            f"The loss schedule spans a number of epochs >= 1, but the trainer's max_epochs is "
            f"{max_epochs} and schedule_epochs is {schedule_epochs}: set --trainer.max_epochs "
            "(or --model.schedule_epochs) to the number of epochs to train."
        )
    if linear_init >= epochs:
        raise ValueError(
            f"linear_init ({linear_init}) must be smaller than the number of epochs ({epochs})."
        )
    return int(epochs)


class LossSchedule:
    """Where a loss's schedule stands, and the one way to move it.

    The loss is given to each call, not kept: a model's loss may be replaced.
    """

    def __init__(self) -> None:
        #: ``{"epoch", "max_epochs", "linear_init"}`` the loss was last set to (in this
        #: process, or by a restored checkpoint); None before.
        self.state: dict[str, int] | None = None
        self._applied_epoch: int | None = None  # set in this process (not by a restore)

    def is_set_for(self, epoch: int) -> bool:
        """Whether :meth:`apply` ran for ``epoch`` in this process (a mid-epoch resume skips it)."""
        return self._applied_epoch == epoch

    def apply(
        self,
        loss: SPMLLoss,
        epoch: int,
        max_epochs: int,
        linear_init: int,
        score_train_set: Callable[[], tuple[Tensor, Tensor]] | None = None,
    ) -> dict[str, float]:
        """Move ``loss`` to ``epoch``; rescore the training set if given and the loss asks.

        Args:
            loss: the loss to move.
            epoch: 0-based epoch.
            max_epochs: the epochs the schedule spans (:func:`schedule_epochs`).
            linear_init: head-only epochs at the start.
            score_train_set: returns (index, logits) of this rank's training rows; None
                (mid-epoch) never rescores.

        Returns:
            The scheduled values now in force, by name, for logging.
        """
        self.state = {"epoch": epoch, "max_epochs": max_epochs, "linear_init": linear_init}
        values = loss.set_epoch(**self.state)
        if score_train_set is not None and loss.needs_train_scores():
            values = {**values, **loss.update_from_train_scores(*score_train_set())}
        self._applied_epoch = epoch
        return values

    def restore(self, loss: SPMLLoss, state: Mapping[str, int]) -> None:
        """Set ``loss`` to a checkpoint's schedule (its weights were trained with it last)."""
        self.state = dict(state)
        loss.set_epoch(state["epoch"], state["max_epochs"], state["linear_init"])
