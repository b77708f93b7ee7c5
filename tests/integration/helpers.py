"""Running the project the way users do: the installed ``spml`` executable, in a shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

#: The scripts pip installed beside the interpreter that runs the tests (the user's venv).
SCRIPTS = Path(sys.executable).parent


#: Lines of third-party noise that a normal run must not print (issue: the user's first five
#: minutes).
NOISE: tuple[str, ...] = (
    "litlogger",
    "litmodels",
    "LeafSpec",
    "The dirpath has changed",
    " object at 0x",
)


def installed_spml() -> Path:
    """The ``spml`` console script of this environment; fails (never skips) when it is missing."""
    path = SCRIPTS / "spml"
    assert path.is_file(), (
        f"{path} does not exist: the tests run the installed command; install the project into the "
        f"test environment first (pip install -e '.[test]', as `make test` does)."
    )
    return path


def user_env() -> dict[str, str]:
    """The environment of a user whose venv is active.

    Its scripts come first on PATH; no test-only paths.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPML_TRACEBACK")}
    env["PATH"] = os.pathsep.join([str(SCRIPTS), env.get("PATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run(
    command: list[str] | str, cwd: Path, timeout: float = 300, **kwargs
) -> subprocess.CompletedProcess:
    """Run a command (a list, or a bash command line) as a user would, capturing its output."""
    shell = isinstance(command, str)
    return subprocess.run(
        ["bash", "-c", command] if shell else command,
        cwd=cwd,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def link_repo_files(folder: Path, *names: str) -> None:
    """Make ``folder`` look like a checkout for relative paths such as ``configs/demo.yaml``."""
    for name in names:
        (folder / name).symlink_to(REPO_ROOT / name)


def describe(result: subprocess.CompletedProcess) -> str:
    """A failed command's exit status and the ends of its output, for assertion messages."""
    return (
        f"exit {result.returncode}\n--- stdout ---\n{result.stdout[-3000:]}\n"
        f"--- stderr ---\n{result.stderr[-3000:]}"
    )
