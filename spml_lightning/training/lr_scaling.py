"""The learning rate for a batch size other than the one it was set for.

A larger batch takes fewer optimiser steps per epoch. With the same learning
rate an epoch then moves the weights less, and a short schedule ends less
trained. The rules (``model.lr_scaling``):

* ``sqrt`` -- ``lr * sqrt(B / B0)``: the square-root scaling rule for adaptive
  optimisers such as Adam (Malladi, Lyu, Panigrahi and Arora, "On the SDEs and
  Scaling Rules for Adaptive Gradient Algorithms", NeurIPS 2022; earlier Hoffer,
  Hubara and Soudry, "Train longer, generalize better", NeurIPS 2017): the
  gradient noise of a batch falls as ``1/sqrt(B)``.
* ``linear`` -- ``lr * B / B0`` (Goyal et al., "Accurate, Large Minibatch SGD",
  2017): the rule for plain SGD.
* ``none`` -- ``lr`` as given (the published protocols).

How each rule did on the demo is in ``docs/results/`` (measured with
``bench/experiments/profile_accuracy.py``).

``B`` is the batch one optimiser step sees: the loader's batch times the
number of processes (DDP) times ``accumulate_grad_batches``. ``B0`` is the
batch the learning rate was set for (the config's ``model.lr_batch_size``).

The rule scales every parameter group, a loss's own per-sample parameters
(ROLE's label estimates) included. A row of those gets a gradient once per
epoch whatever the batch, but Adam's second moment decays once per *step*:
with ``S`` steps per epoch a visit moves the row about ``lr * sqrt(S)``
(``v`` settles near ``g**2 * (1 - b2) / (1 - b2**S)``), so a batch twice as
large moves it ``1/sqrt(2)`` as far per epoch -- exactly what ``sqrt`` gives
back (``tests/training/test_lr_scaling.py`` simulates it).
"""

from __future__ import annotations

import math
from typing import Any, Literal

__all__ = [
    "LR_SCALING_RULES",
    "LrScaling",
    "check_lr_scaling",
    "effective_batch_size",
    "scaled_lr",
]

LrScaling = Literal["none", "sqrt", "linear"]
#: The rules ``SPMLModule(lr_scaling=...)`` accepts.
LR_SCALING_RULES: tuple[str, ...] = ("none", "sqrt", "linear")


def check_lr_scaling(rule: str, lr_batch_size: int | None) -> None:
    """Refuse an unknown rule, a non-positive batch size, or a rule without its batch size."""
    if rule not in LR_SCALING_RULES:
        raise ValueError(f"lr_scaling must be one of {', '.join(LR_SCALING_RULES)}, got {rule!r}.")
    if lr_batch_size is not None and (
        isinstance(lr_batch_size, bool) or int(lr_batch_size) != lr_batch_size or lr_batch_size < 1
    ):
        raise ValueError(f"lr_batch_size must be a positive integer, got {lr_batch_size!r}.")
    if rule != "none" and lr_batch_size is None:
        raise ValueError(
            f"lr_scaling {rule!r} scales lr from the batch size it was set for: give "
            "model.lr_batch_size (the benchmark configs set it to their batch size, e.g. "
            "configs/voc.yaml: 8), or use lr_scaling none."
        )


def scaled_lr(lr: float, rule: str, batch_size: int, lr_batch_size: int | None) -> float:
    """``lr`` set for ``lr_batch_size``, scaled by ``rule`` to ``batch_size`` (module doc)."""
    check_lr_scaling(rule, lr_batch_size)
    if rule == "none" or lr_batch_size is None:
        return lr
    ratio = batch_size / lr_batch_size
    return lr * (ratio if rule == "linear" else math.sqrt(ratio))


def effective_batch_size(trainer: Any) -> int:
    """The images one optimiser step of ``trainer`` sees: batch x processes x accumulation.

    Raises:
        RuntimeError: If the trainer's datamodule does not say its batch size.
    """
    batch_size = getattr(getattr(trainer, "datamodule", None), "batch_size", None)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise RuntimeError(
            "lr_scaling needs the training batch size and reads it from the trainer's "
            "datamodule (its batch_size attribute): fit with a datamodule that has one, or "
            "scale lr yourself and use lr_scaling none."
        )
    return batch_size * trainer.world_size * trainer.accumulate_grad_batches
