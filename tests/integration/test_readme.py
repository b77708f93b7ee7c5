"""The README's and the guides' commands and snippets, run as written (only sizes shrink), so
an edit that breaks a documented command fails the suite.

The README keeps what a first visit needs (the Quickstart, one example, links into docs/);
the rest moved to the guides under docs/, read here where it now lives.
"""

from __future__ import annotations

import re
import tomllib

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT
from integration.helpers import (
    NOISE,
    describe,
    installed_spml,
    link_repo_files,
    run,
)
from probes import TINY_DEMO, TINY_DEMO_FLAGS

README = (REPO_ROOT / "README.md").read_text()
DOCS = REPO_ROOT / "docs"
#: The README is a front page; everything else is in the guides it links to.
README_MAX_LINES = 150


def section(title: str, text: str = README) -> str:
    """The text of the section ``## title`` (up to the next ``## `` heading or the end)."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"no section '## {title}'"
    return match.group(1)


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def quickstart_one_liners() -> list[str]:
    blocks = code_blocks(section("Quickstart"), "bash")
    lines = [
        line for block in blocks for line in block.splitlines() if line.startswith("pip install")
    ]
    assert len(lines) == 2, f"expected the two set-up one-liners in the Quickstart, found {lines}"
    return lines


def pyproject_extras() -> set[str]:
    return set(
        tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
            "optional-dependencies"
        ]
    )


def test_quickstart_demo_one_liner_runs_and_exits_0(tmp_path):
    demo_line = next(line for line in quickstart_one_liners() if "spml fit" in line)
    assert demo_line.startswith(
        "pip install -e . && spml fit --config configs/demo.yaml && spml test"
    ), demo_line
    installed_spml()  # fails with an explanation when the console script is not installed
    link_repo_files(tmp_path, "configs", "pyproject.toml", "README.md", "spml_lightning")
    # The command line runs exactly as written. `spml` gets the size flags appended; `pip` is
    # checked without installing (--dry-run): .ci/run installs for real into a fresh venv.
    prelude = (
        f'spml() {{ command spml "$@" {" ".join(TINY_DEMO_FLAGS)}; }}\n'
        'pip() { command python -m pip "$@" --dry-run --no-deps -q; }\n'
    )
    result = run(prelude + demo_line, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, describe(result)
    output = result.stdout + result.stderr
    assert "test/mAP" in output, describe(result)
    for noise in NOISE:
        assert noise not in output, f"{noise!r} printed:\n{output[-3000:]}"
    # Where the README says runs land, with TensorBoard events.
    version = tmp_path / "runs" / "demo" / "lightning_logs" / "version_0"
    assert list(version.glob("events.out.tfevents.*")), sorted(p.name for p in version.iterdir())
    assert (tmp_path / "data" / "demo" / "class_names.txt").is_file()


def test_quickstart_test_one_liner_is_what_make_test_runs():
    test_line = next(line for line in quickstart_one_liners() if "pytest" in line)
    assert test_line == 'pip install -e ".[test]" && python -m pytest -q -n auto --maxprocesses 4'
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = re.search(r"^test:\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert '-m pip install -q -e ".[test]"' in recipe, recipe
    assert test_line.split("&& python")[1] in recipe, recipe  # the same pytest flags
    assert "test" in pyproject_extras()
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()


def test_every_extra_the_readme_and_the_docs_install_exists():
    pages = [REPO_ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    named = {
        (page.relative_to(REPO_ROOT), group)
        for page in pages
        for group in re.findall(r'pip install -e "\.\[([a-z,]+)\]"', page.read_text())
    }
    assert {group for _, group in named} >= {"test", "docs", "notebooks", "timm"}, named
    missing = {
        (page, extra)
        for page, group in named
        for extra in group.split(",")
        if extra not in pyproject_extras()
    }
    assert not missing, f"pages install extras that pyproject.toml does not define: {missing}"


def test_readme_is_a_short_front_page_whose_links_exist():
    lines = README.splitlines()
    assert len(lines) < README_MAX_LINES, f"the README has {len(lines)} lines"
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if not link.startswith("https://")]
    missing = [link for link in local if not (REPO_ROOT / link).exists()]
    assert not missing, f"the README links to files that do not exist: {missing}"
    # Into every guide: a first visit finds the rest from here.
    guides = {f"docs/guides/{page.name}" for page in (DOCS / "guides").glob("*.md")}
    assert guides <= set(local), f"guides the README does not link to: {guides - set(local)}"
    assert "docs/getting-started.md" in local and "docs/reference/index.md" in local


@pytest.fixture
def tiny_sizes(monkeypatch, tmp_path, tiny_demo_root):
    """The snippets' objects at test sizes: the demo set of the test session, 1 short epoch."""
    import lightning.pytorch
    from PIL import Image

    import spml_lightning

    class DemoDataModule(spml_lightning.DemoDataModule):
        def __init__(self, root: str = "data/demo", **kwargs):
            sizes = {**TINY_DEMO, "image_size": 32, "num_workers": 0}
            super().__init__(root=str(tiny_demo_root), **{**sizes, **kwargs})

    class Trainer(lightning.pytorch.Trainer):
        def __init__(self, *args, max_epochs=None, **kwargs):
            kwargs = {
                "limit_train_batches": 2,
                "enable_progress_bar": False,
                "logger": False,
                **kwargs,
            }
            super().__init__(*args, max_epochs=1, default_root_dir=str(tmp_path), **kwargs)

    monkeypatch.setattr(spml_lightning, "DemoDataModule", DemoDataModule)
    monkeypatch.setattr(lightning.pytorch, "Trainer", Trainer)
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "photo.jpg")
    rng = np.random.default_rng(0)
    labels = (rng.random((50, 6)) < 0.3).astype(np.float64)
    labels[np.arange(50), rng.integers(0, 6, 50)] = 1
    # The names the snippets leave to the reader.
    return {
        "pil_image": Image.new("RGB", (50, 50), (10, 200, 10)),
        "uint8_tensor_chw": torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8),
        "epoch": 0,
        "max_epochs": 8,
        "logits": torch.randn(4, 6),
        "observed": torch.eye(6)[[0, 2, 5, 1]],
        "labels": labels,
    }


def test_readme_example_runs(tiny_sizes):
    (block,) = code_blocks(section("Example"), "python")
    namespace = dict(tiny_sizes)
    exec(compile(block, "README: Example", "exec"), namespace)
    assert namespace["value"].ndim == 0 and torch.isfinite(namespace["value"])


def test_using_it_from_python_snippets_run(tiny_sizes):
    guide = (DOCS / "guides" / "python.md").read_text()
    blocks = code_blocks(guide, "python")
    assert len(blocks) == 3, f"expected three Python snippets, found {len(blocks)}"

    namespace = dict(tiny_sizes)
    exec(compile(blocks[0], "docs/guides/python.md [1]", "exec"), namespace)
    assert namespace["probs"].shape == (3, 14) and torch.isfinite(namespace["probs"]).all()
    assert namespace["model"].class_names == namespace["data"].class_names

    namespace = dict(tiny_sizes)
    exec(compile(blocks[1], "docs/guides/python.md [2]", "exec"), namespace)
    assert namespace["value"].ndim == 0 and torch.isfinite(namespace["value"])

    namespace = dict(tiny_sizes)
    exec(compile(blocks[2], "docs/guides/python.md [3]", "exec"), namespace)
    observed, labels = namespace["observed"], namespace["labels"]
    assert observed.shape == labels.shape and (observed.sum(axis=1) == 1).all()
    assert len(namespace["train_idx"]) + len(namespace["val_idx"]) == len(labels)
