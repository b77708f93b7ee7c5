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
``labels`` (SPEC §4). The training CSV is split into train/val by the
protocol; the test CSV is the test set.

If you only have single positives for your training images, put them in
``labels`` and validate on them with ``val_labels: observed``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from spml_lightning.data.base import Phase, PhaseData, SPMLDataModule

__all__ = ["FolderDataModule", "read_label_csv"]

_REQUIRED_COLUMNS = ("image", "labels")


_CSV_HELP = (
    "FolderDataModule needs an image root and CSV files with the header "
    "'image,labels[,observed]' (see the README, 'Datasets', your own data)."
)


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist. {_CSV_HELP}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        if any(c not in columns for c in _REQUIRED_COLUMNS):
            raise ValueError(
                f"{path}: the header must name the columns 'image' and 'labels' (and optionally "
                f"'observed'); found {columns}."
            )
        return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]


def _tokens(cell: str, separator: str) -> list[str]:
    return [t.strip() for t in cell.split(separator) if t.strip()]


def read_label_csv(
    path: Path,
    class_names: Sequence[str],
    separator: str,
    label_format: Literal["names", "indices"],
) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Image paths as written, (N, C) uint8 labels, and the observed labels if given."""
    rows = _read_rows(path)
    column_of = {name: i for i, name in enumerate(class_names)}
    has_observed = bool(rows) and "observed" in rows[0]
    labels = np.zeros((len(rows), len(class_names)), dtype=np.uint8)
    observed = np.zeros(labels.shape, dtype=np.float64) if has_observed else None
    seen: dict[str, int] = {}
    images = []
    for i, row in enumerate(rows):
        line = i + 2  # the header is line 1
        image = row["image"]
        if not image:
            raise ValueError(f"{path}, line {line}: empty 'image' cell.")
        if image in seen:
            raise ValueError(f"{path}: {image} is listed twice (lines {seen[image]} and {line}).")
        seen[image] = line
        images.append(image)
        targets = [(labels, row["labels"])] + ([(observed, row["observed"])] if has_observed else [])
        for matrix, cell in targets:
            for token in _tokens(cell, separator):
                if label_format == "indices":
                    if not token.isdigit() or int(token) >= len(class_names):
                        raise ValueError(
                            f"{path}, line {line}: label {token!r} is not a column index in "
                            f"0..{len(class_names) - 1}."
                        )
                    matrix[i, int(token)] = 1
                elif token in column_of:
                    matrix[i, column_of[token]] = 1
                else:
                    raise ValueError(
                        f"{path}, line {line}: unknown class {token!r}; the classes are "
                        f"{list(class_names)[:10]}{' ...' if len(class_names) > 10 else ''}."
                    )
    return images, labels, observed


class FolderDataModule(SPMLDataModule):
    """Your own images and multi-label CSV files.

    Args:
        root: image root; relative ``image`` paths (and CSV paths) are resolved against it.
        train_csv: CSV of the training images (split into train/val by the protocol).
        test_csv: CSV of the test images (full labels); None if there is no test set.
        class_names: the label columns in order: a list, or a text file with one
            name per line. Default: every name used in the CSVs, sorted (for
            ``label_format: indices``: ``class_0`` ... up to the largest index).
        label_format: ``names`` or ``indices`` (0-based column numbers).
        label_separator: what separates the labels within a cell.
        **kwargs: see ``SPMLDataModule``.
    """

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
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.root / path

    def _csv_files(self) -> list[Path]:
        return [self.train_csv] + ([self.test_csv] if self.test_csv else [])

    @property
    def class_names(self) -> list[str]:
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
            names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        elif self._names_arg is not None:
            names = [str(n) for n in self._names_arg]
        else:
            used = {
                token
                for path in self._csv_files()
                for row in _read_rows(path)
                for key in ("labels", "observed")
                for token in _tokens(row.get(key, ""), self.label_separator)
            }
            if self.label_format == "names":
                names = sorted(used)
            else:
                bad = sorted(t for t in used if not t.isdigit())
                if bad:
                    raise ValueError(f"label_format='indices' but the CSVs use labels {bad[:5]}.")
                names = [f"class_{i}" for i in range(max((int(t) for t in used), default=-1) + 1)]
        if not names:
            raise ValueError(f"No classes: {self._csv_files()} name none and class_names is empty.")
        if len(set(names)) != len(names):
            raise ValueError("class_names contains a name twice.")
        return names

    def obtain_hint(self) -> str:
        return f"the image paths of the CSV files are relative to {self.root}"

    def load_phase(self, phase: Phase) -> PhaseData:
        self._check_root()
        path = self.train_csv if phase == "train" else self.test_csv
        if path is None:
            raise ValueError("FolderDataModule has no test_csv: there is no test set to set up.")
        images, labels, observed = read_label_csv(
            path, self.class_names, self.label_separator, self.label_format
        )
        return PhaseData([str(self._resolve(image)) for image in images], labels, observed)
