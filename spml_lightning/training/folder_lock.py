"""One writer per checkpoint folder: a lock that a second ``spml fit`` finds taken.

Two fits that write into one checkpoint folder -- ``spml fit --ckpt_path last``
started twice in one root, or while the run it resumes still trains -- would
overwrite each other's ``last.ckpt`` and top-k without a word. The folder is
locked with ``flock`` on the folder itself (no file is added to it): the
operating system releases the lock when the process ends, however it ends, so
a killed run never leaves a stale lock behind. Without ``fcntl`` (Windows), or
on a file system that cannot lock a folder, nothing is locked.
"""

from __future__ import annotations

import os

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FolderLock"]


class FolderLock:
    """An exclusive lock on a local folder, held from :meth:`acquire` to :meth:`release`.

    Args:
        folder: the folder (created if missing).
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock without waiting; False if another process (or object) holds it."""
        if self._fd is not None or fcntl is None:
            return True
        os.makedirs(self.folder, exist_ok=True)
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError:  # a file system that cannot lock a folder (some network ones)
            os.close(fd)
            return True  # nothing locked: no worse than without the lock
        self._fd = fd
        return True

    def release(self) -> None:
        """Let the folder go (closing the descriptor drops the lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
