"""The ``spml`` command: LightningCLI over SPMLModule and any SPML datamodule.

    spml fit  --config configs/voc.yaml --data.init_args.root /data/VOC
    spml test --config configs/voc.yaml --ckpt_path best

Besides LightningCLI's own work this adds: the number and names of the
classes flow from the datamodule into the model; checkpointing on the best
``val/mAP`` (``ResumableCheckpoint``, written atomically) and the reference's
stopping rule are on by default (``--checkpoint.*``, ``--early_stopping.*``);
``--ckpt_path best|last`` also works in a fresh process, by finding the
checkpoints of the newest run under the trainer's ``default_root_dir``
(every process looks on its own; under DDP all must find the same
checkpoint, which is checked when the run starts);
``spml fit --ckpt_path last`` resumes a killed run in its own checkpoint
folder, or starts one when there is nothing to resume yet; and ``spml predict``
writes its predictions (``--prediction.*``), on an ``ImageFolderDataModule``
with the classes and preprocessing of the checkpoint.
"""

from __future__ import annotations

import importlib
import os
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.distributed as dist
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn

from spml_lightning.callbacks import DropFromBestStopping
from spml_lightning.checkpointing import AtomicCheckpointIO, ResumableCheckpoint
from spml_lightning.console import RunProgress, UsageError, run_command
from spml_lightning.data.base import SPMLDataModule
from spml_lightning.data.images import ImageFolderDataModule, fill_from_checkpoint
from spml_lightning.module import SPMLModule
from spml_lightning.prediction import PredictionWriter

__all__ = [
    "SPMLCLI", "SameCheckpointOnEveryRank", "check_checkpoint_file", "check_same_checkpoint",
    "continue_in_checkpoint_folder", "describe_resume", "main", "reserve_log_version", "resolve_checkpoint",
    "run_cli",
]


#: The subcommands of ``spml`` (LightningCLI's).
SUBCOMMANDS: tuple[str, ...] = ("fit", "validate", "test", "predict")


def _newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda p: p.stat().st_mtime) if paths else None


def check_checkpoint_file(path: str | Path) -> None:
    """Fail clearly on a checkpoint path that is missing, empty, truncated or not a checkpoint.

    ``torch.save`` writes zip archives whose directory is at the end of the
    file, so ``zipfile.is_zipfile`` (a read of the file's tail) rejects
    truncated files before torch fails deep inside ``torch.load``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--ckpt_path {path}: no such checkpoint file.")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"--ckpt_path {path}: not a readable checkpoint ({path.stat().st_size} bytes: empty, truncated "
            "or not written by torch.save, e.g. by a save that was killed before atomic checkpoint "
            "writes existed). Pass another checkpoint, e.g. a best-*.ckpt of the same run."
        )


def _load_lazily(path: str | Path) -> dict[str, Any]:
    """A checkpoint, memory-mapped: its weights are not read until used."""
    return torch.load(path, map_location="cpu", weights_only=False, mmap=True)


def _checkpoint_callback_states(path: str | Path, checkpoint: dict[str, Any] | None = None) -> list[dict]:
    """The ModelCheckpoint states recorded in a checkpoint (weights not read), or in its loaded ``checkpoint``."""
    checkpoint = _load_lazily(path) if checkpoint is None else checkpoint
    return [
        state
        for state in checkpoint.get("callbacks", {}).values()
        if isinstance(state, dict) and "best_model_path" in state
    ]


def resolve_checkpoint(ckpt_path: str | None, trainer: Trainer, missing_ok: bool = False) -> str | None:
    """Turn ``best``/``last`` into a file, also when no fit ran in this process.

    ``last`` is the newest ``last*.ckpt`` below the checkpoint folder (or the
    trainer's ``default_root_dir``) -- the end-of-epoch and mid-epoch saves of
    ``ResumableCheckpoint`` are the same file, so this is the latest state of
    the newest run; ``best`` is the best model recorded by the ModelCheckpoint
    state stored in that newest ``last.ckpt``. Any file is checked to be a
    readable checkpoint.

    Args:
        ckpt_path: ``best``, ``last``, a path, or None.
        trainer: the trainer whose checkpoint folder is searched.
        missing_ok: return None instead of raising when no ``last`` checkpoint
            exists (``spml fit --ckpt_path last`` then starts from scratch).
    """
    if ckpt_path is None:
        return None
    if ckpt_path not in ("best", "last"):
        if "://" not in str(ckpt_path):  # remote checkpoints are Lightning's business
            check_checkpoint_file(ckpt_path)
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
        check_checkpoint_file(last)
        if ckpt_path == "last":
            return str(last)
        for state in _checkpoint_callback_states(last):
            best = state.get("best_model_path")
            if best and Path(best).is_file():
                return best
        raise FileNotFoundError(
            f"{last} records no existing best checkpoint; pass --ckpt_path /path/to/file.ckpt."
        )
    where = " or ".join(str(r) for r in roots)
    if missing_ok:
        rank_zero_warn(f"--ckpt_path {ckpt_path}: no checkpoint under {where} yet; training starts from scratch.")
        return None
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

def continue_in_checkpoint_folder(trainer: Trainer, ckpt_path: str) -> None:
    """Make a resumed fit write its checkpoints where the interrupted run did.

    Lightning puts a resumed run's checkpoints in a new ``version_N`` folder and
    then restores neither the top-k nor the best score, so ``best`` could end
    up worse than before the crash and ``save_top_k`` would bound each folder
    but not the run. When the checkpoint still lies in the folder its
    ModelCheckpoint recorded (and no ``--checkpoint.dirpath`` was given), the
    resumed run keeps that folder; logs still go to a new version.
    """
    callback = trainer.checkpoint_callback
    if not isinstance(callback, ModelCheckpoint) or callback.dirpath is not None:
        return
    folder = os.path.realpath(Path(ckpt_path).parent)
    for state in _checkpoint_callback_states(ckpt_path):
        if state.get("dirpath") and os.path.realpath(state["dirpath"]) == folder:
            callback.dirpath = folder
            return


def _training_position(ckpt_path: str | None) -> tuple | None:
    """What a checkpoint starts a run from: (epoch, global step), or None without one."""
    if ckpt_path is None:
        return None
    if "://" in str(ckpt_path):
        return (str(ckpt_path),)  # remote: every process reads the same object
    checkpoint = _load_lazily(ckpt_path)
    return (checkpoint.get("epoch"), checkpoint.get("global_step"))


def check_same_checkpoint(ckpt_path: str | None) -> None:
    """Raise on every rank unless all ranks start from the same checkpoint.

    Each process resolves ``--ckpt_path best|last`` in its own view of
    ``default_root_dir``. On several machines whose ``default_root_dir`` is not
    one shared folder, only the machine of global rank 0 (the one that writes
    checkpoints) finds them: the others would start from scratch (``fit
    --ckpt_path last``) or from an older run while rank 0 resumes, and the ranks
    would train different epochs and hang in a collective. Checkpoints are
    compared by the (epoch, global step) they hold, so a shared folder mounted
    at different paths, or a copy per machine, passes. A collective: every rank
    must call it (a no-op without a process group or with one process).

    Args:
        ckpt_path: the checkpoint this process resolved, or None.

    Raises:
        RuntimeError: on every rank, listing what each rank found.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    found: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(found, (ckpt_path, _training_position(ckpt_path)))
    if len({position for _, position in found}) == 1:
        return
    lines = "\n".join(
        f"  rank {rank}: {path or 'no checkpoint (starts from scratch)'}"
        + (f" (epoch {position[0]}, step {position[1]})" if position and len(position) == 2 else "")
        for rank, (path, position) in enumerate(found)
    )
    raise RuntimeError(
        "The processes of this run would start from different checkpoints:\n"
        f"{lines}\nEach process looks for --ckpt_path best|last under its own --trainer.default_root_dir; "
        "on several machines it must be a folder every machine shares (or pass --ckpt_path with a file "
        "every machine has)."
    )


class SameCheckpointOnEveryRank(Callback):
    """Runs :func:`check_same_checkpoint` on the checkpoint a run resolved, once the ranks are joined.

    Args:
        ckpt_path: the checkpoint this process resolved, or None.
    """

    def __init__(self, ckpt_path: str | None) -> None:
        self.ckpt_path = ckpt_path

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        check_same_checkpoint(self.ckpt_path)


def describe_resume(ckpt_path: str) -> str:
    """One line on where a resumed fit starts: the checkpoint, its epoch and step, the best model so far."""
    checkpoint = _load_lazily(ckpt_path)
    line = f"Resuming from {ckpt_path} (saved in epoch {checkpoint.get('epoch')}, step {checkpoint.get('global_step')}"
    for state in _checkpoint_callback_states(ckpt_path, checkpoint):
        score = state.get("best_model_score")
        if state.get("best_model_path") and score is not None:
            line += f"; best so far {Path(state['best_model_path']).name}, {state.get('monitor')} {float(score):.4g}"
            break
    return line + ")."


def reserve_log_version(trainer: Trainer) -> None:
    """Give each TensorBoard/CSV logger of ``trainer`` a ``version_N`` folder no other run has.

    These loggers take the version after the highest ``version_*`` folder they
    list and create the folder later, so runs started together in one
    ``default_root_dir`` took the same ``version_N`` -- and the same checkpoint
    folder. ``os.mkdir`` fails on a folder that exists: the first free
    ``version_N`` a run manages to create is its own. Loggers given a version
    (``version=``, SLURM's job id) and processes other than rank 0 (which get
    rank 0's folder from Lightning) are left alone.
    """
    if rank_zero_only.rank != 0:
        return
    for logger in trainer.loggers:
        if not isinstance(logger, (TensorBoardLogger, CSVLogger)) or logger._version is not None:
            continue
        root = logger.root_dir
        if not _is_local_file_protocol(root):
            continue
        os.makedirs(root, exist_ok=True)
        version = logger._get_next_version()
        while True:
            try:
                os.mkdir(os.path.join(root, f"version_{version}"))
                break
            except FileExistsError:  # another run took it since the listing
                version += 1
        logger._version = version  # what the logger's version property would have set
        rank_zero_info(f"Logging to {os.path.join(root, f'version_{version}')}")


class SPMLCLI(LightningCLI):
    """LightningCLI with the SPML defaults and links.

    Args:
        *args: see ``LightningCLI``.
        progress: marked started when the subcommand starts to run (see ``spml_lightning.console``).
        **kwargs: see ``LightningCLI``.
    """

    def __init__(self, *args: Any, progress: RunProgress | None = None, **kwargs: Any) -> None:
        self._progress = progress if progress is not None else RunProgress()
        super().__init__(*args, **kwargs)

    def _run_subcommand(self, subcommand: str) -> None:
        self._progress.started = True
        try:
            super()._run_subcommand(subcommand)
        except SystemExit:
            # Lightning turns Ctrl-C inside the trainer into sys.exit(1) after its
            # graceful shutdown; the shell convention for an interrupt is 130.
            if self.trainer.interrupted:
                raise KeyboardInterrupt from None
            raise

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.add_lightning_class_args(ResumableCheckpoint, "checkpoint")
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
        fit = self.config.get("fit") if self.subcommand == "fit" else None
        if fit is not None:
            max_epochs = fit.trainer.max_epochs
            if max_epochs is not None and max_epochs < 1 and not fit.model.schedule_epochs:
                raise UsageError(
                    f"--trainer.max_epochs {max_epochs}: spml fit trains for a number of epochs >= 1 (the "
                    "loss schedule spans them); pass e.g. --trainer.max_epochs 8."
                )
        self._fill_predict_facts()

    def _fill_predict_facts(self) -> None:
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

    def _parse_ckpt_path(self) -> None:
        # LightningCLI torch.loads an explicit --ckpt_path for its hyper-parameters
        # before anything else runs: name a broken file before torch fails on it.
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path not in (None, "best", "last") and "://" not in str(path) and Path(path).exists():
            check_checkpoint_file(path)
        # LightningCLI then replaces the model's arguments with the checkpoint's,
        # dropping the command line's silently. A resumed fit keeps the command
        # line's, whatever form --ckpt_path takes: SPMLModule applies or refuses
        # each change (spml_lightning.compatibility).
        if subcommand != "fit":
            super()._parse_ckpt_path()

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not a user's own plugin
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def _resolve_ckpt_path(self) -> None:
        config = self.config_init[self.subcommand]
        self._set_ckpt_path(config, resolve_checkpoint(config.get("ckpt_path"), self.trainer))
        reserve_log_version(self.trainer)

    def before_fit(self) -> None:
        config = self.config_init["fit"]
        # `fit --ckpt_path last` also starts a run that has nothing to resume yet,
        # so one command serves a job's first start and every restart.
        ckpt_path = resolve_checkpoint(config.get("ckpt_path"), self.trainer, missing_ok=True)
        self._set_ckpt_path(config, ckpt_path)
        if ckpt_path is not None:
            continue_in_checkpoint_folder(self.trainer, ckpt_path)
            rank_zero_info(describe_resume(ckpt_path))
        reserve_log_version(self.trainer)

    def _set_ckpt_path(self, config, ckpt_path: str | None) -> None:
        # Resolved by each process on its own: the ranks check that they agree once joined.
        if config.get("ckpt_path") is not None:
            self.trainer.callbacks.append(SameCheckpointOnEveryRank(ckpt_path))
        config["ckpt_path"] = ckpt_path

    before_validate = before_test = before_predict = _resolve_ckpt_path


def run_cli(
    args: ArgsType = None, run: bool = True, progress: RunProgress | None = None, exit_on_error: bool = True
) -> SPMLCLI:
    """Build the ``spml`` CLI and (with ``run``) run its subcommand; errors propagate.

    This is ``spml`` for Python callers (tests, notebooks, scripts): it returns
    the CLI object (``.trainer``, ``.model``, ``.datamodule``) and raises what
    the run raises. ``main`` is the command-line entry point with exit statuses.

    Args:
        args: the command line without the program name, e.g. ``["fit", "--config", "x.yaml"]``;
            None reads ``sys.argv``.
        run: run the subcommand; ``False`` only parses the config and builds the
            objects (then ``args`` has no subcommand).
        progress: marked started when the subcommand starts to run.
        exit_on_error: argument errors print the usage and exit (argparse's way);
            ``False`` raises them instead.
    """
    parser_kwargs: dict[str, Any] = {}
    if not exit_on_error:
        parser_kwargs = {"exit_on_error": False, **{name: {"exit_on_error": False} for name in SUBCOMMANDS}}
    return SPMLCLI(
        SPMLModule,
        SPMLDataModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        auto_configure_optimizers=False,
        parser_kwargs=parser_kwargs,
        progress=progress,
    )


def main(args: list[str] | None = None) -> int:
    """Entry point of ``spml`` and ``python -m spml_lightning``: the exit status.

    0 on success, 1 when a run fails, 2 for a usage error (bad flag or value,
    missing config file), 130 on Ctrl-C. See ``spml_lightning.console`` for how
    errors are reported.
    """
    return run_command(
        "spml", lambda argv, progress: run_cli(argv, progress=progress, exit_on_error=False), args, SUBCOMMANDS
    )
