"""Per-sample loss state: one mechanism for ROLE, LL-Cp and EM+APL.

Some losses remember something about every training sample: ROLE's label
estimates, LL-Cp's permanent label corrections, APL's pseudo-labels. They derive
from :class:`PerSampleStateLoss`, which settles, once for all of them:

- **Size and initial value.** :meth:`PerSampleStateLoss.bind_train_set` receives
  the training set's ``(N, C)`` observed matrix (the LightningModule calls it
  when fitting starts; in another loop, call it yourself) and allocates the
  tensors the subclass declares in ``sample_state``. Row ``i`` belongs to the
  sample whose dataset ``index`` is ``i``; ``forward`` takes the batch's ``index``.
- **Checkpoints.** The tensors are registered buffers (or a parameter, for
  state trained by the optimizer), so they are saved in ``state_dict`` and
  restored on resume. They are created lazily: an unbound loss has none, and
  loading a ``state_dict`` that holds them creates them with the stored shape.
  Hence ``SPMLModule.load_from_checkpoint`` works for inference without the
  training set, and resuming restores the state the run had.
- **DDP.** Every rank holds the whole state and applies the updates of all
  ranks, exchanged with :func:`~spml_lightning.losses.distributed.all_gather_rows`
  (state trained by the optimizer is synchronised by DDP's gradient all-reduce,
  like any weight). DDP's buffer broadcast is not relied upon; the module
  excludes the loss's buffers from it.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from spml_lightning.losses.base import SPMLLoss
from spml_lightning.losses.checks import (
    check_index_range,
    check_observed_matrix,
    check_sample_index,
)

__all__ = ["PerSampleStateLoss", "StateKind"]

StateKind = Literal["buffer", "parameter"]


class PerSampleStateLoss(SPMLLoss):
    """Base of the losses that keep state for every training sample (see the module docstring).

    Subclasses declare ``sample_state = {"name": "buffer" | "parameter"}`` and
    implement :meth:`initial_sample_state`. In ``forward`` they call
    :meth:`sample_rows` on the batch's ``index`` before touching the state.
    """

    sample_state: ClassVar[dict[str, StateKind]] = {}

    @abc.abstractmethod
    def initial_sample_state(self, observed: Tensor) -> dict[str, Tensor]:
        """The state at the start of training.

        Args:
            observed: The checked ``(N, C)`` observed matrix of the training set.

        Returns:
            One tensor per name of ``sample_state``, each with first dimension N.
        """

    def bind_train_set(self, observed: Tensor) -> None:
        """Allocate the per-sample state, fresh, for this training set.

        Args:
            observed: ``(N, C)`` observed-label matrix; row ``i`` is dataset index ``i``.

        Raises:
            ValueError: If the matrix is malformed.
        """
        matrix = check_observed_matrix(observed)
        state = self.initial_sample_state(matrix)
        if set(state) != set(self.sample_state):
            raise RuntimeError(
                f"{type(self).__name__}.initial_sample_state returned {sorted(state)}, expected "
                f"{sorted(self.sample_state)}."
            )
        for name, kind in self.sample_state.items():
            self._install(name, kind, state[name].to(matrix.device))

    @property
    def num_train_samples(self) -> int | None:
        """N, the number of training samples the state covers (None until bound or loaded)."""
        state = self._bound_state()
        return int(state[0].shape[0]) if state else None

    def sample_rows(self, index: Tensor | None, batch_size: int) -> Tensor:
        """Check ``index`` against the state and return it as a long tensor on the state's device.

        Args:
            index: ``(B,)`` dataset indices of the batch.
            batch_size: B, the number of rows of the logits.

        Returns:
            The indices as ``torch.long`` on the device of the state.

        Raises:
            ValueError: If the state is not allocated, ``index`` is missing, has the
                wrong shape, or points outside the training set.
        """
        name = type(self).__name__
        state = self._bound_state()
        if not state:
            raise ValueError(
                f"{name} keeps per-sample state and must be bound to the training set first: "
                f"call loss.bind_train_set(train_observed_matrix) (SPMLModule does this when "
                f"fitting with an SPMLDataModule)."
            )
        if index is None:
            raise ValueError(
                f"{name} keeps per-sample state: pass the batch's dataset indices, "
                f"loss(logits, observed, index)."
            )
        rows = torch.as_tensor(index).to(device=state[0].device)
        check_sample_index(rows, batch_size)
        rows = rows.long()
        # Checked on the CPU only: on an accelerator it would synchronise every step.
        if rows.device.type == "cpu":
            check_index_range(rows, int(state[0].shape[0]), name)
        return rows

    def _bound_state(self) -> list[Tensor]:
        """The state tensors, in ``sample_state`` order; empty while any is missing."""
        tensors = [self._state_tensor(name) for name in self.sample_state]
        present = [t for t in tensors if t is not None]
        return present if len(present) == len(tensors) else []

    def _state_tensor(self, name: str) -> Tensor | None:
        if name in self._parameters:
            return self._parameters[name]
        return self._buffers.get(name)

    def _install(self, name: str, kind: StateKind, tensor: Tensor) -> None:
        if kind == "parameter":
            self.register_parameter(name, nn.Parameter(tensor))
        else:
            self.register_buffer(name, tensor)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        for name, kind in self.sample_state.items():
            incoming = state_dict.get(prefix + name)
            if not isinstance(incoming, Tensor):
                continue
            current = self._state_tensor(name)
            if current is None:
                # Lazily sized: take the shape the checkpoint was trained with.
                self._install(name, kind, torch.empty_like(incoming))
            elif current.shape != incoming.shape:
                error_msgs.append(
                    f"{prefix}{name}: the checkpoint holds per-sample state of shape "
                    f"{tuple(incoming.shape)} but this {type(self).__name__} is bound to a "
                    f"training set of shape {tuple(current.shape)}; resume with the training set "
                    f"the checkpoint was trained on."
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
