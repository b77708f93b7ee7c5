"""The learning rate for a batch size other than the one it was set for.

A larger batch takes fewer optimiser steps per epoch. With the same learning
rate an epoch then moves the weights less, and a short schedule (the demo's
12 epochs, the benchmarks' 8-10) ends less trained: the fast profile's batch 64
instead of the demo's 32 cost several mAP points that way
(``bench/results/cpu_profile_accuracy.txt``). The rules:

* ``sqrt`` -- ``lr * sqrt(B / B0)``: the square-root scaling rule for adaptive
  optimisers such as Adam (Malladi, Lyu, Panigrahi and Arora, "On the SDEs and
  Scaling Rules for Adaptive Gradient Algorithms", NeurIPS 2022; earlier Hoffer,
  Hubara and Soudry, "Train longer, generalize better", NeurIPS 2017): the
  gradient noise of a batch falls as ``1/sqrt(B)``.
* ``sqrt_betas`` -- Malladi et al.'s whole square-root rule for Adam: ``lr *
  sqrt(k)`` as ``sqrt``, and with ``k = B / B0`` Adam's ``1 - beta`` times ``k``
  (``beta1 = 1 - k (1 - 0.9)``, ``beta2 = 1 - k (1 - 0.999)``) and its ``eps``
  divided by ``sqrt(k)``: the moving averages then span as many *images* as at
  ``B0`` (at ``B0``'s betas they span ``k`` times more), so that the larger
  batch follows the same SDE. It needs ``k (1 - 0.9) < 1`` (a batch under ten
  times ``B0``), and at ``k = 8`` (VOC's 8 to 64) leaves little momentum.
  On the demo it did worse than ``sqrt`` for GR, ROLE and EM+APL and better
  for LL-R (``docs/guides/performance.md``).
* ``linear`` -- ``lr * B / B0`` (Goyal et al., "Accurate, Large Minibatch SGD",
  2017): the rule for plain SGD. On the demo at twice the batch it closed
  ROLE's gap but cost LL-R and EM+APL more than ``sqrt`` did, and at four
  times the batch it cost GR more (``docs/guides/performance.md``).
* ``none`` -- ``lr`` as given (the published protocols).

``B`` is the batch one optimiser step sees: the loader's batch times the
number of processes (DDP) times ``accumulate_grad_batches``. ``B0`` is the
batch the learning rate was set for (the config's ``model.lr_batch_size``).

The rule scales every parameter group, a loss's own per-sample parameters
(ROLE's label estimates) included. A row of those gets a gradient once per
epoch whatever the batch, but Adam's second moment decays once per *step*:
with ``S`` steps per epoch a visit moves the row about ``lr * sqrt(S)``
(``v`` settles near ``g**2 * (1 - b2) / (1 - b2**S)``), so a batch twice as
large moves it ``1/sqrt(2)`` as far per epoch -- exactly what ``sqrt`` gives
back (``tests/training/test_lr_scaling.py`` simulates it). Left unscaled, ROLE's
estimates learnt 30 % slower per epoch in the fast profile.

Warm-up (``model.lr_warmup_epochs``): the larger rate a rule gives applies from
the first step, when the head is random and its gradients largest. Goyal et
al. pair the linear rule with a gradual warm-up for that reason: every group's
rate rises linearly, ``rate * k / W`` at optimiser step ``k = 1..W``, to the
full rate at step ``W``, where ``W`` is the warm-up's epochs times the
optimiser steps of an epoch (so the same setting warms up over the same share
of the data at any batch size). On the demo a one-epoch warm-up did not
rescue the linear rule for LL-R and EM+APL (``docs/guides/performance.md``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

__all__ = [
    "ADAM_BETAS",
    "ADAM_EPS",
    "LR_SCALING_RULES",
    "LrScaling",
    "check_lr_scaling",
    "check_lr_warmup",
    "effective_batch_size",
    "scaled_adam",
    "scaled_lr",
    "warmup_factor",
    "warmup_steps",
]

LrScaling = Literal["none", "sqrt", "sqrt_betas", "linear"]
#: The rules ``SPMLModule(lr_scaling=...)`` accepts.
LR_SCALING_RULES: tuple[str, ...] = ("none", "sqrt", "sqrt_betas", "linear")
#: Adam's moment decays and epsilon at ``lr_batch_size`` (torch's defaults, the references').
ADAM_BETAS: tuple[float, float] = (0.9, 0.999)
ADAM_EPS: float = 1e-8


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


def scaled_adam(rule: str, batch_size: int, lr_batch_size: int | None) -> dict[str, Any]:
    """Adam's ``betas`` and ``eps`` for ``batch_size`` under ``rule`` (module doc).

    Raises:
        ValueError: If ``sqrt_betas`` would take beta1 to 0 or below (a batch ten
            times ``lr_batch_size`` or more).
    """
    check_lr_scaling(rule, lr_batch_size)
    if rule != "sqrt_betas" or lr_batch_size is None:
        return {"betas": ADAM_BETAS, "eps": ADAM_EPS}
    ratio = batch_size / lr_batch_size
    beta1, beta2 = (1.0 - ratio * (1.0 - beta) for beta in ADAM_BETAS)
    if beta1 < 1e-6:  # 1 - 10 x (1 - 0.9) is 2e-16 in floating point
        raise ValueError(
            f"lr_scaling sqrt_betas at batch {batch_size} for lr_batch_size {lr_batch_size} "
            f"(k = {ratio:g}) would set Adam's beta1 to 1 - k x 0.1 = {beta1:g}: the rule "
            "holds for a batch under ten times lr_batch_size. Use lr_scaling sqrt, or a "
            "smaller batch."
        )
    return {"betas": (beta1, beta2), "eps": ADAM_EPS / math.sqrt(ratio)}


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


def check_lr_warmup(epochs: float, max_epochs: int | None = None) -> None:
    """Refuse a warm-up that is negative, not a number, or as long as the training."""
    if isinstance(epochs, bool) or not isinstance(epochs, int | float) or not math.isfinite(epochs):
        raise ValueError(f"lr_warmup_epochs must be a number of epochs >= 0, got {epochs!r}.")
    if epochs < 0:
        raise ValueError(f"lr_warmup_epochs must be 0 (no warm-up) or more, got {epochs}.")
    if max_epochs is not None and max_epochs > 0 and epochs >= max_epochs:
        raise ValueError(
            f"lr_warmup_epochs ({epochs}) must be shorter than the training ({max_epochs} "
            "epochs): the rate would never reach its value. Lower model.lr_warmup_epochs "
            "(a warm-up is usually a few percent of the epochs) or train longer."
        )


def warmup_steps(epochs: float, trainer: Any) -> int:
    """Optimiser steps in ``epochs`` epochs of ``trainer``'s training loader (0: no warm-up)."""
    if epochs == 0:
        return 0
    batches = trainer.num_training_batches
    if not math.isfinite(batches):
        raise ValueError(
            "lr_warmup_epochs counts epochs of the training loader, which has no length "
            "(an iterable data set): use lr_warmup_epochs 0."
        )
    steps_per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)
    return max(1, math.ceil(epochs * steps_per_epoch))


def warmup_factor(step: int, steps: int) -> float:
    """The share of its rate a group trains with at 0-based optimiser step ``step``."""
    return 1.0 if step >= steps else (step + 1) / steps
