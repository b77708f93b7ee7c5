"""One trial of a study: a ``spml fit`` of the config with the trial's parameters.

The trial's config is written to ``<study folder>/trials/<number>/trial.yaml``
and fitted in this process, its runs under that folder. The trial's value is
the best validation mAP of the fit (the checkpoint callback's best score: the
test split is never looked at). Optuna-integration's Lightning callback reports
the validation mAP of every epoch, so that the pruner can stop a trial whose
curve falls behind.
"""

from __future__ import annotations

import copy
import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import optuna
import torch
import yaml
from optuna_integration import PyTorchLightningPruningCallback

from spml_lightning.console import UsageError
from spml_lightning.training.atomic_io import atomic_write
from spml_lightning.tuning.config_paths import set_path
from spml_lightning.tuning.space import Space
from spml_lightning.tuning.storage import RETRY_OF, WORKER, worker_id

__all__ = [
    "MONITOR",
    "OWN_VALUES",
    "TrialRunner",
    "config_with",
    "trial_folder",
    "write_config",
    "write_file",
]

#: What a trial maximises and reports every epoch.
MONITOR = "val/mAP"

#: The user attribute of the trial that runs the config's own values.
OWN_VALUES = "config_values"


def config_with(config: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with each parameter (config path -> value) set."""
    config = copy.deepcopy(config)
    for key, value in params.items():
        set_path(config, key, value)
    return config


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a reader sees the old file or the new one)."""

    def write(file: BinaryIO) -> None:
        file.write(data)

    atomic_write(path, write)


def write_config(config: dict[str, Any], path: Path, header: str = "") -> None:
    """Write ``config`` as YAML to ``path`` atomically, after ``header`` (comment lines)."""
    text = header + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    write_file(path, text.encode())


def trial_folder(study_dir: Path, number: int) -> Path:
    """Where trial ``number`` keeps its config, logs and checkpoints."""
    return study_dir / "trials" / f"{number:04d}"


def _draw(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    params = {}
    for key, value in space.items():
        if value.kind == "categorical":
            params[key] = trial.suggest_categorical(key, list(value.choices))
        elif value.kind == "int":
            assert value.low is not None and value.high is not None
            params[key] = trial.suggest_int(
                key, int(value.low), int(value.high), step=int(value.step or 1), log=value.log
            )
        else:
            assert value.low is not None and value.high is not None
            params[key] = trial.suggest_float(
                key, value.low, value.high, step=value.step, log=value.log
            )
    return params


class TrialRunner:
    """The objective of a study: fit the config with a trial's parameters, return its best val mAP.

    Args:
        config: the ``spml fit`` config the trials vary (a plain nested dict).
        space: the search space.
        study_dir: the study's folder; each trial's runs go to ``trials/<number>/``.
        fit: runs ``spml fit`` in this process and returns the CLI object
            (``spml_lightning.cli.run_cli``: the CLI, which runs the study, passes it).
        own_values: the config's own value of each key of ``space``: a trial that draws
            them is marked as the config's (user attribute ``config_values``).
    """

    def __init__(
        self,
        config: dict[str, Any],
        space: Space,
        study_dir: Path,
        fit: Callable[..., Any],
        own_values: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.space = space
        self.study_dir = study_dir
        self.fit = fit
        self.own_values = own_values

    def trial_config(self, params: dict[str, Any], folder: Path) -> dict[str, Any]:
        """The config of a trial: ``params`` set, runs and checkpoints in ``folder``."""
        config = config_with(self.config, params)
        config["trainer"]["default_root_dir"] = str(folder)
        if isinstance(config.get("checkpoint"), dict):
            config["checkpoint"]["dirpath"] = None  # the trial's own, under its runs
        return config

    def __call__(self, trial: optuna.Trial) -> float:
        """Run the trial; raises ``optuna.TrialPruned`` when the pruner stops it."""
        trial.set_user_attr(WORKER, worker_id())
        params = _draw(trial, self.space)
        if params == self.own_values:
            trial.set_user_attr(OWN_VALUES, True)
        folder = trial_folder(self.study_dir, trial.number)
        path = folder / "trial.yaml"
        write_config(self.trial_config(params, folder), path)
        pruning = PyTorchLightningPruningCallback(trial, monitor=MONITOR)
        started = time.monotonic()
        try:
            cli = self.fit(
                ["fit", "--config", str(path)],
                exit_on_error=False,
                trainer_defaults={"callbacks": [pruning]},
            )
            score = cli.trainer.checkpoint_callback.best_model_score
            del cli
        except KeyboardInterrupt:
            # Optuna records the trial as failed; the next `spml tune` runs its values first.
            attrs = {k: v for k, v in trial.user_attrs.items() if k not in (WORKER, "seconds")}
            trial.study.enqueue_trial(params, user_attrs={**attrs, RETRY_OF: trial.number})
            raise
        finally:
            trial.set_user_attr("seconds", round(time.monotonic() - started, 3))
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if score is None:
            raise UsageError(
                f"trial {trial.number} recorded no {MONITOR}: the trials are compared by their "
                "validation mAP, so the config must validate (trainer.limit_val_batches > 0)."
            )
        return float(score)
