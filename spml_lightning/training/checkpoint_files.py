"""Checkpoint files on disk: finding ``best``/``last`` of a run, checking a file, reading it.

Every read of a checkpoint file in spml_lightning goes through
:func:`read_checkpoint` (memory-mapped: the weights are not read until used),
and every ``--ckpt_path`` through :func:`resolve_checkpoint`, so that a
truncated file, a missing run or a relative folder is handled the same way by
``spml``, the analysis and ``spml predict``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

__all__ = [
    "CHECKPOINT_FACTS",
    "check_checkpoint_file",
    "checkpoint_facts",
    "checkpoint_callback_states",
    "continue_in_checkpoint_folder",
    "describe_resume",
    "find_checkpoint",
    "read_checkpoint",
    "resolve_checkpoint",
]


def _newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda p: p.stat().st_mtime) if paths else None


def check_checkpoint_file(path: str | Path) -> None:
    """Fail clearly on a checkpoint path that is missing, empty, truncated or not a checkpoint.

    ``torch.save`` writes zip archives whose directory is at the end of the
    file, so ``zipfile.is_zipfile`` (a read of the file's tail) rejects
    truncated files before torch fails deep inside ``torch.load``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--ckpt_path {path}: no such checkpoint file.")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"--ckpt_path {path}: not a readable checkpoint ({path.stat().st_size} bytes: empty, "
            "truncated or not written by torch.save, e.g. by a save that was killed before atomic "
            "checkpoint writes existed). Pass another checkpoint, e.g. a best-*.ckpt of the same "
            "run."
        )


def read_checkpoint(path: str | Path, weights_only: bool = False) -> dict[str, Any]:
    """A checkpoint, memory-mapped: its weights are not read until used.

    Args:
        path: the checkpoint file.
        weights_only: unpickle nothing but tensors and plain containers (enough
            for the hyper-parameters; not for the callback states of a run).
    """
    return torch.load(
        Path(path).expanduser(), map_location="cpu", weights_only=weights_only, mmap=True
    )


#: The hyper-parameters a model predicts with: its classes and its preprocessing.
CHECKPOINT_FACTS: tuple[str, ...] = ("class_names", "image_size", "mean", "std")


def checkpoint_facts(ckpt_path: str | Path) -> dict[str, Any]:
    """Class names and preprocessing recorded in an SPMLModule checkpoint (``CHECKPOINT_FACTS``)."""
    hparams = read_checkpoint(ckpt_path, weights_only=True).get("hyper_parameters", {})
    facts = {key: hparams.get(key) for key in CHECKPOINT_FACTS}
    if facts["class_names"] is None and hparams.get("num_classes"):
        facts["class_names"] = [f"class_{i}" for i in range(hparams["num_classes"])]
    return facts


def checkpoint_training_rows(ckpt_path: str | Path) -> dict[str, Any] | None:
    """The SPMLDataModule state a checkpoint records (its training rows' fingerprint), or None.

    Lightning stores a datamodule's ``state_dict`` under the datamodule's class
    name; an SPMLDataModule's has ``train_fingerprint`` (``SPMLDataModule.state_dict``).
    """
    checkpoint = read_checkpoint(ckpt_path, weights_only=True)
    for value in checkpoint.values():
        if isinstance(value, dict) and "train_fingerprint" in value:
            return value
    return None


def checkpoint_callback_states(
    path: str | Path, checkpoint: dict[str, Any] | None = None
) -> list[dict]:
    """The ModelCheckpoint states recorded in a checkpoint.

    Read from the file at ``path`` (weights not read), or from its already loaded
    ``checkpoint``.
    """
    checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
    return [
        state
        for state in checkpoint.get("callbacks", {}).values()
        if isinstance(state, dict) and "best_model_path" in state
    ]


def find_checkpoint(
    ckpt_path: str | None,
    root_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
    missing_ok: bool = False,
) -> str | None:
    """Turn ``best``/``last`` into a file of the newest run on disk; check any other path.

    ``last`` is the newest ``last*.ckpt`` below the checkpoint folder (or the
    run root) -- the end-of-epoch and mid-epoch saves of ``ResumableCheckpoint``
    are the same file, so this is the latest state of the newest run; ``best``
    is the best model recorded by the ModelCheckpoint state stored in that
    newest ``last.ckpt``. Any file is checked to be a readable checkpoint. When the
    root holds no checkpoint but its runs resumed one of another root (their
    ``config.yaml``), that checkpoint's folder is searched (not for ``missing_ok``).

    Args:
        ckpt_path: ``best``, ``last``, a path, or None.
        root_dir: the run root (``trainer.default_root_dir``) searched for checkpoints.
        checkpoint_dir: a fixed checkpoint folder (``--checkpoint.dirpath``), searched first.
        missing_ok: return None instead of raising when no ``last`` checkpoint
            exists (``spml fit --ckpt_path last`` then starts from scratch).
    """
    if ckpt_path is None:
        return None
    if ckpt_path not in ("best", "last"):
        if "://" not in str(ckpt_path):  # remote checkpoints are Lightning's business
            check_checkpoint_file(ckpt_path)
        return ckpt_path
    roots = [Path(root_dir)] if checkpoint_dir is None else [Path(checkpoint_dir), Path(root_dir)]
    # Not for `fit --ckpt_path last` (missing_ok): a config.yaml may be a test's, whose
    # checkpoint belongs to another run that this root's fit must not continue.
    elsewhere = [] if missing_ok else _folders_resumed_from(Path(root_dir))
    for root in [*roots, *elsewhere]:
        last = (
            _newest([p for p in root.rglob("last*.ckpt") if p.is_file()]) if root.is_dir() else None
        )
        if last is None:
            continue
        check_checkpoint_file(last)
        if root not in roots:
            rank_zero_info(
                f"--ckpt_path {ckpt_path}: the newest run under {root_dir} resumed a checkpoint "
                f"of {root} and kept writing its checkpoints there."
            )
        if ckpt_path == "last":
            return str(last)
        for state in checkpoint_callback_states(last):
            best = state.get("best_model_path")
            if best and Path(best).is_file():
                return best
        raise FileNotFoundError(
            f"{last} records no existing best checkpoint; pass --ckpt_path /path/to/file.ckpt."
        )
    where = " or ".join(str(r) for r in roots)
    if missing_ok:
        rank_zero_warn(
            f"--ckpt_path {ckpt_path}: no checkpoint under {where} yet; training starts from "
            "scratch."
        )
        return None
    raise FileNotFoundError(
        f"--ckpt_path {ckpt_path}: no checkpoint found under {where}. Run `spml fit` with the "
        "same config first, or pass --ckpt_path /path/to/file.ckpt."
    )


def _folders_resumed_from(root: Path) -> list[Path]:
    """Checkpoint folders outside ``root`` that the runs logged under it resumed from, newest first.

    A fit resumed from a checkpoint of another root keeps writing checkpoints into
    that checkpoint's folder (``continue_in_checkpoint_folder``), so its own root
    holds only logs; the ``config.yaml`` it saved records the checkpoint it
    resumed (``ckpt_path``), which leads there.
    """
    if not root.is_dir():
        return []
    configs = sorted(root.rglob("config.yaml"), key=lambda p: p.stat().st_mtime, reverse=True)
    folders: list[Path] = []
    for config in configs:
        try:
            recorded = yaml.safe_load(config.read_text()).get("ckpt_path")
        except (OSError, yaml.YAMLError, AttributeError):
            continue  # not a run's config
        if isinstance(recorded, str) and Path(recorded).is_file():
            folder = Path(recorded).parent
            if folder not in folders and not folder.resolve().is_relative_to(root.resolve()):
                folders.append(folder)
    return folders


def resolve_checkpoint(
    ckpt_path: str | None, trainer: Trainer, missing_ok: bool = False
) -> str | None:
    """:func:`find_checkpoint` for a trainer: its root and checkpoint folder.

    ``best`` of a fit that ran in this process is the one it recorded.

    Args:
        ckpt_path: ``best``, ``last``, a path, or None.
        trainer: the trainer whose checkpoint folder is searched.
        missing_ok: see :func:`find_checkpoint`.
    """
    if ckpt_path not in ("best", "last"):
        return find_checkpoint(ckpt_path, ".", missing_ok=missing_ok)
    callback = trainer.checkpoint_callback
    if ckpt_path == "best" and isinstance(callback, ModelCheckpoint) and callback.best_model_path:
        return callback.best_model_path  # a fit ran in this process
    checkpoint_dir = callback.dirpath if isinstance(callback, ModelCheckpoint) else None
    return find_checkpoint(ckpt_path, trainer.default_root_dir, checkpoint_dir, missing_ok)


def continue_in_checkpoint_folder(trainer: Trainer, ckpt_path: str) -> None:
    """Make a resumed fit write its checkpoints where the interrupted run did.

    Lightning puts a resumed run's checkpoints in a new ``version_N`` folder and
    then restores neither the top-k nor the best score, so ``best`` could end
    up worse than before the crash and ``save_top_k`` would bound each folder
    but not the run. When the checkpoint still lies in the folder its
    ModelCheckpoint recorded (and no ``--checkpoint.dirpath`` was given), the
    resumed run keeps that folder; logs still go to a new version.
    """
    callback = trainer.checkpoint_callback
    if not isinstance(callback, ModelCheckpoint) or callback.dirpath is not None:
        return
    folder = os.path.realpath(Path(ckpt_path).parent)
    for state in checkpoint_callback_states(ckpt_path):
        if state.get("dirpath") and os.path.realpath(state["dirpath"]) == folder:
            callback.dirpath = folder
            return


def describe_resume(ckpt_path: str) -> str:
    """One line on where a resumed fit starts.

    It names the checkpoint, its epoch and step, and the best model so far.
    """
    checkpoint = read_checkpoint(ckpt_path)
    line = (
        f"Resuming from {ckpt_path} (saved in epoch {checkpoint.get('epoch')}, "
        f"step {checkpoint.get('global_step')}"
    )
    for state in checkpoint_callback_states(ckpt_path, checkpoint):
        score = state.get("best_model_score")
        if state.get("best_model_path") and score is not None:
            line += (
                f"; best so far {Path(state['best_model_path']).name}, "
                f"{state.get('monitor')} {float(score):.4g}"
            )
            break
    return line + ")."
