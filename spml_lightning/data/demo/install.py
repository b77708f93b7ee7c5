"""Installing the demo data set on disk: once, atomically, with a manifest.

``write_demo_dataset`` renders the images (``render.py``) and stores them in
the community's "formatted" layout -- ``formatted_{train,val}_images.npy`` (file
names relative to the image root) and ``formatted_{train,val}_labels.npy``
(N x C in {0, 1}), the layout the preprocessing scripts of Cole et al.
(CVPR 2021) write -- so the same reader (``FormattedDataModule``) serves the
demo and the real benchmarks.

A manifest (``demo_manifest.json``: the arguments and ``GENERATOR_VERSION``)
marks a finished set. The set is written to a temporary sibling folder and
renamed into place, so an interrupted write never looks complete and
processes racing on one folder (DDP ranks) all end with the same valid set;
a folder holding anything but a demo set is never deleted.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from spml_lightning.data.demo.render import (
    DEMO_CLASS_NAMES,
    GENERATOR_VERSION,
    check_int,
    render_demo_images,
)

__all__ = ["write_demo_dataset"]

_MANIFEST = "demo_manifest.json"
# Recorded in every manifest, so it is an on-disk identifier, not this module's path: it
# keeps the name of the module that first wrote demo sets, and a set written then is
# still recognised as a demo set (reused, or replaced when outdated, never refused).
_GENERATOR_ID = "spml_lightning.data.synthetic"
_PHASES = (("train", "train"), ("val", "test"))  # (name in the .npy files, image folder)
_TOP_LEVEL_FILES = frozenset(
    {
        _MANIFEST,
        "class_names.txt",
        "formatted_train_images.npy",
        "formatted_train_labels.npy",
        "formatted_val_images.npy",
        "formatted_val_labels.npy",
    }
)
# Files other tools derive from a demo set (the observed single positives in
# the community layout): stale once the set is regenerated, so they may go with it.
_DERIVED_FILES = frozenset({"formatted_train_labels_obs.npy", "formatted_val_labels_obs.npy"})
_IMAGE_NAME = re.compile(r"\d{6,}\.png")


def _phase_seed(seed: int, phase: str) -> int:
    """Independent, stable seeds for the train and test phases of one demo set."""
    key = {"train": 0, "test": 1}[phase]
    return int(np.random.SeedSequence([seed, key]).generate_state(1, dtype=np.uint32)[0])


def _image_names(n: int) -> list[str]:
    width = max(6, len(str(n - 1)))
    return [f"{i:0{width}d}.png" for i in range(n)]


def _read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        with open(root / _MANIFEST, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("generator") != _GENERATOR_ID:
        return None
    return manifest


def _is_complete(root: Path, expected: Mapping[str, Any]) -> bool:
    """True if ``root`` holds a finished demo set made with exactly ``expected``."""
    if _read_manifest(root) != dict(expected):
        return False
    if not all((root / f).is_file() for f in _TOP_LEVEL_FILES):
        return False
    for folder, key in (("train", "num_train"), ("test", "num_test")):
        try:
            present = set(os.listdir(root / "images" / folder))
        except OSError:
            return False
        if not set(_image_names(expected[key])) <= present:
            return False
    return True


def _holds_only_demo_set(root: Path) -> bool:
    """True if deleting ``root`` would lose nothing but a demo set (or nothing at all).

    A demo set is recognised by its manifest; anything that a demo set does not
    contain (a user's file, a foreign folder) makes the answer False.
    """
    entries = set(os.listdir(root))
    if not entries:
        return True
    if _read_manifest(root) is None:
        return False
    if not entries <= _TOP_LEVEL_FILES | _DERIVED_FILES | {"images"}:
        return False
    images = root / "images"
    if not images.exists():
        return True
    if not images.is_dir() or not set(os.listdir(images)) <= {"train", "test"}:
        return False
    for sub in os.scandir(images):
        if not sub.is_dir(follow_symlinks=False):
            return False
        for entry in os.scandir(sub.path):
            if not (entry.is_file(follow_symlinks=False) and _IMAGE_NAME.fullmatch(entry.name)):
                return False
    return True


def _refuse(root: Path) -> FileExistsError:
    return FileExistsError(
        f"{root} already exists and holds files that are not a spml_lightning demo set "
        f"(no {_MANIFEST} from this generator, or extra files next to it). Refusing to "
        "overwrite them: pass a new or empty directory as the demo data root."
    )


def _write_set(tmp: Path, manifest: Mapping[str, Any]) -> None:
    for npy_phase, folder in _PHASES:
        n = manifest["num_train" if folder == "train" else "num_test"]
        images, labels = render_demo_images(
            n, _phase_seed(manifest["seed"], folder), manifest["image_size"]
        )
        (tmp / "images" / folder).mkdir(parents=True)
        names = _image_names(n)
        for name, image in zip(names, images, strict=True):
            # Low zlib effort: the files are small either way and this halves the write time.
            Image.fromarray(image).save(tmp / "images" / folder / name, compress_level=1)
        paths = np.array([f"{folder}/{name}" for name in names])
        np.save(tmp / f"formatted_{npy_phase}_images.npy", paths)
        np.save(tmp / f"formatted_{npy_phase}_labels.npy", labels.astype(np.float64))
    (tmp / "class_names.txt").write_text("\n".join(DEMO_CLASS_NAMES) + "\n", encoding="utf-8")
    # Written last: a manifest means the rest is there.
    with open(tmp / _MANIFEST, "w", encoding="utf-8") as f:
        json.dump(dict(manifest), f, indent=2, sort_keys=True)
        f.write("\n")


def _install(tmp: Path, root: Path, manifest: Mapping[str, Any]) -> None:
    """Moves the finished set ``tmp`` to ``root`` atomically, tolerating a racing writer."""
    for _ in range(5):
        try:
            # Atomic, and on POSIX it also replaces an empty directory.
            os.rename(tmp, root)
            return
        except OSError as err:
            if err.errno not in (
                errno.EEXIST,
                errno.ENOTEMPTY,
                errno.EISDIR,
                errno.EACCES,
                errno.EPERM,
            ):
                raise
        if _is_complete(root, manifest):
            # Another process (e.g. another DDP rank) got there first with the same set.
            shutil.rmtree(tmp, ignore_errors=True)
            return
        try:
            replaceable = root.is_dir() and _holds_only_demo_set(root)
        except FileNotFoundError:
            continue  # another process moved it aside meanwhile; try again
        if replaceable:
            # An outdated demo set, or an empty folder: move it aside atomically
            # first, so that ``root`` never looks like a complete set while it is
            # half deleted.
            trash = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
            try:
                os.rename(root, trash / "set")
            except FileNotFoundError:
                pass  # another process moved it already
            shutil.rmtree(trash, ignore_errors=True)
            continue
        raise _refuse(root)
    raise RuntimeError(f"Could not move the demo set into {root}: it kept changing underneath.")


def write_demo_dataset(
    root: str | os.PathLike[str],
    num_train: int = 2000,
    num_test: int = 800,
    image_size: int = 64,
    seed: int = 0,
) -> Path:
    """Writes the demo set in the community "formatted" layout and returns ``root``.

    Layout (paths in the ``.npy`` files are relative to ``root/images``; the
    test phase is called "val", as in the community files)::

        root/images/train/000000.png ...        root/images/test/000000.png ...
        root/formatted_train_images.npy         str, e.g. "train/000000.png"
        root/formatted_train_labels.npy         float64 (num_train, C) in {0, 1}
        root/formatted_val_images.npy           str, e.g. "test/000000.png"
        root/formatted_val_labels.npy           float64 (num_test, C) in {0, 1}
        root/class_names.txt                    one name per line, label-column order
        root/demo_manifest.json                 these arguments + generator version

    If ``root`` already holds the set these arguments describe, nothing is
    written. A demo set made with other arguments (or by an older generator) is
    replaced; anything else in ``root`` makes this raise instead of deleting it.
    The set is generated in a temporary sibling directory and renamed into
    place, so an interrupted call never leaves a set that looks complete, and
    processes racing on the same ``root`` (DDP ranks) all end with a valid set.

    Args:
        root: directory of the demo set (created, with its parents, if missing).
        num_train: number of training images (>= 1).
        num_test: number of test images (>= 1).
        image_size: side of the square images in pixels (>= 32).
        seed: non-negative seed; train and test images use different seeds
            derived from it.

    Returns:
        ``root`` as a ``Path``.

    Raises:
        ValueError: if an argument is out of range.
        FileExistsError: if ``root`` exists and holds anything but a demo set.
        NotADirectoryError: if ``root`` is a file.
    """
    num_train = check_int("num_train", num_train, 1)
    num_test = check_int("num_test", num_test, 1)
    image_size = check_int("image_size", image_size, 32)
    seed = check_int("seed", seed, 0)
    root = Path(root)
    manifest = {
        "generator": _GENERATOR_ID,
        "version": GENERATOR_VERSION,
        "num_train": num_train,
        "num_test": num_test,
        "image_size": image_size,
        "seed": seed,
        "class_names": list(DEMO_CLASS_NAMES),
    }

    if root.exists():
        if not root.is_dir():
            raise NotADirectoryError(
                f"{root} is a file, expected a directory for the demo set: pass another path."
            )
        if _is_complete(root, manifest):
            return root
        # Checked before the (slow) generation so the user hears about it at once;
        # _install checks again in case the folder changed meanwhile.
        if not _holds_only_demo_set(root):
            raise _refuse(root)

    root.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkdtemp: its 0o700 mode would survive the rename and hide the
    # set from other users; mkdir honours the umask like any other folder.
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        _write_set(tmp, manifest)
        _install(tmp, root, manifest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
