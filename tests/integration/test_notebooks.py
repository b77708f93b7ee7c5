"""The notebooks run top to bottom on a tiny demo checkpoint and are committed without outputs."""

import os

import pytest

from conftest import REPO_ROOT

nbformat = pytest.importorskip("nbformat", reason='the notebook tests need the "notebooks" extra')
nbclient = pytest.importorskip("nbclient", reason='the notebook tests need the "notebooks" extra')

NOTEBOOKS = REPO_ROOT / "notebooks"


def read(name: str):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def with_parameters(notebook, **values):
    """Override the parameters cell (tagged "parameters") by appending assignments to it."""
    (cell,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source += "\n# Overridden by the test\n" + "\n".join(
        f"{k} = {v!r}" for k, v in values.items()
    )
    return notebook


def execute(notebook, monkeypatch):
    # The kernel imports this checkout's package and draws without a display.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    )
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(
        notebook,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    return notebook


def outputs_of(notebook, kind: str) -> list:
    return [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if kind in o.get("data", {})
    ]


@pytest.mark.parametrize("name", ["inspect_checkpoint.ipynb", "loss_gradients.ipynb"])
def test_notebooks_are_committed_without_outputs(name):
    notebook = read(name)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])  # parameters at the top


def test_inspect_checkpoint_notebook(tiny_run, monkeypatch):
    notebook = with_parameters(
        read("inspect_checkpoint.ipynb"),
        CONFIG=str(REPO_ROOT / "configs" / "demo.yaml"),
        CKPT_PATH=str(tiny_run["best"]),
        OVERRIDES=tiny_run["args"][2:],
        NUM_IMAGES=4,
        SWEEP_ROOT=str(tiny_run["runs"]),
    )
    execute(notebook, monkeypatch)
    text = "".join(
        o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs
    )
    assert f"mAP (test): {tiny_run['test_map']:.2f}" in text
    assert "Wasserstein distance" in text and "q2 = 0.01: test mAP" in text
    assert any(
        "missing positives" in o["data"]["text/markdown"]
        for o in outputs_of(notebook, "text/markdown")
    )
    # FN rate, distinguishing ability, gradients, predictions, sweep.
    assert len(outputs_of(notebook, "image/png")) == 5


def test_inspect_checkpoint_notebook_shows_the_priors_quality(
    tiny_run, tiny_demo_root, tmp_path, monkeypatch
):
    from prior_files import write_scores_csv

    scores, _ = write_scores_csv(tmp_path / "scores.csv", tiny_demo_root, target_map=80.0)
    notebook = with_parameters(
        read("inspect_checkpoint.ipynb"),
        CONFIG=str(REPO_ROOT / "configs" / "demo.yaml"),
        CKPT_PATH=str(tiny_run["best"]),
        OVERRIDES=[*tiny_run["args"][2:], "--data.init_args.prior", str(scores)],
        NUM_IMAGES=2,
    )
    execute(notebook, monkeypatch)
    text = "".join(
        o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "mAP of its scores" in text and "This run's datamodule has no prior" not in text
    assert any(
        "| AP of the scores |" in o["data"]["text/markdown"]
        for o in outputs_of(notebook, "text/markdown")
    )


def test_loss_gradients_notebook(monkeypatch):
    notebook = execute(
        with_parameters(read("loss_gradients.ipynb"), POINTS=49, MAX_EPOCHS=4, EPOCH=3), monkeypatch
    )
    text = "".join(
        o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs
    )
    difference = float(text.split("autograd vs closed form: ")[1].split()[0])
    assert difference < 1e-5
    assert len(outputs_of(notebook, "image/png")) == 4  # all losses, over q2, over q3, over epochs
