"""What a study leaves in its folder: best.yaml, trials.csv, plots, and a printed summary.

- ``best.yaml``: the config with the best trial's parameters, complete: ``spml fit
  --config best.yaml`` trains the best trial again (same seed, same val mAP).
- ``trials.csv``: one row per trial: number, state, value (best val mAP),
  epochs validated, seconds, whether it ran the config's own values, each parameter.
- ``history.png``, ``importances.png``, ``slice_<parameter>.png``: Optuna's
  matplotlib plots. A plot that the study cannot give yet (importances need two
  finished trials that differ) is named in the summary with the reason.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
from lightning.pytorch.utilities import rank_zero_info
from optuna.trial import FrozenTrial, TrialState

from spml_lightning.tuning.space import Space
from spml_lightning.tuning.trial import OWN_VALUES, config_with, write_config, write_file

__all__ = [
    "BASELINE",
    "baseline_trial",
    "best_trial",
    "draw_plots",
    "summary_lines",
    "write_best_config",
    "write_outputs",
    "write_trials_csv",
]

#: The user attribute of the trial that runs the config's own values.
BASELINE = OWN_VALUES


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The complete trial with the highest value (None before any completes)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    finite = [t for t in complete if t.value is not None and math.isfinite(t.value)]
    return max(finite, key=lambda t: t.value or 0.0, default=None)


def baseline_trial(study: optuna.Study) -> FrozenTrial | None:
    """The complete trial of the config's own values (trial 0, or its retry)."""
    return next(
        (
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get(BASELINE)
        ),
        None,
    )


def write_trials_csv(study: optuna.Study, space: Space, path: Path) -> None:
    """One row per trial, its parameters in the columns named by their config paths."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["number", "state", "value", "epochs", "seconds", BASELINE, *space])
    for trial in study.get_trials(deepcopy=False):
        writer.writerow(
            [
                trial.number,
                trial.state.name,
                "" if trial.value is None else trial.value,
                len(trial.intermediate_values),
                trial.user_attrs.get("seconds", ""),
                bool(trial.user_attrs.get(BASELINE)),
                *(trial.params.get(key, "") for key in space),
            ]
        )
    write_file(path, buffer.getvalue().encode())


def write_best_config(
    study: optuna.Study, config: dict[str, Any], path: Path, study_label: str
) -> FrozenTrial | None:
    """``best.yaml``: ``config`` with the best trial's parameters (nothing before one completes)."""
    best = best_trial(study)
    if best is None:
        return None
    header = (
        f"# {study_label}: trial {best.number}, the best of the study (val mAP {best.value:.4f}).\n"
        f"# spml fit --config {path.name} trains it again.\n"
    )
    write_config(config_with(config, best.params), path, header)
    return best


def draw_plots(study: optuna.Study, space: Space, folder: Path) -> list[str]:
    """Draw the history, importance and slice plots; return a line per plot not drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    drawings: dict[str, Any] = {"history.png": lambda: plots.plot_optimization_history(study)}
    if len(complete) >= 2:
        drawings["importances.png"] = lambda: plots.plot_param_importances(study)
    for key in space:
        drawings[f"slice_{key}.png"] = lambda key=key: plots.plot_slice(study, params=[key])
    missing = [] if len(complete) >= 2 else ["importances.png (needs 2 complete trials)"]
    for name, draw in drawings.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's "experimental" notes
                axes = draw()
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100)
            plt.close(figure)
            write_file(folder / name, buffer.getvalue())
        except (ValueError, RuntimeError, ZeroDivisionError) as error:
            missing.append(f"{name} ({error})")
            plt.close("all")
    return missing


def summary_lines(study: optuna.Study, folder: Path) -> list[str]:
    """The printed summary: the trials' states, the best trial against the config's own values."""
    counts = {state: 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    lines = [
        f"Study {study.study_name}: {len(study.trials)} trials ({counts[TrialState.COMPLETE]} "
        f"complete, {counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} failed, "
        f"{counts[TrialState.RUNNING]} running); in {folder}"
    ]
    best, baseline = best_trial(study), baseline_trial(study)
    if best is None:
        return [*lines, "No trial completed yet: no best.yaml."]
    lines.append(f"Best: trial {best.number}, val mAP {best.value:.4f} (best.yaml)")
    if baseline is None:
        lines.append("The config's own values (trial 0) have not completed.")
        return lines
    assert best.value is not None and baseline.value is not None
    lines.append(
        f"The config's own values: trial {baseline.number}, val mAP {baseline.value:.4f} "
        f"({best.value - baseline.value:+.4f} for the best)"
    )
    for key, value in best.params.items():
        own = baseline.params.get(key)
        if own != value:
            lines.append(f"  {key}: {own!r} -> {value!r}")
    return lines


def write_outputs(
    study: optuna.Study,
    config: dict[str, Any],
    space: Space,
    folder: Path,
    plots: bool = True,
) -> None:
    """Write best.yaml, trials.csv (and the plots), then print the summary."""
    write_trials_csv(study, space, folder / "trials.csv")
    write_best_config(study, config, folder / "best.yaml", f"spml tune, study {study.study_name}")
    if not plots:
        return
    for line in summary_lines(study, folder):
        rank_zero_info(line)
    for line in draw_plots(study, space, folder):
        rank_zero_info(f"Plot not drawn: {line}")
