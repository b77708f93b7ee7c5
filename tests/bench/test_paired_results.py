"""The paired summaries of compare_losses.py and the docs' results pages (bench/harness.py)."""

from __future__ import annotations

import pytest

RUNS = [
    {"loss": "full", "seed": 0, "test_map": 70.0},
    {"loss": "GR", "seed": 0, "test_map": 60.0},
    {"loss": "AN", "seed": 0, "test_map": 55.0},
    {"loss": "full", "seed": 1, "test_map": 71.0},
    {"loss": "GR", "seed": 1, "test_map": 58.0},
    {"loss": "AN", "seed": 1, "test_map": 59.0},  # AN ahead of GR on this seed
    {"loss": "full", "seed": 2, "test_map": 69.0},
    {"loss": "GR", "seed": 2, "test_map": 62.0},
    {"loss": "AN", "seed": 2, "test_map": 54.0},
    {"loss": "GR", "seed": 3, "test_map": 61.0},  # no AN run of seed 3: not paired
]


def test_paired_gap_pairs_by_seed_over_the_seeds_both_ran(bench_module):
    gap = bench_module("harness").paired_gap(RUNS, "GR", "AN")
    # Differences +5, -1, +8 (seed 3 has no AN run).
    assert gap["n"] == 3 and gap["ahead"] == 2
    assert gap["mean"] == pytest.approx(4.0)
    assert gap["std"] == pytest.approx(4.5825757, abs=1e-6)
    assert gap["se"] == pytest.approx(4.5825757 / 3**0.5, abs=1e-6)


def test_paired_gap_refuses_fewer_than_two_pairs(bench_module):
    with pytest.raises(ValueError, match="two or more seeds both ran, found 1"):
        bench_module("harness").paired_gap(RUNS[:3] + RUNS[-1:], "GR", "AN")


def test_describe_gap_states_the_gap_its_standard_error_and_the_seeds(bench_module):
    harness = bench_module("harness")
    line = harness.describe_gap("GR", "AN", harness.paired_gap(RUNS, "GR", "AN"))
    assert line == (
        "GR - AN, paired over 3 seeds: +4.00 ± 4.58 (standard error 2.65; the gap is 1.5x "
        "its standard error); GR ahead on 2 of 3 seeds"
    )


def test_order_by_seed_counts_the_seeds_where_the_whole_order_holds(bench_module):
    order_by_seed = bench_module("harness").order_by_seed
    assert order_by_seed(RUNS, ["full", "GR", "AN"]) == "full > GR > AN on 2 of 3 seeds"
    assert order_by_seed(RUNS, ["full", "GR"]) == "full > GR on 3 of 3 seeds"
    assert order_by_seed(RUNS, ["AN", "full"]) == "AN > full on 0 of 3 seeds"


def test_order_by_seed_refuses_names_that_ran_no_common_seed(bench_module):
    with pytest.raises(
        ValueError, match=r"no seed was run by every one of full, GR, an \(losses run: AN"
    ):
        bench_module("harness").order_by_seed(RUNS, ["full", "GR", "an"])


def test_describe_gap_of_identical_runs_says_so_instead_of_an_infinite_ratio(bench_module):
    # A tuned config that is the default (the study's best was trial 0) ties on every seed.
    harness = bench_module("harness")
    runs = [
        {"loss": name, "seed": seed, "test_map": 60.0 + seed} for name in "AB" for seed in (1, 2)
    ]
    line = harness.describe_gap("A", "B", harness.paired_gap(runs, "A", "B"))
    assert "+0.00 ± 0.00 (standard error 0.00; no difference on any seed); A ahead on 0" in line
    shifted = [{**r, "test_map": r["test_map"] + (1 if r["loss"] == "A" else 0)} for r in runs]
    line = harness.describe_gap("A", "B", harness.paired_gap(shifted, "A", "B"))
    assert "+1.00 ± 0.00 (standard error 0.00; the same gap on every seed)" in line
    assert "inf" not in line
