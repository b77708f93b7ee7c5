"""The sections of an ``spml`` config besides ``trainer``, ``model`` and ``data``.

They configure the run's callbacks.

``spml`` configures three callbacks from their own sections (``--checkpoint.*``,
``--early_stopping.*``, ``--prediction.*``), with the project's defaults: keep
the checkpoint with the best ``val/mAP``, stop by the reference's rule, write
predictions. The ``spml`` parser and the analysis' config reader both add them
from here, so a config that one accepts the other reads.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback
from lightning.pytorch.cli import LightningArgumentParser

from spml_lightning.training.callbacks import DropFromBestStopping
from spml_lightning.training.prediction_writer import PredictionWriter
from spml_lightning.training.resumable_checkpoint import ResumableCheckpoint

__all__ = ["CALLBACK_SECTIONS", "CHECKPOINT_DEFAULTS", "add_callback_sections"]

#: Config section -> the callback it configures.
CALLBACK_SECTIONS: dict[str, type[Callback]] = {
    "checkpoint": ResumableCheckpoint,
    "early_stopping": DropFromBestStopping,
    "prediction": PredictionWriter,
}

#: ``checkpoint`` defaults: the best val mAP as ``best-<epoch>.ckpt``, and ``last.ckpt``.
CHECKPOINT_DEFAULTS: dict[str, Any] = {
    "monitor": "val/mAP",
    "mode": "max",
    "save_last": True,
    "filename": "best-{epoch:02d}",
    "auto_insert_metric_name": False,
}


def add_callback_sections(parser: LightningArgumentParser) -> None:
    """Add the callback sections, with their defaults, to an ``spml`` config parser."""
    for name, callback in CALLBACK_SECTIONS.items():
        parser.add_lightning_class_args(callback, name)
    parser.set_defaults({f"checkpoint.{key}": value for key, value in CHECKPOINT_DEFAULTS.items()})
