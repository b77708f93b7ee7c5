"""MkDocs hook: result tables generated from the raw results in bench/results/.

A page asks for a table with a line of its own::

    <!-- results-table: bench/results/cpu_demo_table.jsonl -->

and gets, in its place, the table of that file: one row per loss (in the file's order),
mean ± standard deviation of the test mAP over the seeds and each seed's value. The files
are what bench/compare_losses.py appends, one JSON object per run (``loss``, ``seed``,
``epochs``, ``test_map``), so the published numbers are the measured ones, never copied
by hand. A missing or empty file fails the build.

Two more markers summarise a comparison paired by seed, with the functions
``bench/compare_losses.py`` prints them with (``bench/harness.py``)::

    <!-- results-gap: bench/results/cpu_demo_table.jsonl GR AN -->
    <!-- results-order: bench/results/cpu_demo_table.jsonl full GR AN -->

give "GR - AN, paired over 5 seeds: ... standard error ..." and "full > GR > AN on
5 of 5 seeds".
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

REPO = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- results-table: (?P<path>\S+) -->$", re.M)
PAIRED = re.compile(
    r"^<!-- results-(?P<kind>gap|order): (?P<path>\S+) (?P<losses>[^>]+?) -->$", re.M
)
sys.path.insert(0, str(REPO / "bench"))
from harness import describe_gap, order_by_seed, paired_gap  # noqa: E402

#: How a registry name reads in a table, where it needs more than the name.
DISPLAY_NAMES = {"full": "full labels (upper bound)"}


def read_runs(path: Path) -> list[dict]:
    """The runs recorded in a JSON-lines results file."""
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not runs:
        raise PluginError(f"{path.relative_to(REPO)} records no run")
    return runs


def results_table(runs: list[dict]) -> str:
    """Markdown table: per loss, test mAP mean ± std over its seeds, then each seed's value."""
    seeds = sorted({run["seed"] for run in runs})
    losses = list(dict.fromkeys(run["loss"] for run in runs))
    epochs = ", ".join(str(e) for e in sorted({run["epochs"] for run in runs}))
    lines = [
        f"| loss | test mAP (mean ± std, {len(seeds)} seeds) | "
        + " | ".join(f"seed {seed}" for seed in seeds)
        + " |",
        "|---|---|" + "---|" * len(seeds),
    ]
    for loss in losses:
        by_seed = {run["seed"]: run["test_map"] for run in runs if run["loss"] == loss}
        values = list(by_seed.values())
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        cells = [f"{by_seed[seed]:.2f}" if seed in by_seed else "--" for seed in seeds]
        lines.append(
            f"| {DISPLAY_NAMES.get(loss, loss)} | {statistics.mean(values):.2f} ± {spread:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + f"\n\n*{len(runs)} runs of {epochs} epochs each.*"


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Replace every results-table marker of a page by the table of its file."""

    def runs_of(match: re.Match) -> list[dict]:
        path = REPO / match["path"]
        if not path.is_file():
            raise PluginError(f"{page.file.src_uri}: no results file {match['path']}")
        return read_runs(path)

    def table(match: re.Match) -> str:
        return results_table(runs_of(match)) + f" Generated from `{match['path']}`."

    def paired(match: re.Match) -> str:
        runs, losses = runs_of(match), match["losses"].split()
        if match["kind"] == "gap" and len(losses) != 2:
            raise PluginError(f"{page.file.src_uri}: results-gap takes two losses, got {losses}")
        try:
            if match["kind"] == "order":
                return order_by_seed(runs, losses) + "."
            return describe_gap(*losses, paired_gap(runs, *losses)) + "."
        except ValueError as err:
            raise PluginError(f"{page.file.src_uri}: {err}") from err

    return PAIRED.sub(paired, MARKER.sub(table, markdown))
