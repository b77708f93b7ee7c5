"""Building blocks of the GR framework, in logit space.

GR Loss and the baselines it unifies are all choices of a soft pseudo-label
``k̂``, a re-weighting ``v`` and per-entry losses ``L1``-``L3`` (Chen et al.,
"Boosting Single Positive Multi-label Classification with Generalized Robust
Loss", IJCAI 2024, arXiv:2405.03501). For an entry with logit ``z``,
``p = sigmoid(z)`` and observed label ``s``::

    s = 1 (observed positive):  L1(z)
    s = 0 (unknown):            v(p̂) · [ k̂(p̂)·L2(z) + (1 - k̂(p̂))·L3(z) ]

with ``p̂ = p`` detached. The losses here take the logit ``z`` rather than ``p``:
``log p = logsigmoid(z)`` is exact for any ``z`` whereas ``log(p + eps)`` (as in
the published GR code) saturates for ``|z|`` beyond ~16 in fp32 (and much earlier
in fp16), which is what makes a probability-space loss stop training under mixed
precision. Call them on fp32 tensors.

``k̂`` and ``v`` take probabilities; callers pass ``p̂ = sigmoid(z).detach()``
because in GR Loss neither carries gradient.

The baselines the paper casts in this shape (AN, EPR, EM, LL, Hill, SPLC, Focal,
ASL, ...) add a few more blocks: :func:`pseudo_label_loss` (the bracket
``k̂·L2 + (1 - k̂)·L3`` itself, i.e. cross-entropy against a soft label), the
focal losses of a positive (with a logit margin) and of a negative (with ASL's
probability clip), Hill's negative loss and EPR's regulariser.
:class:`~spml_lightning.losses.base.FrameworkLoss` assembles them into a loss.

The blocks check their number arguments (with
:mod:`~spml_lightning.losses.checks`) only when they are Python numbers:
reading a tensor's value would synchronise the device at every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from spml_lightning.losses.checks import fraction, non_negative_float, positive_float


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
    if isinstance(q, (int, float)):
        positive_float("q", q, "exponent of the generalized positive loss L2")
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
    if isinstance(q, (int, float)):
        positive_float("q", q, "exponent of the generalized negative loss L3")
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
    if isinstance(a, (int, float)):
        fraction("a", a, "a = 1 / expected positives per image")
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
    if isinstance(sigma, (int, float)):
        positive_float("sigma", sigma, "width of the Gaussian re-weighting")
    return torch.exp(-((p - mu) ** 2) / (2 * sigma**2))


def pseudo_label_loss(k: Tensor | float, positive_loss: Tensor, negative_loss: Tensor) -> Tensor:
    """``k̂·L_pos + (1 - k̂)·L_neg``: the loss of an entry whose (soft) label is ``k̂``.

    This is the bracket of the GR framework, ``k̂·L2 + (1 - k̂)·L3``. With
    ``L_pos = -log p`` and ``L_neg = -log(1 - p)`` it is the cross-entropy against the
    soft label ``k̂`` (label smoothing, EM's entropy with ``k̂ = p``, APL's soft
    pseudo-labels, ROLE's cross terms, LL's corrections with ``k̂ = 1``).

    Args:
        k: Soft label in [0, 1]: a number or a tensor broadcastable to the losses.
            Whether it carries gradient is the caller's choice.
        positive_loss: Element-wise loss of the entry taken as positive.
        negative_loss: Element-wise loss of the entry taken as negative.

    Returns:
        Element-wise loss, the broadcast shape of the inputs.
    """
    return k * positive_loss + (1 - k) * negative_loss


def focal_positive_loss(z: Tensor, gamma: float, margin: float = 0.0) -> Tensor:
    """Focal (margin) loss of a positive: ``-(1 - p_m)^γ · log p_m``, ``p_m = sigmoid(z - m)``.

    ``m = 0`` is the positive part of the focal loss (Lin et al., ICCV 2017) and of
    ASL (``γ = γ+``); ``m > 0`` is the "focal margin" positive loss of Hill and SPLC
    (Zhang et al., 2021). Computed as ``exp(γ·logsigmoid(m - z)) · softplus(m - z)``,
    finite for any logit. The focusing weight carries gradient, as in the papers.

    Args:
        z: Logits.
        gamma: Focusing exponent γ >= 0 (0 gives ``-log p_m``).
        margin: Logit margin m subtracted before the sigmoid.

    Returns:
        Element-wise loss, same shape as ``z``.

    Raises:
        ValueError: If ``gamma`` is negative or not finite.
    """
    if isinstance(gamma, (int, float)):
        non_negative_float("gamma", gamma, "focusing exponent of the positive loss")
    shifted = z - margin
    loss = F.softplus(-shifted)
    if gamma == 0:
        return loss
    return torch.exp(gamma * F.logsigmoid(-shifted)) * loss


def focal_negative_loss(z: Tensor, gamma: float, clip: float = 0.0) -> Tensor:
    """Focal (clipped) loss of a negative: ``-p_c^γ · log(1 - p_c)``, ``p_c = max(p - clip, 0)``.

    ``clip = 0`` is the negative part of the focal loss and of SPLC; ``clip > 0`` is
    ASL's probability shifting (Ridnik et al., ICCV 2021: ``γ- = 4``, clip 0.05).
    ``1 - p_c = min(sigmoid(-z) + clip, 1)`` is at least ``clip``, so its log is
    finite; with ``clip = 0`` the log is ``-softplus(z)`` and the weight
    ``exp(γ·logsigmoid(z))``. The weight carries gradient.

    Args:
        z: Logits.
        gamma: Focusing exponent γ >= 0 (0 gives ``-log(1 - p_c)``).
        clip: Probability margin in [0, 1).

    Returns:
        Element-wise loss, same shape as ``z``.

    Raises:
        ValueError: If ``gamma`` is negative or ``clip`` is outside [0, 1).
    """
    if isinstance(gamma, (int, float)):
        non_negative_float("gamma", gamma, "focusing exponent of the negative loss")
    if isinstance(clip, (int, float)):
        fraction("clip", clip, "ASL's probability margin", allow_zero=True)
    if clip == 0:
        loss = F.softplus(z)
        return loss if gamma == 0 else torch.exp(gamma * F.logsigmoid(z)) * loss
    p = torch.sigmoid(z)
    loss = -torch.log(torch.clamp(torch.sigmoid(-z) + clip, max=1.0))
    if gamma == 0:
        return loss
    shifted = p > clip
    # pow on a placeholder 1 where p <= clip: its gradient at p_c = 0 would be
    # 0·inf = NaN for gamma < 1, and torch.where cannot stop a NaN gradient.
    base = torch.where(shifted, p - clip, torch.ones_like(p))
    return torch.where(shifted, base**gamma, torch.zeros_like(p)) * loss


def hill_negative_loss(z: Tensor, lam: float) -> Tensor:
    """Hill loss of a negative (Zhang et al., 2021): ``(λ - p) · p²``.

    Its gradient ``p(1 - p)(2λp - 3p²)`` vanishes for confident positives (p → 1
    when λ = 1.5), which spares likely false negatives.

    Args:
        z: Logits.
        lam: λ, 1.5 in the paper.

    Returns:
        Element-wise loss, same shape as ``z``.
    """
    p = torch.sigmoid(z)
    return (lam - p) * p**2


def expected_positive_regularizer(p: Tensor, expected_positives: float) -> Tensor:
    """EPR term of Cole et al., CVPR 2021: ``(mean_b Σ_c p_bc - k)² / C²``.

    Args:
        p: Probabilities ``(B, C)`` (with gradient).
        expected_positives: k, the expected number of positives per image.

    Returns:
        The scalar regulariser.
    """
    num_classes = p.shape[1]
    return (p.sum(dim=1).mean() - expected_positives) ** 2 / num_classes**2
