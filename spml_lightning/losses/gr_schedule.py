"""Epoch schedules of loss hyper-parameters, as pure functions.

GR Loss (Chen et al., "Boosting Single Positive Multi-label Classification with
Generalized Robust Loss", IJCAI 2024, arXiv:2405.03501) ramps the parameters of
its soft pseudo-label ``k̂(p) = sigmoid(w·p + b)`` and of its re-weighting
``v(p) = exp(-(p - μ)² / (2σ²))`` over training, from start to end values.
``"reference"`` mode reproduces the ramp of the published code
(github.com/yan4xi1/GRLoss), asymmetry included, because the paper's numbers
come from it; ``"linear"`` is a plain linear ramp. Everything here is a pure
function of ``(epoch, max_epochs, linear_init)`` so that a resumed run, every DDP
rank and a notebook all see the same values without any stored state. No torch.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass

SCHEDULE_MODES: tuple[str, ...] = ("reference", "linear")
"""Valid values of ``mode`` in :func:`gr_parameters`."""

Endpoints = tuple[float, float, float, float]
"""Start and end values of two parameters, in the layout of ``beta`` or of ``alpha``."""


@dataclass(frozen=True)
class GRParameters:
    """The GR Loss parameters in force during one epoch.

    Attributes:
        w: Slope of the soft pseudo-label ``k̂(p) = sigmoid(w·p + b)``.
        b: Offset of the soft pseudo-label.
        mu: Centre of the re-weighting ``v(p) = exp(-(p - mu)² / (2·sigma²))``.
        sigma: Width of the re-weighting (> 0).
    """

    w: float
    b: float
    mu: float
    sigma: float

    def as_dict(self) -> dict[str, float]:
        """Return the parameters as ``{"w": ..., "b": ..., "mu": ..., "sigma": ...}``."""
        return asdict(self)


def _as_int(name: str, value: int) -> int:
    # operator.index accepts int and numpy integers but rejects floats such as 7.5,
    # which would otherwise silently shift the ramp.
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an integer, found {value!r} of type {type(value).__name__}; "
            f"pass a whole number of epochs."
        ) from None


def _endpoints(name: str, values: Sequence[float], layout: str) -> Endpoints:
    try:
        floats = tuple(float(x) for x in values)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a sequence of 4 numbers {layout}, found {values!r}."
        ) from None
    if len(floats) != 4:
        raise ValueError(f"{name} must have 4 entries {layout}, found {len(floats)}: {values!r}.")
    if not all(math.isfinite(x) for x in floats):
        raise ValueError(f"{name} must contain finite numbers {layout}, found {values!r}.")
    return floats[0], floats[1], floats[2], floats[3]


def validate_gr_endpoints(
    beta: Sequence[float], alpha: Sequence[float]
) -> tuple[Endpoints, Endpoints]:
    """Check and normalise the start/end points of the GR schedule.

    The two sequences use the reference's (different) layouts, kept so that values
    copied from the reference code or paper can be pasted unchanged.

    Args:
        beta: ``(w0, wT, b0, bT)``, the pseudo-label slope and offset at the start
            and at the end of training.
        alpha: ``(mu0, sigma0, muT, sigmaT)``, the re-weighting centre and width at
            the start and at the end of training.

    Returns:
        ``(beta, alpha)`` as tuples of 4 floats.

    Raises:
        ValueError: If either has a length other than 4, a non-finite entry, or a
            width ``sigma0``/``sigmaT`` that is not positive.
    """
    beta_t = _endpoints("beta", beta, "(w0, wT, b0, bT)")
    alpha_t = _endpoints("alpha", alpha, "(mu0, sigma0, muT, sigmaT)")
    for label, sigma in (("sigma0 (alpha[1])", alpha_t[1]), ("sigmaT (alpha[3])", alpha_t[3])):
        if sigma <= 0:
            raise ValueError(
                f"alpha {label} must be > 0 (it is the width of the Gaussian re-weighting), "
                f"found {sigma}; alpha is (mu0, sigma0, muT, sigmaT)."
            )
    return beta_t, alpha_t


def validate_epoch_range(epoch: int, max_epochs: int, linear_init: int = 0) -> tuple[int, int, int]:
    """Check the epoch arguments shared by every schedule.

    Args:
        epoch: 0-based current epoch (Lightning's ``current_epoch``), >= 0.
        max_epochs: Total number of epochs T, >= 1.
        linear_init: Number n of head-only epochs at the start, 0 <= n < T.

    Returns:
        ``(epoch, max_epochs, linear_init)`` as Python ints.

    Raises:
        ValueError: If a value is out of range.
        TypeError: If a value is not an integer.
    """
    epoch = _as_int("epoch", epoch)
    max_epochs = _as_int("max_epochs", max_epochs)
    linear_init = _as_int("linear_init", linear_init)
    if max_epochs < 1:
        raise ValueError(
            f"max_epochs must be >= 1, found {max_epochs}; set trainer.max_epochs to a positive "
            f"number."
        )
    if not 0 <= linear_init < max_epochs:
        raise ValueError(
            f"linear_init must satisfy 0 <= linear_init < max_epochs={max_epochs}, found "
            f"{linear_init}; leave at least one epoch that trains the whole network."
        )
    if epoch < 0:
        raise ValueError(
            f"epoch must be >= 0 (0-based, as Lightning's current_epoch), found {epoch}."
        )
    return epoch, max_epochs, linear_init


def check_schedule_mode(mode: str, name: str = "mode") -> str:
    """``mode``, checked to be one of :data:`SCHEDULE_MODES`.

    Args:
        mode: The ramp mode.
        name: The argument's name, for the message (``GRLoss`` calls it ``schedule``).

    Returns:
        ``mode``.

    Raises:
        ValueError: If ``mode`` is not a known mode.
    """
    if mode not in SCHEDULE_MODES:
        raise ValueError(f"{name} must be one of {list(SCHEDULE_MODES)}, found {mode!r}.")
    return mode


def reference_ramp_fractions(
    epoch: int, max_epochs: int, linear_init: int = 0
) -> tuple[float, float]:
    """Ramp fractions of the published GR code (github.com/yan4xi1/GRLoss), for β and for α.

    With ``e = epoch + 1`` (1-based), ``T = max_epochs`` and ``n = linear_init``::

        f_beta  = max(e - n - 1, 0) / (T - n)
        f_alpha = max(e - n, 0) / (T - n)

    so β never reaches its end point (``f_beta = (T - n - 1) / (T - n)`` at the last
    epoch) while α reaches it exactly. The published numbers come from this
    asymmetry, which is why it is the default. Both are clamped to at most 1 so that
    epochs past ``max_epochs`` keep the end values.

    Args:
        epoch: 0-based epoch.
        max_epochs: Total number of epochs T.
        linear_init: Number n of head-only epochs.

    Returns:
        ``(f_beta, f_alpha)``, each in [0, 1].
    """
    epoch, max_epochs, linear_init = validate_epoch_range(epoch, max_epochs, linear_init)
    e = epoch + 1
    span = max_epochs - linear_init
    f_beta = min(max(e - linear_init - 1, 0) / span, 1.0)
    f_alpha = min(max(e - linear_init, 0) / span, 1.0)
    return f_beta, f_alpha


def linear_ramp_fraction(epoch: int, max_epochs: int, linear_init: int = 0) -> float:
    """Ramp fraction of a plain linear schedule, shared by β and α.

    0 at the first epoch after the ``linear_init`` head-only epochs (and during
    them), 1 at the last epoch::

        f = clamp((e - n - 1) / (T - n - 1), 0, 1),   e = epoch + 1

    and, when only one epoch remains after ``linear_init`` (T - n - 1 = 0), ``f = 1``
    from that epoch on (0 during the head-only epochs before it).

    Args:
        epoch: 0-based epoch.
        max_epochs: Total number of epochs T.
        linear_init: Number n of head-only epochs.

    Returns:
        The fraction in [0, 1].
    """
    epoch, max_epochs, linear_init = validate_epoch_range(epoch, max_epochs, linear_init)
    span = max_epochs - linear_init - 1
    if span == 0:
        # Only one full-network epoch: it gets the end values; head-only epochs
        # before it keep the start values, as they do for longer runs.
        return 1.0 if epoch >= linear_init else 0.0
    return min(max((epoch - linear_init) / span, 0.0), 1.0)


def interpolate(start: float, end: float, fraction: float) -> float:
    """Return ``start + (end - start) · fraction``."""
    return start + (end - start) * fraction


def gr_parameters(
    epoch: int,
    max_epochs: int,
    beta: Sequence[float],
    alpha: Sequence[float],
    linear_init: int = 0,
    mode: str = "reference",
) -> GRParameters:
    """GR Loss parameters (w, b, μ, σ) for one epoch (Chen et al., IJCAI 2024).

    Example (VOC defaults, 8 epochs): ``w`` goes 0, 0.25, ..., 1.75 and ``μ`` goes
    0.5375, 0.575, ..., 0.8 over epochs 0..7 in ``"reference"`` mode.

    Args:
        epoch: 0-based epoch (Lightning's ``current_epoch``).
        max_epochs: Total number of epochs T.
        beta: ``(w0, wT, b0, bT)``.
        alpha: ``(mu0, sigma0, muT, sigmaT)`` (note: a different layout from beta).
        linear_init: Number n of head-only epochs at the start.
        mode: ``"reference"`` reproduces the published code (see
            :func:`reference_ramp_fractions`); ``"linear"`` ramps both from the
            start values at the first epoch after ``linear_init`` to the end values
            at the last epoch (see :func:`linear_ramp_fraction`).

    Returns:
        The parameters in force during ``epoch``.

    Raises:
        ValueError: On an unknown ``mode``, malformed ``beta``/``alpha`` or an epoch
            argument out of range.
    """
    check_schedule_mode(mode)
    (w0, wT, b0, bT), (mu0, sigma0, muT, sigmaT) = validate_gr_endpoints(beta, alpha)
    if mode == "reference":
        f_beta, f_alpha = reference_ramp_fractions(epoch, max_epochs, linear_init)
    else:
        f_beta = f_alpha = linear_ramp_fraction(epoch, max_epochs, linear_init)
    return GRParameters(
        w=interpolate(w0, wT, f_beta),
        b=interpolate(b0, bT, f_beta),
        mu=interpolate(mu0, muT, f_alpha),
        sigma=interpolate(sigma0, sigmaT, f_alpha),
    )
