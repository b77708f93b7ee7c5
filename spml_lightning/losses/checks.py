"""Every argument check of the losses, in one place.

Two kinds of checks:

- **Hyper-parameters** (constructor arguments, and the numbers the blocks of
  :mod:`~spml_lightning.losses.functional` take): each function returns the value
  as a plain Python number and raises a ``ValueError`` that names the argument,
  says what it means and what was found, so that a typo in a config fails at
  construction with a readable message.
- **Tensors** a loss receives: the ``(logits, observed)`` pair of every batch,
  the training set's observed matrix, and the dataset indices of the losses with
  per-sample state.

The checks of the GR schedule's arguments (epochs, the β/α end points, the
ramp mode) are in :mod:`spml_lightning.losses.gr_schedule`: the losses import the schedule,
so the schedule cannot import from here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

REDUCTIONS: tuple[str, ...] = ("mean", "sum")
"""Valid ``reduction`` values: mean over the ``B·C`` entries, or their sum."""

Reduction = Literal["mean", "sum"]

# ---------------------------------------------------------------- hyper-parameters


def _number(name: str, value: object) -> float:
    # bool is an int to Python, but True as a learning rate is a config mistake.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{name} must be a number, found {value!r} of type {type(value).__name__}."
        )
    return float(value)


def positive_float(name: str, value: object, meaning: str) -> float:
    """``value`` as a float, checked finite and > 0."""
    value = _number(name, value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0 ({meaning}), found {value}.")
    return value


def non_negative_float(name: str, value: object, meaning: str) -> float:
    """``value`` as a float, checked finite and >= 0."""
    value = _number(name, value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0 ({meaning}), found {value}.")
    return value


def fraction(
    name: str, value: object, meaning: str, *, allow_zero: bool = False, allow_one: bool = False
) -> float:
    """``value`` as a float in (0, 1), with either end included on request."""
    value = _number(name, value)
    low_ok = value >= 0 if allow_zero else value > 0
    high_ok = value <= 1 if allow_one else value < 1
    if not (math.isfinite(value) and low_ok and high_ok):
        interval = f"{'[' if allow_zero else '('}0, 1{']' if allow_one else ')'}"
        raise ValueError(f"{name} must be in {interval} ({meaning}), found {value}.")
    return value


def whole_number(name: str, value: object, meaning: str, *, minimum: int = 0) -> int:
    """``value`` as an int, checked whole and >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(
            f"{name} must be a whole number >= {minimum} ({meaning}), found {value!r}."
        )
    return int(value)


def one_of(name: str, value: str, choices: Sequence[str], meaning: str = "") -> str:
    """``value``, checked to be one of ``choices``."""
    if value not in choices:
        explained = f" ({meaning})" if meaning else ""
        raise ValueError(f"{name} must be one of {list(choices)}{explained}, found {value!r}.")
    return value


def check_reduction(value: str) -> Reduction:
    """Check a ``reduction`` argument (``"mean"`` or ``"sum"``)."""
    one_of("reduction", value, REDUCTIONS, "mean or sum over the batch x classes entries")
    return value  # type: ignore[return-value]


# ---------------------------------------------------------------- tensors


def validate_inputs(logits: Tensor, observed: Tensor) -> None:
    """Check the ``(logits, observed)`` pair every SPML loss receives.

    The shapes and dtypes are always checked. That ``observed`` holds only 0 and 1
    is checked only for CPU tensors: on an accelerator the check would force a
    device-to-host synchronisation every step, and the datamodules already
    validate the whole observed matrix once at setup.

    Args:
        logits: Floating tensor of shape ``(B, C)``.
        observed: Tensor of shape ``(B, C)`` of any numeric dtype, with 1 for an
            observed positive and 0 for an unknown label.

    Raises:
        ValueError: If a shape or dtype is not as expected, the batch is empty, or
            a CPU ``observed`` holds a value other than 0 or 1.
    """
    if not isinstance(logits, Tensor) or not isinstance(observed, Tensor):
        raise ValueError(
            f"logits and observed must be torch.Tensors, found {type(logits).__name__} and "
            f"{type(observed).__name__}."
        )
    if logits.dim() != 2:
        raise ValueError(
            f"logits must have shape (batch, num_classes), found shape {tuple(logits.shape)}; "
            f"flatten extra dimensions before the loss."
        )
    if not logits.is_floating_point():
        raise ValueError(
            f"logits must be a floating-point tensor (raw scores before the sigmoid), found "
            f"dtype {logits.dtype}."
        )
    if observed.shape != logits.shape:
        raise ValueError(
            f"observed must have the same shape as logits {tuple(logits.shape)}, found "
            f"{tuple(observed.shape)}; pass the (batch, num_classes) observed-label matrix."
        )
    if observed.is_complex():
        raise ValueError(
            f"observed must be a real (bool, integer or float) tensor, found {observed.dtype}."
        )
    if logits.numel() == 0:
        raise ValueError(
            f"logits must be non-empty, found shape {tuple(logits.shape)}; the loss is a mean "
            f"over batch x classes entries."
        )
    if observed.device.type == "cpu":
        check_binary_labels(
            observed, "observed", "check the observed-label matrix of the datamodule"
        )


def check_binary_labels(labels: Tensor, name: str, advice: str) -> None:
    """Raise if ``labels`` holds a value other than 0 (unknown) and 1 (observed positive).

    Args:
        labels: Tensor of any numeric dtype.
        name: What the tensor is, for the message.
        advice: What the user should do, for the message.

    Raises:
        ValueError: Naming up to 5 offending values.
    """
    is_binary = (labels == 0) | (labels == 1)
    if not bool(is_binary.all()):
        bad = labels[~is_binary].flatten()[:5].tolist()
        raise ValueError(
            f"{name} must contain only 0 (unknown) and 1 (observed positive), found values such "
            f"as {bad}; {advice}."
        )


def check_observed_matrix(observed: Any) -> Tensor:
    """Check a training set's observed-label matrix and return it as a tensor.

    Args:
        observed: ``(N, C)`` array or tensor with 1 for an observed positive and 0
            for an unknown label.

    Returns:
        The matrix as a tensor (same device as given, numpy arrays on the CPU).

    Raises:
        ValueError: If it is not a non-empty 2-D matrix of 0 and 1.
    """
    matrix = torch.as_tensor(observed)
    if matrix.dim() != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(
            f"The observed matrix of the training set must be a non-empty (num_samples, "
            f"num_classes) matrix, found shape {tuple(matrix.shape)}."
        )
    check_binary_labels(
        matrix,
        "The observed matrix of the training set",
        "losses with per-sample state support num_neg=0 only",
    )
    return matrix


def check_sample_index(index: Tensor, batch_size: int) -> None:
    """Check that ``index`` holds one integer dataset index per row of the batch.

    Args:
        index: The batch's dataset indices.
        batch_size: B, the number of rows of the logits.

    Raises:
        ValueError: If ``index`` is not a 1-D integer tensor of length B.
    """
    if index.dim() != 1 or index.shape[0] != batch_size or index.is_floating_point():
        raise ValueError(
            f"index must be a 1-D integer tensor with one entry per row of the logits "
            f"({batch_size}), found dtype {index.dtype} and shape {tuple(index.shape)}."
        )


def check_index_range(index: Tensor, num_samples: int, owner: str) -> None:
    """Check that every dataset index points into the training set the state covers.

    Reads the values, so on an accelerator it synchronises the device: callers on
    the per-step path call it for CPU tensors only.

    Args:
        index: Integer tensor of dataset indices.
        num_samples: N, the number of training samples of the state.
        owner: Name of the loss, for the message.

    Raises:
        ValueError: If an index is negative or >= N.
    """
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= num_samples):
        raise ValueError(
            f"index holds values outside [0, {num_samples}), the training set {owner} was bound "
            f"to; the index must be the row of the sample in the training dataset."
        )
