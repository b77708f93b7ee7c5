"""CUB-200-2011 attributes as extracted from ``CUB_200_2011.tgz``.

Label matrices exactly as the community builds them (Cole et al., CVPR 2021:
``preproc/format_cub.py`` of their released code): the 312 binary attributes
are the labels, ``is_present`` of ``attributes/image_attribute_labels.txt`` is
the label value, rows follow ``images.txt``, and ``train_test_split.txt`` puts
them in the training (5,994) or test (5,794) phase. About 31 positives per
image; rows without any positive stay (their observed labels are all unknown).

The attribute file has a few lines with more than the documented five
fields; as in the community script, only the first three (image id,
attribute id, is_present) are read.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from spml_lightning.data.base import Phase, PhaseData
from spml_lightning.data.download import Archive
from spml_lightning.data.official import OfficialDataModule

__all__ = ["CUBDataModule", "CUB_ATTRIBUTES", "read_cub"]

_COLORS = (
    "blue", "brown", "iridescent", "purple", "rufous", "grey", "yellow", "olive", "green", "pink",
    "orange", "black", "white", "red", "buff",
)  # fmt: skip
_PATTERNS = ("solid", "spotted", "striped", "multi-colored")

#: attributes.txt, written as (part, values) groups in the file's order.
_ATTRIBUTE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("bill_shape", ("curved_(up_or_down)", "dagger", "hooked", "needle", "hooked_seabird",
                    "spatulate", "all-purpose", "cone", "specialized")),
    ("wing_color", _COLORS),
    ("upperparts_color", _COLORS),
    ("underparts_color", _COLORS),
    ("breast_pattern", _PATTERNS),
    ("back_color", _COLORS),
    ("tail_shape", ("forked_tail", "rounded_tail", "notched_tail", "fan-shaped_tail",
                    "pointed_tail", "squared_tail")),
    ("upper_tail_color", _COLORS),
    ("head_pattern", ("spotted", "malar", "crested", "masked", "unique_pattern", "eyebrow",
                      "eyering", "plain", "eyeline", "striped", "capped")),
    ("breast_color", _COLORS),
    ("throat_color", _COLORS),
    ("eye_color", tuple(c for c in _COLORS if c != "iridescent")),
    ("bill_length", ("about_the_same_as_head", "longer_than_head", "shorter_than_head")),
    ("forehead_color", _COLORS),
    ("under_tail_color", _COLORS),
    ("nape_color", _COLORS),
    ("belly_color", _COLORS),
    ("wing_shape", ("rounded-wings", "pointed-wings", "broad-wings", "tapered-wings",
                    "long-wings")),
    ("size", ("large_(16_-_32_in)", "small_(5_-_9_in)", "very_large_(32_-_72_in)",
              "medium_(9_-_16_in)", "very_small_(3_-_5_in)")),
    ("shape", ("upright-perching_water-like", "chicken-like-marsh", "long-legged-like",
               "duck-like", "owl-like", "gull-like", "hummingbird-like", "pigeon-like",
               "tree-clinging-like", "hawk-like", "sandpiper-like", "upland-ground-like",
               "swallow-like", "perching-like")),
    ("back_pattern", _PATTERNS),
    ("tail_pattern", _PATTERNS),
    ("belly_pattern", _PATTERNS),
    ("primary_color", _COLORS),
    ("leg_color", _COLORS),
    ("bill_color", _COLORS),
    ("crown_color", _COLORS),
    ("wing_pattern", _PATTERNS),
)  # fmt: skip

#: The 312 attribute names of attributes.txt, in order (used until the file is on disk).
CUB_ATTRIBUTES: tuple[str, ...] = tuple(
    f"has_{part}::{value}" for part, values in _ATTRIBUTE_GROUPS for value in values
)


def _id_value_lines(path: Path) -> list[tuple[int, str]]:
    """``<id> <value>`` lines of a CUB list file, as (id, value)."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=1)
        if len(fields) != 2 or not fields[0].isdigit():
            raise ValueError(f"{path}, line {number}: expected '<id> <value>', found {line!r}.")
        rows.append((int(fields[0]), fields[1].strip()))
    return rows


def read_attribute_names(path: Path) -> list[str]:
    """The attribute names of ``attributes.txt`` in id order."""
    return [name for _, name in sorted(_id_value_lines(path))]


def _read_attribute_table(path: Path) -> np.ndarray:
    """(image id, attribute id, is_present) of every line, as an int64 (L, 3) array."""
    try:
        # numpy's C reader: the file has millions of lines. Fields beyond the
        # third (certainty, time, the stray extra field of a few lines) are skipped.
        return np.loadtxt(path, dtype=np.int64, usecols=(0, 1, 2), ndmin=2)
    except ValueError as err:
        raise ValueError(
            f"{path} is not '<image id> <attribute id> <is_present> <certainty> <time>' "
            f"lines: {err}"
        ) from None


def read_cub(data_dir: Path, num_attributes: int) -> dict[str, np.ndarray]:
    """All images of CUB-200-2011 in ``images.txt`` order with their attribute labels.

    Returns:
        ``{"names": paths relative to images/, "is_train": bool (N,), "labels": uint8 (N, A)}``.
    """
    images = _id_value_lines(data_dir / "images.txt")
    split = dict(_id_value_lines(data_dir / "train_test_split.txt"))
    ids = np.asarray([image_id for image_id, _ in images], dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"{data_dir / 'images.txt'} lists an image id twice.")
    missing = [i for i in ids.tolist() if i not in split]
    if missing:
        raise ValueError(
            f"{data_dir / 'train_test_split.txt'} has no entry for image ids {missing[:5]}."
        )
    if not set(split[i] for i in ids.tolist()) <= {"0", "1"}:
        raise ValueError(f"{data_dir / 'train_test_split.txt'}: is_training_image must be 0 or 1.")

    path = data_dir / "attributes" / "image_attribute_labels.txt"
    table = _read_attribute_table(path)
    row_of = np.full(int(max(ids.max(initial=0), table[:, 0].max(initial=0))) + 1, -1)
    row_of[ids] = np.arange(len(ids))
    rows, columns, present = row_of[table[:, 0]], table[:, 1] - 1, table[:, 2]
    if (rows < 0).any() or (columns < 0).any() or (columns >= num_attributes).any():
        raise ValueError(
            f"{path} refers to image ids not in images.txt or attribute ids outside "
            f"1..{num_attributes}."
        )
    if not np.isin(present, (0, 1)).all():
        raise ValueError(f"{path}: is_present must be 0 or 1.")
    counts = np.bincount(rows * num_attributes + columns, minlength=len(ids) * num_attributes)
    if (counts != 1).any():
        flat = int(np.flatnonzero(counts != 1)[0])
        raise ValueError(
            f"{path} must have exactly one line per image and attribute; image id "
            f"{ids[flat // num_attributes]}, attribute id {flat % num_attributes + 1} has "
            f"{counts[flat]}."
        )
    labels = np.zeros((len(ids), num_attributes), dtype=np.uint8)
    labels[rows, columns] = present
    return {
        "names": np.asarray([name for _, name in images], dtype=np.str_),
        "is_train": np.asarray([split[i] == "1" for i in ids.tolist()]),
        "labels": labels,
    }


class CUBDataModule(OfficialDataModule):
    """CUB-200-2011 with its 312 attributes as labels; official train/test split.

    ``root`` is the folder ``CUB_200_2011.tgz`` was extracted into: it holds
    ``CUB_200_2011/`` and ``attributes.txt`` beside it (also found inside
    ``CUB_200_2011/attributes/``). The ``CUB_200_2011`` folder itself is
    accepted as root too. Arguments: see ``OfficialDataModule`` and ``SPMLDataModule``.
    """

    archives = (
        Archive(
            # The md5 the CUB dataset loaders in wide use verify (e.g. the
            # Cub2011 torchvision dataset of TDeVries/cub2011_dataset) and that
            # CaltechDATA lists for this file.
            url="https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
            md5="97eceeb196236b17998738112f37df78",
            provides=("CUB_200_2011/images.txt", "CUB_200_2011/attributes", "attributes.txt"),
        ),
    )
    title = "CUB-200-2011"
    homepage = "https://www.vision.caltech.edu/datasets/cub_200_2011/"
    layout = """\
  <root>/attributes.txt                                  (312 attribute names)
  <root>/CUB_200_2011/images.txt, train_test_split.txt
  <root>/CUB_200_2011/attributes/image_attribute_labels.txt
  <root>/CUB_200_2011/images/<class folder>/<image>.jpg"""

    @property
    def data_dir(self) -> Path:
        """``CUB_200_2011`` below the root, or the root itself if it is that folder."""
        nested = self.root / "CUB_200_2011"
        if not (nested / "images.txt").is_file() and (self.root / "images.txt").is_file():
            return self.root
        return nested

    def _attribute_names_file(self) -> Path:
        candidates = [
            self.data_dir.parent / "attributes.txt",
            self.data_dir / "attributes" / "attributes.txt",
            self.data_dir / "attributes.txt",
        ]
        return next((p for p in candidates if p.is_file()), candidates[0])

    def _source_files(self) -> list[Path]:
        return [
            self.data_dir / "images.txt",
            self.data_dir / "train_test_split.txt",
            self.data_dir / "attributes" / "image_attribute_labels.txt",
        ]

    def required_files(self) -> list[Path]:
        """The source lists, the attribute names file and the image folder."""
        return self._source_files() + [self._attribute_names_file(), self.data_dir / "images"]

    @cached_property
    def class_names(self) -> list[str]:
        """The attribute names from the data set's file, or the built-in list without it."""
        names_file = self._attribute_names_file()
        return read_attribute_names(names_file) if names_file.is_file() else list(CUB_ATTRIBUTES)

    def load_phase(self, phase: Phase) -> PhaseData:
        """The phase's images (per ``train_test_split.txt``) and attribute labels."""
        self.check_layout()
        num_attributes = self.num_classes
        arrays = self.parsed(
            f"cub_{num_attributes}",
            self._source_files(),
            lambda: read_cub(self.data_dir, num_attributes),
        )
        rows = arrays["is_train"] if phase == "train" else ~arrays["is_train"]
        images = self.data_dir / "images"
        names = arrays["names"][rows].tolist()
        return PhaseData([str(images / n) for n in names], arrays["labels"][rows])
