"""A user's own multi-label data: an image folder plus CSV files.

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
(to a poor mAP), ``FolderDataModule`` checks what it reads:

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
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from spml_lightning.data.base import Phase, PhaseData, SPMLDataModule
from spml_lightning.data.io import image_size
from spml_lightning.data.observation import ObjectBoxes

__all__ = ["OTHER_SEPARATORS", "FolderDataModule", "read_box_column", "read_label_csv"]

_REQUIRED_COLUMNS = ("image", "labels")


_CSV_HELP = (
    "FolderDataModule needs an image root and CSV files with the header "
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

#: How many doubtful class names a warning shows.
_SHOWN_NAMES = 5

_SAVE_AS_UTF8 = (
    "Save it as UTF-8 (in Excel: 'CSV UTF-8'); UTF-16 with a byte-order mark is read too."
)


def _read_text(path: Path) -> str:
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


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist. {_CSV_HELP}")
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
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


def _tokens(cell: str, separator: str) -> list[str]:
    return [t.strip() for t in cell.split(separator) if t.strip()]


def _resolve(root: Path, path: str) -> Path:
    """``path`` (``~`` expanded) if absolute, else relative to ``root``."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else root / path


def _closest(name: str, others: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the most similar of ``others``, or ``""`` if none is similar."""
    match = difflib.get_close_matches(name, [o for o in others if o != name], n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _separator_hint(label: str, separator: str) -> str:
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
                f"{_separator_hint(token, separator)}".rstrip()
            )
        return int(token)
    if token in column_of:
        return column_of[token]
    raise ValueError(
        f"{where}: unknown class {token!r}"
        f"{_closest(token, class_names)}; the classes are "
        f"{list(class_names)[:10]}{' ...' if len(class_names) > 10 else ''}. "
        f"{_separator_hint(token, separator)}".rstrip()
    )


def read_label_csv(
    path: Path,
    class_names: Sequence[str],
    separator: str,
    label_format: Literal["names", "indices"],
    root: Path | None = None,
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

    Returns:
        Image paths as written, (N, C) uint8 labels, and the (N, C) observed
        labels if the CSV has an ``observed`` column (else None).

    Raises:
        ValueError: naming the file and line, for an empty image cell, an image
            listed twice, or a label that is not one of ``class_names``.
    """
    rows = _read_rows(path)
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
            _resolve(root, image) if root is not None else os.path.expanduser(image)
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
            for token in _tokens(cell, separator):
                where = f"{path}, line {line}"
                matrix[
                    i, _column(token, class_names, column_of, separator, label_format, where)
                ] = 1
    return images, labels, observed


_BOX_FORMAT = (
    "write '<label>:<x> <y> <w> <h>' (pixels, x and y the top-left corner), boxes separated by "
    "label_separator"
)


def read_box_column(
    path: Path,
    class_names: Sequence[str],
    separator: str,
    label_format: Literal["names", "indices"],
    labels: np.ndarray,
) -> dict[str, np.ndarray] | None:
    """The ``boxes`` column of a label CSV (module doc), or None if it has none.

    Args:
        path: the CSV file.
        class_names: the label columns, in order.
        separator: what separates the boxes within a cell.
        label_format: ``names`` or ``indices``, as in ``labels``.
        labels: the CSV's (N, C) labels, from ``read_label_csv``.

    Returns:
        ``{"rows", "columns": int64 (K,), "boxes": float64 (K, 4) x, y, w, h}``.

    Raises:
        ValueError: naming the file and line, for a malformed box, a box of a
            class the row does not label, or a labelled row without a box.
    """
    rows = _read_rows(path)
    if not rows or "boxes" not in rows[0]:
        return None
    column_of = {name: i for i, name in enumerate(class_names)}
    found_rows, columns, boxes = [], [], []
    for i, row in enumerate(rows):
        where = f"{path}, line {i + 2}"
        entries = _tokens(row["boxes"], separator)
        if labels[i].any() and not entries:
            raise ValueError(
                f"{where}: labels {row['labels']!r} but an empty 'boxes' cell; observe='size' "
                f"and 'center' need the box of at least one of them: {_BOX_FORMAT}."
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
                    f"width and height; {_BOX_FORMAT}."
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


class FolderDataModule(SPMLDataModule):
    """Your own images and multi-label CSV files.

    Args:
        root: image root; relative ``image`` paths (and CSV paths) are resolved against it.
        train_csv: CSV of the training images (split into train/val by the protocol);
            its optional ``boxes`` column serves ``observe: size | center``.
        test_csv: CSV of the test images (full labels); None if there is no test set.
        class_names: the label columns in order: a list, or a text file with one
            name per line. Default: every name used in the CSVs, sorted (for
            ``label_format: indices``: ``class_0`` ... up to the largest index).
        label_format: ``names`` or ``indices`` (0-based column numbers).
        label_separator: what separates the labels within a cell (not ``,``,
            which separates the columns).
        **kwargs (Any): see ``SPMLDataModule``.

    ``setup`` logs the images and positives per class of each CSV it reads,
    and refuses a training CSV without any positive label; see the module doc
    for the other checks.
    """

    has_boxes = True

    def __init__(
        self,
        root: str,
        train_csv: str = "train.csv",
        test_csv: str | None = "test.csv",
        class_names: list[str] | str | None = None,
        label_format: Literal["names", "indices"] = "names",
        label_separator: str = ";",
        **kwargs,
    ) -> None:
        super().__init__(root=root, **kwargs)
        if label_format not in ("names", "indices"):
            raise ValueError(f"label_format must be 'names' or 'indices', got {label_format!r}.")
        if not label_separator or label_separator == ",":
            raise ValueError("label_separator must be a non-empty string other than ','.")
        self.train_csv = self._resolve(train_csv)
        self.test_csv = self._resolve(test_csv) if test_csv else None
        self.label_format = label_format
        self.label_separator = label_separator
        self._names_arg = class_names
        self._class_names: list[str] | None = None

    def _resolve(self, path: str) -> Path:
        return _resolve(self.root, path)

    def _csv_files(self) -> list[Path]:
        return [self.train_csv] + ([self.test_csv] if self.test_csv else [])

    @property
    def class_names(self) -> list[str]:
        """The given names (a list or file), else those used in the CSVs; found on first use."""
        if self._class_names is None:
            self._class_names = self._find_class_names()
        return self._class_names

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise FileNotFoundError(f"The image root {self.root} does not exist. {_CSV_HELP}")

    def _find_class_names(self) -> list[str]:
        self._check_root()
        if isinstance(self._names_arg, str):
            names_file = self._resolve(self._names_arg)
            if not names_file.is_file():
                raise FileNotFoundError(f"class_names file {names_file} does not exist.")
            names = [line.strip() for line in _read_text(names_file).splitlines() if line.strip()]
        elif self._names_arg is not None:
            names = [str(n) for n in self._names_arg]
        else:
            used = self._label_uses()
            if self.label_format == "names":
                names = sorted(used)
                self._warn_doubtful_names(used)
            else:
                bad = sorted(t for t in used if not t.isdigit())
                if bad:
                    raise ValueError(
                        f"label_format='indices' but the CSVs use labels {bad[:5]} "
                        f"({self._where(used[bad[0]])}). "
                        f"{_separator_hint(bad[0], self.label_separator)}".rstrip()
                    )
                names = [f"class_{i}" for i in range(max((int(t) for t in used), default=-1) + 1)]
        if not names:
            raise ValueError(f"No classes: {self._csv_files()} name none and class_names is empty.")
        if len(set(names)) != len(names):
            raise ValueError("class_names contains a name twice.")
        return names

    def _label_uses(self) -> dict[str, list[tuple[Path, int]]]:
        """Every label of the CSVs (labels and observed columns), with the (CSV, line) using it."""
        uses: dict[str, list[tuple[Path, int]]] = {}
        for path in self._csv_files():
            for line, row in enumerate(_read_rows(path), start=2):  # the header is line 1
                cells = (row.get(key, "") for key in ("labels", "observed"))
                for token in sorted(
                    {t for cell in cells for t in _tokens(cell, self.label_separator)}
                ):
                    uses.setdefault(token, []).append((path, line))
        return uses

    @staticmethod
    def _where(rows: list[tuple[Path, int]]) -> str:
        (path, line), more = rows[0], len(rows) - 1
        return f"{path}, line {line}" + (f", and {more} more rows" if more else "")

    def _warn_doubtful_names(self, uses: dict[str, list[tuple[Path, int]]]) -> None:
        """Warn about class names read from the CSVs that are probably not classes.

        Nothing else catches them: without ``class_names`` every label is a
        class. A name holding another common separator is probably several
        labels; a name that only one image uses is probably a typo.
        """
        joined = {
            name: hint
            for name in sorted(uses)
            if (hint := _separator_hint(name, self.label_separator))
        }
        if joined:
            examples = list(joined.items())[:_SHOWN_NAMES]
            shown = "\n  ".join(f"{self._where(uses[name])}: {hint}" for name, hint in examples)
            rank_zero_warn(
                f"FolderDataModule: {len(joined)} of the {len(uses)} class names in the CSVs hold "
                f"a label separator other than label_separator={self.label_separator!r}, e.g.:"
                f"\n  {shown}"
            )
        once = [name for name in sorted(uses) if len(uses[name]) == 1 and name not in joined]
        if once:
            # A typo is most likely one of a class that other images use. Only the names shown
            # are matched: difflib over every pair of a large vocabulary is slow.
            common = [name for name in uses if len(uses[name]) > 1 and name not in joined]
            shown = "\n  ".join(
                f"{self._where(uses[name])}: {name!r}{_closest(name, common)}"
                for name in once[:_SHOWN_NAMES]
            )
            rank_zero_warn(
                f"FolderDataModule: {len(once)} of the {len(uses)} class names in the CSVs are "
                f"used by a single image, typos?\n  {shown}\nFix them, or pass class_names (a "
                "list, or a file with one name per line) so that any other name is an error."
            )

    def obtain_hint(self) -> str:
        """Where the CSVs' relative image paths start."""
        return f"the image paths of the CSV files are relative to {self.root}"

    def load_phase(self, phase: Phase) -> PhaseData:
        """The images, labels and any observed labels of the phase's CSV file."""
        self._check_root()
        path = self.train_csv if phase == "train" else self.test_csv
        if path is None:
            raise ValueError("FolderDataModule has no test_csv: there is no test set to set up.")
        images, labels, observed = read_label_csv(
            path, self.class_names, self.label_separator, self.label_format, root=self.root
        )
        if phase == "train" and not labels.any():
            raise ValueError(
                f"{path}: none of its {len(images)} rows has a label (every 'labels' cell is "
                "empty), so there is nothing to learn. Write each image's labels in its 'labels' "
                f"cell, separated by {self.label_separator!r}."
            )
        self._report(path, labels, observed)
        if phase == "train" and observed is not None and self.observe in ("uniform", "given"):
            self._warn_unobserved(path, labels, observed)
        return PhaseData([str(self._resolve(image)) for image in images], labels, observed)

    @staticmethod
    def _warn_unobserved(path: Path, labels: np.ndarray, observed: np.ndarray) -> None:
        """Warn about labelled rows whose ``observed`` cell names no positive.

        They train with no observed positive -- every label of theirs is
        "unknown" -- which an empty cell more often means by mistake than by design.
        """
        rows = np.flatnonzero(labels.any(axis=1) & ~(observed == 1).any(axis=1))
        if len(rows):
            lines = ", ".join(str(row + 2) for row in rows[:_SHOWN_NAMES])  # line 1: the header
            rank_zero_warn(
                f"FolderDataModule: {len(rows)} of the {int(labels.any(axis=1).sum())} labelled "
                f"rows of {path} observe no positive (an empty 'observed' cell; lines {lines}"
                f"{', ...' if len(rows) > _SHOWN_NAMES else ''}): they train with every label "
                "unknown. Name each image's observed positive in its 'observed' cell, or drop the "
                "column to let the protocol draw one from 'labels'."
            )

    def _report(self, path: Path, labels: np.ndarray, observed: np.ndarray | None) -> None:
        """Log what a CSV holds: a label set that is not what was meant shows before training."""

        def per_class(matrix: np.ndarray) -> dict[str, int]:
            return dict(zip(self.class_names, (int(n) for n in matrix.sum(0)), strict=True))

        unlabelled = int((labels.sum(1) == 0).sum())
        rank_zero_info(
            f"FolderDataModule: {path}: {len(labels)} images"
            + (f" ({unlabelled} without a label)" if unlabelled else "")
            + f", {len(self.class_names)} classes; positives per class {per_class(labels)}"
            + (
                f"; observed positives per class {per_class(observed == 1)}"
                if observed is not None
                else ""
            )
        )

    def load_boxes(self, phase: Phase) -> ObjectBoxes:
        """The phase CSV's ``boxes`` column; image sizes (``center``) from the image headers."""
        data = self.load_phase(phase)
        path = self.train_csv if phase == "train" else self.test_csv
        assert path is not None  # load_phase refused a missing test CSV
        found = read_box_column(
            path, self.class_names, self.label_separator, self.label_format, data.labels
        )
        if found is None:
            raise ValueError(
                f"observe={self.observe!r} chooses the observed positive by the objects' boxes, "
                f"but {path} has no 'boxes' column: add one ({_BOX_FORMAT}; see "
                "docs/guides/your-own-data.md), or choose observe: uniform or frequency"
                + (" or given." if data.observed is not None else ".")
            )
        # center normalises by the image sizes, and every box is checked against them.
        sizes = np.ones((len(data.image_paths), 2))
        for row in np.unique(found["rows"]).tolist():
            sizes[row] = image_size(data.image_paths[row])
        rows, columns = found["rows"], found["columns"]

        def describe(k: int) -> str:
            image = data.image_paths[rows[k]]
            return f"{path}, line {rows[k] + 2} ({image}), {self.class_names[columns[k]]!r}"

        return ObjectBoxes.from_boxes(rows, columns, found["boxes"], sizes, describe)
