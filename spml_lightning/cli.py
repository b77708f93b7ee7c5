"""The ``spml`` command: LightningCLI over SPMLModule and any SPML datamodule.

    spml fit  --config configs/voc.yaml --data.init_args.root /data/VOC
    spml test --config configs/voc.yaml --ckpt_path best

Besides LightningCLI's own work this adds four things: the number and names
of the classes flow from the datamodule into the model; checkpointing on the
best ``val/mAP`` and the reference's stopping rule are on by default
(``--checkpoint.*``, ``--early_stopping.*``); ``--ckpt_path best|last``
also works in a fresh process, by finding the checkpoints of the newest run
under the trainer's ``default_root_dir``; and ``spml predict`` writes its
predictions (``--prediction.*``), on an ``ImageFolderDataModule`` with the
classes and preprocessing of the checkpoint.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import SimpleNamespace

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from spml_lightning.callbacks import DropFromBestStopping
from spml_lightning.data.base import SPMLDataModule
from spml_lightning.data.images import ImageFolderDataModule, fill_from_checkpoint
from spml_lightning.module import SPMLModule
from spml_lightning.prediction import PredictionWriter

__all__ = ["SPMLCLI", "main", "resolve_checkpoint"]


def _newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda p: p.stat().st_mtime) if paths else None


def resolve_checkpoint(ckpt_path: str | None, trainer: Trainer) -> str | None:
    """Turn ``best``/``last`` into a file, also when no fit ran in this process.

    ``last`` is the newest ``last*.ckpt`` below the checkpoint folder (or the
    trainer's ``default_root_dir``); ``best`` is the best model recorded by
    the ModelCheckpoint state stored in that newest ``last.ckpt``.
    """
    if ckpt_path not in ("best", "last"):
        return ckpt_path
    callback = trainer.checkpoint_callback
    if ckpt_path == "best" and isinstance(callback, ModelCheckpoint) and callback.best_model_path:
        return callback.best_model_path  # a fit ran in this process
    roots = [Path(trainer.default_root_dir)]
    if isinstance(callback, ModelCheckpoint) and callback.dirpath:
        roots.insert(0, Path(callback.dirpath))
    for root in roots:
        last = _newest([p for p in root.rglob("last*.ckpt") if p.is_file()]) if root.is_dir() else None
        if last is None:
            continue
        if ckpt_path == "last":
            return str(last)
        checkpoint = torch.load(last, map_location="cpu", weights_only=False)
        for key, state in checkpoint.get("callbacks", {}).items():
            best = state.get("best_model_path") if key.startswith("ModelCheckpoint") else None
            if best and Path(best).is_file():
                return best
        raise FileNotFoundError(
            f"{last} records no existing best checkpoint; pass --ckpt_path /path/to/file.ckpt."
        )
    where = " or ".join(str(r) for r in roots)
    raise FileNotFoundError(
        f"--ckpt_path {ckpt_path}: no checkpoint found under {where}. Run `spml fit` with the "
        "same config first, or pass --ckpt_path /path/to/file.ckpt."
    )


def _reads_checkpoint_facts(data_config) -> bool:
    """Whether the datamodule of a config takes its classes from the checkpoint."""
    class_path = str(getattr(data_config, "class_path", "") or "")
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return False
    return isinstance(cls, type) and issubclass(cls, ImageFolderDataModule)


class SPMLCLI(LightningCLI):
    """LightningCLI with the SPML defaults and links."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/mAP",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch:02d}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(DropFromBestStopping, "early_stopping")
        parser.add_lightning_class_args(PredictionWriter, "prediction")

    def before_instantiate_classes(self) -> None:
        # `spml predict` on unlabelled images: the classes and preprocessing are
        # the checkpoint's; they must be known before the model is built.
        config = self.config.get(self.subcommand) if self.subcommand == "predict" else None
        if config is None or not config.get("ckpt_path") or not _reads_checkpoint_facts(config.data):
            return
        stand_in = SimpleNamespace(
            checkpoint_callback=ModelCheckpoint(dirpath=config.checkpoint.dirpath),
            default_root_dir=config.trainer.default_root_dir or os.getcwd(),
        )
        fill_from_checkpoint(config.data.init_args, resolve_checkpoint(config.ckpt_path, stand_in))

    def _resolve_ckpt_path(self) -> None:
        config = self.config_init[self.subcommand]
        config["ckpt_path"] = resolve_checkpoint(config.get("ckpt_path"), self.trainer)

    before_fit = before_validate = before_test = before_predict = _resolve_ckpt_path


def main(args: list[str] | None = None, run: bool = True) -> SPMLCLI:
    """Entry point of ``spml`` and ``python -m spml_lightning``."""
    return SPMLCLI(
        SPMLModule,
        SPMLDataModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )
