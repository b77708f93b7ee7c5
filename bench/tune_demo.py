"""What `spml tune` gains on a config: a study, then the best config against the config's own.

    python bench/tune_demo.py                                   # GR on the demo, 30 trials
    python bench/tune_demo.py --n_trials 60 --seeds 1 2 3 4 5 --results bench/results/x.json
    python bench/tune_demo.py -- --data.init_args.num_workers 0   # flags for every run

1. A study of ``--n_trials`` trials over ``--spaces`` (by default the loss's own
   space only, so that the gain is the loss's parameters'), every trial trained with
   the config's own seed and judged by its validation mAP (``spml tune``).
2. The study's ``best.yaml`` and the config itself, each fitted and tested on every
   seed of ``--seeds`` -- seeds other than the study's, so that the test does not
   reward a lucky seed the study picked -- and the test mAPs paired by seed: the
   gap, its standard error, and on how many seeds the tuned config is ahead.

Prints one line per run, the study's summary, then the paired gap (the ``check``
lines); ``--results`` also writes every run and the gap as JSON, with the commit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import (  # noqa: E402
    code_version,
    describe_gap,
    fit_then_test,
    paired_gap,
    print_check,
    quiet_run_flags,
)

REPO = Path(__file__).resolve().parent.parent


def fit_and_test(config: Path, seed: int, root: Path, extra: list[str]) -> float:
    """Fit ``config`` with ``seed``, test its best checkpoint; the test mAP."""
    return fit_then_test(["--config", str(config), *extra, "--seed_everything", str(seed)], root)


def run_study(config: Path, args: argparse.Namespace, root: Path, extra: list[str]) -> Path:
    """Run the study; the path of its best.yaml."""
    from spml_lightning.cli import run_cli

    run_cli(
        [
            "tune",
            "--config",
            str(config),
            *extra,
            *quiet_run_flags(root),
            "--tune.n_trials",
            str(args.n_trials),
            "--tune.spaces",
            json.dumps(args.spaces),
            "--tune.seed",
            str(args.study_seed),
            "--tune.study_name",
            "bench",
        ]  # fmt: skip
    )
    return root / "tune" / "bench" / "best.yaml"


def main_bench(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--n_trials", type=int, default=30)
    parser.add_argument("--spaces", nargs="*", default=["loss"])
    parser.add_argument("--study_seed", type=int, default=0, help="the sampler's seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--work", type=Path, default=Path("runs") / "bench_tune_demo")
    parser.add_argument("--results", type=Path, default=None, help="write the runs as JSON")
    parser.add_argument("extra", nargs="*", help="after --: flags for every run")
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("--seeds: a paired gap needs two or more seeds.")
    shutil.rmtree(args.work, ignore_errors=True)
    started = time.perf_counter()
    best = run_study(args.config, args, args.work / "study", args.extra)
    runs = []
    for seed in args.seeds:
        for side, config in (("default", args.config), ("tuned", best)):
            test_map = fit_and_test(config, seed, args.work / f"{side}-{seed}", args.extra)
            runs.append({"loss": side, "seed": seed, "test_map": test_map})
            print(f"#   {side} seed {seed}: test mAP {test_map:.2f}", flush=True)
    gap = paired_gap(runs, "tuned", "default")
    print(describe_gap("tuned", "default", gap))
    print_check("test mAP, tuned - default, mean over paired seeds", gap["mean"])
    print_check("test mAP, its standard error", gap["se"])
    record = {
        "config": str(args.config),
        "n_trials": args.n_trials,
        "spaces": args.spaces,
        "study_seed": args.study_seed,
        "best_yaml": best.read_text(),
        "runs": runs,
        "gap": gap,
        "seconds": round(time.perf_counter() - started, 1),
        "commit": code_version(),
    }
    if args.results is not None:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main_bench()
