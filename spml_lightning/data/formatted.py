"""The SPML community's "formatted" interchange format.

Many users have their data sets on disk in the layout written by the
preprocessing scripts of Cole et al. (CVPR 2021)::

    root/formatted_train_images.npy   file names relative to the image root
    root/formatted_train_labels.npy   (N, C) full labels in {0, 1}
    root/formatted_val_images.npy     the official test phase ("val" there)
    root/formatted_val_labels.npy

``FormattedDataModule`` reads it; the demo data set is written in it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spml_lightning.data.base import Phase, PhaseData, SPMLDataModule

__all__ = ["FormattedDataModule", "read_formatted_phase"]

#: The community files call the official test phase "val".
FORMATTED_PHASE_NAMES: dict[str, str] = {"train": "train", "test": "val"}


def read_formatted_phase(root: Path, image_root: Path, phase: Phase) -> PhaseData:
    """Read ``formatted_{train,val}_{images,labels}.npy`` of one phase."""
    name = FORMATTED_PHASE_NAMES[phase]
    files = {kind: root / f"formatted_{name}_{kind}.npy" for kind in ("images", "labels")}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Missing {', '.join(missing)}. A formatted data set needs "
            "formatted_{train,val}_{images,labels}.npy in its root (see the README, 'Datasets')."
        )
    names = np.load(files["images"], allow_pickle=False)
    labels = np.load(files["labels"], allow_pickle=False)
    paths = [str(image_root / str(n)) for n in names]
    return PhaseData(paths, labels)


class FormattedDataModule(SPMLDataModule):
    """A data set in the community's formatted ``.npy`` layout.

    Args:
        root: folder with the ``formatted_*.npy`` files.
        image_root: folder the image names are relative to (default: ``root``).
        class_names: label names in column order; default: the lines of
            ``root/class_names.txt`` if present, else ``class_0 ... class_{C-1}``.
        **kwargs: see ``SPMLDataModule``.
    """

    def __init__(
        self,
        root: str,
        image_root: str | None = None,
        class_names: Sequence[str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(root=root, **kwargs)
        self.image_root = Path(image_root).expanduser() if image_root else self.root
        self._class_names = list(class_names) if class_names is not None else None

    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            self._class_names = self._read_class_names()
        return self._class_names

    def _read_class_names(self) -> list[str]:
        names_file = self.root / "class_names.txt"
        if names_file.is_file():
            return [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        labels_file = self.root / "formatted_train_labels.npy"
        if not labels_file.is_file():
            raise FileNotFoundError(
                f"Cannot determine the classes: neither {names_file} nor {labels_file} exists."
            )
        num_classes = np.load(labels_file, mmap_mode="r").shape[1]
        return [f"class_{i}" for i in range(num_classes)]

    def load_phase(self, phase: Phase) -> PhaseData:
        return read_formatted_phase(self.root, self.image_root, phase)
