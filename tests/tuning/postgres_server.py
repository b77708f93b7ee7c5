"""A throw-away PostgreSQL server on a loopback port, for the tests of shared studies.

Debian's ``postgresql`` package (``.ci/run`` installs it) puts ``initdb`` and
``pg_ctl`` in ``/usr/lib/postgresql/<version>/bin``. ``initdb`` refuses to run as
root, so as root the cluster is made and served as the package's ``postgres``
user, in a folder of its own under the system temp folder (pytest's ``tmp_path``
sits below a folder only root may enter).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["postgres_binaries", "running_postgres"]


def postgres_binaries() -> tuple[str, str] | str:
    """``(initdb, pg_ctl)``, or the reason they cannot be used (a string)."""
    folders = [str(Path(p).parent) for p in filter(None, [shutil.which("pg_ctl")])]
    folders += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for folder in folders:
        initdb, pg_ctl = Path(folder, "initdb"), Path(folder, "pg_ctl")
        if initdb.is_file() and pg_ctl.is_file():
            if os.geteuid() == 0:
                try:
                    pwd.getpwnam("postgres")
                except KeyError:
                    return "running as root without a 'postgres' user to run the server as"
            return str(initdb), str(pg_ctl)
    return "PostgreSQL's initdb and pg_ctl are not installed (Debian: apt-get install postgresql)"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_postgres(initdb: str, pg_ctl: str) -> Iterator[str]:
    """A server with a trusted superuser ``tune``; yields its URL; stops and removes it after."""
    folder = Path(tempfile.mkdtemp(prefix="spml-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    try:
        subprocess.run(
            [*as_user, initdb, "-D", str(data), "-U", "tune", "--auth=trust", "-E", "UTF8"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-l", str(folder / "server.log"), "-o", options,
             "-w", "start"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        try:
            yield f"postgresql://tune@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True, timeout=120,
            )  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
