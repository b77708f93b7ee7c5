"""spml_lightning: single-positive multi-label learning with PyTorch Lightning.

The public API::

    from spml_lightning import SPMLModule, GRLoss, VOCDataModule, COCODataModule, ...
"""

from spml_lightning.data import (
    COCODataModule,
    CSVDataModule,
    CUBDataModule,
    DemoDataModule,
    FolderDataModule,
    FormattedDataModule,
    NUSWIDEDataModule,
    SPMLDataModule,
    VOCDataModule,
)
from spml_lightning.data.protocol import observe_single_positive, split_train_val
from spml_lightning.losses import GRLoss, SPMLLoss
from spml_lightning.metrics import average_precision_per_class, mean_average_precision
from spml_lightning.module import SPMLModule

__version__ = "0.1.0"

__all__ = [
    "COCODataModule",
    "CUBDataModule",
    "DemoDataModule",
    "CSVDataModule",
    "FolderDataModule",
    "FormattedDataModule",
    "NUSWIDEDataModule",
    "GRLoss",
    "SPMLDataModule",
    "SPMLLoss",
    "SPMLModule",
    "VOCDataModule",
    "__version__",
    "average_precision_per_class",
    "mean_average_precision",
    "observe_single_positive",
    "split_train_val",
]
