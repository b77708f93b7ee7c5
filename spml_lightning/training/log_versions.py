"""A ``version_N`` log folder per run, also when runs start together in one root."""

from __future__ import annotations

import os
import shutil
import struct

from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

__all__ = ["release_empty_log_versions", "reserve_log_version"]


def reserve_log_version(trainer: Trainer) -> list[str]:
    """Give each TensorBoard/CSV logger of ``trainer`` a ``version_N`` folder no other run has.

    These loggers take the version after the highest ``version_*`` folder they
    list and create the folder later, so runs started together in one
    ``default_root_dir`` took the same ``version_N`` -- and the same checkpoint
    folder. ``os.mkdir`` fails on a folder that exists: the first free
    ``version_N`` a run manages to create is its own. Loggers given a version
    (``version=``, SLURM's job id) and processes other than rank 0 (which get
    rank 0's folder from Lightning) are left alone.

    Returns:
        The folders created, for ``release_empty_log_versions``.
    """
    created: list[str] = []
    if rank_zero_only.rank != 0:
        return created
    for logger in trainer.loggers:
        if not isinstance(logger, (TensorBoardLogger, CSVLogger)) or logger._version is not None:
            continue
        root = logger.root_dir
        if not _is_local_file_protocol(root):
            continue
        os.makedirs(root, exist_ok=True)
        version = logger._get_next_version()
        while True:
            try:
                os.mkdir(os.path.join(root, f"version_{version}"))
                break
            except FileExistsError:  # another run took it since the listing
                version += 1
        logger._version = version  # what the logger's version property would have set
        created.append(os.path.join(root, f"version_{version}"))
        rank_zero_info(f"Logging to {created[-1]}")
    return created


def release_empty_log_versions(folders: list[str]) -> None:
    """Remove those of ``folders`` in which nothing was logged (a run refused before it logged).

    A folder goes when it is empty, or holds nothing but the ``config.yaml`` the
    CLI saved and TensorBoard event files without an event (LightningCLI writes
    both as the run sets up, before the checks that may refuse it). Anything
    else -- a checkpoint folder, ``hparams.yaml`` (written when training starts),
    metrics, a logged event -- keeps the folder, so nothing a run logged is lost;
    without this every refused ``spml test``/``suggest``/resume left a
    ``version_N`` behind, and the next run's number skipped it.
    """
    for folder in folders:
        try:
            if _nothing_logged(folder):
                shutil.rmtree(folder)
        except OSError:  # gone already, or unreadable: keep what is there
            pass


def _nothing_logged(folder: str) -> bool:
    for entry in os.scandir(folder):
        if entry.name == "config.yaml" and entry.is_file():
            continue
        if entry.name.startswith("events.out.tfevents.") and entry.is_file():
            if _event_records(entry.path) <= 1:  # the file-version record only
                continue
        return False
    return True


def _event_records(path: str) -> int:
    """How many records a TensorBoard event file holds (TFRecord: length, crc, data, crc)."""
    count = 0
    with open(path, "rb") as file:
        while len(header := file.read(12)) == 12:
            (length,) = struct.unpack("<Q", header[:8])
            file.seek(length + 4, os.SEEK_CUR)
            count += 1
    return count
