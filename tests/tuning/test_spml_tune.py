"""`spml tune` on the tiny demo: the installed command's outputs, best.yaml, continuing a study,
trials left running by a dead worker, a diverging trial, pruning, and the refusals."""

import csv
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from spml_lightning.cli import main, run_cli
from spml_lightning.losses import GRLoss
from spml_lightning.losses.search_space import SearchRange
from spml_lightning.tuning.outputs import BASELINE
from spml_lightning.tuning.storage import RETRY_OF, WORKER, worker_id
from spml_lightning.tuning.trial import TrialRunner

from integration.helpers import describe, installed_spml, run
from probes import demo_args, subprocess_env, write_callbacks_config

N_TRIALS = 3


def tune_args(root: Path, demo_root: Path) -> list[str]:
    return demo_args(root, demo_root)


def study_folder(root: Path) -> Path:
    return root / "runs" / "tune" / "GRLoss"


def load(root: Path) -> optuna.Study:
    url = f"sqlite:///{study_folder(root) / 'study.db'}"
    return optuna.load_study(study_name="GRLoss", storage=url)


def read_rows(path: Path) -> list[dict]:
    with open(path) as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, tiny_demo_root) -> dict:
    """3 trials of the demo config through the installed `spml tune` (random sampler, seed 3)."""
    root = tmp_path_factory.mktemp("tuned")
    args = [
        *tune_args(root, tiny_demo_root),
        "--tune.n_trials", str(N_TRIALS),
        "--tune.sampler", "random",
        "--tune.seed", "3",
        "--tune.pruner", "none",
    ]  # fmt: skip
    result = run([str(installed_spml()), "tune", *args], cwd=root, timeout=600)
    assert result.returncode == 0, describe(result)
    return {"root": root, "args": args, "output": result.stdout + result.stderr}


def test_the_installed_spml_tune_leaves_best_yaml_trials_csv_plots_and_a_summary(tuned):
    folder = study_folder(tuned["root"])
    rows = read_rows(folder / "trials.csv")
    assert [row["number"] for row in rows] == ["0", "1", "2"]
    assert all(row["state"] == "COMPLETE" and row["epochs"] == "2" for row in rows)
    # Trial 0 runs the config's own values, the comparison the summary prints.
    assert [row[BASELINE] for row in rows] == ["True", "False", "False"]
    assert float(rows[0]["model.loss.init_args.q2"]) == 0.01
    assert float(rows[0]["model.loss.init_args.beta.1"]) == 2.0
    assert float(rows[0]["model.lr"]) == 3e-3 and rows[0]["data.init_args.batch_size"] == "32"
    assert len({row["model.loss.init_args.q2"] for row in rows}) == N_TRIALS
    for name in ["best.yaml", "history.png", "importances.png", "slice_model.lr.png"]:
        assert (folder / name).stat().st_size > 0, name
    for key in GRLoss.search_space:
        assert (folder / f"slice_model.loss.init_args.{key}.png").is_file()
    best = max(rows, key=lambda row: float(row["value"]))
    assert f"Best: trial {best['number']}, val mAP {float(best['value']):.4f}" in tuned["output"]
    assert (
        f"The config's own values: trial 0, val mAP {float(rows[0]['value']):.4f}"
        in (tuned["output"])
    )


def test_only_the_best_trial_keeps_its_checkpoints(tuned):
    folder = study_folder(tuned["root"])
    best = load(tuned["root"]).best_trial.number
    kept = {path.relative_to(folder).parts[1] for path in folder.rglob("*.ckpt")}
    assert kept == {f"{best:04d}"}


def test_fit_on_best_yaml_runs_as_is_and_gives_the_best_trial_s_val_map(tuned):
    study = load(tuned["root"])
    best_yaml = study_folder(tuned["root"]) / "best.yaml"
    config = yaml.safe_load(best_yaml.read_text())
    for key, value in study.best_trial.params.items():
        node = config
        for part in key.split(".")[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        last = key.split(".")[-1]
        assert (node[int(last)] if isinstance(node, list) else node[last]) == value, key
    fit = run_cli(["fit", "--config", str(best_yaml)], exit_on_error=False)
    score = fit.trainer.checkpoint_callback.best_model_score.item()
    assert score == pytest.approx(study.best_value, abs=1e-4)


def test_running_again_continues_the_study_and_retries_a_trial_left_running_by_a_dead_worker(
    tuned, tmp_path, tiny_demo_root
):
    shutil.copytree(tuned["root"] / "runs", tmp_path / "runs")
    study = load(tmp_path)
    before = {t.number: (t.params, t.value) for t in study.trials}
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    trial_1 = study.trials[1]
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.RUNNING,
            params=trial_1.params,
            distributions=trial_1.distributions,
            user_attrs={WORKER: worker_id(int(dead.stdout))},
        )
    )
    assert main(["tune", *tune_args(tmp_path, tiny_demo_root), "--tune.n_trials", "5"]) == 0
    study = load(tmp_path)
    assert {t.number: (t.params, t.value) for t in study.trials[:N_TRIALS]} == before
    states = [t.state for t in study.trials]
    # The failed trial, run again, counts once: 5 trials besides it.
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.FAIL] + [TrialState.COMPLETE] * 2
    retry = study.trials[4]
    assert retry.user_attrs[RETRY_OF] == 3 and retry.params == trial_1.params
    assert sum(bool(t.user_attrs.get(BASELINE)) for t in study.trials) == 1
    rows = read_rows(study_folder(tmp_path) / "trials.csv")
    assert [row["state"] for row in rows] == [s.name for s in states]


def test_another_search_space_on_the_same_study_is_refused_naming_the_difference(tuned, capsys):
    args = [*tuned["args"], "--tune.spaces", "[loss]"]
    assert main(["tune", *args]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("spml tune: error: study 'GRLoss' in sqlite:///")
    assert "searches another space (removed data.init_args.batch_size, model.lr, " in error
    assert "another --tune.study_name" in error
    assert len(load(tuned["root"]).trials) == N_TRIALS


def test_an_unreachable_storage_is_one_line_naming_its_url(tmp_path, tiny_demo_root, capsys):
    url = "postgresql://tuner:secret@127.0.0.1:9/study"
    args = [*tune_args(tmp_path, tiny_demo_root), "--tune.storage", url]
    assert main(["tune", *args]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    shown = "postgresql://tuner:***@127.0.0.1:9/study"
    assert last.startswith(f"spml tune: error: cannot open the study storage {shown}: ")
    assert "secret" not in err and "Traceback" not in err


def test_a_diverging_trial_is_recorded_failed_and_the_study_goes_on(tmp_path, tiny_demo_root):
    callbacks = write_callbacks_config(
        tmp_path / "nan.yaml", [("probes.NaNHeadWhenLrAbove", {"lr": 0.1})]
    )
    tune = tmp_path / "tune.yaml"  # the options as a config section, the guide's way
    tune.write_text(
        "tune:\n  n_trials: 2\n  sampler: grid\n  spaces: []\n  space:\n"
        "    model.lr: {type: categorical, choices: [0.003, 1.0]}\n"
    )
    args = [*tune_args(tmp_path, tiny_demo_root), "--config", str(callbacks), "--config", str(tune)]
    assert main(["tune", *args]) == 0
    study = load(tmp_path)
    # A grid runs every point in its own order; the config's own value is one of them.
    trials = sorted(study.trials, key=lambda t: t.params["model.lr"])
    assert [(t.params["model.lr"], t.state) for t in trials] == [
        (0.003, TrialState.COMPLETE),
        (1.0, TrialState.FAIL),
    ]
    assert [t.user_attrs.get(BASELINE, False) for t in trials] == [True, False]
    assert not list((study_folder(tmp_path) / "trials" / f"{trials[1].number:04d}").rglob("*.ckpt"))


def test_a_pruned_trial_stops_at_once_and_is_marked_pruned(tuned, tmp_path):
    config = yaml.safe_load(
        (study_folder(tuned["root"]) / "trials" / "0000" / "trial.yaml").read_text()
    )
    space = {"model.lr": SearchRange.log_uniform(1e-3, 1e-2)}
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(101))
    study.optimize(TrialRunner(config, space, tmp_path, fit=run_cli), n_trials=1)
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]  # after the first of 2 epochs


def test_trials_on_cached_features_extract_once_and_reuse_the_cache(
    tmp_path, tiny_demo_root, info_lines
):
    args = [
        *tune_args(tmp_path, tiny_demo_root),
        "--model.train_mode", "linear_fixed_features",
        "--model.feature_dir", str(tmp_path / "features"),
        "--tune.n_trials", "2",
    ]  # fmt: skip
    assert main(["tune", *args]) == 0
    assert [t.state for t in load(tmp_path).trials] == [TrialState.COMPLETE] * 2
    cache_lines = [line for line in info_lines if line.startswith("Feature cache")]
    assert len(cache_lines) == 2
    assert "extracting the features" in cache_lines[0]
    assert "same fingerprint, reusing the cached features" in cache_lines[1]


def test_the_timeout_stops_starting_trials(tmp_path, tiny_demo_root):
    args = [*tune_args(tmp_path, tiny_demo_root), "--tune.n_trials", "5", "--tune.timeout", "0.01"]
    assert main(["tune", *args]) == 0
    assert len(load(tmp_path).trials) == 1


def test_ctrl_c_exits_130_and_the_next_run_trains_the_interrupted_trial_first(
    tmp_path, tiny_demo_root
):
    marker = tmp_path / "paused"
    pause = write_callbacks_config(
        tmp_path / "pause.yaml", [("probes.PauseAtStep", {"step": 1, "marker": str(marker)})]
    )
    args = [*tune_args(tmp_path, tiny_demo_root), "--config", str(pause), "--tune.n_trials", "2"]
    process = subprocess.Popen(
        [str(installed_spml()), "tune", *args],
        cwd=tmp_path, env=subprocess_env(), text=True, stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        # pytest may run with SIGINT ignored (inherited by children): give the child the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), "the first trial did not reach its pause"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr[-3000:]
    interrupted, queued = load(tmp_path).trials
    assert interrupted.state == TrialState.FAIL and queued.state == TrialState.WAITING
    assert queued.params == {} and queued.user_attrs[RETRY_OF] == 0
    assert queued.user_attrs[BASELINE] and queued.system_attrs["fixed_params"] == (
        interrupted.params
    )


def test_a_trial_whose_remote_worker_stopped_beating_is_failed_and_run_again(
    tmp_path, tiny_demo_root
):
    args = [
        *tune_args(tmp_path, tiny_demo_root),
        "--tune.heartbeat_interval", "1", "--tune.grace_period", "2",
    ]  # fmt: skip
    assert main(["tune", *args, "--tune.n_trials", "1"]) == 0
    storage = optuna.storages.RDBStorage(f"sqlite:///{study_folder(tmp_path) / 'study.db'}")
    study = optuna.load_study(study_name="GRLoss", storage=storage)
    baseline = study.trials[0]
    # A worker on another machine: this one cannot tell whether its process lives.
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.RUNNING,
            params=baseline.params,
            distributions=baseline.distributions,
            user_attrs={WORKER: "another-host:1:1"},
        )
    )
    storage.record_heartbeat(study.trials[1]._trial_id)
    time.sleep(3)  # past the grace period
    assert main(["tune", *args, "--tune.n_trials", "2"]) == 0
    trials = load(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[2].params == baseline.params
    assert trials[2].system_attrs["failed_trial"] == 1
