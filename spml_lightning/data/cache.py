"""Parsed label matrices cached next to the data, never stale.

Parsing the official annotation files (COCO's 450 MB json, CUB's 3.7 million
attribute lines) takes seconds to tens of seconds; the matrices they give do
not change unless the files do. A cache entry is a ``.npz`` file holding the
parsed arrays plus a key made of the reader's version and the name, size and
modification time (ns) of every source file: if any of these differs, the
entry is ignored and rewritten. Entries are written to a temporary file and
renamed into place, so concurrent processes (DDP ranks) never read a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

__all__ = ["CACHE_FOLDER", "cached_arrays", "source_key"]

#: Folder (inside the data set root) holding the cache entries.
CACHE_FOLDER = ".spml_cache"
_KEY = "__cache_key__"


def source_key(sources: Sequence[Path], version: str) -> str:
    """Identity of the inputs of a parse: reader version, then name, size, mtime of each file."""
    entries = []
    for path in sources:
        stat = os.stat(path)
        entries.append([os.path.basename(path), stat.st_size, stat.st_mtime_ns])
    return json.dumps({"version": version, "sources": entries}, sort_keys=True)


def _read_entry(path: Path, key: str) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as entry:
            if _KEY not in entry.files or str(entry[_KEY]) != key:
                return None
            return {name: entry[name] for name in entry.files if name != _KEY}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None  # unreadable or torn: parse again


def _write_entry(path: Path, key: str, arrays: Mapping[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            np.savez(f, **{_KEY: np.array(key)}, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cached_arrays(
    cache_file: Path | None,
    sources: Sequence[Path],
    parse: Callable[[], Mapping[str, np.ndarray]],
    version: str,
) -> dict[str, np.ndarray]:
    """Arrays from ``cache_file`` if it was made from exactly ``sources``, else ``parse()``.

    Args:
        cache_file: where the entry lives; None disables caching.
        sources: the files ``parse`` reads (all must exist).
        parse: returns the arrays (numeric or unicode; no object arrays).
        version: bump it whenever ``parse`` changes its output for the same files.

    A cache that cannot be written (read-only data folder) is reported once
    per call and the parsed arrays are returned all the same.
    """
    if cache_file is None:
        return dict(parse())
    key = source_key(sources, version)
    cached = _read_entry(cache_file, key)
    if cached is not None:
        return cached
    arrays = dict(parse())
    try:
        _write_entry(cache_file, key, arrays)
    except OSError as err:
        rank_zero_warn(
            f"Could not cache the parsed labels in {cache_file} ({err}); they will be parsed "
            "again next time. Pass cache=False to silence this."
        )
    return arrays
