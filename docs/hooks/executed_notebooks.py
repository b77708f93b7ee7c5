"""MkDocs hook: the notebooks as pages with real outputs, and the figures they draw.

Before the build, docs/hooks/notebook_outputs.py executes notebooks/*.ipynb on a tiny demo
run (about a minute on a 2-core CPU). Its outputs are kept in ``.cache/docs/<key>/``, where
the key hashes everything they depend on -- the package's sources, the notebooks, the demo
config, the script and the versions of the libraries that compute them -- so an unchanged
checkout reuses them and any change executes the notebooks again: the pages never show
outputs of other code.

The executed notebooks become the pages ``notebooks/<name>.ipynb`` (rendered by
mkdocs-jupyter), their figures ``figures/<notebook>/<section>.png`` (shown by the guides).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("notebook_outputs.py")
CACHE = REPO / ".cache" / "docs"

#: Libraries whose versions change what the notebooks print or draw.
LIBRARIES = ("torch", "torchvision", "lightning", "numpy", "matplotlib", "nbclient")


def inputs_key() -> str:
    """A digest of everything the notebook outputs depend on."""
    digest = hashlib.sha256()
    sources = [
        *sorted((REPO / "spml_lightning").rglob("*.py")),
        *sorted((REPO / "notebooks").glob("*.ipynb")),
        REPO / "configs" / "demo.yaml",
        SCRIPT,
    ]
    for path in sources:
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    for library in LIBRARIES:
        digest.update(f"{library}=={metadata.version(library)}".encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:16]


def notebook_outputs() -> Path:
    """The folder of the executed notebooks and their figures, made if not cached."""
    folder = CACHE / inputs_key()
    if (folder / "complete").is_file():
        return folder
    # Written into a folder of this process and renamed when complete, so that two builds at
    # once (a test session and `make docs`) never read or delete each other's half-written one.
    partial = CACHE / f"{folder.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(partial)], capture_output=True, text=True
    )
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise PluginError(
            f"executing the notebooks failed ({SCRIPT.relative_to(REPO)}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    (partial / "complete").touch()
    try:
        partial.rename(folder)
    except OSError:  # another build finished first: its outputs are the same inputs'
        shutil.rmtree(partial, ignore_errors=True)
    for other in CACHE.iterdir():  # outputs of other inputs are never used again
        if other.name != folder.name and ".partial-" not in other.name:
            shutil.rmtree(other, ignore_errors=True)
    return folder


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns the notebooks into pages
def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the executed notebooks and their figures to the site's files."""
    outputs = notebook_outputs()
    for kind in ("notebooks", "figures"):
        for path in sorted((outputs / kind).rglob("*")):
            if path.is_file():
                # A File whose source folder is the outputs' (not File.generated: mkdocs-jupyter
                # finds a notebook through its src_dir).
                uri = path.relative_to(outputs).as_posix()
                files.append(File(uri, str(outputs), config.site_dir, config.use_directory_urls))
    return files
