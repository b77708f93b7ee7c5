"""Checkpoints that survive crashes: atomic writes and a mid-epoch ``last.ckpt``.

A run killed while it overwrites ``last.ckpt`` must not lose the previous one,
and a run killed an hour into a COCO epoch should not have to redo the hour.

* :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file in
  the destination folder, flushes it to disk, and renames it over the
  destination (``os.replace``, atomic on POSIX and Windows): readers see the old
  file or the new one, never a partial one. Lightning's own writer serialises
  to memory and writes through ``fsspec``, whose temporary file lives in the
  system temp folder: on another file system (a cluster's local ``/tmp``
  against a shared checkpoint folder) the final move becomes a copy that a kill
  can cut short.
* :class:`ResumableCheckpoint` is Lightning's ``ModelCheckpoint`` that
  refreshes ``last.ckpt`` at every epoch end (not only when the metric
  improved) and, optionally, every ``last_every_n_train_steps`` optimizer
  steps, without touching the top-k (the monitored metric is stale mid-epoch).

The ``spml`` command uses both; ``spml fit --ckpt_path last`` then resumes
from the newest of the end-of-epoch and mid-epoch saves (they are one file).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.types import STEP_OUTPUT

__all__ = ["AtomicCheckpointIO", "ResumableCheckpoint", "atomic_torch_save"]

#: Prefix of the temporary files; starting with a dot keeps them out of
#: ``last*.ckpt`` / ``*.ckpt`` globs.
TEMPORARY_PREFIX = "."

#: A temporary file untouched for this long belongs to a writer that is gone, even
#: one on another machine (a writer updates its file until it renames it).
STALE_AFTER_S = 3600.0

_HOST = socket.gethostname()


def _temporary_path(path: Path) -> Path:
    # Owned by this writer: host and pid say whether it is still alive, the token
    # keeps two writers (threads, or processes on two hosts) apart.
    return path.with_name(f"{TEMPORARY_PREFIX}{path.name}.tmp-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}")


def _pid_alive(pid: int) -> bool:
    """Whether a process of this host runs under ``pid`` (True when that cannot be known)."""
    if os.name == "nt":  # os.kill(pid, 0) would send Ctrl-C there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, as another user's process
        return True
    return True


def _is_stale(temporary: Path, destination: Path) -> bool:
    """Whether a temporary file of ``destination`` was left by a writer that is gone.

    A writer of this host is gone when its pid no longer runs; any writer when
    its file was not touched for ``STALE_AFTER_S`` (other hosts' pids cannot be
    asked). The names of older versions, ``.<name>.tmp-<pid>``, count as this host's.
    """
    suffix = temporary.name[len(f"{TEMPORARY_PREFIX}{destination.name}.tmp-") :]
    match = re.fullmatch(r"(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}", suffix) or re.fullmatch(r"(?P<pid>\d+)", suffix)
    if match and match.groupdict().get("host") in (None, _HOST) and not _pid_alive(int(match["pid"])):
        return True
    try:
        return time.time() - temporary.stat().st_mtime > STALE_AFTER_S
    except FileNotFoundError:  # its writer renamed or removed it meanwhile
        return False


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable (POSIX); not possible on Windows.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` that never leaves ``path`` partially written.

    Writes ``.<name>.tmp-<host>-<pid>-<token>`` next to ``path``, fsyncs it,
    renames it over ``path`` and fsyncs the folder. Temporary files that
    writers which are gone left behind for the same destination are removed
    first (see ``_is_stale``): those of live writers -- another run saving into
    the same folder -- are theirs to rename. On an error the temporary file is
    removed and ``path`` is untouched.

    Args:
        obj: what to save.
        path: the destination file (its folder is created if missing).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for temporary in path.parent.glob(f"{TEMPORARY_PREFIX}{path.name}.tmp-*"):
        if _is_stale(temporary, path):
            temporary.unlink(missing_ok=True)  # left by a process killed while saving
    temporary = _temporary_path(path)
    try:
        with open(temporary, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _same_local_folder(a: str, b: str) -> bool:
    return _is_local_file_protocol(a) and _is_local_file_protocol(b) and os.path.realpath(a) == os.path.realpath(b)


def _with_real_paths(state: dict[str, Any]) -> dict[str, Any]:
    """A ModelCheckpoint state with its file paths resolved (relative ones against the working directory)."""
    state = dict(state)
    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        if state.get(key):  # "" means none
            state[key] = os.path.realpath(state[key])
    if "best_k_models" in state:
        state["best_k_models"] = {os.path.realpath(path): score for path, score in state["best_k_models"].items()}
    return state


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic local writes (see :func:`atomic_torch_save`).

    Remote paths (``s3://`` and the like) go through Lightning's writer
    unchanged: object stores replace objects atomically anyway.

    Use it with ``Trainer(plugins=[AtomicCheckpointIO()])``; the ``spml``
    command installs it by default.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(
                f"{type(self).__name__}.save_checkpoint takes no storage_options (got {storage_options!r})."
            )
        if "://" in str(path) and not str(path).startswith("file://"):
            super().save_checkpoint(checkpoint, path)
            return
        atomic_torch_save(checkpoint, str(path).removeprefix("file://"))


class ResumableCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is always the latest state of the run.

    Two additions, both only about ``last.ckpt`` (with ``save_last``):

    * it is refreshed at the end of every epoch. Lightning >= 2.5 writes it
      only when it also writes a top-k checkpoint, i.e. only in epochs whose
      validation metric improved, so a crash could send a resumed run back
      many epochs;
    * every ``last_every_n_train_steps`` optimizer steps (``0``: never) it is
      refreshed mid-epoch too -- and nothing else is written then: the top-k
      are chosen on the validation metric, which mid-epoch is the previous
      epoch's. The last batch of an epoch is skipped, because the end-of-epoch
      save follows right after validation.

    The state key is the one of a plain ``ModelCheckpoint``, so the top-k and
    best path of checkpoints written by either are restored into the other.

    Args:
        *args: see ``ModelCheckpoint``.
        last_every_n_train_steps: optimizer steps between mid-epoch saves of ``last.ckpt``.
        **kwargs: see ``ModelCheckpoint``; ``save_last`` must be on when
            ``last_every_n_train_steps`` is used.
    """

    def __init__(self, *args: Any, last_every_n_train_steps: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if last_every_n_train_steps < 0:
            raise ValueError(
                f"last_every_n_train_steps must be 0 (off) or a positive number of steps, got "
                f"{last_every_n_train_steps}."
            )
        if last_every_n_train_steps and not self.save_last:
            raise ValueError(
                "last_every_n_train_steps refreshes last.ckpt, so it needs save_last: true "
                "(--checkpoint.save_last true)."
            )
        self.last_every_n_train_steps = last_every_n_train_steps

    @property
    def state_key(self) -> str:
        return "ModelCheckpoint" + super().state_key[len(type(self).__qualname__) :]

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # A folder found from a relative default_root_dir or logger save_dir is
        # relative; record absolute paths, so that a resume from any working
        # directory finds the same folder and files (see load_state_dict).
        if self.dirpath and _is_local_file_protocol(self.dirpath):
            self.dirpath = os.path.realpath(self.dirpath)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the top-k, best and last paths when the recorded folder is this one.

        Lightning compares the recorded folder with this one as strings and, when
        they differ, restores only ``best_model_path``: a resume then forgets
        the best score (a worse epoch becomes "best"), keeps the old top-k files
        forever and writes ``last-v1.ckpt`` beside ``last.ckpt``. Checkpoints of
        runs with a relative ``default_root_dir`` recorded relative paths; the
        same folder reached another way (absolute, through a symlink) is the
        same folder here, and its recorded paths are made absolute.
        """
        recorded = state_dict.get("dirpath")
        if recorded and self.dirpath and _same_local_folder(recorded, self.dirpath):
            state_dict = {**_with_real_paths(state_dict), "dirpath": self.dirpath}
        super().load_state_dict(state_dict)

    def _refresh_last(self, trainer: Trainer) -> None:
        # Skipped when a checkpoint was already written at this step (then
        # Lightning wrote last.ckpt with it) and outside fitting.
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: STEP_OUTPUT,
        batch: Any,
        batch_idx: int,
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        every = self.last_every_n_train_steps
        if every and trainer.global_step % every == 0 and batch_idx + 1 < trainer.num_training_batches:
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)
