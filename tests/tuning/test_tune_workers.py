"""Two `spml tune` workers on one study: an SQLite file, a journal file, a PostgreSQL server.

Each worker is the installed command in its own process, both pointed at the same
storage; their first trials start together (probes.StartTogether), so that they
do share the study. Every trial must be recorded once: none lost, none run
twice, the config's own values run once.
"""

import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from postgres_server import postgres_binaries, running_postgres

from spml_lightning.tuning.outputs import BASELINE
from spml_lightning.tuning.storage import WORKER

from integration.helpers import installed_spml
from probes import demo_args, subprocess_env, write_callbacks_config

N_TRIALS = 4


@pytest.fixture(scope="module")
def postgres_url():
    binaries = postgres_binaries()
    if isinstance(binaries, str):
        pytest.skip(binaries)
    with running_postgres(*binaries) as url:
        yield url


def storage_of(kind: str, root: Path, request) -> str:
    if kind == "sqlite":
        return f"sqlite:///{root / 'shared' / 'study.db'}"
    if kind == "journal":
        return f"journal:{root / 'shared' / 'study.journal'}"
    return request.getfixturevalue("postgres_url")


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("journal", marks=pytest.mark.slow), "postgresql"]
)
def test_two_workers_on_one_storage_record_every_trial_once(
    kind, tmp_path, tiny_demo_root, request
):
    storage = storage_of(kind, tmp_path, request)
    (tmp_path / "shared").mkdir()
    together = write_callbacks_config(
        tmp_path / "together.yaml",
        [("probes.StartTogether", {"folder": str(tmp_path / "started"), "count": 2})],
    )
    workers = [
        subprocess.Popen(
            [
                str(installed_spml()),
                "tune",
                *demo_args(tmp_path / f"worker{i}", tiny_demo_root),
                "--config",
                str(together),
                "--tune.storage",
                storage,
                "--tune.study_name",
                f"shared-{kind}",
                "--tune.n_trials",
                str(N_TRIALS),
                "--trainer.max_epochs",
                "1",
            ],
            cwd=tmp_path,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], "\n\n".join(
        output[-3000:] for output in outputs
    )
    if kind == "journal":
        study = optuna.load_study(
            study_name=f"shared-{kind}",
            storage=optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(storage.removeprefix("journal:"))
            ),
        )
    else:
        study = optuna.load_study(study_name=f"shared-{kind}", storage=storage)
    trials = study.trials
    # Two workers that finish a trial at the same moment may both start one more.
    assert N_TRIALS <= len(trials) <= N_TRIALS + 1
    assert [t.number for t in trials] == list(range(len(trials)))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sum(bool(t.user_attrs.get(BASELINE)) for t in trials) == 1
    assert len({t.user_attrs[WORKER] for t in trials}) == 2
    # Each trial ran once, in the folder of the worker that ran it: one run per trial folder.
    runs = sorted(
        path.parent.parent.name
        for path in tmp_path.glob("worker*/runs/tune/*/trials/*/lightning_logs/version_*")
    )
    assert runs == sorted(f"{t.number:04d}" for t in trials)
