"""What the fast profile does to accuracy: demo test mAP, paper vs fast profile vs each change.

Trains each profile with the same seeds on the demo, tests each run's
best-val checkpoint, and reports per profile the test mAP (mean ± std), the
difference with the paper profile paired by seed (mean ± std, and its 95 %
t interval: whether the seeds show a gap, show it under a point, or cannot
tell, with about how many seeds would), and the wall time; runs are
interleaved seed by seed so that load from other processes hits every
profile alike. Profiles (each on ``configs/demo_resnet.yaml``):

- ``paper``: the demo config as it is (fp32, batch 32);
- ``fast``: + ``configs/fast.yaml`` (bf16-mixed with the head in fp32,
  channels_last, batch 64 with the square-root lr rule, ...);
- ``fast_v0``: the fast profile as it was before the lr rule and the fp32 head
  (``lr_scaling none``, ``fp32_head false``): what the rule and the head fix;
- ``fast_linear``: the fast profile with the linear lr rule instead of the
  square root (twice the lr at batch 64 instead of 1.41x);
- ``fast_b128_sqrt`` / ``fast_b128_linear``: the fast profile at batch 128 (4x the
  demo's 32, nearer the 4-8x of the benchmarks) with either rule: whether a rule
  that holds at 2x still holds at 4x;
- ``batch``: only batch 64 with the square-root lr rule;
- ``batch_no_rule``: only batch 64, lr as given;
- ``bf16``: only bf16-mixed (head in fp32);
- ``bf16_head``: only bf16-mixed with the head in bf16 too (``fp32_head false``);
- ``channels_last``: only channels-last convolutions.

Every run is appended to a JSON-lines file as it finishes (``--results``), and
runs already there are skipped (``--resume``), so a long comparison can be
continued; the summary covers every run in the file for the chosen profiles,
losses and seeds.

    python bench/profile_accuracy.py [--seeds 0 1 2] [--losses GR ROLE LL-R]
        [--profiles paper fast batch bf16 channels_last] [--results FILE] [--resume]
        [--epochs N] [spml flags for every run, e.g. --data.init_args.num_train 200]
    python bench/profile_accuracy.py --results FILE --summary_only [--losses ...] [--seeds ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from compare_losses import loss_arguments  # noqa: E402
from harness import (  # noqa: E402
    code_version,
    cpu_name,
    mean_interval95,
    print_load,
    print_ratio,
    read_records,
    t975,
)

REPO = Path(__file__).resolve().parent.parent
DEMO_EPOCHS = 12

#: The fast profile's arguments: configs/fast.yaml stacked on the demo config.
FAST = ["--config", str(REPO / "configs" / "fast.yaml")]
BATCH_128 = ["--data.init_args.batch_size", "128"]
#: The CLI arguments of each profile, on top of configs/demo_resnet.yaml.
PROFILES: dict[str, list[str]] = {
    "paper": [],
    "fast": FAST,
    "fast_v0": [*FAST, "--model.lr_scaling", "none", "--model.fp32_head", "false"],
    "fast_linear": [*FAST, "--model.lr_scaling", "linear"],
    # ROLE only: the square-root rule for the network, the linear one for the label
    # estimates (their lr_mult 10 x sqrt(64 / 32), the demo's batches): which of the two
    # closes ROLE's gap under the linear rule.
    "fast_role_estimates_linear": [*FAST, "--model.loss.init_args.lr_mult", str(10 * 2**0.5)],
    "fast_b128_sqrt": [*FAST, *BATCH_128, "--model.lr_scaling", "sqrt"],
    "fast_b128_linear": [*FAST, *BATCH_128, "--model.lr_scaling", "linear"],
    "batch": ["--data.init_args.batch_size", "64", "--model.lr_scaling", "sqrt"],
    "batch_no_rule": ["--data.init_args.batch_size", "64"],
    "bf16": ["--trainer.precision", "bf16-mixed"],
    "bf16_head": ["--trainer.precision", "bf16-mixed", "--model.fp32_head", "false"],
    "channels_last": ["--model.channels_last", "true"],
}
#: Profiles that take the fast profile's loader workers (the others keep the demo's): those
#: built on configs/fast.yaml.
FAST_LOADERS = tuple(name for name, args in PROFILES.items() if args[: len(FAST)] == FAST)
#: The fast profiles' speed goal: paper / fast wall time, timed in one bench run.
SPEED_GOAL = 1.5


def train_and_test(
    profile: str, loss: str, seed: int, work: Path, epochs: int, extra: list[str]
) -> dict[str, float]:
    """Fit one profile on the demo, test its best checkpoint; test mAP and seconds."""
    from spml_lightning.cli import run_cli

    args = ["--config", str(REPO / "configs" / "demo_resnet.yaml")]
    if loss != "GR":
        args += loss_arguments(loss, epochs)
    args += [
        *PROFILES[profile],
        "--seed_everything",
        str(seed),
        "--trainer.default_root_dir",
        str(work / f"{profile}-{loss}-{seed}"),
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
        f"#   {loss} {profile} seed {seed}: test mAP {result['test/mAP']:.2f} ({seconds:.0f} s)",
        flush=True,
    )
    return {"mAP": float(result["test/mAP"]), "seconds": seconds}


def _cpu_without_bf16(accelerator: str) -> bool:
    """Whether the runs train on a CPU on which bf16 is emulated (no AVX-512 BF16 or AMX)."""
    import torch

    from spml_lightning.cli import _native_cpu_bf16

    if accelerator not in ("cpu", "auto") or (accelerator == "auto" and torch.cuda.is_available()):
        return False
    return not _native_cpu_bf16()


def _mean_and_spread(values: list[float], sign: str = "") -> str:
    """``mean ± std``, or the one value alone: one seed has no spread (not a spread of 0)."""
    if len(values) == 1:
        return f"{values[0]:{sign}.2f} (1 seed)"
    return "{:{sign}.2f} ± {:.2f}".format(*_mean_std(values), sign=sign)


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std of two or more values (one value has no spread)."""
    return statistics.mean(values), statistics.stdev(values)


def seeds_for_a_point(spread: float) -> int:
    """Seeds after which a paired spread of ``spread`` points gives a 95 % interval of +-1."""
    seeds = 2
    while t975(seeds - 1) * spread / seeds**0.5 > 1.0 and seeds < 1000:
        seeds += 1
    return seeds


def print_interval(label: str, paired: list[float]) -> None:
    """Print the 95 % interval of the mean paired gap and what it shows.

    The done-when check (mean within a point and within the spread) passes a
    zero-gap comparison only by luck when the spread is 2-3 points; the
    interval says whether the seeds can tell a gap of a point from none.
    """
    low, high = mean_interval95(paired)
    if -1.0 <= low and high <= 1.0:
        shown = "under a point: shown"
    elif low > 0 or high < 0:
        shown = "a gap: shown"
    else:
        spread = statistics.stdev(paired)
        shown = f"unresolved (about {seeds_for_a_point(spread)} seeds at this spread for +-1)"
    text = f"{label}, 95 % interval of the mean gap ({len(paired)} seeds)"
    print(f"interval  {text:<69} [{low:+.2f}, {high:+.2f}]   {shown}", flush=True)


def print_wall_time_ratio(loss: str, profile: str, by: dict, seeds: list[int]) -> None:
    """Print paper/profile wall time over the seeds whose two runs one bench run timed.

    Runs from different bench runs (``--resume``, parallel queues, another day)
    ran under other loads, so their times are not compared: a ratio of them
    once showed channels-last alone "2.5x" faster.
    """
    label = f"{loss} demo wall time, paper/{profile}"
    side_by_side = [
        s
        for s in seeds
        if ("paper", s) in by
        and by["paper", s].get("bench_run") is not None
        and by["paper", s].get("bench_run") == by[profile, s].get("bench_run")
    ]
    if not side_by_side:
        print(
            f"ratio  {label:<72}       n/a   not timed side by side (the runs come from "
            "different bench runs): time both profiles in one run, alone on the machine",
            flush=True,
        )
        return
    paper = statistics.median(by["paper", s]["seconds"] for s in side_by_side)
    other = statistics.median(by[profile, s]["seconds"] for s in side_by_side)
    goal = SPEED_GOAL if profile in FAST_LOADERS else None
    seeds = f"{len(side_by_side)} seed{'s' if len(side_by_side) > 1 else ''}"
    print_ratio(f"{label} ({seeds} in one run)", paper / other, goal)


def summarize(runs: list[dict], losses: list[str], profiles: list[str], seeds: list[int]) -> None:
    """Print the table per loss and the paired differences with the paper profile."""
    for loss in losses:
        by = {(r["profile"], r["seed"]): r for r in runs if r["loss"] == loss}
        print(
            f"\n{loss}:\n| profile | test mAP (mean ± std) | minus paper, paired by seed "
            "(mean ± std) | seconds per run (median) | seeds |\n|---|---|---|---|---|"
        )
        for profile in profiles:
            done = [s for s in seeds if (profile, s) in by]
            if not done:
                continue
            scores = _mean_and_spread([by[profile, s]["mAP"] for s in done])
            seconds = statistics.median(by[profile, s]["seconds"] for s in done)
            paired = [
                by[profile, s]["mAP"] - by["paper", s]["mAP"] for s in done if ("paper", s) in by
            ]
            diff = ""
            if profile != "paper" and paired:
                diff = _mean_and_spread(paired, sign="+")
            print(f"| {profile} | {scores} | {diff} | {seconds:.0f} | {len(done)} |")
            if profile == "paper":
                continue
            if len(paired) > 1:
                gap, spread = _mean_std(paired)
                # Equal accuracy: within a point, and within the seeds' own spread.
                verdict = "MET" if abs(gap) <= 1.0 and abs(gap) <= spread else "NOT MET"
                label = f"{loss} {profile} - paper, mAP points (paired, {len(paired)} seeds)"
                print(
                    f"check  {label:<72} {gap:9.3f}   goal |.| <= 1 and <= std {spread:.3f}"
                    f"   {verdict}",
                    flush=True,
                )
                print_interval(f"{loss} {profile} - paper", paired)
            print_wall_time_ratio(loss, profile, by, done)


def main_bench(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--profiles", nargs="+", choices=list(PROFILES), default=["paper", "fast"])
    parser.add_argument(
        "--losses", nargs="+", default=["GR"], help="GR (the demo config's) or registry names"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="JSON-lines file the runs are appended to (default: a temporary one)",
    )
    parser.add_argument("--resume", action="store_true", help="skip the runs already in --results")
    parser.add_argument(
        "--summary_only",
        action="store_true",
        help="train nothing: print the summary of the runs already in --results",
    )
    parser.add_argument(
        "--keep_checkpoints",
        type=Path,
        default=None,
        help="train in this folder and keep the runs (default: a temporary folder)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="loader workers of every profile (default: the configs', capped at the cores)",
    )
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument(
        "--fast_precision",
        default="auto",
        help="precision of the fast profiles (auto: fast.yaml's bf16-mixed, but fp32 on a CPU "
        "without native bf16)",
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help=f"trainer.max_epochs (demo: {DEMO_EPOCHS})"
    )
    # Anything else is an spml flag for every run (e.g. --data.init_args.num_train 100).
    args, spml_flags = parser.parse_known_args(argv)
    if "paper" not in args.profiles:
        args.profiles.insert(0, "paper")  # every difference is paired with it
    if args.summary_only:
        if args.results is None or not args.results.exists():
            parser.error("--summary_only reads the runs of --results FILE: give an existing file")
        summarize(read_records(args.results), args.losses, args.profiles, args.seeds)
        return
    cores = len(os.sched_getaffinity(0))
    extra = ["--trainer.accelerator", args.accelerator, *spml_flags]
    if args.epochs:
        extra += ["--trainer.max_epochs", str(args.epochs)]
    print(
        f"# profile_accuracy: demo, losses {args.losses}, seeds {args.seeds}, "
        f"profiles {args.profiles}; machine: {cpu_name()}"
    )
    fast_precision = args.fast_precision
    if fast_precision == "auto":
        fast_precision = "32-true" if _cpu_without_bf16(args.accelerator) else None
        if fast_precision:
            print(
                "# this CPU has no native bf16 (oneDNN emulates it, about 10x slower than fp32): "
                "the fast profile runs in fp32 here (--fast_precision bf16-mixed to force it)"
            )
    code = code_version()
    # Which runs one invocation timed: only those are compared for speed. Random, so two
    # invocations in one process (a notebook, the tests) within a second differ too.
    bench_run = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    print(f"# code: {code}")
    print_load("start")
    with tempfile.TemporaryDirectory() as tmp:
        results = args.results or Path(tmp) / "runs.jsonl"
        if args.keep_checkpoints:
            tmp = str(args.keep_checkpoints)
        runs = read_records(results) if args.resume else []
        done = {(r["loss"], r["profile"], r["seed"]) for r in runs}
        for seed in args.seeds:
            for loss in args.losses:
                order = args.profiles if seed % 2 == 0 else list(reversed(args.profiles))
                for profile in order:
                    if (loss, profile, seed) in done:
                        continue
                    fast = profile in FAST_LOADERS
                    workers = args.workers
                    if workers is None:
                        workers = min(14, max(1, cores - 2)) if fast else min(2, cores)
                    run_extra = [*extra, "--data.init_args.num_workers", str(workers)]
                    if fast and fast_precision:
                        run_extra += ["--trainer.precision", fast_precision]
                    record = {
                        "loss": loss,
                        "profile": profile,
                        "seed": seed,
                        "code": code,
                        "bench_run": bench_run,
                    }
                    record.update(
                        train_and_test(
                            profile, loss, seed, Path(tmp), args.epochs or DEMO_EPOCHS, run_extra
                        )
                    )
                    runs.append(record)
                    with results.open("a") as file:
                        file.write(json.dumps(record) + "\n")
        print_load("end")
        summarize(runs, args.losses, args.profiles, args.seeds)


if __name__ == "__main__":
    main_bench()
