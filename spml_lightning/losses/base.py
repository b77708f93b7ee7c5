"""The two base classes of the losses: :class:`SPMLLoss` and :class:`FrameworkLoss`.

:class:`SPMLLoss` is what every loss is: the hooks the LightningModule drives,
fp32 inputs, and the config round-trip that checkpoints store.
:class:`FrameworkLoss` is what every loss but ROLE is: an instance of the GR
framework, built from the blocks of :mod:`~spml_lightning.losses.functional`.

Losses are plain :class:`torch.nn.Module` objects (no Lightning import) so that
they can be tested with bare tensors and reused in any training loop.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import importlib
import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from spml_lightning.losses.checks import Reduction, validate_inputs
from spml_lightning.losses.functional import neg_log_sigmoid

__all__ = ["FrameworkLoss", "SPMLLoss", "autocast_disabled", "loss_from_config"]


def autocast_disabled(tensor: Tensor) -> contextlib.AbstractContextManager[Any]:
    """Context in which autocast is off for ``tensor``'s device type.

    Losses run in fp32 whatever the surrounding precision: low-precision
    probabilities underflow (p^q, log(1 - p)) and a grad scaler then skips every
    step. Device types without autocast support get a no-op context.

    Args:
        tensor: Any tensor on the device the loss computes on.

    Returns:
        A context manager.
    """
    device_type = tensor.device.type
    is_available = getattr(torch.amp, "is_autocast_available", None)
    if is_available is not None and not is_available(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)


class SPMLLoss(nn.Module, abc.ABC):
    """Base class of the single-positive multi-label losses.

    A loss maps ``(logits, observed, index)`` to an fp32 scalar. The
    LightningModule drives it through these hooks:

    - :meth:`set_num_classes` once at construction;
    - :meth:`bind_train_set` when fitting starts, with the training set's observed
      matrix (losses with per-sample state allocate it there; see
      :class:`~spml_lightning.losses.state.PerSampleStateLoss`);
    - :meth:`optimizer_groups` when it builds the optimizer;
    - :meth:`set_epoch` at the start of every training epoch: the one way a loss
      learns the epoch (schedules, warm-ups, rejection rates); its return value
      is logged;
    - right after :meth:`set_epoch`, if :meth:`needs_train_scores` says so, it
      scores the whole training set without augmentation (its own shard under
      DDP) and hands the logits to :meth:`update_from_train_scores`.

    Subclasses implement :meth:`forward` and start it with
    ``z, s = self.prepare_inputs(logits, observed)`` and
    ``with autocast_disabled(z):`` so every loss computes in fp32.

    Attributes:
        trains_on_targets: True only for the fully supervised upper bound; the
            module then passes the full labels as ``observed``.
        batch_inputs: per-sample entries of the training batch, beyond the logits, the
            observed labels and the index, that ``forward`` takes as keyword arguments of
            the same names (GPR and VLPL: ``pseudo_positive``, from a prior).
    """

    trains_on_targets: ClassVar[bool] = False
    batch_inputs: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording_init(cls.__dict__["__init__"])  # type: ignore[method-assign]

    @property
    def init_args(self) -> dict[str, Any]:
        """The arguments this loss was constructed with (defaults filled in)."""
        return dict(self.__dict__.get("_init_args", {}))

    def config(self) -> dict[str, Any] | None:
        """``{"class_path", "init_args"}`` that rebuilds this loss (see :func:`loss_from_config`).

        Checkpoints store this, so that a model trained with any loss loads
        back with the same loss without the config file. None for a loss that
        cannot be rebuilt so (a wrapped plain module, ``losses.adapter``).
        """
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": self.init_args}

    def set_num_classes(self, num_classes: int) -> None:
        """Tell the loss the number of classes C (default: nothing to do).

        Args:
            num_classes: Number of classes C.
        """
        return None

    def set_epoch(self, epoch: int, max_epochs: int, linear_init: int = 0) -> dict[str, float]:
        """Move the loss to ``epoch`` (default: nothing is scheduled).

        Args:
            epoch: 0-based epoch (Lightning's ``current_epoch``).
            max_epochs: Total number of epochs.
            linear_init: Number of head-only epochs at the start.

        Returns:
            The scheduled values now in force, by name, for logging.
        """
        return {}

    def bind_train_set(self, observed: Tensor) -> None:
        """Receive the training set's observed labels (default: nothing to keep).

        Called once when fitting starts (before the optimizer is built and before a
        checkpoint is restored), with row ``i`` of ``observed`` the sample whose
        dataset ``index`` is ``i``.

        Args:
            observed: ``(N, C)`` observed-label matrix of the training set.
        """
        return None

    def needs_train_scores(self) -> bool:
        """Whether the training set must be scored now (default: never).

        Asked right after every :meth:`set_epoch`; when True the caller runs the
        model without augmentation over the training set and passes the result to
        :meth:`update_from_train_scores`.
        """
        return False

    def update_from_train_scores(self, index: Tensor, logits: Tensor) -> dict[str, float]:
        """Update the loss from scores of the training set (see :meth:`needs_train_scores`).

        Args:
            index: ``(n,)`` dataset indices of the scored samples (this rank's shard
                under DDP; every rank calls this at the same time).
            logits: ``(n, C)`` logits of those samples.

        Returns:
            Values to log, by name.

        Raises:
            NotImplementedError: If the loss never asks for scores.
        """
        raise NotImplementedError(f"{type(self).__name__} does not use scores of the training set.")

    def optimizer_groups(self, lr: float) -> list[dict[str, Any]]:
        """Extra parameter groups for the module's optimizer (default: none).

        Args:
            lr: The backbone learning rate, for losses whose own parameters train
                at a multiple of it.

        Returns:
            A list of ``torch.optim`` parameter-group dicts.
        """
        return []

    @staticmethod
    def prepare_inputs(logits: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
        """Validate the inputs and cast both to fp32.

        Args:
            logits: Floating tensor ``(B, C)`` of any float dtype (fp16/bf16 too).
            observed: Tensor ``(B, C)`` in {0, 1} of any numeric dtype.

        Returns:
            ``(logits, observed)`` as fp32 tensors; the gradient still flows back to
            the original ``logits``.

        Raises:
            ValueError: See :func:`~spml_lightning.losses.checks.validate_inputs`.
        """
        validate_inputs(logits, observed)
        return logits.float(), observed.float()

    @abc.abstractmethod
    def forward(self, logits: Tensor, observed: Tensor, index: Tensor | None = None) -> Tensor:
        """Compute the loss of a batch.

        Args:
            logits: ``(B, C)`` raw scores, any float dtype.
            observed: ``(B, C)`` observed labels in {0, 1}.
            index: ``(B,)`` dataset indices of the samples, for losses that keep
                per-sample state; ignored by the others.

        Returns:
            The loss as an fp32 scalar tensor.
        """


class FrameworkLoss(SPMLLoss):
    r"""An SPML loss in the shape of the GR framework.

    Chen et al., IJCAI 2024 (arXiv:2405.03501) write GR Loss and the losses it
    unifies in one shape. For the entry (b, c) with logit ``z`` and observed
    label ``s``::

        positive (s = 1):  L1(z)                                  observed_loss
        unknown  (s = 0):  v · [ k̂·L2(z) + (1 - k̂)·L3(z) ]        unknown_loss

    reduced over all ``B·C`` entries (``reduction``: mean, the default, or sum),
    plus an optional batch-level term (EPR's regulariser, :meth:`batch_loss`).
    Subclasses pick ``k̂``, ``v`` and ``L1``-``L3`` from the blocks of
    :mod:`spml_lightning.losses.functional` and may redefine which entries count as
    positive (:meth:`positive_mask`, for LL-Cp's permanent corrections). Everything
    runs in fp32 with autocast disabled.
    """

    reduction: Reduction = "mean"

    def positive_mask(self, observed: Tensor, index: Tensor | None) -> Tensor:
        """Entries treated as positives (default: the observed positives).

        Args:
            observed: ``(B, C)`` fp32 observed labels.
            index: ``(B,)`` dataset indices, or None.

        Returns:
            Boolean ``(B, C)`` mask.
        """
        return observed > 0.5

    def observed_loss(self, z: Tensor) -> Tensor:
        """``L1``, the loss of a positive entry (default ``-log p``)."""
        return neg_log_sigmoid(z)

    @abc.abstractmethod
    def unknown_loss(self, z: Tensor, unknown: Tensor, index: Tensor | None) -> Tensor:
        """``v·[k̂·L2 + (1 - k̂)·L3]``, the loss of the unknown entries.

        Args:
            z: ``(B, C)`` fp32 logits.
            unknown: Boolean ``(B, C)`` mask of the unknown entries (the values at
                the other entries are discarded).
            index: ``(B,)`` dataset indices, or None.

        Returns:
            ``(B, C)`` element-wise losses, finite everywhere.
        """

    def batch_loss(self, z: Tensor) -> Tensor | None:
        """A batch-level term added to the reduced loss (default: none)."""
        return None

    def forward(self, logits: Tensor, observed: Tensor, index: Tensor | None = None) -> Tensor:
        """Compute the loss of a batch.

        Args:
            logits: ``(B, C)`` raw scores, any float dtype.
            observed: ``(B, C)`` observed labels in {0, 1}.
            index: ``(B,)`` dataset indices (used by losses with per-sample state).

        Returns:
            The fp32 scalar loss.
        """
        z, s = self.prepare_inputs(logits, observed)
        with autocast_disabled(z):
            positive = self.positive_mask(s, index)
            unknown = self.unknown_loss(z, ~positive, index)
            entries = torch.where(positive, self.observed_loss(z), unknown)
            loss = entries.sum() if self.reduction == "sum" else entries.mean()
            extra = self.batch_loss(z)
            return loss if extra is None else loss + extra


def _plain(value: Any) -> Any:
    """Tuples to lists, so that recorded arguments serialise to YAML/JSON."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _recording_init(init: Any) -> Any:
    """Wrap a loss ``__init__`` so that the outermost call records its arguments."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: SPMLLoss, *args: Any, **kwargs: Any) -> None:
        if "_init_args" not in self.__dict__:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            recorded = {}
            for name, value in list(bound.arguments.items())[1:]:
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    recorded.update({k: _plain(v) for k, v in value.items()})
                elif kind is not inspect.Parameter.VAR_POSITIONAL:
                    recorded[name] = _plain(value)
            # nn.Module.__setattr__ needs Module.__init__ to have run; this runs before it.
            object.__setattr__(self, "_init_args", recorded)
        init(self, *args, **kwargs)

    return wrapper


def loss_from_config(config: Mapping[str, Any]) -> SPMLLoss:
    """Build a loss from ``{"class_path": ..., "init_args": {...}}`` (see :meth:`SPMLLoss.config`).

    Only subclasses of :class:`SPMLLoss` are built, so a checkpoint cannot make
    this instantiate arbitrary classes.
    """
    if not isinstance(config, Mapping) or "class_path" not in config:
        raise ValueError(
            f"A loss config needs a 'class_path' (and optional 'init_args'), got {config!r}."
        )
    module_name, _, class_name = str(config["class_path"]).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"Cannot import the loss class {config['class_path']!r}: {err}") from err
    if not (isinstance(cls, type) and issubclass(cls, SPMLLoss)):
        raise ValueError(f"{config['class_path']!r} is not an SPMLLoss subclass.")
    return cls(**dict(config.get("init_args") or {}))
