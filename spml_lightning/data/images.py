"""Moved to ``spml_lightning.data.predict_folder``; this module keeps the old import path."""

from spml_lightning.data.predict_folder import IMAGE_EXTENSIONS, ImageFolderDataModule, list_images
from spml_lightning.training.checkpoint_files import CHECKPOINT_FACTS, checkpoint_facts

__all__ = [
    "CHECKPOINT_FACTS",
    "IMAGE_EXTENSIONS",
    "ImageFolderDataModule",
    "checkpoint_facts",
    "list_images",
]
