"""Generalized Robust Loss (GR Loss) for single-positive multi-label learning."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, Literal

import torch
import torch.distributed as dist
from torch import Tensor

from spml_lightning.losses.base import FrameworkLoss
from spml_lightning.losses.checks import (
    fraction,
    non_negative_float,
    one_of,
    positive_float,
    whole_number,
)
from spml_lightning.losses.functional import (
    bayes_pseudo_label,
    gaussian_weight,
    generalized_negative_loss,
    generalized_positive_loss,
    pseudo_label_loss,
    sigmoid_pseudo_label,
)
from spml_lightning.losses.gr_schedule import (
    GRParameters,
    check_schedule_mode,
    gr_parameters,
    validate_gr_endpoints,
)
from spml_lightning.losses.search_space import SearchRange

K_FORMS: tuple[str, ...] = ("sigmoid", "bayes", "learned")
"""Valid values of ``GRLoss(k_form=...)``."""

LEARNED_W0: float = 0.0
LEARNED_B0: float = -2.0


class GRLoss(FrameworkLoss):
    r"""Generalized Robust Loss (Chen et al., IJCAI 2024).

    "Boosting Single Positive Multi-label Classification with Generalized Robust
    Loss", Y. Chen et al., IJCAI 2024, arXiv:2405.03501; published code
    github.com/yan4xi1/GRLoss ("the reference" below).

    With ``z`` the logit, ``p = sigmoid(z)``, ``p̂ = p`` detached and ``s`` the
    observed label, the loss of one entry is::

        s = 1:  L1 = -log p
        s = 0:  v(p̂) · [ k̂(p̂) · L2(p; q2) + (1 - k̂(p̂)) · L3(p; q3) ]

        L2(p; q) = (1 - p^q) / q              (robust "positive" loss)
        L3(p; q) = (1 - (1 - p)^q) / q        (robust "negative" loss)
        v(p̂)    = exp(-(p̂ - μ)² / (2σ²))      (re-weighting)
        k̂(p̂)    = sigmoid(w·p̂ + b)            (soft pseudo-label, k_form="sigmoid")

    averaged over all ``B·C`` entries. ``k̂`` and ``v`` carry no gradient, so for an
    unknown entry ``∂ℓ/∂z = v·[-k̂·p^q2·(1 - p) + (1 - k̂)·p·(1 - p)^q3]``.

    Everything is computed in logit space and fp32 (``L2 = -expm1(q·logsigmoid(z))/q``
    and so on), with autocast disabled, so the loss stays finite and trainable for
    any logit and any input precision.

    **Schedule.** ``(w, b)`` ramp from ``(w0, b0)`` to ``(wT, bT)`` and ``(μ, σ)``
    from ``(μ0, σ0)`` to ``(μT, σT)`` over training; :meth:`set_epoch` sets them
    (see :func:`spml_lightning.losses.gr_schedule.gr_parameters`). Before the first call the
    start values are in force. They are a pure function of the epoch, so they are
    plain attributes (:attr:`current`), not part of the ``state_dict``.

    **Forms of k̂.**

    - ``"sigmoid"``: the scheduled ``sigmoid(w·p̂ + b)`` above.
    - ``"bayes"``: the calibrated ``(1 - a)·p̂ / (1 - a·p̂)`` with
      ``a = bayes_a = 1 / E[#positives per image]``; ``(w, b)`` are unused.
    - ``"learned"``: one logistic regression per class,
      ``k̂_c = sigmoid(w_c·p̂ + b_c)``, initialised ``w_c = 0, b_c = -2``, trained
      by SGD with momentum (PyTorch semantics with no dampening:
      ``d = g + weight_decay·θ; buf = momentum·buf + d; θ -= lr·buf``, ``buf``
      starting at 0 so the first step uses ``buf = d``) on this same loss with
      ``k̂`` not detached. The loss trains them itself at every training-mode
      forward, so no second optimizer is needed and it works under any precision
      or strategy: ``w_c, b_c`` and their momentum are registered buffers
      (checkpointed, moved with the module, never seen by the main optimizer).
      The gradient ``∂ℓ/∂b_c = Σ_b [s=0]·v·(L2 - L3)·k̂(1 - k̂) / (B·C)`` (times
      ``p̂`` for ``w_c``) is computed in closed form, averaged over DDP ranks with
      ``all_reduce`` when a process group is initialised (so the parameters stay
      identical on every rank; every rank must therefore call the loss in
      training mode equally often, as DDP does), and applied after the returned
      value is computed: the returned loss uses the pre-update ``k̂`` as a
      constant, so its gradient w.r.t. the logits is the same "k̂, v constant"
      gradient as for the other forms. In eval mode nothing is updated. When
      ``num_classes`` is not given, :meth:`set_num_classes` allocates the buffers.

    Args:
        beta: ``(w0, wT, b0, bT)``; VOC default ``(0, 2, -2, -2)``, COCO/NUS/CUB
            ``(0, 10, -2, -8)``.
        alpha: ``(mu0, sigma0, muT, sigmaT)`` (note the different layout from
            ``beta``); default ``(0.5, 2, 0.8, 0.5)``.
        q2: Exponent of ``L2``, > 0.
        q3: Exponent of ``L3``, > 0 (CUB uses 1.5).
        k_form: ``"sigmoid"``, ``"bayes"`` or ``"learned"``.
        bayes_a: ``a`` of the Bayes form, in (0, 1); 1/1.46 for VOC, 1/2.94 for COCO.
        schedule: ``"reference"`` (the published code's asymmetric ramp, default) or
            ``"linear"``.
        num_classes: Number of classes; needed (here or via
            :meth:`set_num_classes`) only for ``k_form="learned"``.
        learned_lr: SGD learning rate of the learned ``k̂``.
        learned_momentum: SGD momentum of the learned ``k̂``, in [0, 1).
        learned_weight_decay: SGD weight decay of the learned ``k̂``, >= 0.

    Raises:
        ValueError: On any invalid hyper-parameter; the message names it.

    Example:
        >>> loss = GRLoss(beta=(0, 2, -2, -2), alpha=(0.5, 2, 0.8, 0.5), q2=0.01, q3=1.0)
        >>> loss.set_epoch(0, 8)
        {'w': 0.0, 'b': -2.0, 'mu': 0.5375, 'sigma': 1.8125}
        >>> loss(torch.zeros(2, 3), torch.tensor([[1, 0, 0], [0, 1, 0]])).shape
        torch.Size([])
    """

    #: q2, q3 and the end points wT, bT, muT, sigmaT, over ranges that hold GR's and AEVLP's
    #: published settings (VOC and COCO/NUS/CUB: wT 2 or 10, bT -2 or -8, q3 1 or 1.5).
    search_space: ClassVar[Mapping[str, SearchRange]] = {
        "q2": SearchRange.log_uniform(0.001, 1.0),
        "q3": SearchRange.uniform(0.5, 2.0),
        "beta.1": SearchRange.uniform(0.0, 12.0),
        "beta.3": SearchRange.uniform(-10.0, 0.0),
        "alpha.2": SearchRange.uniform(0.5, 1.0),
        "alpha.3": SearchRange.log_uniform(0.1, 2.0),
    }

    # The learned k̂'s buffers, registered by set_num_classes (k_form="learned" only).
    k_weight: Tensor
    k_bias: Tensor
    k_weight_momentum: Tensor
    k_bias_momentum: Tensor

    def __init__(
        self,
        beta: Sequence[float] = (0.0, 2.0, -2.0, -2.0),
        alpha: Sequence[float] = (0.5, 2.0, 0.8, 0.5),
        q2: float = 0.01,
        q3: float = 1.0,
        k_form: Literal["sigmoid", "bayes", "learned"] = "sigmoid",
        bayes_a: float = 1 / 1.46,
        schedule: Literal["reference", "linear"] = "reference",
        num_classes: int | None = None,
        learned_lr: float = 0.1,
        learned_momentum: float = 0.9,
        learned_weight_decay: float = 1e-3,
    ) -> None:
        super().__init__()
        self.beta, self.alpha = validate_gr_endpoints(beta, alpha)
        self.q2 = positive_float("q2", q2, "exponent of the robust positive loss L2")
        self.q3 = positive_float("q3", q3, "exponent of the robust negative loss L3")
        self.k_form = one_of("k_form", k_form, K_FORMS)
        self.bayes_a = fraction(
            "bayes_a", bayes_a, "1 / expected positives per image, e.g. 1/1.46 for VOC"
        )
        self.schedule = check_schedule_mode(schedule, "schedule")
        self.learned_lr = positive_float(
            "learned_lr", learned_lr, "SGD learning rate of the learned k"
        )
        self.learned_momentum = fraction(
            "learned_momentum", learned_momentum, "SGD momentum of the learned k", allow_zero=True
        )
        self.learned_weight_decay = non_negative_float(
            "learned_weight_decay", learned_weight_decay, "SGD weight decay of the learned k"
        )

        w0, _, b0, _ = self.beta
        mu0, sigma0, _, _ = self.alpha
        self._current = GRParameters(w=w0, b=b0, mu=mu0, sigma=sigma0)

        self.num_classes: int | None = None
        if num_classes is not None:
            self.set_num_classes(num_classes)

    @property
    def current(self) -> GRParameters:
        """The schedule values (w, b, μ, σ) in force for the current epoch."""
        return self._current

    def set_num_classes(self, num_classes: int) -> None:
        """Record C and, for ``k_form="learned"``, allocate the per-class k̂ buffers.

        Calling it again with the same C keeps the (possibly trained) buffers.

        Args:
            num_classes: Number of classes C, >= 1.

        Raises:
            ValueError: If ``num_classes`` is not a whole number >= 1 or differs from
                the C the loss was already set up for.
        """
        num_classes = whole_number("num_classes", num_classes, "number of classes C", minimum=1)
        if self.num_classes is not None:
            if num_classes != self.num_classes:
                raise ValueError(
                    f"num_classes={num_classes} differs from the num_classes={self.num_classes} "
                    f"this GRLoss was built for; create a new loss for a different label set."
                )
            return
        self.num_classes = num_classes
        if self.k_form == "learned":
            self.register_buffer("k_weight", torch.full((num_classes,), LEARNED_W0))
            self.register_buffer("k_bias", torch.full((num_classes,), LEARNED_B0))
            self.register_buffer("k_weight_momentum", torch.zeros(num_classes))
            self.register_buffer("k_bias_momentum", torch.zeros(num_classes))

    def set_epoch(self, epoch: int, max_epochs: int, linear_init: int = 0) -> dict[str, float]:
        """Set the scheduled parameters for ``epoch``.

        Args:
            epoch: 0-based epoch (Lightning's ``current_epoch``).
            max_epochs: Total number of epochs.
            linear_init: Number of head-only epochs at the start.

        Returns:
            The values in use, for logging: ``w, b, mu, sigma`` for the sigmoid form,
            ``mu, sigma`` for the Bayes and learned forms (which do not use the
            scheduled ``w, b``).
        """
        self._current = gr_parameters(
            epoch, max_epochs, self.beta, self.alpha, linear_init=linear_init, mode=self.schedule
        )
        values = self._current.as_dict()
        if self.k_form != "sigmoid":
            del values["w"], values["b"]
        return values

    def unknown_loss(self, z: Tensor, unknown: Tensor, index: Tensor | None) -> Tensor:
        """``v(p̂)·[k̂(p̂)·L2(p; q2) + (1 - k̂(p̂))·L3(p; q3)]``; trains the learned k̂.

        For ``k_form="learned"`` in training mode, the per-class k̂ takes one SGD
        step after ``k̂`` has been evaluated, so the returned loss uses the
        pre-update ``k̂`` as a constant.

        Raises:
            ValueError: For the learned k̂, when the number of classes is unset or
                does not match, or the buffers are on another device.
        """
        if self.k_form == "learned":
            self._check_learned_ready(z)
        params = self._current
        p_hat = torch.sigmoid(z).detach()
        v = gaussian_weight(p_hat, params.mu, params.sigma)
        if self.k_form == "sigmoid":
            k = sigmoid_pseudo_label(p_hat, params.w, params.b)
        elif self.k_form == "bayes":
            k = bayes_pseudo_label(p_hat, self.bayes_a)
        else:
            # detach(): the main graph must see k̂ as a constant even if someone
            # made the buffers require grad.
            k = sigmoid_pseudo_label(p_hat, self.k_weight.detach(), self.k_bias.detach())
        l2 = generalized_positive_loss(z, self.q2)
        l3 = generalized_negative_loss(z, self.q3)
        if self.k_form == "learned" and self.training:
            self._learned_sgd_step(p_hat, v, l2, l3, k, unknown)
        return v * pseudo_label_loss(k, l2, l3)

    def _check_learned_ready(self, z: Tensor) -> None:
        if self.num_classes is None:
            raise ValueError(
                "GRLoss(k_form='learned') needs the number of classes before the first forward; "
                "pass num_classes=... or call set_num_classes(C)."
            )
        if z.shape[1] != self.num_classes:
            raise ValueError(
                f"logits have {z.shape[1]} classes but the learned k of this GRLoss has "
                f"num_classes={self.num_classes}."
            )
        if self.k_weight.device != z.device:
            raise ValueError(
                f"the learned k buffers are on {self.k_weight.device} but the logits are on "
                f"{z.device}; move the loss with .to(device) (a LightningModule does this itself)."
            )

    @torch.no_grad()
    def _learned_sgd_step(
        self, p_hat: Tensor, v: Tensor, l2: Tensor, l3: Tensor, k: Tensor, unknown: Tensor
    ) -> None:
        # Closed form of the gradient of the batch loss w.r.t. (w_c, b_c): only k̂
        # depends on them, ∂ℓ/∂k̂ = v·(L2 - L3)/(B·C) on unknown entries and
        # ∂k̂/∂b = k̂(1 - k̂), ∂k̂/∂w = k̂(1 - k̂)·p̂. No autograd graph is needed, so
        # this also works when the caller runs under no_grad.
        dloss_dlogit = torch.where(unknown, v * (l2 - l3) * k * (1 - k), 0.0) / p_hat.numel()
        grad = torch.stack((dloss_dlogit.mul(p_hat).sum(0), dloss_dlogit.sum(0)))
        if dist.is_available() and dist.is_initialized():
            # Average, as DDP does for parameters, so every rank applies the same step.
            dist.all_reduce(grad)
            grad /= dist.get_world_size()
        for param, momentum, g in (
            (self.k_weight, self.k_weight_momentum, grad[0]),
            (self.k_bias, self.k_bias_momentum, grad[1]),
        ):
            d_p = g + self.learned_weight_decay * param
            # Zero-initialised momentum makes the first step buf = d_p, as in torch.optim.SGD.
            momentum.mul_(self.learned_momentum).add_(d_p)
            param.sub_(self.learned_lr * momentum)

    def extra_repr(self) -> str:
        """Summarise the hyper-parameters for ``print(loss)``."""
        text = (
            f"beta={self.beta}, alpha={self.alpha}, q2={self.q2}, q3={self.q3}, "
            f"k_form={self.k_form!r}, schedule={self.schedule!r}"
        )
        if self.k_form == "bayes":
            text += f", bayes_a={self.bayes_a:.4g}"
        if self.k_form == "learned":
            text += f", num_classes={self.num_classes}, learned_lr={self.learned_lr}"
        return text
