"""Datamodules: benchmark readers on top of one protocol-applying base class."""

from spml_lightning.data.base import PhaseData, SPMLDataModule, SPMLImageDataset
from spml_lightning.data.demo import DemoDataModule
from spml_lightning.data.formatted import FormattedDataModule
from spml_lightning.data.images import ImageFolderDataModule
from spml_lightning.data.protocol import observe_single_positive, split_train_val

__all__ = [
    "DemoDataModule",
    "FormattedDataModule",
    "ImageFolderDataModule",
    "PhaseData",
    "SPMLDataModule",
    "SPMLImageDataset",
    "observe_single_positive",
    "split_train_val",
]
