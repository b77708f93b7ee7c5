"""The ``spml`` command: LightningCLI over SPMLModule and any SPML datamodule.

    spml fit  --config configs/voc.yaml --data.init_args.root /data/VOC
    spml test --config configs/voc.yaml --ckpt_path best

``spml tune`` searches the config's hyper-parameters with Optuna, each trial a
``fit`` (``--tune.*``, ``SPMLCLI.tune``, ``spml_lightning.tuning``).

Besides LightningCLI's own work this adds: the number and names of the
classes flow from the datamodule into the model; checkpointing on the best
``val/mAP`` (``ResumableCheckpoint``, written atomically) and the reference's
stopping rule are on by default (``--checkpoint.*``, ``--early_stopping.*``);
``--ckpt_path best|last`` also works in a fresh process, by finding the
checkpoints of the newest run under the trainer's ``default_root_dir``
(every process looks on its own; under DDP all must find the same
checkpoint, which is checked when the run starts);
``spml fit --ckpt_path last`` resumes a killed run in its own checkpoint
folder, or starts one when there is nothing to resume yet; ``spml predict``
writes its predictions (``--prediction.*``), on an ``UnlabelledImageDataModule``
with the classes and preprocessing of the checkpoint; and ``spml suggest``
ranks the unobserved labels of the training images (``--suggestions.*``, a method
of ``SPMLTrainer``); ``spml features`` extracts the backbone's features of the
datamodule's images into the feature cache (``--cache.*``,
``spml_lightning.features``). ``spml report`` writes a checkpoint's diagnostics
(``spml_lightning.analysis.report``; ``spml report --help``). ``spml export`` writes a
checkpoint's model as an ONNX file and ``spml serve`` answers HTTP requests with one
(``spml_lightning.deploy``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from spml_lightning.backbones import initial_weights_skipped
from spml_lightning.console import RunProgress, UsageError, run_command
from spml_lightning.data.base import SPMLDataModule
from spml_lightning.data.predict_folder import UnlabelledImageDataModule
from spml_lightning.module import SPMLModule
from spml_lightning.training import (
    AtomicCheckpointIO,
    SameCheckpointOnEveryRank,
    check_checkpoint_file,
    checkpoint_facts,
    continue_in_checkpoint_folder,
    describe_resume,
    find_checkpoint,
    read_checkpoint,
    refuse_resume_early,
    release_empty_log_versions,
    reserve_log_version,
    resolve_checkpoint,
)
from spml_lightning.training.compatibility import REMOVED_OPTIONS, upgraded_hparams
from spml_lightning.training.config_sections import add_callback_sections
from spml_lightning.training.trainer import SPMLTrainer
from spml_lightning.tuning.options import TuneOptions

__all__ = ["SPMLCLI", "SUBCOMMANDS", "main", "run_cli"]


#: The subcommands of ``spml``: LightningCLI's, ``suggest`` and ``features`` (``SPMLTrainer``'s).
SUBCOMMANDS: tuple[str, ...] = ("fit", "validate", "test", "predict", "suggest", "features")
SUBCOMMANDS += ("export",)  # SPMLTrainer.export (spml_lightning.deploy)
SUBCOMMANDS += ("tune",)  # SPMLCLI.tune (spml_lightning.tuning)


def _reads_checkpoint_facts(data_config) -> bool:
    """Whether the datamodule of a config takes its classes from the checkpoint."""
    class_path = str(getattr(data_config, "class_path", "") or "")
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return False
    return isinstance(cls, type) and issubclass(cls, UnlabelledImageDataModule)


def _fill_from_checkpoint(init_args: Any, ckpt_path: str | Path) -> None:
    """Set an UnlabelledImageDataModule config's class names and preprocessing to the checkpoint's.

    The checkpoint wins: a model predicts with the classes and preprocessing it
    was trained with. A different value in the config (typically one carried
    over from the training datamodule of the same YAML, such as its
    ``image_size``) is replaced with a warning.

    Args:
        init_args: the ``data.init_args`` namespace of the config, changed in place.
        ckpt_path: the SPMLModule checkpoint the prediction uses.
    """
    for key, value in checkpoint_facts(ckpt_path).items():
        if value is None:
            continue
        current = getattr(init_args, key, None)
        if current is not None and list(np.atleast_1d(current)) != list(np.atleast_1d(value)):
            warnings.warn(
                f"data.init_args.{key}={current!r} replaced by the checkpoint's {value!r}: the "
                "model predicts with the classes and preprocessing it was trained with.",
                stacklevel=2,
            )
        setattr(init_args, key, value)


class SPMLCLI(LightningCLI):
    """LightningCLI with the SPML defaults and links.

    Args:
        *args: see ``LightningCLI``.
        progress: marked started when the subcommand starts to run (see ``spml_lightning.console``).
        **kwargs: see ``LightningCLI``.
    """

    def __init__(self, *args: Any, progress: RunProgress | None = None, **kwargs: Any) -> None:
        self._progress = progress if progress is not None else RunProgress()
        self._log_folders: list[str] = []  # reserved for this run (reserve_log_version)
        super().__init__(*args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """LightningCLI's, ``suggest`` and ``features``: each with the arguments it skips."""
        return {
            **LightningCLI.subcommands(),
            "suggest": {"model", "datamodule"},
            "features": {"model", "datamodule"},
            "export": {"model", "datamodule"},
            "tune": {"model", "datamodule"},
        }

    def _run_subcommand(self, subcommand: str) -> None:
        self._progress.started = True
        try:
            super()._run_subcommand(subcommand)
        except BaseException as error:
            # A run refused before it logged (another checkpoint's data, a bad flag)
            # leaves no empty version_N behind.
            release_empty_log_versions(self._log_folders)
            # Lightning turns Ctrl-C inside the trainer into sys.exit(1) after its
            # graceful shutdown; the shell convention for an interrupt is 130.
            if isinstance(error, SystemExit) and self.trainer.interrupted:
                raise KeyboardInterrupt from None
            raise

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link the data's classes to the model's and add the callbacks' config sections."""
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        add_callback_sections(parser)
        # A run's saved config.yaml names every option of its version: accept removed ones.
        for name in REMOVED_OPTIONS:
            parser.add_argument(f"--model.{name}", default=None, help=argparse.SUPPRESS)

    def before_instantiate_classes(self) -> None:
        """Refuse a fit without epochs; give predict the checkpoint's classes and preprocessing."""
        fit = self.config.get("fit") if self.subcommand == "fit" else None
        if fit is not None:
            max_epochs = fit.trainer.max_epochs
            if max_epochs is not None and max_epochs < 1 and not fit.model.schedule_epochs:
                raise UsageError(
                    f"--trainer.max_epochs {max_epochs}: spml fit trains for a number of epochs "
                    ">= 1 (the loss schedule spans them); pass e.g. --trainer.max_epochs 8."
                )
        self._fill_predict_facts()
        self._drop_removed_options()

    def _drop_removed_options(self) -> None:
        """Drop options since removed from the config (a run's saved config.yaml), saying so."""
        model = self.config[self.subcommand].model if self.subcommand else self.config.model
        for name, unset in REMOVED_OPTIONS.items():
            value = model.pop(name, None)
            if value is not None and value != unset:
                rank_zero_warn(
                    f"model.{name}={value!r} was removed (docs/results/performance.md) and is "
                    "ignored: remove it from the config."
                )

    def instantiate_classes(self) -> None:
        """LightningCLI's; with a checkpoint to validate, test or predict, no initial weights.

        The checkpoint's weights replace the backbone's initial ones, so these are
        not loaded (nothing is downloaded, no weights file is read).
        """
        config = self.config.get(self.subcommand) if self.subcommand != "fit" else None
        restoring = config is not None and config.get("ckpt_path") is not None
        with initial_weights_skipped() if restoring else contextlib.nullcontext():
            super().instantiate_classes()

    def _prepare_subcommand_parser(
        self, klass: type, subcommand: str, **kwargs: Any
    ) -> LightningArgumentParser:
        if subcommand != "tune":
            return super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        # The options' group is named like the subcommand (--tune.*), which jsonargparse's
        # add_method_arguments refuses (the method's own group is "tune"): add it as a class.
        parser = self.init_parser(**kwargs)
        self._add_arguments(parser)
        parser.add_class_arguments(TuneOptions, "tune")
        self._subcommand_method_arguments[subcommand] = ["tune"]
        return parser

    def tune(self, model: SPMLModule, datamodule: SPMLDataModule, tune: TuneOptions) -> None:
        """``spml tune``: an Optuna study over this config, each trial a ``fit`` (``tuning``)."""
        try:
            from spml_lightning.tuning.config_paths import plain_config
            from spml_lightning.tuning.study import run_study
        except ImportError as error:  # the `tune` extra is not installed
            raise UsageError(
                f'spml tune needs Optuna ({error}): pip install "spml_lightning[tune]".'
            ) from None

        config = self.config["tune"].clone()
        for key in ("tune", "config", "__path__"):
            config.pop(key, None)
        run_study(plain_config(config.as_dict()), tune, fit=run_cli)

    def _fill_predict_facts(self) -> None:
        # `spml predict` on unlabelled images: the classes and preprocessing are
        # the checkpoint's; they must be known before the model is built.
        config = self.config.get(self.subcommand) if self.subcommand == "predict" else None
        if (
            config is None
            or not config.get("ckpt_path")
            or not _reads_checkpoint_facts(config.data)
        ):
            return
        ckpt_path = find_checkpoint(
            config.ckpt_path,
            config.trainer.default_root_dir or os.getcwd(),
            config.checkpoint.dirpath,
        )
        _fill_from_checkpoint(config.data.init_args, ckpt_path)

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
        # each change (spml_lightning.training.resuming).
        if subcommand != "fit" and path is not None and Path(path).is_file():
            self._parse_checkpoint_hparams(subcommand, path)

    def _parse_checkpoint_hparams(self, subcommand: str, path: str) -> None:
        """LightningCLI's ``_parse_ckpt_path``, on the hyper-parameters as today's model takes them.

        A checkpoint of an earlier version may name options since removed
        (``training.compatibility.upgraded_hparams``).
        """
        recorded = read_checkpoint(path, weights_only=True).get("hyper_parameters", {})
        hparams = upgraded_hparams(recorded)
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:  # a subclass of SPMLModule
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer, with atomic checkpoint writes unless a checkpoint IO plugin was given."""
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not a user's own plugin
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        warn_if_bf16_is_emulated(trainer)
        return trainer

    def _resolve_ckpt_path(self) -> None:
        config = self.config_init[self.subcommand]
        self._set_ckpt_path(config, resolve_checkpoint(config.get("ckpt_path"), self.trainer))
        self._log_folders = reserve_log_version(self.trainer)

    def before_fit(self) -> None:
        """Resolve ``--ckpt_path`` (none yet is fine), keep a resume in its checkpoint folder."""
        config = self.config_init["fit"]
        # `fit --ckpt_path last` also starts a run that has nothing to resume yet,
        # so one command serves a job's first start and every restart.
        ckpt_path = resolve_checkpoint(config.get("ckpt_path"), self.trainer, missing_ok=True)
        self._set_ckpt_path(config, ckpt_path)
        if ckpt_path is not None:
            # Before the set-up's work (a feature extraction, a prior's scoring): a resume
            # with another network, loss or train mode would be refused after it.
            refuse_resume_early(ckpt_path, self.model.hparams)
            continue_in_checkpoint_folder(self.trainer, ckpt_path)
            rank_zero_info(describe_resume(ckpt_path))
        self._log_folders = reserve_log_version(self.trainer)

    def _set_ckpt_path(self, config, ckpt_path: str | None) -> None:
        # Resolved by each process on its own: the ranks check that they agree once joined.
        if config.get("ckpt_path") is not None:
            self.trainer.callbacks.append(SameCheckpointOnEveryRank(ckpt_path))
        config["ckpt_path"] = ckpt_path

    before_validate = before_test = before_predict = before_suggest = _resolve_ckpt_path

    def before_export(self) -> None:
        """Resolve ``--ckpt_path``; an export writes no run folder (no log version is reserved)."""
        config = self.config_init["export"]
        config["ckpt_path"] = resolve_checkpoint(config.get("ckpt_path"), self.trainer)


def _native_cpu_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX-512 BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def warn_if_bf16_is_emulated(trainer: Trainer) -> None:
    """Warn that bf16 on a CPU without native bf16 (AVX2 only) is several times slower than fp32.

    oneDNN then emulates bf16 convolutions, many times slower per step than fp32
    (``docs/results/performance.md``): the opposite of what a speed profile is for.
    """
    if "bf16" not in str(trainer.precision) or not isinstance(trainer.accelerator, CPUAccelerator):
        return
    if not _native_cpu_bf16():
        capability = torch.backends.cpu.get_cpu_capability()
        rank_zero_warn(
            f"precision {trainer.precision} on this CPU ({capability}, no native bf16) is "
            "emulated and several times slower than fp32: pass "
            "--trainer.precision 32-true here (configs/fast.yaml's bf16 is for GPUs and CPUs with "
            "AVX-512 BF16 or AMX)."
        )


#: What ``spml --help`` adds below LightningCLI's subcommands: the commands ``main`` runs itself.
OTHER_COMMANDS = (
    "Also: 'spml report' (a checkpoint's diagnostics as a report; spml report --help) and "
    "'spml serve' (an exported model behind HTTP; spml serve --help)."
)


def run_cli(
    args: ArgsType = None,
    run: bool = True,
    progress: RunProgress | None = None,
    exit_on_error: bool = True,
    trainer_defaults: dict[str, Any] | None = None,
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
        trainer_defaults: LightningCLI's: e.g. ``{"callbacks": [...]}`` adds callback objects
            (``spml tune``'s pruning callback) to the run's trainer.
    """
    # `spml --help` lists the LightningCLI subcommands; the two with parsers of their own
    # (dispatched by `main`) are named here.
    parser_kwargs: dict[str, Any] = {"epilog": OTHER_COMMANDS}
    if not exit_on_error:
        parser_kwargs |= {
            "exit_on_error": False,
            **{name: {"exit_on_error": False} for name in SUBCOMMANDS},
        }
    with warnings.catch_warnings():
        # Given args are the whole command line: the calling program's own sys.argv
        # (a bench script's flags, pytest's) is not spml's, so LightningCLI's
        # warning about having both is noise here.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return SPMLCLI(
            SPMLModule,
            SPMLDataModule,
            trainer_class=SPMLTrainer,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
            auto_configure_optimizers=False,
            parser_kwargs=parser_kwargs,
            progress=progress,
            trainer_defaults=trainer_defaults,
        )


def main(args: list[str] | None = None) -> int:
    """Entry point of ``spml`` and ``python -m spml_lightning``: the exit status.

    0 on success, 1 when a run fails, 2 for a usage error (bad flag or value,
    missing config file), 130 on Ctrl-C. See ``spml_lightning.console`` for how
    errors are reported.
    """
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["report"]:  # not a LightningCLI subcommand: its own parser
        from spml_lightning.analysis.report import command as report

        return report(argv[1:])
    if argv[:1] == ["serve"]:  # an HTTP server, not a Trainer entry point: its own parser
        from spml_lightning.deploy.serve_command import command as serve

        return serve(argv[1:], export=lambda args: main(["export", *args]))
    return run_command(
        "spml",
        lambda argv, progress: run_cli(argv, progress=progress, exit_on_error=False),
        args,
        SUBCOMMANDS,
    )
