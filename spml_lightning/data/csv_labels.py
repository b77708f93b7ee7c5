"""Reading a user's multi-label CSV files: the format, the parsing and its checks.

Each CSV has a header and one row per image::

    image,labels,observed
    kitchen/0001.jpg,cup;table;chair,cup
    street/0042.jpg,car,

``image`` is a path relative to the image root (or absolute); ``labels`` are
the image's full labels, class names (or integer column indices) separated by
``label_separator`` (empty: an image without positives); the optional
``observed`` column gives the observed single positives in the same form. When
a CSV has no ``observed`` column, the protocol generates single positives from
``labels`` (as in ``protocol.py``). The training CSV is split into train/val by the
protocol; the test CSV is the test set.

If you only have single positives for your training images, put them in
``labels`` and validate on them with ``val_labels: observed``.

An optional ``boxes`` column gives the objects' boxes, which ``observe: size``
and ``observe: center`` choose the observed positive by: entries
``<label>:<x> <y> <w> <h>`` separated by ``label_separator``, the label written
as in ``labels`` (and one of the row's labels), the box in pixels with
``x, y`` its top-left corner (COCO's ``bbox``); the four numbers separated by
spaces or commas (a cell holding commas must be quoted, as CSV writers do)::

    image,labels,boxes
    kitchen/0001.jpg,cup;table,cup:10 20 30 40;table:0 50 200 120

CSV and class-name files are UTF-8 (with or without a byte-order mark), or
UTF-16/UTF-32 with a byte-order mark (Excel's "Unicode Text"); anything else is
an error naming the file. Because a wrong label set trains without complaint
(to a poor mAP), ``CSVDataModule`` (``csv_datamodule.py``) checks what it reads:

* ``setup`` logs, for each CSV, its number of images and the positives per
  class (and observed positives per class, if given), before any training;
* a training CSV without a single positive label is an error;
* two rows naming the same image -- also when written differently, as
  ``images/a.png`` and ``./images/a.png`` -- are an error naming both lines;
* when the class names come from the CSVs (no ``class_names``), a name that
  holds one of ``OTHER_SEPARATORS`` (e.g. ``dog,tv`` with the default ``;``)
  or that only one image uses (e.g. the typo ``dgo``) is warned about, with the
  closest other class name; with ``class_names`` such names are errors.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = [
    "BOX_FORMAT",
    "CSV_HELP",
    "OTHER_SEPARATORS",
    "closest",
    "read_box_column",
    "read_csv_rows",
    "read_label_csv",
    "read_text",
    "resolve",
    "separator_hint",
    "tokens",
]

_REQUIRED_COLUMNS = ("image", "labels")


CSV_HELP = (
    "CSVDataModule needs an image root and CSV files with the header "
    "'image,labels[,observed]', optionally a 'boxes' column too (see the docs, "
    "docs/guides/your-own-data.md)."
)


#: Characters that other label files separate labels with. A class name holding one (other than
#: ``label_separator``) is most likely several labels read as one.
OTHER_SEPARATORS: tuple[str, ...] = (",", ";", "|", "\t")

#: Byte-order marks of the encodings read besides UTF-8 (UTF-32's first: they begin with UTF-16's).
_BYTE_ORDER_MARKS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

_SAVE_AS_UTF8 = (
    "Save it as UTF-8 (in Excel: 'CSV UTF-8'); UTF-16 with a byte-order mark is read too."
)


def read_text(path: Path) -> str:
    """The text of a CSV or class-name file: UTF-8, or UTF-16/32 starting with a byte-order mark.

    Raises:
        ValueError: naming the file (and the line) when it is in another encoding.
    """
    data = path.read_bytes()
    encoding = next(
        (name for mark, name in _BYTE_ORDER_MARKS if data.startswith(mark)), "utf-8-sig"
    )
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        shown = "UTF-8" if encoding == "utf-8-sig" else encoding.upper()
        raise ValueError(
            f"{path}, line {line}: not {shown} text ({err.reason} at byte {err.start}). "
            f"{_SAVE_AS_UTF8}"
        ) from None
    if "\x00" in text:  # valid UTF-8 but NUL characters: UTF-16 without a byte-order mark
        raise ValueError(
            f"{path} holds NUL characters: probably UTF-16 without a byte-order mark. "
            f"{_SAVE_AS_UTF8}"
        )
    return text


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a label CSV as ``{column: cell}`` (cells stripped), its header checked."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist. {CSV_HELP}")
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    if any(c not in columns for c in _REQUIRED_COLUMNS):
        raise ValueError(
            f"{path}: the header must name the columns 'image' and 'labels' (and optionally "
            f"'observed', 'boxes'); found {columns}."
        )
    rows = []
    for row in reader:
        extra = row.pop(None, None)  # DictReader's key for cells beyond the header's columns
        if extra:
            raise ValueError(
                f"{path}, line {reader.line_num}: {len(columns) + len(extra)} cells for the "
                f"{len(columns)} columns {columns}; the extra ones are {extra}. A ',' separates "
                "columns: separate the labels within a cell with label_separator (default ';')."
            )
        rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
    return rows


def tokens(cell: str, separator: str) -> list[str]:
    """The labels of a cell, stripped, empty ones dropped."""
    return [t.strip() for t in cell.split(separator) if t.strip()]


def resolve(root: Path, path: str) -> Path:
    """``path`` (``~`` expanded) if absolute, else relative to ``root``."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else root / path


def closest(name: str, others: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the most similar of ``others``, or ``""`` if none is similar."""
    match = difflib.get_close_matches(name, [o for o in others if o != name], n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def separator_hint(label: str, separator: str) -> str:
    """How to fix a label that holds one of ``OTHER_SEPARATORS``, or ``""`` if it holds none.

    Args:
        label: a label as read from a CSV cell.
        separator: the ``label_separator`` in use.
    """
    found = next((s for s in OTHER_SEPARATORS if s != separator and s in label), None)
    if found is None:
        return ""
    rewritten = separator.join(part.strip() for part in label.split(found) if part.strip())
    if found == ",":
        return (
            f"{label!r} looks like labels separated by ',', which separates the CSV's columns "
            f"and cannot separate labels: write {rewritten!r}."
        )
    return (
        f"{label!r} looks like labels separated by {found!r}: pass label_separator={found!r} "
        f"if your CSVs separate labels with it (now {separator!r}), or write {rewritten!r}."
    )


def _column(
    token: str,
    class_names: Sequence[str],
    column_of: dict[str, int],
    separator: str,
    label_format: Literal["names", "indices"],
    where: str,
) -> int:
    """The label column ``token`` names; a ValueError starting with ``where`` if none."""
    if label_format == "indices":
        if not token.isdigit() or int(token) >= len(class_names):
            raise ValueError(
                f"{where}: label {token!r} is not a column index in "
                f"0..{len(class_names) - 1}. "
                f"{separator_hint(token, separator)}".rstrip()
            )
        return int(token)
    if token in column_of:
        return column_of[token]
    raise ValueError(
        f"{where}: unknown class {token!r}"
        f"{closest(token, class_names)}; the classes are "
        f"{list(class_names)[:10]}{' ...' if len(class_names) > 10 else ''}. "
        f"{separator_hint(token, separator)}".rstrip()
    )


def read_label_csv(
    path: Path,
    class_names: Sequence[str],
    separator: str,
    label_format: Literal["names", "indices"],
    root: Path | None = None,
    rows: list[dict[str, str]] | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Read a label CSV (see the module doc) against known class names.

    Args:
        path: the CSV file.
        class_names: the label columns, in order.
        separator: what separates the labels within a cell.
        label_format: ``names`` or ``indices`` (0-based column numbers).
        root: what relative image paths are relative to; two rows whose paths
            lead to the same file (after ``os.path.normpath``) are duplicates.
            Default: the paths as written, normalised.
        rows: the file's rows if already read (:func:`read_csv_rows`), not to parse it again.

    Returns:
        Image paths as written, (N, C) uint8 labels, and the (N, C) observed
        labels if the CSV has an ``observed`` column (else None).

    Raises:
        ValueError: naming the file and line, for an empty image cell, an image
            listed twice, or a label that is not one of ``class_names``.
    """
    rows = read_csv_rows(path) if rows is None else rows
    column_of = {name: i for i, name in enumerate(class_names)}
    has_observed = bool(rows) and "observed" in rows[0]
    labels = np.zeros((len(rows), len(class_names)), dtype=np.uint8)
    observed = np.zeros(labels.shape, dtype=np.float64) if has_observed else None
    seen: dict[str, tuple[int, str]] = {}  # normalised path -> (line, path as written)
    images = []
    for i, row in enumerate(rows):
        line = i + 2  # the header is line 1
        image = row["image"]
        if not image:
            raise ValueError(f"{path}, line {line}: empty 'image' cell.")
        key = os.path.normpath(
            resolve(root, image) if root is not None else os.path.expanduser(image)
        )
        if key in seen:
            first_line, first = seen[key]
            written = f", written {first!r} and {image!r}" if first != image else ""
            raise ValueError(
                f"{path}: {key} is listed twice (lines {first_line} and {line}){written}. "
                "List each image once."
            )
        seen[key] = (line, image)
        images.append(image)
        targets = [(labels, row["labels"])] + (
            [(observed, row["observed"])] if has_observed else []
        )
        for matrix, cell in targets:
            for token in tokens(cell, separator):
                where = f"{path}, line {line}"
                matrix[
                    i, _column(token, class_names, column_of, separator, label_format, where)
                ] = 1
    return images, labels, observed


BOX_FORMAT = (
    "write '<label>:<x> <y> <w> <h>' (pixels, x and y the top-left corner), boxes separated by "
    "label_separator"
)


def read_box_column(
    path: Path,
    class_names: Sequence[str],
    separator: str,
    label_format: Literal["names", "indices"],
    labels: np.ndarray,
    rows: list[dict[str, str]] | None = None,
) -> dict[str, np.ndarray] | None:
    """The ``boxes`` column of a label CSV (module doc), or None if it has none.

    Args:
        path: the CSV file.
        class_names: the label columns, in order.
        separator: what separates the boxes within a cell.
        label_format: ``names`` or ``indices``, as in ``labels``.
        labels: the CSV's (N, C) labels, from ``read_label_csv``.
        rows: the file's rows if already read (:func:`read_csv_rows`), not to parse it again.

    Returns:
        ``{"rows", "columns": int64 (K,), "boxes": float64 (K, 4) x, y, w, h}``.

    Raises:
        ValueError: naming the file and line, for a malformed box, a box of a
            class the row does not label, or a labelled row without a box.
    """
    rows = read_csv_rows(path) if rows is None else rows
    if not rows or "boxes" not in rows[0]:
        return None
    column_of = {name: i for i, name in enumerate(class_names)}
    found_rows, columns, boxes = [], [], []
    for i, row in enumerate(rows):
        where = f"{path}, line {i + 2}"
        entries = tokens(row["boxes"], separator)
        if labels[i].any() and not entries:
            raise ValueError(
                f"{where}: labels {row['labels']!r} but an empty 'boxes' cell; observe='size' "
                f"and 'center' need the box of at least one of them: {BOX_FORMAT}."
            )
        for entry in entries:
            token, _, numbers = entry.rpartition(":")
            try:
                box = [float(v) for v in numbers.replace(",", " ").split()]
            except ValueError:
                box = []
            if (
                not token.strip()
                or len(box) != 4
                or not np.isfinite(box).all()
                or min(box[2:]) <= 0
            ):
                raise ValueError(
                    f"{where}: box {entry!r} is not '<label>:<x> <y> <w> <h>' with a positive "
                    f"width and height; {BOX_FORMAT}."
                )
            column = _column(token.strip(), class_names, column_of, separator, label_format, where)
            if not labels[i, column]:
                raise ValueError(
                    f"{where}: a box of {class_names[column]!r}, which is not among the row's "
                    f"labels {row['labels']!r}. Add it to the labels or remove the box."
                )
            found_rows.append(i)
            columns.append(column)
            boxes.append(box)
    return {
        "rows": np.asarray(found_rows, dtype=np.int64),
        "columns": np.asarray(columns, dtype=np.int64),
        "boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
    }
