"""Former names of datamodules, kept so that configs naming them still run (with a warning).

A config's ``class_path: spml_lightning.data.FolderDataModule`` builds the
renamed class, and says to use its new name.
"""

from __future__ import annotations

import warnings
from typing import Any

from spml_lightning.data.csv_datamodule import CSVDataModule
from spml_lightning.data.predict_folder import UnlabelledImageDataModule

__all__ = ["FolderDataModule", "ImageFolderDataModule"]


def _warn_renamed(old: str, new: type) -> None:
    warnings.warn(
        f"spml_lightning.data.{old} was renamed {new.__name__}: write class_path: "
        f"spml_lightning.data.{new.__name__} (the old name will be removed).",
        FutureWarning,
        stacklevel=3,
    )


class FolderDataModule(CSVDataModule):
    """Former name of :class:`~spml_lightning.data.CSVDataModule` (same arguments)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _warn_renamed("FolderDataModule", CSVDataModule)
        super().__init__(*args, **kwargs)


class ImageFolderDataModule(UnlabelledImageDataModule):
    """Former name of :class:`~spml_lightning.data.UnlabelledImageDataModule` (same arguments)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _warn_renamed("ImageFolderDataModule", UnlabelledImageDataModule)
        super().__init__(*args, **kwargs)
