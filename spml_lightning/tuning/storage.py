"""Where a study lives, and the trials its dead workers left running.

``--tune.storage`` is an SQLAlchemy URL (SQLite by default, PostgreSQL or MySQL
for many machines) or ``journal:<file>``. An SQL storage records a heartbeat
of every running trial: a trial whose worker stopped beating for the grace
period (a machine that died) is marked failed and its parameters tried again.
A worker that crashed on this machine is found at once instead: each trial
records its worker (host, process id and start time), and a new ``spml tune``
fails and retries the running trials whose worker process is gone.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from spml_lightning.console import UsageError
from spml_lightning.tuning.options import TuneOptions

__all__ = [
    "JOURNAL_PREFIX",
    "RETRY_OF",
    "WORKER",
    "display_url",
    "fail_dead_local_trials",
    "open_storage",
    "storage_url",
    "worker_id",
]

#: ``--tune.storage journal:<file>``: Optuna's journal file storage.
JOURNAL_PREFIX = "journal:"

#: The user attribute naming a trial's worker: ``<host>:<pid>:<process start time>``.
WORKER = "worker"

#: The user attribute of a trial re-run after its worker died: the number of the trial it repeats.
RETRY_OF = "retry_of"

#: Seconds an SQLite writer waits for another worker's lock before failing.
_SQLITE_LOCK_TIMEOUT = 60

#: Tries at opening an SQL storage whose tables other workers are creating at the same time.
_CREATION_ATTEMPTS = 5


def storage_url(options: TuneOptions, study_dir: Path) -> str:
    """``--tune.storage``, or the default SQLite file in the study's folder (created)."""
    if options.storage:
        return options.storage
    study_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(study_dir / 'study.db').resolve()}"


def display_url(url: str) -> str:
    """``url`` without its password, for messages."""
    if url.startswith(JOURNAL_PREFIX):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: shown as given, it names no password
        return url


def open_storage(url: str, options: TuneOptions) -> optuna.storages.BaseStorage:
    """The Optuna storage at ``url``, reachable.

    Raises:
        UsageError: One line naming the URL, when it is malformed, needs a driver that is
            not installed, or cannot be reached.
    """
    try:
        if url.startswith(JOURNAL_PREFIX):
            path = Path(url[len(JOURNAL_PREFIX) :]).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        return _sql_storage(url, options)
    except ImportError as error:
        raise UsageError(
            f"cannot open the study storage {display_url(url)}: its database driver is not "
            f'installed ({error.__cause__ or error}); pip install "spml_lightning[tune]" '
            "installs PostgreSQL's (psycopg), others come with their database's package."
        ) from None
    except Exception as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UsageError(
            f"cannot open the study storage {display_url(url)}: {reason} (check --tune.storage: "
            "the server, its address and port, the database and the user)."
        ) from None


def _sql_storage(url: str, options: TuneOptions) -> RDBStorage:
    """Optuna's SQL storage, with heartbeats; tables another worker is creating are waited for.

    Workers started together each create the study's tables when they find none, and
    all but one fail on the others' ("table trials already exists" in SQLite, a duplicate
    key in PostgreSQL's catalogue): the storage is opened again once the tables exist.
    """
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": _SQLITE_LOCK_TIMEOUT}}
    for attempt in range(_CREATION_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=options.heartbeat_interval,
                    grace_period=options.grace_period,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                )
        except SQLAlchemyError as error:
            racing = isinstance(error, IntegrityError) or "already exists" in str(error)
            if not racing or attempt + 1 == _CREATION_ATTEMPTS:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _process_start(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot ("" where unknown)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return fields[19]  # field 22 of stat; the first two (pid, comm) are before the ")"


def worker_id(pid: int | None = None) -> str:
    """This process's worker name, ``<host>:<pid>:<start time>`` (or process ``pid``'s)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_process_start(pid)}"


def _is_dead_local_worker(worker: str) -> bool:
    host, _, rest = worker.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    # A recycled process id is another process: its start time differs.
    return bool(start) and _process_start(int(pid)) != start


def fail_dead_local_trials(study: optuna.Study) -> list[int]:
    """Fail the running trials of workers on this machine that have died; queue them again.

    Returns:
        The numbers of the trials failed.
    """
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER)
        if not worker or not _is_dead_local_worker(worker):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # another worker got there first
            continue
        failed.append(trial.number)
        attrs = {k: v for k, v in trial.user_attrs.items() if k != WORKER}
        if RETRY_OF not in attrs:  # retried once: a trial that kills its worker twice stays failed
            study.enqueue_trial(trial.params, user_attrs={**attrs, RETRY_OF: trial.number})
    return failed
