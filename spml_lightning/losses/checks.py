"""Validation of loss hyper-parameters, shared by the loss constructors.

Each function returns the value as a plain Python number and raises a
``ValueError`` that names the argument, says what it means and what was found,
so that a typo in a config fails at construction with a readable message.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal

REDUCTIONS: tuple[str, ...] = ("mean", "sum")
"""Valid ``reduction`` values: mean over the ``B·C`` entries, or their sum."""

Reduction = Literal["mean", "sum"]


def _number(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, found {value!r} of type {type(value).__name__}.")
    return float(value)


def positive_float(name: str, value: float, meaning: str) -> float:
    """``value`` as a float, checked finite and > 0."""
    value = _number(name, value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0 ({meaning}), found {value}.")
    return value


def non_negative_float(name: str, value: float, meaning: str) -> float:
    """``value`` as a float, checked finite and >= 0."""
    value = _number(name, value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0 ({meaning}), found {value}.")
    return value


def fraction(name: str, value: float, meaning: str, *, allow_zero: bool = False, allow_one: bool = False) -> float:
    """``value`` as a float in (0, 1), with either end included on request."""
    value = _number(name, value)
    low_ok = value >= 0 if allow_zero else value > 0
    high_ok = value <= 1 if allow_one else value < 1
    if not (math.isfinite(value) and low_ok and high_ok):
        interval = f"{'[' if allow_zero else '('}0, 1{']' if allow_one else ')'}"
        raise ValueError(f"{name} must be in {interval} ({meaning}), found {value}.")
    return value


def non_negative_int(name: str, value: int, meaning: str) -> int:
    """``value`` as an int, checked whole and >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0 ({meaning}), found {value!r}.")
    return int(value)


def check_reduction(value: str) -> Reduction:
    """Check a ``reduction`` argument (``"mean"`` or ``"sum"``)."""
    if value not in REDUCTIONS:
        raise ValueError(
            f"reduction must be one of {list(REDUCTIONS)} (mean or sum over the batch x classes "
            f"entries), found {value!r}."
        )
    return value  # type: ignore[return-value]
