r"""Unlabelled images to predict on: a folder of images, or a list file of them.

    spml predict --config configs/demo.yaml --ckpt_path best \
        --data spml_lightning.data.UnlabelledImageDataModule --data.init_args.root photos/

The datamodule is an ``SPMLDataModule`` whose test phase is the images with
all-zero labels and which has no training phase, so it plugs into the same
CLI, loaders and transform as the benchmarks. The model's class names and
preprocessing (image size, mean, std) are facts of the checkpoint: ``spml
predict`` sets them from ``--ckpt_path`` (over any value of the config), and
in Python ``UnlabelledImageDataModule.for_model(model, root)`` does.

An image that cannot be read (corrupt, truncated, over Pillow's
decompression-bomb limit) stops the prediction with an error naming it, before
anything is written. With ``skip_unreadable`` (``--data.init_args.skip_unreadable
true``) every image is decoded once in ``setup`` and the unreadable ones are
left out of the predictions, with a warning that counts them and names the
first few.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spml_lightning.data.base import Phase, PhaseData, SPMLDataModule

__all__ = ["IMAGE_EXTENSIONS", "UnlabelledImageDataModule", "list_images"]

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
)
"""File name endings (any case) taken as images when reading a folder."""


def list_images(source: str | Path, recursive: bool = True) -> list[str]:
    """Image paths of a folder (sorted), or the paths listed in a text file.

    A list file holds one path per line; blank lines and lines starting with
    ``#`` are ignored, relative paths are relative to the list file's folder.

    Raises:
        FileNotFoundError: if ``source`` or a listed file does not exist.
        ValueError: if there is no image.
    """
    source = Path(source).expanduser()
    if source.is_dir():
        pattern = "**/*" if recursive else "*"
        paths = sorted(
            str(p)
            for p in source.glob(pattern)
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        where = f"folder {source}{' (or its subfolders)' if recursive else ''}"
        if not paths:
            raise ValueError(f"No image ({', '.join(IMAGE_EXTENSIONS)}) in the {where}.")
        return paths
    if source.is_file():
        lines = [line.strip() for line in source.read_text().splitlines()]
        paths = [
            str((source.parent / line).expanduser())
            for line in lines
            if line and not line.startswith("#")
        ]
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} image(s) listed in {source} do not exist, e.g. {missing[:3]}; "
                "fix or remove those lines (relative paths are relative to the list file's folder)."
            )
        if not paths:
            raise ValueError(f"The list file {source} names no image.")
        return paths
    raise FileNotFoundError(
        f"{source} is neither a folder of images nor a list file of image paths."
    )


class UnlabelledImageDataModule(SPMLDataModule):
    """Unlabelled images for prediction (``spml predict``), from a folder or a list file.

    Args:
        root: a folder (every image in it, sorted by path) or a text file
            listing image paths, one per line.
        class_names: the model's class names (they set the label columns).
        recursive: also take images from the subfolders of a folder.
        image_size: side of the square the images are resized to (the model's).
        mean: per-channel normalisation mean (the model's; default ImageNet's).
        std: per-channel normalisation standard deviation (default ImageNet's).
        batch_size: images per batch.
        num_workers: loader worker processes.
        skip_unreadable: decode every image once in ``setup`` and leave the ones
            that cannot be read out of the predictions (a warning counts them
            and names the first few), instead of stopping at the first one.
    """

    skip_purpose = "predict the other images (the unreadable ones are left out of the output)"

    def __init__(
        self,
        root: str,
        class_names: list[str] | None = None,
        recursive: bool = True,
        image_size: int | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        skip_unreadable: bool = False,
    ) -> None:
        if class_names is None or image_size is None:
            raise ValueError(
                "UnlabelledImageDataModule needs the model's class_names and image_size. `spml "
                "predict --ckpt_path ...` reads them from the checkpoint; in Python use "
                "UnlabelledImageDataModule.for_model(model, root), the model from "
                "SPMLModule.load_from_checkpoint(ckpt_path)."
            )
        preprocessing = {k: v for k, v in (("mean", mean), ("std", std)) if v is not None}
        super().__init__(
            root=root,
            batch_size=batch_size,
            num_workers=num_workers,
            image_size=image_size,
            skip_unreadable=skip_unreadable,
            **preprocessing,
        )
        self._class_names = list(class_names)
        self.recursive = recursive

    @classmethod
    def for_model(cls, model: Any, root: str, **kwargs: Any) -> UnlabelledImageDataModule:
        """The datamodule with a model's class names and preprocessing (``kwargs`` win).

        Args:
            model: an ``SPMLModule`` (e.g. from ``load_from_checkpoint``): its ``class_names``
                and ``preprocessing`` (``image_size``, ``mean``, ``std``) are used.
            root: the folder or list file of images.
            **kwargs: any other argument of the class.
        """
        facts = {"class_names": list(model.class_names), **model.preprocessing}
        return cls(root=root, **{k: v for k, v in facts.items() if v is not None}, **kwargs)

    @property
    def class_names(self) -> list[str]:
        """The class names it was given (those of the model that predicts)."""
        return self._class_names

    def describe_phase(self, phase: Phase) -> str:
        """The root folder, which holds the only phase."""
        return str(self.root)  # its only phase: the images to predict

    def load_phase(self, phase: Phase) -> PhaseData:
        """The folder's images with all-zero labels, as the test phase (the only one)."""
        if phase != "test":
            raise RuntimeError(
                "UnlabelledImageDataModule holds unlabelled images for prediction only (spml "
                "predict); train, validate and test with a labelled datamodule."
            )
        paths: Sequence[str] = list_images(self.root, self.recursive)
        return PhaseData(paths, np.zeros((len(paths), self.num_classes), dtype=np.uint8))
