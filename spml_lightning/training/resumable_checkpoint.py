"""``last.ckpt`` that is always the latest state of a run, and a top-k that survives a resume.

A run killed an hour into a COCO epoch should not have to redo the hour, and a
resumed run must keep choosing its best checkpoint among all of its epochs.
:class:`ResumableCheckpoint` is Lightning's ``ModelCheckpoint`` that refreshes
``last.ckpt`` at every epoch end (not only when the metric improved) and,
optionally, every ``last_every_n_train_steps`` optimizer steps, without
touching the top-k (the monitored metric is stale mid-epoch); it stores its
folder as an absolute path and restores the top-k of a checkpoint written in
the same folder, whatever path led there. ``spml fit --ckpt_path last`` then
resumes from the newest of the end-of-epoch and mid-epoch saves (they are one file).
A fit locks its checkpoint folder (``folder_lock.py``): a second fit writing into
the same folder is refused before it writes anything.
"""

from __future__ import annotations

import os
from typing import Any

from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.types import STEP_OUTPUT

from spml_lightning.training.folder_lock import FolderLock

__all__ = ["ResumableCheckpoint"]


def _same_local_folder(a: str, b: str) -> bool:
    return (
        _is_local_file_protocol(a)
        and _is_local_file_protocol(b)
        and os.path.realpath(a) == os.path.realpath(b)
    )


def _with_real_paths(state: dict[str, Any]) -> dict[str, Any]:
    """A ModelCheckpoint state with its file paths resolved.

    Relative paths are resolved against the working directory.
    """
    state = dict(state)
    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        if state.get(key):  # "" means none
            state[key] = os.path.realpath(state[key])
    if "best_k_models" in state:
        state["best_k_models"] = {
            os.path.realpath(path): score for path, score in state["best_k_models"].items()
        }
    return state


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
        self._folder_lock: FolderLock | None = None

    @property
    def state_key(self) -> str:
        """A plain ``ModelCheckpoint``'s key, so that either restores the other's state."""
        return "ModelCheckpoint" + super().state_key[len(type(self).__qualname__) :]

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Set up the checkpoint folder and record it as an absolute path."""
        super().setup(trainer, pl_module, stage)
        # A folder found from a relative default_root_dir or logger save_dir is
        # relative; record absolute paths, so that a resume from any working
        # directory finds the same folder and files (see load_state_dict).
        if self.dirpath and _is_local_file_protocol(self.dirpath):
            self.dirpath = os.path.realpath(self.dirpath)
            if stage == "fit" and trainer.is_global_zero:
                self._lock_folder(self.dirpath)

    def _lock_folder(self, folder: str) -> None:
        """Be the only fit writing into ``folder``, or refuse before anything is written."""
        if self._folder_lock is None or self._folder_lock.folder != folder:
            self._folder_lock = FolderLock(folder)
        if not self._folder_lock.acquire():
            raise RuntimeError(
                f"Another process is writing checkpoints into {folder} (an spml fit of the same "
                "run: started with --ckpt_path last while it still trains, or twice at once). "
                "Two fits writing one folder would overwrite each other's last.ckpt and best "
                "checkpoints. Wait for it to end and resume then, or train a separate run (without "
                "--ckpt_path, or with another --trainer.default_root_dir)."
            )

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Let the checkpoint folder go at the end of a fit."""
        super().teardown(trainer, pl_module, stage)
        if self._folder_lock is not None:
            self._folder_lock.release()

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """Let the checkpoint folder go when a fit fails (a process may run another)."""
        super().on_exception(trainer, pl_module, exception)
        if self._folder_lock is not None:
            self._folder_lock.release()

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
        """Refresh ``last.ckpt`` every ``last_every_n_train_steps`` steps within an epoch."""
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        every = self.last_every_n_train_steps
        if (
            every
            and trainer.global_step % every == 0
            and batch_idx + 1 < trainer.num_training_batches
        ):
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Save as ModelCheckpoint does; refresh ``last.ckpt`` when saving at the epoch end."""
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Save as ModelCheckpoint does; refresh ``last.ckpt`` when saving after validation."""
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)
