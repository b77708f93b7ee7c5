"""``CSVDataModule``: a user's own images with multi-label CSV files.

The CSV format and its checks are in ``csv_labels.py``; this module turns the
files into the phases of an ``SPMLDataModule``, reading each CSV once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from spml_lightning.data.base import Phase, PhaseData, SPMLDataModule
from spml_lightning.data.csv_labels import (
    BOX_FORMAT,
    CSV_HELP,
    closest,
    read_box_column,
    read_csv_rows,
    read_label_csv,
    read_text,
    resolve,
    separator_hint,
    tokens,
)
from spml_lightning.data.io import image_size
from spml_lightning.data.observation import ObjectBoxes

__all__ = ["CSVDataModule"]

#: How many doubtful class names a warning shows.
_SHOWN_NAMES = 5


class CSVDataModule(SPMLDataModule):
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
        self._rows: dict[Path, list[dict[str, str]]] = {}  # each CSV parsed once

    def _csv_rows(self, path: Path) -> list[dict[str, str]]:
        if path not in self._rows:
            self._rows[path] = read_csv_rows(path)
        return self._rows[path]

    def _resolve(self, path: str) -> Path:
        return resolve(self.root, path)

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
            raise FileNotFoundError(f"The image root {self.root} does not exist. {CSV_HELP}")

    def _find_class_names(self) -> list[str]:
        self._check_root()
        if isinstance(self._names_arg, str):
            names_file = self._resolve(self._names_arg)
            if not names_file.is_file():
                raise FileNotFoundError(f"class_names file {names_file} does not exist.")
            names = [line.strip() for line in read_text(names_file).splitlines() if line.strip()]
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
                        f"{separator_hint(bad[0], self.label_separator)}".rstrip()
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
            for line, row in enumerate(self._csv_rows(path), start=2):  # the header is line 1
                cells = (row.get(key, "") for key in ("labels", "observed"))
                for token in sorted(
                    {t for cell in cells for t in tokens(cell, self.label_separator)}
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
            if (hint := separator_hint(name, self.label_separator))
        }
        if joined:
            examples = list(joined.items())[:_SHOWN_NAMES]
            shown = "\n  ".join(f"{self._where(uses[name])}: {hint}" for name, hint in examples)
            rank_zero_warn(
                f"{type(self).__name__}: {len(joined)} of the {len(uses)} class names in the CSVs "
                f"hold a label separator other than label_separator={self.label_separator!r}, e.g.:"
                f"\n  {shown}"
            )
        once = [name for name in sorted(uses) if len(uses[name]) == 1 and name not in joined]
        if once:
            # A typo is most likely one of a class that other images use. Only the names shown
            # are matched: difflib over every pair of a large vocabulary is slow.
            common = [name for name in uses if len(uses[name]) > 1 and name not in joined]
            shown = "\n  ".join(
                f"{self._where(uses[name])}: {name!r}{closest(name, common)}"
                for name in once[:_SHOWN_NAMES]
            )
            rank_zero_warn(
                f"{type(self).__name__}: {len(once)} of the {len(uses)} class names in the CSVs "
                f"are used by a single image, typos?\n  {shown}\nFix them, or pass class_names (a "
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
            raise ValueError(
                f"{type(self).__name__} has no test_csv: there is no test set to set up."
            )
        images, labels, observed = read_label_csv(
            path,
            self.class_names,
            self.label_separator,
            self.label_format,
            root=self.root,
            rows=self._csv_rows(path),
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

    def _warn_unobserved(self, path: Path, labels: np.ndarray, observed: np.ndarray) -> None:
        """Warn about labelled rows whose ``observed`` cell names no positive.

        They train with no observed positive -- every label of theirs is
        "unknown" -- which an empty cell more often means by mistake than by design.
        """
        rows = np.flatnonzero(labels.any(axis=1) & ~(observed == 1).any(axis=1))
        if len(rows):
            lines = ", ".join(str(row + 2) for row in rows[:_SHOWN_NAMES])  # line 1: the header
            rank_zero_warn(
                f"{type(self).__name__}: {len(rows)} of the {int(labels.any(axis=1).sum())} "
                f"labelled rows of {path} observe no positive (an empty 'observed' cell; lines "
                f"{lines}{', ...' if len(rows) > _SHOWN_NAMES else ''}): they train with every "
                "label unknown. Name each image's observed positive in its 'observed' cell, or "
                "drop the column to let the protocol draw one from 'labels'."
            )

    def _report(self, path: Path, labels: np.ndarray, observed: np.ndarray | None) -> None:
        """Log what a CSV holds: a label set that is not what was meant shows before training."""

        def per_class(matrix: np.ndarray) -> dict[str, int]:
            return dict(zip(self.class_names, (int(n) for n in matrix.sum(0)), strict=True))

        unlabelled = int((labels.sum(1) == 0).sum())
        rank_zero_info(
            f"{type(self).__name__}: {path}: {len(labels)} images"
            + (f" ({unlabelled} without a label)" if unlabelled else "")
            + f", {len(self.class_names)} classes; positives per class {per_class(labels)}"
            + (
                f"; observed positives per class {per_class(observed == 1)}"
                if observed is not None
                else ""
            )
        )

    def load_boxes(self, phase: Phase, data: PhaseData) -> ObjectBoxes:
        """The phase CSV's ``boxes`` column; image sizes (``center``) from the image headers."""
        path = self.train_csv if phase == "train" else self.test_csv
        assert path is not None  # load_phase refused a missing test CSV
        found = read_box_column(
            path,
            self.class_names,
            self.label_separator,
            self.label_format,
            data.labels,
            rows=self._csv_rows(path),
        )
        if found is None:
            raise ValueError(
                f"observe={self.observe!r} chooses the observed positive by the objects' boxes, "
                f"but {path} has no 'boxes' column: add one ({BOX_FORMAT}; see "
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
