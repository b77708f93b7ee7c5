"""Files that survive crashes: written to a temporary file and renamed into place.

A run killed while it overwrites ``last.ckpt`` must not lose the previous one.
:class:`AtomicCheckpointIO` writes every checkpoint to a temporary file in the
destination folder, flushes it to disk, and renames it over the destination
(``os.replace``, atomic on POSIX and Windows): readers see the old file or the
new one, never a partial one. Lightning's own writer serialises to memory and
writes through ``fsspec``, whose temporary file lives in the system temp folder:
on another file system (a cluster's local ``/tmp`` against a shared checkpoint
folder) the final move becomes a copy that a kill can cut short. The ``spml``
command installs it by default. :func:`atomic_write` is the same for any file
(``spml suggest``'s CSV).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from lightning.fabric.plugins import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "atomic_torch_save", "atomic_write"]

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
    return path.with_name(
        f"{TEMPORARY_PREFIX}{path.name}.tmp-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}"
    )


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
    match = re.fullmatch(r"(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}", suffix) or re.fullmatch(
        r"(?P<pid>\d+)", suffix
    )
    if (
        match
        and match.groupdict().get("host") in (None, _HOST)
        and not _pid_alive(int(match["pid"]))
    ):
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


def atomic_write(
    path: str | os.PathLike, write: Callable[[BinaryIO], None], replace: bool = True
) -> None:
    """Write a file with ``write(file)`` so that ``path`` is never left partially written.

    Writes ``.<name>.tmp-<host>-<pid>-<token>`` next to ``path``, fsyncs it,
    renames it over ``path`` and fsyncs the folder. Temporary files that
    writers which are gone left behind for the same destination are removed
    first (see ``_is_stale``): those of live writers -- another run saving into
    the same folder -- are theirs to rename. On an error the temporary file is
    removed and ``path`` is untouched.

    Args:
        path: the destination file (its folder is created if missing).
        write: writes the content to the binary file it is given.
        replace: replace an existing ``path``. False: the file is linked into place,
            which fails on one that exists -- also one another process wrote since
            the caller checked -- so that nothing is replaced unasked.

    Raises:
        FileExistsError: ``path`` exists and ``replace`` is False.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for temporary in path.parent.glob(f"{TEMPORARY_PREFIX}{path.name}.tmp-*"):
        if _is_stale(temporary, path):
            temporary.unlink(missing_ok=True)  # left by a process killed while saving
    temporary = _temporary_path(path)
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # atomic, and refuses an existing path
            temporary.unlink()
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` that never leaves ``path`` partially written (``atomic_write``).

    Args:
        obj: what to save.
        path: the destination file (its folder is created if missing).
    """
    atomic_write(path, lambda file: torch.save(obj, file))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic local writes (see :func:`atomic_torch_save`).

    Remote paths (``s3://`` and the like) go through Lightning's writer
    unchanged: object stores replace objects atomically anyway.

    Use it with ``Trainer(plugins=[AtomicCheckpointIO()])``; the ``spml``
    command installs it by default.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to ``path``: atomically if local, with Lightning's writer if not."""
        if storage_options is not None:
            raise TypeError(
                f"{type(self).__name__}.save_checkpoint takes no storage_options "
                f"(got {storage_options!r})."
            )
        if "://" in str(path) and not str(path).startswith("file://"):
            super().save_checkpoint(checkpoint, path)
            return
        atomic_torch_save(checkpoint, str(path).removeprefix("file://"))
