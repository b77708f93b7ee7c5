"""The on-disk feature cache: a folder of ``.npy`` arrays and the manifest that vouches for them.

A cache folder holds one array per split (``train.npy``, and ``train.flipped.npy``
with a flipped copy) and ``manifest.json``: the fingerprint of everything that
determined the arrays (``fingerprint.py``) and, for each file, its shape, dtype,
size in bytes and SHA-256. A cache is used only when its manifest has the same
fingerprint and every file has its recorded size and checksum: a truncated or
altered file is never read as features, it is rebuilt.

Writing is atomic: a new cache is written into a temporary folder beside the
cache and renamed into place once complete, so a killed extraction leaves only
a temporary folder that no run trusts (the next writer removes it). Writers
take an exclusive lock on ``<cache>.lock`` first: of two extractions into the
same cache, the second waits for the first and then reuses its cache. Where
nothing can be locked (no ``fcntl``, a file system without ``flock``), the
renames alone keep one whole cache: whichever complete folder is renamed into
place last is the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.utilities import rank_zero_info

from spml_lightning.features.fingerprint import differing_parts

__all__ = ["MANIFEST", "CachedFeatures", "build_or_reuse", "file_record", "read_cache"]

MANIFEST = "manifest.json"
"""The manifest's file name inside a cache folder."""

#: The manifest's format; a cache of another format is rebuilt.
_FORMAT = 1

#: What a temporary folder's name adds to the cache's (``<cache>.tmp-<pid>-<token>``).
_TEMPORARY = ".tmp-"


@dataclass(frozen=True)
class CachedFeatures:
    """A verified feature cache: its folder and manifest; arrays read memory-mapped.

    Attributes:
        path: the cache folder.
        manifest: its manifest (``fingerprint``, ``files``).
        reused: whether the cache was already there (False: this run extracted it).
    """

    path: Path
    manifest: Mapping[str, Any]
    reused: bool = False

    @property
    def splits(self) -> list[str]:
        """The splits the cache holds, e.g. ``["train", "val", "test"]``."""
        return [name for name in self.manifest["files"] if not name.endswith(".flipped")]

    def features(self, split: str, flipped: bool = False) -> np.ndarray:
        """The (N, D) features of ``split``'s images in row order, memory-mapped read-only.

        Args:
            split: ``train``, ``val`` or ``test``.
            flipped: the features of the horizontally flipped images (a cache made with ``flip``).
        """
        name = f"{split}.flipped" if flipped else split
        record = self.manifest["files"].get(name)
        if record is None:
            held = ", ".join(self.manifest["files"])
            raise KeyError(
                f"The feature cache {self.path} holds no {name!r} array (it holds: {held}); "
                + ("extract with flip to have flipped copies." if flipped else "")
            )
        return np.load(self.path / record["file"], mmap_mode="r")


def file_record(path: Path) -> dict[str, Any]:
    """What the manifest records of an array file: name, shape, dtype, size, SHA-256."""
    array = np.load(path, mmap_mode="r")
    return {
        "file": path.name,
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "bytes": path.stat().st_size,
        "sha256": _sha256(path),
    }


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _problem(
    path: Path, manifest: Mapping[str, Any], fingerprint: Mapping[str, Any], contents: str
) -> str | None:
    """Why the cache at ``path`` cannot serve ``fingerprint``, or None when it can."""
    if manifest.get("format") != _FORMAT:
        return f"its format is {manifest.get('format')!r}, this version writes {_FORMAT}"
    differing = differing_parts(manifest.get("fingerprint", {}), fingerprint)
    if differing:
        return f"the {', '.join(differing)} differ from the cached {contents}'"
    if not manifest.get("files"):
        return "its manifest lists no array"
    for record in manifest.get("files", {}).values():
        file = path / record["file"]
        if not file.is_file():
            return f"its file {record['file']} is missing"
        size = file.stat().st_size
        if size != record["bytes"]:
            return (
                f"its file {record['file']} is truncated or altered ({size} bytes, the manifest "
                f"says {record['bytes']})"
            )
        if _sha256(file) != record["sha256"]:
            return f"its file {record['file']} is corrupt (its checksum is not the manifest's)"
    return None


def read_cache(
    path: Path, fingerprint: Mapping[str, Any], contents: str = "features"
) -> tuple[CachedFeatures | None, str]:
    """The cache at ``path`` if it serves ``fingerprint``, else None and why not.

    Args:
        path: the cache folder.
        fingerprint: what the features must have been made from (``feature_fingerprint``).
        contents: what the cache holds, as the reason names it (``features``, ``prior scores``).
    """
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        return None, "there is no cache yet"
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        problem = _problem(path, manifest, fingerprint, contents)
    except (OSError, ValueError) as error:
        return None, f"its manifest cannot be read ({error})"
    except (KeyError, TypeError, AttributeError) as error:  # valid JSON, not a manifest
        return None, f"its manifest is not one this version wrote ({error!r})"
    if problem is not None:
        return None, problem
    return CachedFeatures(path, manifest, reused=True), ""


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on ``<path>.lock``, saying so when another process holds it.

    Yields whether the lock is held: without ``fcntl`` (Windows), or on a file system
    that cannot lock, nothing is locked and the rename into place alone keeps one
    whole cache.
    """
    try:
        import fcntl
    except ImportError:
        yield False
        return
    lock_file = path.with_name(path.name + ".lock")
    try:
        handle = open(lock_file, "a+b")
    except OSError as error:
        raise OSError(
            f"Cannot write into the feature cache's folder {path.parent} ({error}): pass a "
            "writable folder (spml features: --cache.dir; a fit: --model.feature_dir)."
        ) from error
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            rank_zero_info(
                f"Feature cache {path}: another process is extracting into it; waiting for it "
                f"(lock {lock_file})."
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:  # a file system that cannot lock (some network ones), as FolderLock
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(path: Path) -> None:
    """Remove the temporary folders of earlier writers (only the lock holder writes)."""
    for leftover in path.parent.glob(f"{path.name}{_TEMPORARY}*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _move_into_place(built: Path, path: Path) -> None:
    """Rename the complete ``built`` folder to ``path``, replacing an older cache there."""
    old = path.with_name(f"{path.name}{_TEMPORARY}old-{uuid.uuid4().hex}")
    if path.exists():
        os.replace(path, old)  # memory maps of the old files stay valid in their readers
    os.replace(built, path)
    shutil.rmtree(old, ignore_errors=True)


def build_or_reuse(
    path: str | os.PathLike,
    fingerprint: Mapping[str, Any],
    write: Callable[[Path], list[str]],
    *,
    cache_name: str = "Feature cache",
    contents: str = "features",
) -> CachedFeatures:
    """The cache at ``path`` for ``fingerprint``: reused if valid, else built with ``write``.

    Says in one line which it does and, when it builds, why (which fingerprint part
    differs, which file is truncated or corrupt).

    Args:
        path: the cache folder (its parent is created if missing).
        fingerprint: what the features are made from (``feature_fingerprint``).
        write: writes the ``.npy`` arrays into the folder it is given and returns their
            names in order (``<split>`` for ``<split>.npy``, ``<split>.flipped``).
        cache_name: how the messages name the cache (a prior's: ``Prior cache``).
        contents: how they name what it holds (a prior's: ``prior scores``).

    Returns:
        The verified cache.
    """
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(
            f"Cannot create the feature cache folder {path.parent} ({error}): pass a writable "
            "folder (spml features: --cache.dir; a fit: --model.feature_dir)."
        ) from error
    with _exclusive(path) as locked:
        cached, problem = read_cache(path, fingerprint, contents)
        if cached is not None:
            counts = ", ".join(f"{s} {len(cached.features(s))}" for s in cached.splits)
            rank_zero_info(
                f"{cache_name} {path}: same fingerprint, reusing the cached {contents} ({counts})."
            )
            return cached
        verb = "extracting" if contents == "features" else "computing"
        rank_zero_info(f"{cache_name} {path}: {verb} the {contents}: {problem}.")
        if locked:  # unlocked, another writer's folder may be in progress
            _remove_leftovers(path)
        building = path.with_name(f"{path.name}{_TEMPORARY}{os.getpid()}-{uuid.uuid4().hex}")
        building.mkdir()
        try:
            files = {name: file_record(building / f"{name}.npy") for name in write(building)}
            manifest = {"format": _FORMAT, "fingerprint": dict(fingerprint), "files": files}
            (building / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
            for file in building.iterdir():
                with open(file, "rb") as handle:
                    os.fsync(handle.fileno())
            _move_into_place(building, path)
        except OSError:
            shutil.rmtree(building, ignore_errors=True)
            # Unlocked, another writer may have renamed its cache into place first: it wins.
            cached, _ = read_cache(path, fingerprint, contents)
            if locked or cached is None:
                raise
            return cached
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        return CachedFeatures(path, manifest, reused=False)
