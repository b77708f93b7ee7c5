"""What the fast profile does to accuracy: demo test mAP of the paper and the fast profile.

Trains with GR Loss over the same seeds, tests each run's best-val
checkpoint, and prints mean +- std of test mAP and the wall time of each
profile, runs interleaved:

- ``paper``: ``configs/demo.yaml`` (fp32; the demo's own batch of 32);
- ``fast``: ``configs/demo.yaml`` + ``configs/fast.yaml`` (bf16-mixed,
  channels_last, batch 64, ...);
- ``bf16``: the paper profile with only bf16-mixed and channels_last, to
  separate the precision's effect from the batch size's.

    python bench/profile_accuracy.py [--seeds 0 1 2] [--profiles paper fast bf16] [--epochs 12]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import cpu_name, print_load, print_ratio  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def train_and_test(profile: str, seed: int, work: Path, extra: list[str]) -> dict[str, float]:
    """Fit one profile on the demo, test its best checkpoint; test mAP and seconds."""
    from spml_lightning.cli import run_cli

    args = ["--config", str(REPO / "configs" / "demo.yaml")]
    if profile == "fast":
        args += ["--config", str(REPO / "configs" / "fast.yaml")]
    if profile == "bf16":
        args += ["--trainer.precision", "bf16-mixed", "--model.channels_last", "true"]
    args += [
        "--seed_everything",
        str(seed),
        "--trainer.default_root_dir",
        str(work / f"{profile}-{seed}"),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        *extra,
    ]
    start = time.perf_counter()
    cli = run_cli(["fit", *args])
    (result,) = cli.trainer.test(
        cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False
    )
    seconds = time.perf_counter() - start
    print(
        f"#   {profile} seed {seed}: test mAP {result['test/mAP']:.2f} ({seconds:.0f} s)",
        flush=True,
    )
    return {"mAP": result["test/mAP"], "seconds": seconds}


def main_bench(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--profiles", nargs="+", choices=["paper", "fast", "bf16"], default=["paper", "fast"]
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="override trainer.max_epochs (demo: 12)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="loader workers of both profiles (default: the configs', capped at the cores)",
    )
    parser.add_argument("--accelerator", default="auto")
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    extra = ["--trainer.accelerator", args.accelerator]
    if args.epochs:
        extra += ["--trainer.max_epochs", str(args.epochs)]
    workers = {
        "paper": args.workers or min(2, cores),
        "bf16": args.workers or min(2, cores),
        "fast": args.workers or min(14, max(1, cores - 2)),
    }
    print(f"# profile_accuracy: demo, GR Loss, seeds {args.seeds}; machine: {cpu_name()}")
    print_load("start")
    results: dict[str, list[dict[str, float]]] = {profile: [] for profile in args.profiles}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for profile in args.profiles if seed % 2 == 0 else reversed(args.profiles):
                run_extra = [*extra, "--data.num_workers", str(workers[profile])]
                results[profile].append(train_and_test(profile, seed, Path(tmp), run_extra))
    print_load("end")
    print("\n| profile | test mAP (mean ± std) | seconds per run (median) |\n|---|---|---|")
    summary = {}
    for profile, runs in results.items():
        maps = [r["mAP"] for r in runs]
        std = statistics.stdev(maps) if len(maps) > 1 else 0.0
        summary[profile] = (statistics.mean(maps), statistics.median(r["seconds"] for r in runs))
        print(f"| {profile} | {summary[profile][0]:.2f} ± {std:.2f} | {summary[profile][1]:.0f} |")
    for profile in summary:
        if profile != "paper" and "paper" in summary:
            print_ratio(
                f"demo test mAP, {profile} - paper (points)",
                summary[profile][0] - summary["paper"][0],
            )
            print_ratio(
                f"demo wall time, paper/{profile}", summary["paper"][1] / summary[profile][1]
            )


if __name__ == "__main__":
    main_bench()
