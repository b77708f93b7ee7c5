"""A trained run, loaded for analysis: its checkpoint and the datamodule of its config.

The model comes from the checkpoint alone (it records its classes, its
preprocessing and its loss); the config contributes the data and where the run
wrote its checkpoints. The config is read with the same sections as ``spml``
uses (trainer, data, the callback sections), so every ``spml`` config and every
``config.yaml`` a run saved is accepted, and ``spml`` flags work as overrides.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ActionConfigFile
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser

from spml_lightning.data.base import SPMLDataModule
from spml_lightning.module import SPMLModule
from spml_lightning.training.checkpoint_files import (
    check_checkpoint_file,
    checkpoint_training_rows,
    find_checkpoint,
)
from spml_lightning.training.compatibility import check_class_names
from spml_lightning.training.config_sections import add_callback_sections

__all__ = ["LoadedRun", "check_same_rows", "load_checkpoint", "load_run"]


def load_checkpoint(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> SPMLModule:
    """An SPMLModule from a checkpoint, in eval mode, its loss at the saved epoch's schedule."""
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"No checkpoint {path}; pass the path of a .ckpt file (or use load_run)."
        )
    check_checkpoint_file(path)
    return SPMLModule.load_from_checkpoint(path, map_location=map_location).eval()


@dataclass
class LoadedRun:
    """A trained model with the datamodule it was trained on."""

    model: SPMLModule
    datamodule: SPMLDataModule
    ckpt_path: Path


def _config_parser() -> LightningArgumentParser:
    """A parser of ``spml`` configs that builds nothing but the datamodule."""
    parser = LightningArgumentParser(exit_on_error=False)
    parser.add_argument("-c", "--config", action=ActionConfigFile)
    parser.add_argument("--seed_everything", type=bool | int, default=True)
    parser.add_class_arguments(Trainer, "trainer", instantiate=False, fail_untyped=False)
    # The model is the checkpoint's: its section is read, not built.
    parser.add_argument("--model", type=dict[str, Any] | None, default=None)
    parser.add_subclass_arguments(SPMLDataModule, "data", required=True, fail_untyped=False)
    add_callback_sections(parser)
    parser.add_argument("--ckpt_path", type=str | None, default=None)
    parser.add_argument("--weights_only", type=bool | None, default=None)
    return parser


def load_run(
    config: str | Path,
    ckpt_path: str | Path = "best",
    overrides: Sequence[str] = (),
    map_location: str | torch.device = "cpu",
) -> LoadedRun:
    """The checkpoint and the datamodule of an ``spml`` config.

    Args:
        config: the YAML the model was trained with (``spml fit --config ...``).
        ckpt_path: a ``.ckpt`` file, or ``best``/``last`` of the newest run under
            the config's ``trainer.default_root_dir``, as for ``spml test``.
        overrides: further ``spml`` flags, e.g. ``["--data.init_args.root", "/data/voc"]``.
        map_location: device the model is loaded on.
    """
    parser = _config_parser()
    parsed = parser.parse_args(["--config", str(config), *overrides])
    path = find_checkpoint(
        str(ckpt_path),
        parsed.trainer.default_root_dir or os.getcwd(),
        parsed.checkpoint.dirpath,
    )
    assert path is not None  # find_checkpoint raises rather than return None for best/last/a path
    datamodule = parser.instantiate_classes(parsed).data
    model = load_checkpoint(path, map_location)
    # Every statistic below compares the model's output columns with the data's label columns.
    check_class_names(model.hparams.class_names, datamodule.class_names, str(path))
    run = LoadedRun(model, datamodule, Path(path))
    check_same_rows(run)
    return run


def check_same_rows(run: LoadedRun) -> None:
    """Refuse a run whose datamodule gives other train or val rows than its checkpoint's.

    The analysis reads the training set (its observed labels, what is "unknown")
    and the val set: on other rows its tables would describe labels the model
    never saw (and miss those it did), without any error.
    """
    run.datamodule.check_same_rows(
        checkpoint_training_rows(run.ckpt_path),
        f"checkpoint {run.ckpt_path}",
        ("train", "val"),
        "The analysis of its training set would describe other observed and unknown labels "
        "than the model's.",
    )
