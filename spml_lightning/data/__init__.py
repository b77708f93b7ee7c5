"""Datamodules: benchmark readers on top of one protocol-applying base class."""

from spml_lightning.data.base import PhaseData, SPMLDataModule, SPMLImageDataset
from spml_lightning.data.coco import COCODataModule
from spml_lightning.data.csv_datamodule import CSVDataModule
from spml_lightning.data.cub import CUBDataModule
from spml_lightning.data.demo import DemoDataModule
from spml_lightning.data.deprecated import FolderDataModule, ImageFolderDataModule
from spml_lightning.data.download import Archive
from spml_lightning.data.formatted import FormattedDataModule
from spml_lightning.data.nuswide import NUSWIDEDataModule
from spml_lightning.data.observation import ObjectBoxes, observe_by_boxes, observe_by_frequency
from spml_lightning.data.official import OfficialDataModule
from spml_lightning.data.predict_folder import UnlabelledImageDataModule
from spml_lightning.data.protocol import observe_single_positive, split_train_val
from spml_lightning.data.voc import VOCDataModule

__all__ = [
    "Archive",
    "COCODataModule",
    "CSVDataModule",
    "CUBDataModule",
    "DemoDataModule",
    "FolderDataModule",
    "FormattedDataModule",
    "ImageFolderDataModule",
    "NUSWIDEDataModule",
    "ObjectBoxes",
    "OfficialDataModule",
    "PhaseData",
    "SPMLDataModule",
    "SPMLImageDataset",
    "UnlabelledImageDataModule",
    "VOCDataModule",
    "observe_by_boxes",
    "observe_by_frequency",
    "observe_single_positive",
    "split_train_val",
]
