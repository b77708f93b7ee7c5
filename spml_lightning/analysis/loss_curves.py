"""What a loss does to an unknown label, as curves over p ∈ (0, 1).

The paper explains GR Loss by the gradient of each loss with respect to the
logit of an unknown entry (its Fig. 1) and by the soft pseudo-label k̂ drawn
over the measured FN/(FN+TN) curve (its Fig. 5). Both are computed here for
any loss object: the gradient by autograd through the loss's own ``forward``,
so every loss of the registry -- including ones added later -- is covered
without a formula per loss.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from spml_lightning.losses import LOSSES, GRLoss, SPMLLoss
from spml_lightning.losses.functional import bayes_pseudo_label, sigmoid_pseudo_label

__all__ = ["default_losses", "probability_grid", "pseudo_label_curve", "unknown_logit_gradient"]


def probability_grid(points: int = 199) -> np.ndarray:
    """``points`` probabilities evenly spread over the open interval (0, 1)."""
    if points < 1:
        raise ValueError(f"points must be at least 1, got {points}.")
    return np.linspace(0.0, 1.0, points + 2)[1:-1]


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def unknown_logit_gradient(
    loss: nn.Module,
    probabilities: np.ndarray,
    epoch: int | None = None,
    max_epochs: int | None = None,
    linear_init: int = 0,
    positive_probability: float = 0.5,
    scale: float | None = None,
) -> np.ndarray:
    """∂ℓ/∂z of one unknown entry, as a function of its probability p = σ(z).

    For each p the loss is evaluated on a batch of one image with two classes:
    class 0 an observed positive with probability ``positive_probability``,
    class 1 unknown with probability p. The gradient of the loss with respect
    to the unknown logit, computed by autograd through the loss's own
    ``forward``, is multiplied by ``scale`` (default: the number of entries, 2,
    which undoes the mean over B·C entries that SPML losses use), so
    it is the per-entry gradient the paper plots. Each p gets a fresh copy of
    the loss in training mode, so stateful losses are neither changed nor
    influenced by the other points; a loss with per-sample state gets a fresh
    state for the probe image. Negative values push p up (towards
    "positive"), positive values push it down.

    Args:
        loss: any SPML loss (``forward(logits, observed, index)``).
        probabilities: the p values, strictly inside (0, 1).
        epoch: if given, the 0-based epoch whose scheduled parameters apply
            (``loss.set_epoch(epoch, max_epochs, linear_init)``); otherwise the
            loss's current state is used.
        max_epochs: number of epochs of the schedule; needed with ``epoch``.
        linear_init: head-only epochs of the schedule.
        positive_probability: p of the observed positive next to the unknown entry
            (matters only to losses that couple the entries of an image).
        scale: factor applied to the gradient; default 2 (the batch's entries).

    Returns:
        The gradients, same length as ``probabilities``.
    """
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    if p.size and (p.min() <= 0 or p.max() >= 1):
        raise ValueError(
            "probabilities must lie strictly inside (0, 1): the logit of 0 or 1 is infinite."
        )
    if not 0 < positive_probability < 1:
        raise ValueError(f"positive_probability must be in (0, 1), got {positive_probability}.")
    if epoch is not None and max_epochs is None:
        raise ValueError("Pass max_epochs together with epoch (the schedule needs its length).")
    positive_logit = _logit(positive_probability)
    observed = torch.tensor([[1.0, 0.0]])
    index = torch.tensor([0])
    factor = observed.numel() if scale is None else scale
    gradients = np.empty_like(p)
    # One thread: on 1x2 tensors a parallel region is pure overhead, and some CPU
    # kernels (log_sigmoid) open one even then -- milliseconds per call on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i, value in enumerate(p):
            probe = copy.deepcopy(loss).cpu().train()
            if isinstance(probe, SPMLLoss):
                # Losses with per-sample state (ROLE, LL-Cp, EM+APL) are probed with a
                # fresh state for the one probe image, as at the start of training.
                probe.bind_train_set(observed)
                if epoch is not None:
                    probe.set_epoch(epoch, max_epochs, linear_init)
            logits = torch.tensor([[positive_logit, _logit(float(value))]], requires_grad=True)
            # A prior-based loss (GPR, VLPL) gets no pseudo-positive: the entry stays unknown.
            extra = {
                name: torch.zeros_like(observed) for name in getattr(probe, "batch_inputs", ())
            }
            (grad,) = torch.autograd.grad(probe(logits, observed, index, **extra), logits)
            gradients[i] = float(grad[0, 1]) * factor
    finally:
        torch.set_num_threads(threads)
    return gradients


def unknown_logit_gradients(
    losses: Mapping[str, nn.Module], probabilities: np.ndarray, **schedule: Any
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """:func:`unknown_logit_gradient` of several losses, side by side.

    A loss whose schedule cannot be placed at the requested epoch (EM+APL's
    warm-up longer than the run, say) is reported instead of drawn.

    Args:
        losses: the losses by display name.
        probabilities: the p values.
        **schedule: ``epoch``, ``max_epochs``, ``linear_init`` as for
            :func:`unknown_logit_gradient`.

    Returns:
        ``(curves, failures)``: gradients by name, and the reason for every loss
        that could not be evaluated.
    """
    curves: dict[str, np.ndarray] = {}
    failures: dict[str, str] = {}
    for name, loss in losses.items():
        try:
            curves[name] = unknown_logit_gradient(loss, probabilities, **schedule)
        except ValueError as err:
            failures[name] = f"{type(err).__name__}: {err}"
    return curves, failures


def pseudo_label_curve(loss: nn.Module, probabilities: np.ndarray) -> np.ndarray | None:
    """The soft pseudo-label k̂(p) a loss gives an unknown entry, in its current state.

    Defined for GR Loss (Chen et al., IJCAI 2024): ``sigmoid(w·p + b)`` with the scheduled
    (w, b) in force (see ``GRLoss.set_epoch``), the Bayes form
    ``(1 - a)·p / (1 - a·p)``, or the learned per-class logistic regressions.
    Other losses have no k̂ of their own to compare (in the GR framework AN's is
    the constant 0), so they give ``None``.

    Args:
        loss: the loss, e.g. ``SPMLModule.load_from_checkpoint(...).loss``.
        probabilities: the p values.

    Returns:
        (P,) values of k̂, (C, P) for the learned form (one curve per class),
        or ``None`` for a loss without k̂.
    """
    if not isinstance(loss, GRLoss):
        return None
    p = torch.as_tensor(np.asarray(probabilities, dtype=np.float64)).float()
    if loss.k_form == "sigmoid":
        k = sigmoid_pseudo_label(p, loss.current.w, loss.current.b)
    elif loss.k_form == "bayes":
        k = bayes_pseudo_label(p, loss.bayes_a)
    else:
        if loss.num_classes is None:
            raise ValueError(
                "This learned-k̂ GRLoss has no classes yet; call set_num_classes(C) first."
            )
        k = sigmoid_pseudo_label(
            p.unsqueeze(0), loss.k_weight.cpu().unsqueeze(1), loss.k_bias.cpu().unsqueeze(1)
        )
    return k.double().numpy()


def default_losses(
    hyper_parameters: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[dict[str, SPMLLoss], dict[str, str]]:
    """One instance of every registered loss, for side-by-side gradient curves.

    Losses that train on the full labels (the ``full`` upper bound) are left
    out: they have no unknown entries.

    Args:
        hyper_parameters: init arguments by registry name, e.g.
            ``{"GR": {"q2": 0.05}}``; other losses use their defaults.

    Returns:
        ``(losses, failures)``: the built losses by name, and for every loss
        that could not be built with the given arguments, the error message
        (so a caller can report it; nothing is dropped silently).
    """
    hyper_parameters = dict(hyper_parameters or {})
    unknown = sorted(set(hyper_parameters) - set(LOSSES))
    if unknown:
        raise ValueError(f"No registered loss named {unknown}; the registry has {sorted(LOSSES)}.")
    losses: dict[str, SPMLLoss] = {}
    failures: dict[str, str] = {}
    for name, cls in LOSSES.items():
        if getattr(cls, "trains_on_targets", False):
            continue
        try:
            losses[name] = cls(**dict(hyper_parameters.get(name, {})))
        except Exception as err:  # any loss may need arguments no default provides
            failures[name] = f"{type(err).__name__}: {err}"
    return losses, failures
