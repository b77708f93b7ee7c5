"""spml_lightning: single-positive multi-label learning with PyTorch Lightning.

The public API::

    from spml_lightning import SPMLModule, GRLoss, VOCDataModule, COCODataModule, ...

The names are imported when first used (PEP 562), not with the package: a
deployed model's predictor (``spml_lightning.deploy``) runs where torch is not
installed, and importing any submodule imports this file first.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names are, for type checkers and documentation tools
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

#: Each public name and the module that defines it (imported on first use).
_PUBLIC: dict[str, str] = {
    "COCODataModule": "spml_lightning.data",
    "CSVDataModule": "spml_lightning.data",
    "CUBDataModule": "spml_lightning.data",
    "DemoDataModule": "spml_lightning.data",
    "FolderDataModule": "spml_lightning.data",
    "FormattedDataModule": "spml_lightning.data",
    "NUSWIDEDataModule": "spml_lightning.data",
    "SPMLDataModule": "spml_lightning.data",
    "VOCDataModule": "spml_lightning.data",
    "observe_single_positive": "spml_lightning.data.protocol",
    "split_train_val": "spml_lightning.data.protocol",
    "GRLoss": "spml_lightning.losses",
    "SPMLLoss": "spml_lightning.losses",
    "average_precision_per_class": "spml_lightning.metrics",
    "mean_average_precision": "spml_lightning.metrics",
    "SPMLModule": "spml_lightning.module",
}

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


def __getattr__(name: str) -> Any:
    """A public name or a subpackage, imported on first use (then cached in the package).

    Subpackages too: ``import spml_lightning`` then ``spml_lightning.losses.GRLoss`` worked
    when this file imported them eagerly, and still does.
    """
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'spml_lightning' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
