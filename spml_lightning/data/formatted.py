"""The SPML community's "formatted" interchange format.

Many users have their data sets on disk in the layout written by the
preprocessing scripts of Cole et al. (CVPR 2021)::

    root/formatted_train_images.npy      file names relative to the image root
    root/formatted_train_labels.npy      (N, C) full labels in {0, 1}
    root/formatted_train_labels_obs.npy  (N, C) observed single positives (optional)
    root/formatted_val_images.npy        the official test phase ("val" there)
    root/formatted_val_labels.npy
    root/formatted_val_labels_obs.npy    (optional)

``FormattedDataModule`` reads it; the demo data set is written in it too.
Observed-label files are used as given (they ARE the published protocol);
when they differ from what ``protocol.py`` generates with the datamodule's
seed and counts, a warning says by how many rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from spml_lightning.data.base import Phase, PhaseData, SPMLDataModule

__all__ = ["FORMATTED_PHASE_NAMES", "FormattedDataModule", "read_formatted_phase"]

#: The community files call the official test phase "val".
FORMATTED_PHASE_NAMES: dict[str, str] = {"train": "train", "test": "val"}

_LAYOUT = (
    "formatted_{train,val}_images.npy (image names relative to the image root) and "
    "formatted_{train,val}_labels.npy ((N, C) labels in {0, 1}), optionally "
    "formatted_{train,val}_labels_obs.npy (observed labels)"
)


def observed_file(root: Path, phase: Phase) -> Path | None:
    """The community's observed-label file of a phase, if there is one.

    Cole et al.'s later code writes ``formatted_<phase>_uniform_labels_obs.npy``
    for the same (uniform) single positives; either name is accepted.
    """
    name = FORMATTED_PHASE_NAMES[phase]
    for candidate in (
        f"formatted_{name}_labels_obs.npy",
        f"formatted_{name}_uniform_labels_obs.npy",
    ):
        if (root / candidate).is_file():
            return root / candidate
    return None


def read_formatted_phase(
    root: Path, image_root: Path, phase: Phase, with_observed: bool = False
) -> PhaseData:
    """Read ``formatted_{train,val}_{images,labels}[_obs].npy`` of one phase.

    Args:
        root: folder with the ``.npy`` files.
        image_root: folder the image names are relative to.
        phase: ``train`` or ``test`` (the files' ``val``).
        with_observed: also read the observed-label file when it exists.
    """
    name = FORMATTED_PHASE_NAMES[phase]
    files = {kind: root / f"formatted_{name}_{kind}.npy" for kind in ("images", "labels")}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        where = f"{root} does not exist" if not root.exists() else f"Missing {', '.join(missing)}"
        raise FileNotFoundError(
            f"{where}. A formatted data set needs {_LAYOUT} in its root; the preprocessing "
            "scripts of github.com/elijahcole/single-positive-multi-label write them (see the "
            "docs, docs/guides/benchmarks.md)."
        )
    names = np.load(files["images"], allow_pickle=False)
    labels = np.load(files["labels"], allow_pickle=False)
    observed = None
    obs_path = observed_file(root, phase) if with_observed else None
    if obs_path is not None:
        observed = np.load(obs_path, allow_pickle=False)
        if observed.shape != labels.shape:
            raise ValueError(
                f"{obs_path} has shape {observed.shape} but {files['labels']} has {labels.shape}."
            )
    paths = [str(image_root / str(n)) for n in names]
    return PhaseData(paths, labels, observed)


class FormattedDataModule(SPMLDataModule):
    """A data set in the community's formatted ``.npy`` layout.

    Args:
        root: folder with the ``formatted_*.npy`` files.
        image_root: folder the image names are relative to (default: ``root``).
        class_names: label names in column order; default: the lines of
            ``root/class_names.txt`` if present, else ``class_0 ... class_{C-1}``.
        observed_labels: where the observed labels come from: ``auto`` uses
            ``formatted_*_labels_obs.npy`` when present (as given, with a warning
            if it differs from the protocol) and generates them otherwise;
            ``file`` requires the files; ``generate`` ignores them and applies
            the protocol (``observe_seed``, ``num_pos``, ``num_neg``).
        **kwargs (Any): see ``SPMLDataModule``.
    """

    def __init__(
        self,
        root: str,
        image_root: str | None = None,
        class_names: Sequence[str] | None = None,
        observed_labels: Literal["auto", "file", "generate"] = "auto",
        **kwargs,
    ) -> None:
        super().__init__(root=root, **kwargs)
        if observed_labels not in ("auto", "file", "generate"):
            raise ValueError(
                f"observed_labels must be 'auto', 'file' or 'generate', got {observed_labels!r}."
            )
        self.image_root = Path(image_root).expanduser() if image_root else self.root
        self.observed_labels = observed_labels
        self._class_names = list(class_names) if class_names is not None else None

    @property
    def class_names(self) -> list[str]:
        """The given names, else ``class_names.txt``, else the defaults; read once."""
        if self._class_names is None:
            self._class_names = self._read_class_names()
        return self._class_names

    def _read_class_names(self) -> list[str]:
        names_file = self.root / "class_names.txt"
        if names_file.is_file():
            return [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        return self.default_class_names()

    def default_class_names(self) -> list[str]:
        """Names used when neither ``class_names`` nor ``class_names.txt`` gives them."""
        labels_file = self.root / "formatted_train_labels.npy"
        if not labels_file.is_file():
            raise FileNotFoundError(
                f"Cannot determine the classes: neither {self.root / 'class_names.txt'} nor "
                f"{labels_file} exists. A formatted data set needs {_LAYOUT} in its root (see "
                "the docs, docs/guides/benchmarks.md)."
            )
        return [f"class_{i}" for i in range(np.load(labels_file, mmap_mode="r").shape[1])]

    def obtain_hint(self) -> str:
        """Where the names in the ``.npy`` image lists are looked up."""
        return (
            "check image_root: the names in formatted_*_images.npy are relative to "
            f"{self.image_root}"
        )

    def load_phase(self, phase: Phase) -> PhaseData:
        """The phase's ``.npy`` arrays, with the observed labels file unless they are generated."""
        data = read_formatted_phase(
            self.root, self.image_root, phase, with_observed=self.observed_labels != "generate"
        )
        if data.observed is None:
            if self.observed_labels == "file":
                raise FileNotFoundError(
                    f"observed_labels='file' but {self.root} has no "
                    f"formatted_{FORMATTED_PHASE_NAMES[phase]}_labels_obs.npy. Use "
                    "observed_labels='auto' or 'generate' to generate them by the protocol."
                )
            return data
        self._report_protocol_mismatch(phase, np.asarray(data.labels), np.asarray(data.observed))
        return data

    def _report_protocol_mismatch(
        self, phase: Phase, labels: np.ndarray, given: np.ndarray
    ) -> None:
        if not np.isin(labels, (0, 1)).all():
            return  # reported as an error by the base class
        if phase == "train" and self.observe != "uniform":
            return  # not offered as the protocol's: used as asked (given) or replaced
        generated = self.protocol_observed(labels)
        different = generated != given
        rows = different.any(axis=1)
        if rows.any():
            path = observed_file(self.root, phase)
            rank_zero_warn(
                f"{path}: {int(rows.sum())} of {len(given)} rows (first row "
                f"{int(np.flatnonzero(rows)[0])}; {int(different.sum())} entries) differ from the "
                f"observed labels protocol.py generates (observe_seed={self.observe_seed}, "
                f"num_pos={self.num_pos}, num_neg={self.num_neg}). Using the file as given; pass "
                "observed_labels='generate' to use the protocol's instead."
            )
