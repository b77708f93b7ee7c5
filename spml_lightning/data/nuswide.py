"""NUS-WIDE: the community's formatted arrays, or the official label lists.

No script turns raw NUS-WIDE into the arrays behind the published SPML numbers
(Cole et al., CVPR 2021, released code: ``preproc/`` formats VOC, COCO and
CUB, not NUS-WIDE): the community passes around ``formatted_*.npy`` files
(150,000 train / 60,260 test rows in one version, about 22% of the rows
without any positive) with the images in ``Flickr/``. Reading those is the
default (``source="formatted"``) and the only way to compare with the papers.

``source="official"`` reads the label lists NUS publishes instead, with this
mapping (ours; it does not give the community's rows, which come from an
unpublished subset of the images that were still downloadable):

- rows: ``ImageList/TrainImagelist.txt`` (training phase) and
  ``ImageList/TestImagelist.txt`` (test phase), in file order, every line a
  row (rows without a positive stay, as in the community arrays); a line's
  backslashes become slashes and its last two components (``<folder>/<file>``)
  name the image below ``Flickr/``;
- columns: the 81 concepts in the order of ``Concepts81.txt`` (alphabetical);
- labels: line i of ``Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt``
  is the label of row i; a value is positive exactly when it is 1. The
  official files hold one value outside {0, 1} (``-1130179``, line 78,372 of
  ``Labels_lake_Train.txt``); such values count as negative and are reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from spml_lightning.data.base import Phase, PhaseData
from spml_lightning.data.formatted import FormattedDataModule

__all__ = ["NUSWIDEDataModule", "NUS_WIDE_CONCEPTS", "read_nuswide_official"]

#: Concepts81.txt, in its (alphabetical) order.
NUS_WIDE_CONCEPTS: tuple[str, ...] = (
    "airport", "animal", "beach", "bear", "birds", "boats", "book", "bridge", "buildings", "cars",
    "castle", "cat", "cityscape", "clouds", "computer", "coral", "cow", "dancing", "dog",
    "earthquake", "elk", "fire", "fish", "flags", "flowers", "food", "fox", "frost", "garden",
    "glacier", "grass", "harbor", "horses", "house", "lake", "leaf", "map", "military", "moon",
    "mountain", "nighttime", "ocean", "person", "plane", "plants", "police", "protest",
    "railroad", "rainbow", "reflection", "road", "rocks", "running", "sand", "sign", "sky", "snow",
    "soccer", "sports", "statue", "street", "sun", "sunset", "surf", "swimmers", "tattoo",
    "temple", "tiger", "tower", "town", "toy", "train", "tree", "valley", "vehicle", "water",
    "waterfall", "wedding", "whales", "window", "zebra",
)  # fmt: skip

_OFFICIAL_PHASES: dict[str, str] = {"train": "Train", "test": "Test"}
_OFFICIAL_LAYOUT = (
    "  <root>/ImageList/TrainImagelist.txt, TestImagelist.txt\n"
    "  <root>/Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt, Labels_<concept>_Test.txt"
    "  (81 concepts)\n"
    "  <root>/Flickr/<folder>/<file>.jpg"
)


def _official_files(root: Path, phase: Phase) -> tuple[Path, list[Path]]:
    name = _OFFICIAL_PHASES[phase]
    labels_dir = root / "Groundtruth" / "TrainTestLabels"
    return root / "ImageList" / f"{name}Imagelist.txt", [
        labels_dir / f"Labels_{concept}_{name}.txt" for concept in NUS_WIDE_CONCEPTS
    ]


def _image_name(line: str) -> str:
    parts = [p for p in line.strip().replace("\\", "/").split("/") if p]
    return "/".join(parts[-2:])


def read_nuswide_official(root: Path, phase: Phase) -> tuple[list[str], np.ndarray]:
    """Image names (relative to ``Flickr/``) and (N, 81) uint8 labels of one official phase."""
    list_file, label_files = _official_files(root, phase)
    names = [_image_name(line) for line in list_file.read_text().splitlines() if line.strip()]
    labels = np.zeros((len(names), len(label_files)), dtype=np.uint8)
    odd: list[str] = []
    for column, path in enumerate(label_files):
        try:
            values = np.loadtxt(path, dtype=np.int64, ndmin=1)
        except ValueError as err:
            raise ValueError(f"{path} must hold one integer label per line: {err}") from None
        if len(values) != len(names):
            raise ValueError(
                f"{path} has {len(values)} labels but {list_file} lists {len(names)} images."
            )
        labels[:, column] = values == 1
        outside = np.flatnonzero((values != 0) & (values != 1))
        odd += [f"{path.name}, line {i + 1}: {values[i]}" for i in outside]
    if odd:
        rank_zero_warn(
            f"NUS-WIDE official labels: {len(odd)} value(s) outside {{0, 1}} counted as negative: "
            + "; ".join(odd[:5])
        )
    return names, labels


class NUSWIDEDataModule(FormattedDataModule):
    """NUS-WIDE, 81 concepts.

    Args:
        root: folder with the community's ``formatted_*.npy`` files (or, for
            ``source="official"``, with ``ImageList/`` and ``Groundtruth/``).
        source: ``formatted`` (the community arrays behind the published
            numbers) or ``official`` (NUS's own label lists, see the module docs).
        image_root: folder the image names are relative to (default ``root/Flickr``).
        **kwargs (Any): see ``FormattedDataModule`` and ``SPMLDataModule``.
    """

    def __init__(
        self,
        root: str,
        source: Literal["formatted", "official"] = "formatted",
        image_root: str | None = None,
        **kwargs,
    ) -> None:
        if source not in ("formatted", "official"):
            raise ValueError(f"source must be 'formatted' or 'official', got {source!r}.")
        super().__init__(root=root, image_root=image_root, **kwargs)
        if image_root is None:
            self.image_root = self.root / "Flickr"
        self.source = source

    def default_class_names(self) -> list[str]:
        """The 81 NUS-WIDE concepts."""
        return list(NUS_WIDE_CONCEPTS)

    def load_phase(self, phase: Phase) -> PhaseData:
        """The phase from the formatted arrays, or from the official lists and label files."""
        if self.source == "formatted":
            return super().load_phase(phase)
        list_file, label_files = _official_files(self.root, phase)
        missing = [str(p) for p in [list_file, *label_files] if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"NUSWIDEDataModule(source='official'): missing {', '.join(missing[:3])}"
                f"{f' and {len(missing) - 3} more' if len(missing) > 3 else ''}. Expected:\n"
                f"{_OFFICIAL_LAYOUT}\nThe lists are published at "
                "https://lms.comp.nus.edu.sg/wp-content/uploads/2019/research/nuswide/NUS-WIDE.html"
                " (ImageList.zip, Groundtruth.zip); the images are not distributed there."
            )
        names, labels = read_nuswide_official(self.root, phase)
        return PhaseData([str(self.image_root / n) for n in names], labels)
