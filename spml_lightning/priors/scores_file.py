"""A user's file of prior scores: a CSV keyed by image, or a ``.npy`` array in data-set order.

Scores computed on another machine, or by another model, come in as a file
(``data.init_args.prior: <file>``):

- **CSV**: a header ``image,<class>,<class>,...`` with one column per class of the data
  set (named as the data set names them, in any order) and one row per image: ``image``
  is the path relative to the data set's root (or absolute), as the data set's own files
  name it. Every training image needs a row; rows of other images (the validation or test
  ones) are allowed and counted in the log. Only the whole image's scores.
- **.npy**: ``(N, C)`` (the whole image) or ``(N, 1 + n², C)`` (the whole image, then an
  ``n × n`` grid of crops row by row), with one row per image of the training phase in
  the data set's order: the training and validation images before the split, as the data
  set lists them (e.g. the rows of ``formatted_train_images.npy``).

A file that does not describe the data set (another number of rows or classes, a
class or a training image it lacks, a row that is not numbers) is refused with a message
naming the mismatch: a prior for other images would train without complaint, wrongly.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spml_lightning.data.csv_labels import closest, read_text, resolve
from spml_lightning.priors.scores import PriorScores

__all__ = ["IMAGE_COLUMN", "read_scores_file"]

IMAGE_COLUMN = "image"
"""The column of a scores CSV that names the image."""

#: How many names a message about missing rows or classes lists.
_SHOWN = 5


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def read_scores_file(
    path: str | os.PathLike,
    *,
    class_names: Sequence[str],
    image_paths: Sequence[str],
    phase_rows: np.ndarray,
    phase_size: int,
    root: str | os.PathLike,
) -> tuple[PriorScores, str]:
    """The scores of the training images from a ``.csv`` or ``.npy`` file, checked.

    Args:
        path: the file.
        class_names: the data set's classes, in column order.
        image_paths: the training images' paths, in the training set's row order.
        phase_rows: each training image's row in the training phase (for ``.npy``).
        phase_size: the number of images of the training phase (for ``.npy``).
        root: the data set's folder (relative paths of a CSV count from it).

    Returns:
        The scores, and a sentence on what was read (for the log).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it does not describe the data set's images and classes.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"The prior scores file {path} does not exist: pass data.init_args.prior a .csv or "
            ".npy file of scores (docs/guides/priors.md), or a provider."
        )
    if path.suffix.lower() == ".npy":
        return _read_npy(path, len(class_names), phase_rows, phase_size)
    if path.suffix.lower() == ".csv":
        return _read_csv(path, class_names, image_paths, Path(root).expanduser())
    raise ValueError(
        f"The prior scores file {path} is neither .csv nor .npy; write the scores as one of them "
        "(docs/guides/priors.md)."
    )


def _read_npy(
    path: Path, num_classes: int, phase_rows: np.ndarray, phase_size: int
) -> tuple[PriorScores, str]:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.ndim == 2:
        array = array[:, None, :]
    if array.ndim != 3:
        raise ValueError(
            f"{path}: shape {array.shape}; a .npy prior is (images, classes) or (images, "
            "1 + n², classes)."
        )
    if array.shape[0] != phase_size:
        raise ValueError(
            f"{path} has {array.shape[0]} rows but the data set's training phase has "
            f"{phase_size} images: a .npy prior has one row per training-phase image (train and "
            "val before the split), in the data set's order."
        )
    if array.shape[2] != num_classes:
        raise ValueError(
            f"{path} has {array.shape[2]} class columns but the data set has {num_classes} "
            "classes, in its class order."
        )
    views = np.asarray(array[np.asarray(phase_rows)], dtype=np.float32)
    return PriorScores(views), f"{path}: {len(views)} training images, {views.shape[1]} view(s)"


def _comparable(path: str | os.PathLike) -> str:
    # Absolute: a CSV's absolute paths must meet a data root given relative to the
    # working directory (configs name theirs so), and relative ones the other way round.
    return os.path.abspath(path)


def _read_csv(
    path: Path, class_names: Sequence[str], image_paths: Sequence[str], root: Path
) -> tuple[PriorScores, str]:
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    header = [cell.strip() for cell in next(reader, [])]
    if IMAGE_COLUMN not in header:
        raise ValueError(
            f"{path}: the header must name an '{IMAGE_COLUMN}' column and one column per class; "
            f"found {header}."
        )
    columns = [c for c in header if c != IMAGE_COLUMN]
    missing = [c for c in class_names if c not in columns]
    unknown = [c for c in columns if c not in class_names]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"lacks the classes {_listed(missing)}")
        if unknown:
            hints = "".join(closest(c, list(class_names)) for c in unknown[:1])
            parts.append(
                f"has columns that are no class of the data set: {_listed(unknown)}{hints}"
            )
        raise ValueError(
            f"{path} {' and '.join(parts)}; a scores CSV has one column per class of the data "
            "set, named as the data set names them."
        )
    image_at, order = header.index(IMAGE_COLUMN), [header.index(c) for c in class_names]
    rows: dict[str, np.ndarray] = {}
    lines: dict[str, int] = {}
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        line = reader.line_num
        if len(row) != len(header):
            raise ValueError(f"{path}, line {line}: {len(row)} cells for {len(header)} columns.")
        name = _comparable(resolve(root, row[image_at].strip()))
        if name in rows:
            raise ValueError(
                f"{path}, lines {lines[name]} and {line} both give scores of {name}; keep one."
            )
        try:
            rows[name] = np.array([float(row[i]) for i in order], dtype=np.float32)
        except ValueError:
            raise ValueError(
                f"{path}, line {line}: the class columns must hold numbers; found "
                f"{[row[i] for i in order][:_SHOWN]}."
            ) from None
        lines[name] = line
    wanted = [_comparable(p) for p in image_paths]
    absent = [p for p in wanted if p not in rows]
    if absent:
        shown = [os.path.relpath(p, os.path.abspath(root)) for p in absent]
        raise ValueError(
            f"{path} has no row for {len(absent)} of the {len(wanted)} training images: "
            f"{_listed(shown)}. Score every training image (paths relative to {root})."
        )
    views = np.stack([rows[p] for p in wanted])[:, None, :]
    others = len(rows) - len(set(wanted))
    return PriorScores(views), (
        f"{path}: {len(wanted)} training images"
        + (f" ({others} rows of other images not used)" if others else "")
    )
