"""The documentation site, built once per test session the way `make docs` builds it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO_ROOT

#: A cold build executes the notebooks (about a minute on a 2-core CPU); a warm one reuses
#: them from .cache/docs/ and takes seconds.
BUILD_TIMEOUT_S = 600


@dataclass(frozen=True)
class BuiltSite:
    """A strict build of the site: where it went and what the build printed."""

    root: Path
    returncode: int
    output: str

    def page(self, path: str) -> str:
        """The HTML of a page, by its path in the site (``guides/gr-loss/``)."""
        return (self.root / path / "index.html").read_text()


#: The session's build, shared by the test modules of docs/.
_built: list[BuiltSite] = []


def build_site(tmp_path_factory: pytest.TempPathFactory) -> BuiltSite:
    """Build the site strictly into a temporary folder (the command of the Makefile's docs)."""
    if _built:
        return _built[0]
    pytest.importorskip("mkdocs", reason='building the documentation needs the "docs" extra')
    root = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(root)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    _built.append(BuiltSite(root, result.returncode, result.stdout + result.stderr))
    return _built[0]
