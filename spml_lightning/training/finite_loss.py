"""Stopping a run at its first non-finite loss, with the numbers that explain it.

A NaN loss poisons every weight at the next optimizer step; Lightning would
train on, log ``nan`` and overwrite the checkpoints with it. The guard looks at
every training loss, and when one is not finite, raises
:class:`NonFiniteLossError` naming the step and describing the logits and the
input batch of that step.

Reading a GPU value on the host waits for the GPU to finish its queue, so
checking each step would stall the pipeline. On accelerators the guard
therefore keeps its bookkeeping on the device (a flag and the statistics of
the first bad step, updated with ``torch.where``, no host read) and reads it
only every ``check_every_n_steps`` steps and whenever :meth:`~FiniteLossGuard.check`
is called -- the module calls it before writing any checkpoint and at the end of
each epoch, so a NaN model never replaces a good checkpoint. On CPU reading is
free: the loss is checked at once, before the optimizer step. Under DDP the
flag is max-reduced over the ranks at each check, so that every rank stops at
the same step instead of the healthy ones waiting in a collective forever.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["FiniteLossGuard", "NonFiniteLossError"]

_STATISTICS = (
    "loss",
    "nan",
    "posinf",
    "neginf",
    "numel",
    "finite_min",
    "finite_max",
    "input_nonfinite",
)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def _statistics(loss: Tensor, logits: Tensor, inputs: Tensor | None) -> Tensor:
    logits = logits.detach().float()
    finite = torch.isfinite(logits)
    values = [
        loss.detach().float().reshape(()),
        torch.isnan(logits).sum(),
        torch.isposinf(logits).sum(),
        torch.isneginf(logits).sum(),
        logits.new_full((), float(logits.numel())),
        torch.where(finite, logits, torch.inf).amin()
        if logits.numel()
        else logits.new_full((), torch.inf),
        torch.where(finite, logits, -torch.inf).amax()
        if logits.numel()
        else logits.new_full((), -torch.inf),
        (~torch.isfinite(inputs.detach())).sum()
        if inputs is not None and inputs.is_floating_point()
        else logits.new_zeros(()),
    ]
    return torch.stack([v.float() for v in values])


def _describe(stats: list[float], step: int, epoch: int) -> str:
    s = dict(zip(_STATISTICS, stats, strict=True))
    if s["finite_min"] <= s["finite_max"]:
        finite_range = f"finite ones in [{s['finite_min']:.4g}, {s['finite_max']:.4g}]"
    else:
        finite_range = "none finite"
    return (
        f"The training loss is {s['loss']} at global step {step} (epoch {epoch}). "
        f"Logits of that batch: {int(s['nan'])} NaN, {int(s['posinf'])} +inf, "
        f"{int(s['neginf'])} -inf of {int(s['numel'])} ({finite_range}); input images: "
        f"{int(s['input_nonfinite'])} non-finite values."
    )


_ADVICE = (
    " Training was stopped so that no checkpoint is overwritten with NaN weights. Usual causes: a "
    "learning rate too high (--model.lr; --trainer.gradient_clip_val helps), fp16 overflow (use "
    "--trainer.precision bf16-mixed or 32), or corrupt input images (non-finite inputs above). "
    "Resume from the last good checkpoint with --ckpt_path."
)


class FiniteLossGuard:
    """Raise :class:`NonFiniteLossError` at the first non-finite training loss.

    Call :meth:`observe` on every training loss and :meth:`check` wherever a
    stop must not be deferred further (before saving a checkpoint, at epoch
    end). Every rank must make the same calls (they hold a collective under
    DDP), as it does for the same training steps.

    Args:
        check_every_n_steps: on accelerators, steps between host reads of the
            device-side flag.
        check_cpu_every_step: check CPU losses at once (reading them is
            free); ``False`` treats them like accelerator ones.
    """

    def __init__(self, check_every_n_steps: int = 50, check_cpu_every_step: bool = True) -> None:
        if check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be at least 1, got {check_every_n_steps}.")
        self.check_every_n_steps = check_every_n_steps
        self.check_cpu_every_step = check_cpu_every_step
        self._bad: Tensor | None = None  # any non-finite loss since the last check (device)
        self._first: Tensor | None = None  # statistics of the first one (device)
        self._first_index: Tensor | None = None  # its position in self._where (device)
        self._where: list[tuple[int, int]] = []  # (global step, epoch) of each observation (host)

    def observe(
        self, loss: Tensor, logits: Tensor, inputs: Tensor | None, step: int, epoch: int
    ) -> None:
        """Record one training loss; raise now if it is bad and a check is due.

        Args:
            loss: the scalar training loss.
            logits: the logits it was computed from (described in the error).
            inputs: the input batch (its non-finite values are counted), or None.
            step: the trainer's global step, for the message.
            epoch: the current epoch, for the message.

        Raises:
            NonFiniteLossError: if a check is due and a loss since the last
                check (on any rank) was not finite.
        """
        self._where.append((step, epoch))
        if self.check_cpu_every_step and loss.device.type == "cpu":
            # Reading is free: compute the statistics only when they are needed.
            if not bool(torch.isfinite(loss.detach()).all()):
                self._record(loss, logits, inputs, torch.tensor(True))
            self.check()
            return
        self._record(loss, logits, inputs, ~torch.isfinite(loss.detach()).all())
        if len(self._where) >= self.check_every_n_steps:
            self.check()

    def _record(self, loss: Tensor, logits: Tensor, inputs: Tensor | None, bad_now: Tensor) -> None:
        device = loss.device
        if self._bad is None or self._bad.device != device:
            self._bad = torch.zeros((), dtype=torch.bool, device=device)
            self._first = torch.zeros(len(_STATISTICS), device=device)
            self._first_index = torch.zeros((), dtype=torch.long, device=device)
        bad_now = bad_now.to(device)
        first_now = bad_now & ~self._bad
        self._first = torch.where(first_now, _statistics(loss, logits, inputs), self._first)
        self._first_index = torch.where(first_now, len(self._where) - 1, self._first_index)
        self._bad |= bad_now

    def check(self) -> None:
        """Read the flag (reduced over ranks) and raise if a loss was not finite.

        Raises:
            NonFiniteLossError: naming the first bad step and its statistics.
        """
        if not self._where:
            return
        flag = (
            self._bad.to(torch.int32)
            if self._bad is not None
            else torch.zeros((), dtype=torch.int32)
        )
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            device = flag.device
            if dist.get_backend() == "nccl" and device.type != "cuda":
                device = torch.device("cuda", torch.cuda.current_device())
            flag = flag.to(device)
            any_rank = flag.clone()
            dist.all_reduce(any_rank, op=dist.ReduceOp.MAX)
        else:
            any_rank = flag
        here, anywhere = bool(flag), bool(any_rank)
        where, first, index = self._where, self._first, self._first_index
        self._where = []
        if self._bad is not None:
            self._bad.zero_()
        if not anywhere:
            return
        if not here:
            step, epoch = where[-1]
            raise NonFiniteLossError(
                f"The training loss became non-finite on another process by global step {step} "
                f"(epoch {epoch}); that process's error has the details." + _ADVICE
            )
        step, epoch = where[int(index)]
        message = _describe(first.tolist(), step, epoch)
        if len(where) > 1:
            message += (
                f" (Found at the check after step {where[-1][0]}: the loss is read on the host "
                f"every {self.check_every_n_steps} steps, not every step, so that the accelerator "
                "never waits.)"
            )
        raise NonFiniteLossError(message + _ADVICE)
