"""``spml tune``: an Optuna study over a config, each trial a ``spml fit``.

The study lives in ``--tune.storage`` (an SQLite file in
``<trainer.default_root_dir>/tune/<study_name>/`` by default), so that running the
command again continues it and several workers pointed at one storage run it
together. The first worker to create the study records its search space and
queues the config's own values as the first trial; a worker whose space differs
is refused. ``--tune.n_trials`` is the study's total: a worker starts trials
until that many have been started (by anyone) and not lost; a trial that is run
again (after Ctrl-C or its worker's death) counts once. A diverging trial
(the NaN guard's error) is recorded as failed and the study goes on; the
checkpoints of every trial but the best are removed as trials finish.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from lightning.pytorch.utilities import rank_zero_info
from optuna.trial import FrozenTrial, TrialState

from spml_lightning.console import UsageError
from spml_lightning.tuning.config_paths import loss_class, with_explicit_loss
from spml_lightning.tuning.options import TuneOptions
from spml_lightning.tuning.outputs import BASELINE, best_trial, write_outputs
from spml_lightning.tuning.space import (
    Space,
    build_space,
    config_values,
    describe_difference,
    serialized,
)
from spml_lightning.tuning.storage import (
    RETRY_OF,
    display_url,
    fail_dead_local_trials,
    open_storage,
    storage_url,
)
from spml_lightning.tuning.trial import MONITOR, TrialRunner, trial_folder

__all__ = ["SPACE_ATTR", "StudyPlan", "plan_study", "run_study"]

#: The study's user attribute holding its search space (JSON).
SPACE_ATTR = "search_space"

#: The trial states that use up the study's number of trials.
_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


class StudyPlan:
    """What a study runs: the trials' base config, the space, the folder, the storage URL.

    Args:
        config: the ``spml fit`` config (a plain nested dict; the loss's arguments explicit).
        space: the search space.
        folder: the study's folder.
        storage: the storage URL.
        name: the study's name.
    """

    def __init__(
        self, config: dict[str, Any], space: Space, folder: Path, storage: str, name: str
    ) -> None:
        self.config = config
        self.space = space
        self.folder = folder
        self.storage = storage
        self.name = name


def _check_one_device(trainer: dict[str, Any]) -> None:
    devices, nodes = trainer.get("devices", "auto"), trainer.get("num_nodes", 1) or 1
    if devices == "auto":
        trainer["devices"] = 1
        rank_zero_info("spml tune: each trial trains on one device (trainer.devices auto -> 1).")
        return
    single = devices in (1, "1") or (isinstance(devices, list) and len(devices) == 1)
    if not single or nodes != 1:
        raise UsageError(
            f"--trainer.devices {devices!r} --trainer.num_nodes {nodes}: each trial of spml tune "
            "trains on one device. Run one worker per GPU instead (CUDA_VISIBLE_DEVICES=i spml "
            "tune ... --tune.storage <shared>; docs/guides/tuning.md)."
        )


def _check_monitor(config: dict[str, Any]) -> None:
    checkpoint = config.get("checkpoint") or {}
    if checkpoint.get("monitor", MONITOR) != MONITOR or checkpoint.get("mode", "max") != "max":
        raise UsageError(
            f"--checkpoint.monitor {checkpoint.get('monitor')!r} mode {checkpoint.get('mode')!r}: "
            f"spml tune maximises the best {MONITOR} of each trial, which the checkpoint callback "
            f"keeps; leave checkpoint.monitor {MONITOR} and mode max."
        )


def plan_study(config: dict[str, Any], options: TuneOptions) -> StudyPlan:
    """Check the config for tuning and build its space, folder and storage URL.

    Args:
        config: the ``spml tune`` config without its ``tune`` section, as a plain dict.
        options: the ``--tune.*`` options.
    """
    config = with_explicit_loss(config)
    config.setdefault("trainer", {})
    _check_one_device(config["trainer"])
    _check_monitor(config)
    space = build_space(config, options)
    name = options.study_name or str(getattr(loss_class(config), "__name__", "study"))
    root = Path(config["trainer"].get("default_root_dir") or os.getcwd())
    folder = root / "tune" / name
    return StudyPlan(config, space, folder, storage_url(options, folder), name)


def _sampler(options: TuneOptions, space: Space) -> optuna.samplers.BaseSampler:
    if options.sampler == "random":
        return optuna.samplers.RandomSampler(seed=options.seed)
    if options.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=options.seed)
    grid = {}
    for key, value in space.items():
        try:
            grid[key] = value.grid()
        except ValueError as error:
            raise UsageError(f"--tune.sampler grid: {key}: {error}") from None
    return optuna.samplers.GridSampler(grid, seed=options.seed)


def _pruner(options: TuneOptions, config: dict[str, Any]) -> optuna.pruners.BasePruner:
    if options.pruner == "median":
        return optuna.pruners.MedianPruner()
    if options.pruner == "hyperband":
        max_epochs = config["trainer"].get("max_epochs") or "auto"
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs)
    return optuna.pruners.NopPruner()


def _open_study(plan: StudyPlan, options: TuneOptions) -> optuna.Study:
    """Create the study (recording its space, queueing the config's values) or load it."""
    storage = open_storage(plan.storage, options)
    sampler, pruner = _sampler(options, plan.space), _pruner(options, plan.config)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=plan.name,
            direction="maximize",
            sampler=sampler,
            pruner=pruner,
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(
            study_name=plan.name, storage=storage, sampler=sampler, pruner=pruner
        )
        recorded = study.user_attrs.get(SPACE_ATTR)
        difference = recorded and describe_difference(recorded, plan.space)
        if difference:
            raise UsageError(
                f"study {plan.name!r} in {display_url(plan.storage)} searches another space "
                f"({difference}): give this search another --tune.study_name, or the space the "
                "study was started with."
            ) from None
        rank_zero_info(f"spml tune: continuing study {plan.name!r} ({len(study.trials)} trials).")
        if not recorded:  # its creator has not recorded the space yet
            study.set_user_attr(SPACE_ATTR, serialized(plan.space))
        return study
    study.set_user_attr(SPACE_ATTR, serialized(plan.space))
    if options.sampler != "grid":  # a grid runs every point, the config's values among them
        study.enqueue_trial(config_values(plan.config, plan.space), user_attrs={BASELINE: True})
    return study


def _claimed(study: optuna.Study) -> int:
    """The trials that use up ``n_trials``: all but the waiting ones and those run again."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_OF) for t in trials}
    for trial in trials:  # Optuna's heartbeat retries
        retried.update(trial.system_attrs.get("retry_history", []))
    return sum(t.state in _COUNTED and t.number not in retried for t in trials)


def _remove_beaten_checkpoints(study: optuna.Study, folder: Path) -> None:
    """Remove the checkpoints of every finished trial but the best."""
    best = best_trial(study)
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    for trial in study.get_trials(deepcopy=False, states=finished):
        if best is None or trial.number != best.number:
            for checkpoint in trial_folder(folder, trial.number).rglob("*.ckpt"):
                checkpoint.unlink(missing_ok=True)


def run_study(
    config: dict[str, Any], options: TuneOptions, fit: Callable[..., Any]
) -> optuna.Study:
    """Run (or continue) the study of ``config``; write its outputs; return it.

    Args:
        config: the ``spml tune`` config without its ``tune`` section, as a plain dict.
        options: the ``--tune.*`` options.
        fit: runs ``spml fit`` in this process (``spml_lightning.cli.run_cli``).
    """
    plan = plan_study(config, options)
    study = _open_study(plan, options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Optuna does it before each trial; a study that has its trials would start none.
        optuna.storages.fail_stale_trials(study)
    for number in fail_dead_local_trials(study):
        rank_zero_info(
            f"spml tune: trial {number} was left running by a worker that died: failed, and "
            "queued again."
        )
    rank_zero_info(
        f"spml tune: study {plan.name!r} in {display_url(plan.storage)}, searching "
        f"{', '.join(plan.space)}."
    )

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        _remove_beaten_checkpoints(study, plan.folder)
        write_outputs(study, plan.config, plan.space, plan.folder, plots=False)
        if _claimed(study) >= options.n_trials:
            study.stop()

    if _claimed(study) >= options.n_trials:
        rank_zero_info(
            f"spml tune: the study has its {options.n_trials} trials already; raise "
            "--tune.n_trials to run more."
        )
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.optimize(
                TrialRunner(
                    plan.config,
                    plan.space,
                    plan.folder,
                    fit,
                    config_values(plan.config, plan.space),
                ),
                timeout=options.timeout,
                callbacks=[after_trial],
                catch=(FloatingPointError,),  # the NaN guard: a failed trial, the study goes on
                gc_after_trial=True,
            )
    write_outputs(study, plan.config, plan.space, plan.folder)
    return study
