"""A ``version_N`` log folder per run, also when runs start together in one root."""

from __future__ import annotations

import os

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
    """Remove those of ``folders`` that are still empty (a run refused before it logged).

    Only empty folders go (``os.rmdir`` refuses any other), so nothing a run
    wrote is lost; without this every refused ``spml test``/``suggest`` left a
    ``version_N`` with nothing in it, and the next run's number skipped it.
    """
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:  # not empty (or already gone): keep what is there
            pass
