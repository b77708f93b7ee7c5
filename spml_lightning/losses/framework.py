"""Building blocks of the GR framework (SPEC §2), in logit space.

GR Loss and the baselines it unifies are all choices of a soft pseudo-label
``k̂``, a re-weighting ``v`` and per-entry losses ``L1``-``L3``. The losses here
take the logit ``z`` rather than ``p = sigmoid(z)``: ``log p = logsigmoid(z)`` is
exact for any ``z`` whereas ``log(p + eps)`` saturates for ``|z|`` beyond ~16 in
fp32 (and much earlier in fp16), which is what makes a probability-space loss stop
training under mixed precision. Call them on fp32 tensors.

``k̂`` and ``v`` take probabilities; callers pass ``p̂ = sigmoid(z).detach()``
because in GR Loss neither carries gradient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_positive(name: str, value: float, meaning: str) -> None:
    # Only Python numbers are checked: inspecting a tensor would sync the device.
    if isinstance(value, (int, float)) and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0 ({meaning}), found {value}.")


def neg_log_sigmoid(z: Tensor) -> Tensor:
    """``L1 = -log p = softplus(-z)``, the loss of an observed positive.

    Args:
        z: Logits.

    Returns:
        Element-wise loss, same shape as ``z``.
    """
    return F.softplus(-z)


def neg_log_one_minus_sigmoid(z: Tensor) -> Tensor:
    """``-log(1 - p) = softplus(z)``, the assume-negative loss of an unknown entry.

    It is the ``q → 0`` limit of :func:`generalized_negative_loss`.

    Args:
        z: Logits.

    Returns:
        Element-wise loss, same shape as ``z``.
    """
    return F.softplus(z)


def generalized_positive_loss(z: Tensor, q: float) -> Tensor:
    """``L2(p; q) = (1 - p^q) / q = -expm1(q·logsigmoid(z)) / q``.

    Treats the entry as positive; ``q → 0`` gives ``-log p``, ``q = 1`` gives the
    MAE ``1 - p``. Its gradient is ``∂L2/∂z = -p^q·(1 - p)``.

    Args:
        z: Logits.
        q: Robustness exponent, > 0.

    Returns:
        Element-wise loss, same shape as ``z``.

    Raises:
        ValueError: If ``q`` is not a finite positive number.
    """
    _check_positive("q", q, "exponent of the generalized positive loss L2")
    return -torch.expm1(q * F.logsigmoid(z)) / q


def generalized_negative_loss(z: Tensor, q: float) -> Tensor:
    """``L3(p; q) = (1 - (1 - p)^q) / q = -expm1(q·logsigmoid(-z)) / q``.

    Treats the entry as negative; ``q → 0`` gives ``-log(1 - p)``, ``q = 1`` gives
    the MAE ``p``. Its gradient is ``∂L3/∂z = p·(1 - p)^q``.

    Args:
        z: Logits.
        q: Robustness exponent, > 0.

    Returns:
        Element-wise loss, same shape as ``z``.

    Raises:
        ValueError: If ``q`` is not a finite positive number.
    """
    _check_positive("q", q, "exponent of the generalized negative loss L3")
    return -torch.expm1(q * F.logsigmoid(-z)) / q


def sigmoid_pseudo_label(p: Tensor, w: float | Tensor, b: float | Tensor) -> Tensor:
    """Soft pseudo-label ``k̂(p; β) = sigmoid(w·p + b)``, β = (w, b).

    Args:
        p: Probabilities (detached in GR Loss).
        w: Slope; a scalar or a per-class ``(C,)`` tensor broadcast over the batch.
        b: Offset; same broadcasting as ``w``.

    Returns:
        ``k̂`` in (0, 1), same shape as ``p``.
    """
    return torch.sigmoid(p * w + b)


def bayes_pseudo_label(p: Tensor, a: float) -> Tensor:
    """Calibrated soft pseudo-label ``k̂(p) = (1 - a)·p / (1 - a·p)``.

    The posterior that an unknown entry is positive when ``a = 1 / E[#positives
    per image]`` (the paper's Fig. 5: a = 1/1.46 on VOC, 1/2.94 on COCO).

    Args:
        p: Probabilities in [0, 1] (detached in GR Loss).
        a: Calibration constant, 0 < a < 1.

    Returns:
        ``k̂`` in [0, 1], same shape as ``p``.

    Raises:
        ValueError: If ``a`` is not in (0, 1).
    """
    if isinstance(a, (int, float)) and not 0 < a < 1:
        raise ValueError(
            f"a must be in (0, 1) (a = 1 / expected positives per image), found {a}."
        )
    return (1 - a) * p / (1 - a * p)


def gaussian_weight(p: Tensor, mu: float, sigma: float) -> Tensor:
    """Re-weighting ``v(p; α) = exp(-(p - μ)² / (2σ²))``, α = (μ, σ).

    Args:
        p: Probabilities (detached in GR Loss).
        mu: Centre μ.
        sigma: Width σ, > 0.

    Returns:
        ``v`` in (0, 1], same shape as ``p``.

    Raises:
        ValueError: If ``sigma`` is not a finite positive number.
    """
    _check_positive("sigma", sigma, "width of the Gaussian re-weighting")
    return torch.exp(-((p - mu) ** 2) / (2 * sigma**2))
