"""Moved to ``spml_lightning.data.predict_folder``; this module keeps the old import path."""

from spml_lightning.data.predict_folder import (
    CHECKPOINT_FACTS,
    IMAGE_EXTENSIONS,
    ImageFolderDataModule,
    checkpoint_facts,
    fill_from_checkpoint,
    list_images,
)

__all__ = [
    "CHECKPOINT_FACTS",
    "IMAGE_EXTENSIONS",
    "ImageFolderDataModule",
    "checkpoint_facts",
    "fill_from_checkpoint",
    "list_images",
]
