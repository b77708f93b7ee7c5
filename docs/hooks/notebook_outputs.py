"""Execute the notebooks of notebooks/ on a tiny demo run, for the documentation site.

``python docs/hooks/notebook_outputs.py OUTPUT_DIR`` trains configs/demo.yaml at test sizes
(the demo data at 32 px, 2 short epochs: seconds on a CPU), executes both notebooks with their
parameters pointed at that run, and writes into OUTPUT_DIR:

* ``notebooks/<name>.ipynb`` -- the executed notebooks, outputs included;
* ``figures/<name>/<section>.png`` -- every image they drew, named after the notebook section
  (the Markdown heading above the cell) it was drawn in, for the guides to show.

The docs build (docs/hooks/executed_notebooks.py) runs this in a subprocess, so Lightning's
and Jupyter's console output stays out of the build log unless something fails. The notebooks
in the repository stay without outputs (tests/integration/test_notebooks.py checks that).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat
from markdown.extensions.toc import slugify

REPO = Path(__file__).resolve().parents[2]

#: Flags that shrink configs/demo.yaml to seconds on a CPU: the notebooks' outputs are real, the
#: model behind them is a 2-epoch toy (the rendered parameters cell says so).
DEMO_RUN_FLAGS: tuple[str, ...] = (
    "--trainer.max_epochs", "2",
    "--trainer.limit_train_batches", "4",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--data.init_args.num_train", "160",
    "--data.init_args.num_test", "80",
    "--data.init_args.render_size", "32",
    "--data.init_args.image_size", "32",
    "--data.init_args.num_workers", "0",
)  # fmt: skip


def child_env() -> dict[str, str]:
    """The environment of the training run and the kernels: this checkout, no display."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["MPLBACKEND"] = "Agg"
    # tqdm's note that Jupyter's progress widgets are not installed (the build needs none) is
    # about the build's environment, not the notebook: kept out of the rendered outputs.
    env["PYTHONWARNINGS"] = "ignore:IProgress not found"
    # One thread: tiny models, and on a busy machine two threads wait for each other at
    # every OpenMP barrier (tests/conftest.py).
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def start_demo_run(work: Path) -> tuple[list[str], subprocess.Popen]:
    """Start fitting the tiny demo run in ``work``; return its spml flags and the process.

    Paths are relative to the repository root, where the notebooks run, so that no absolute
    path of the build machine shows in the rendered outputs.
    """
    relative = work.relative_to(REPO)
    args = [
        "--config", "configs/demo.yaml",
        "--trainer.default_root_dir", str(relative / "runs"),
        "--data.init_args.root", str(relative / "data"),
        *DEMO_RUN_FLAGS,
    ]  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    with (work / "fit.log").open("w") as log:  # a file, not a pipe: nothing waits for a reader
        process = subprocess.Popen(
            [sys.executable, "-m", "spml_lightning", "fit", *args],
            cwd=REPO,
            env=child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return args, process


def best_checkpoint(work: Path, process: subprocess.Popen) -> Path:
    """Wait for the demo run; return its best checkpoint, relative to the repository root."""
    if process.wait() != 0:
        raise RuntimeError(f"the demo run failed:\n{(work / 'fit.log').read_text()[-6000:]}")
    (best,) = (work / "runs").rglob("best-*.ckpt")
    return best.relative_to(REPO)


def with_parameters(notebook: nbformat.NotebookNode, **values: object) -> nbformat.NotebookNode:
    """Override the notebook's parameters cell (tagged "parameters") by appending assignments."""
    (cell,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source += "\n# Set by the documentation build (docs/hooks/notebook_outputs.py)\n"
    cell.source += "\n".join(f"{name} = {value!r}" for name, value in values.items())
    return notebook


def execute(name: str, **parameters: object) -> nbformat.NotebookNode:
    """Execute ``notebooks/<name>`` with ``parameters``, as a user's Jupyter would."""
    notebook = with_parameters(nbformat.read(REPO / "notebooks" / name, as_version=4), **parameters)
    os.environ.update(child_env())  # the kernel inherits this process's environment
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(REPO / "notebooks")}},
    )
    client.execute()
    return notebook


def figures(notebook: nbformat.NotebookNode) -> dict[str, bytes]:
    """The PNG outputs of a notebook, by the slug of the heading of their section.

    A section that draws several figures numbers them (``<slug>``, ``<slug>-2``, ...).
    """
    found: dict[str, bytes] = {}
    section = "top"
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            headings = [line for line in cell.source.splitlines() if line.startswith("#")]
            if headings:
                section = slugify(headings[-1].lstrip("#").strip(), "-")
            continue
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png is None:
                continue
            name = section
            number = 2
            while name in found:
                name, number = f"{section}-{number}", number + 1
            found[name] = base64.b64decode(png)
    return found


def main(output: Path) -> None:
    """Train the tiny run, execute both notebooks and write their outputs into ``output``."""
    work = output / "demo-run"
    # The training run and the notebook that needs none share the CPU meanwhile.
    args, process = start_demo_run(work)
    executed = {"loss_gradients.ipynb": execute("loss_gradients.ipynb")}
    executed["inspect_checkpoint.ipynb"] = execute(
        "inspect_checkpoint.ipynb",
        CONFIG="configs/demo.yaml",
        CKPT_PATH=str(best_checkpoint(work, process)),
        OVERRIDES=args[2:],
        NUM_IMAGES=4,
    )
    for name, notebook in executed.items():
        (output / "notebooks").mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, output / "notebooks" / name)
        folder = output / "figures" / Path(name).stem
        folder.mkdir(parents=True, exist_ok=True)
        for slug, png in figures(notebook).items():
            (folder / f"{slug}.png").write_bytes(png)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
