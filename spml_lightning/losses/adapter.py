"""A plain ``nn.Module`` loss with the :class:`~spml_lightning.losses.SPMLLoss` contract.

``SPMLModule`` drives its loss through the ``SPMLLoss`` hooks (schedule,
training-set state, parameter groups, config). A loss of one's own that is a
plain module -- ``loss(logits, observed)``, or ``loss(logits, observed, index)``
when its ``forward`` takes a third argument -- is wrapped once in
:class:`ModuleLoss` (by ``spml_lightning.losses.as_spml_loss``), whose hooks
do nothing, so that the model treats every loss alike.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import Tensor, nn

from spml_lightning.losses.base import SPMLLoss

__all__ = ["ModuleLoss"]


class ModuleLoss(SPMLLoss):
    """A plain ``nn.Module`` loss wrapped with the ``SPMLLoss`` hooks, which do nothing.

    The wrapped module's parameters, buffers and submodules are the wrapper's own
    (the same dictionaries), so ``state_dict`` keys are the module's, exactly as if
    it were not wrapped, and ``.to()`` moves the module's tensors.

    Args:
        loss: the module; ``loss(logits, observed)`` (or with ``index``) returns the scalar loss.
            A ``trains_on_targets`` attribute set to True makes the model pass it the full labels.
    """

    module: nn.Module

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "module", loss)  # not a submodule: its contents are ours
        for name in ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set"):
            object.__setattr__(self, name, getattr(loss, name))
        object.__setattr__(
            self, "trains_on_targets", bool(getattr(loss, "trains_on_targets", False))
        )
        self._takes_index = _takes_index(loss)

    def config(self) -> dict[str, Any] | None:
        """None: a plain module is not rebuilt from a config; give it to load_from_checkpoint."""
        return None

    def forward(self, logits: Tensor, observed: Tensor, index: Tensor | None = None) -> Tensor:
        """The wrapped module's loss of a batch."""
        if self._takes_index:
            return self.module(logits, observed, index)
        return self.module(logits, observed)

    def extra_repr(self) -> str:
        """The wrapped module's class, in the model's printout."""
        return f"module={type(self.module).__name__}"


def _takes_index(loss: nn.Module) -> bool:
    """Whether ``loss.forward`` accepts a third positional argument (the dataset indices)."""
    try:
        parameters = inspect.signature(loss.forward).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: call it with two
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind is p.VAR_POSITIONAL for p in parameters)
