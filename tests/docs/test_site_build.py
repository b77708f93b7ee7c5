"""The documentation site builds strictly, documents every public name and shows generated,
real content: result tables from bench/results/, executed notebooks, their figures."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import statistics
import zlib

import pytest

import spml_lightning

from conftest import REPO_ROOT
from docs_site import BuiltSite, build_site

# One worker builds the site once for every docs test (pytest-xdist, --dist loadgroup).
pytestmark = pytest.mark.xdist_group("docs")

#: The subpackages whose __all__ the reference must cover (the issue's list); any other
#: subpackage with an __all__ is found and covered too.
API_PACKAGES = {
    "spml_lightning",
    "spml_lightning.losses",
    "spml_lightning.data",
    "spml_lightning.data.demo",
    "spml_lightning.analysis",
    "spml_lightning.training",
    "spml_lightning.features",
    "spml_lightning.tuning",
}


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> BuiltSite:
    return build_site(tmp_path_factory)


def inventory(site: BuiltSite) -> dict[str, str]:
    """The objects.inv mkdocstrings writes: documented name -> URL of its entry."""
    header, _, body = (site.root / "objects.inv").read_bytes().partition(b"zlib.\n")
    assert header.startswith(b"# Sphinx inventory version 2"), header
    entries = {}
    for line in zlib.decompress(body).decode().splitlines():
        name, _domain, _priority, uri, _display = line.split(" ", 4)
        entries[name] = uri.replace("$", name)
    return entries


def packages_with_all() -> set[str]:
    found = {"spml_lightning"}
    for info in pkgutil.walk_packages(spml_lightning.__path__, "spml_lightning."):
        if info.ispkg and hasattr(importlib.import_module(info.name), "__all__"):
            found.add(info.name)
    return found


def test_strict_build_succeeds_without_a_warning(site):
    assert site.returncode == 0, site.output[-5000:]
    complaints = [line for line in site.output.splitlines() if re.match(r"(WARNING|ERROR)\b", line)]
    assert not complaints, "\n".join(complaints)
    assert (site.root / "index.html").is_file() and (site.root / "search" / "search_index.json")


def test_every_public_name_has_an_entry_in_the_api_reference(site):
    packages = packages_with_all()
    assert packages >= API_PACKAGES, API_PACKAGES - packages
    entries = inventory(site)
    missing, unrendered = [], []
    for package in sorted(packages):
        module = importlib.import_module(package)
        for name in module.__all__:
            # Under the package's path, or under the object's own (a function that shares its
            # name with its module, as analysis.analyze, is rendered from that module).
            obj = getattr(module, name)
            paths = [f"{package}.{name}", f"{getattr(obj, '__module__', '')}.{name}"]
            uri = next((entries[path] for path in paths if path in entries), None)
            if uri is None:
                missing.append(f"{package}.{name}")
                continue
            page, _, anchor = uri.partition("#")
            assert page.startswith("reference/"), uri
            html = (site.root / page / "index.html").read_text()
            if f'id="{anchor}" class="doc doc-heading"' not in html:
                unrendered.append(uri)
    assert not missing, f"public names without an API reference entry: {missing}"
    assert not unrendered, f"API reference entries that render no heading: {unrendered}"


def test_docstrings_render_without_sphinx_markup(site):
    # The docstrings' :func:`x` roles become links (docs/hooks/sphinx_roles.py), not text.
    for page in sorted((site.root / "reference").rglob("index.html")):
        roles = re.findall(r":(?:class|func|meth|attr|data|mod|exc|obj):", page.read_text())
        assert not roles, (page.relative_to(site.root), roles[:5])
    losses = site.page("reference/losses/")
    assert 'href="#spml_lightning.losses.FrameworkLoss"><code>FrameworkLoss</code></a>' in losses


def test_result_tables_are_generated_from_bench_results(site):
    for page, results in [
        ("results/demo/", "cpu_demo_table.jsonl"),
        ("results/demo/", "cpu_compare_losses_6epochs.jsonl"),
        ("results/demo/", "cpu_demo_losses.jsonl"),
        ("results/demo/", "cpu_demo_observe_frequency.jsonl"),
    ]:
        html = site.page(page)
        assert "results-table:" not in html, page  # every marker was replaced
        runs = [json.loads(line) for line in (REPO_ROOT / "bench" / "results" / results).open()]
        for loss in {run["loss"] for run in runs}:
            values = [run["test_map"] for run in runs if run["loss"] == loss]
            cell = f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"
            assert cell in html, (page, loss, cell)
    # The demo page's paired summaries, computed from the same file at build time.
    demo = site.page("results/demo/")
    assert "results-gap:" not in demo and "results-order:" not in demo
    gap = r"GR - AN, paired over \d+ seeds: [+-][0-9.]+ ± [0-9.]+ \(standard error"
    assert re.search(gap, demo)
    assert re.search(r"full &gt; GR &gt; AN on \d+ of \d+ seeds", demo)
    # The backbones table, as bench/backbones.py wrote it.
    rows = (REPO_ROOT / "bench" / "results" / "cpu_backbones.md").read_text().splitlines()[2:]
    backbones = site.page("results/backbones/")
    for row in rows:
        assert f"<code>{row.split('`')[1]}</code>" in backbones, row
    assert "8&lt;" not in backbones and "--8<--" not in backbones
    # The text outputs of the benchmarks, included as they are.
    first_line = (REPO_ROOT / "bench" / "results" / "cpu_loader_memory.txt").open().readline()
    assert first_line.split()[0] in site.page("results/performance/")
    cost = (REPO_ROOT / "bench" / "results" / "cpu_prior_cost_demo.txt").read_text().splitlines()
    ratios = [line.split()[-1] for line in cost if line.startswith("ratio")]
    assert len(ratios) == 2 and all(r in site.page("results/performance/") for r in ratios)
    study = (REPO_ROOT / "bench" / "results" / "cpu_tune_demo_20.txt").read_text().splitlines()
    (gap,) = [line for line in study if line.startswith("tuned - default")]
    assert gap.split(":")[1].split("(")[0].strip() in site.page("results/demo/")


def test_notebooks_are_rendered_with_outputs_and_feed_the_guides(site):
    inspect = site.page("notebooks/inspect_checkpoint/")
    gradients = site.page("notebooks/loss_gradients/")
    # The figures the notebook tests count (the build sets no sweep folder: one fewer), as
    # images in the pages; and printed outputs.
    assert inspect.count('src="data:image/png;base64,') == 4
    assert gradients.count('src="data:image/png;base64,') == 4
    assert "mAP (test):" in inspect and "Wasserstein distance" in inspect
    assert "autograd vs closed form:" in gradients
    # No build-environment noise among the outputs (docs/hooks/notebook_outputs.py).
    assert "Warning:" not in inspect and "Warning:" not in gradients
    # The GR Loss guide shows figures the notebooks drew at this build.
    figures = re.findall(r'<img [^>]*src="([^"]+\.png)"', site.page("guides/gr-loss/"))
    assert len(figures) == 5, figures
    for figure in figures:
        assert (site.root / "guides" / "gr-loss" / figure).resolve().is_file(), figure


def test_ci_builds_the_documentation_strictly():
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = re.search(r"^docs:\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert '-m pip install -q -e ".[docs]"' in recipe and "-m mkdocs build --strict" in recipe
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert ci.index("make test") < ci.index("make docs PYTHON=")
    assert re.search(r"^strict: true$", (REPO_ROOT / "mkdocs.yml").read_text(), re.M)
