"""What every performance benchmark of bench/ shares: side-by-side timing and synthetic data.

A benchmark compares *sides* (the plain reference and ``spml_lightning``'s
path) measured in ONE run: repetitions are interleaved A B A B ... so that
load from other processes hits every side alike, and the median of each side
is reported with every run's value. The machine's load average is printed at
the start and the end so that a reader can judge how quiet the machine was.

Output lines (read by people; ``bench/gpu_check.sh`` collects ``ratio`` and ``check``)::

    # machine: ...
    # load average at start: 0.52 0.61 0.70
    reference   train   images/s   median 123.4   runs 120.1 125.0 123.4
    ratio  train spml-paper/reference (goal 1)      1.020   goal >= 1   MET
    check  mAP of 40137 x 80 on the CPU (s)         0.600   goal <= 2   MET

Only torch, torchvision, numpy and Pillow are imported here, so the plain
sides run on a machine that has nothing but PyTorch.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = [
    "Timer",
    "cpu_name",
    "describe_machine",
    "describe_gap",
    "interleave",
    "order_by_seed",
    "paired_gap",
    "paired_ratio",
    "print_check",
    "print_load",
    "print_ratio",
    "print_side",
    "synchronize",
    "write_formatted_dataset",
    "write_synthetic_jpeg",
]


def cpu_name() -> str:
    """The processor's model name and the number of cores this process may use."""
    name = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name} ({cores} cores)"


def code_version() -> str:
    """The repository's commit (short hash), ``+changes`` when tracked files differ from it.

    Stored with every run a bench appends to a results file, so that runs made
    by different code (a fix between two sessions) are never averaged unawares.
    """
    repo = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + ("+changes" if changed else "")


def describe_machine(device: torch.device) -> str:
    """One line naming the CPU, the GPU (if used) and the library versions."""
    import torchvision

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU used"
    return (
        f"{cpu_name()}; {gpu}; torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"{torch.get_num_threads()} intra-op thread(s)"
    )


def print_load(when: str) -> None:
    """Print the 1/5/15-minute load averages (other users' work on a shared machine)."""
    try:
        load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        load = "unavailable"
    print(f"# load average at {when}: {load}", flush=True)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it is honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Wall-clock seconds between ``start()`` and ``stop()``, device work included.

    Also the CPU seconds this process (all its threads, not its children)
    spent meanwhile: on a CPU shared with other users, wall time measures the
    contention as much as the code, while CPU time per step barely moves.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._start: tuple[float, float] | None = None
        self.seconds: float | None = None
        self.cpu_seconds: float | None = None

    def start(self) -> None:
        synchronize(self.device)
        self._start = (time.perf_counter(), time.process_time())

    def stop(self) -> float:
        if self._start is None:
            raise RuntimeError("Timer.stop() before Timer.start().")
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._start[0]
        self.cpu_seconds = time.process_time() - self._start[1]
        return self.seconds


Measurement = Mapping[str, float]


def interleave(
    sides: Mapping[str, Callable[[], Measurement]], repeats: int, verbose: bool = True
) -> dict[str, list[Measurement]]:
    """Run every side ``repeats`` times, alternating sides (A B A B ...).

    Args:
        sides: name -> callable returning ``{quantity: value}`` (e.g. images/s).
        repeats: runs per side.
        verbose: print each run's result as it arrives.

    Returns:
        name -> the list of its runs' measurements, in run order.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}.")
    results: dict[str, list[Measurement]] = {name: [] for name in sides}
    for repeat in range(repeats):
        # Alternate the order too (A B, B A, ...) so neither side always runs
        # right after the other's teardown.
        names = list(sides) if repeat % 2 == 0 else list(reversed(list(sides)))
        for name in names:
            measurement = sides[name]()
            results[name].append(measurement)
            if verbose:
                shown = "  ".join(f"{key} {value:.4g}" for key, value in measurement.items())
                print(f"#   run {repeat + 1}/{repeats} {name}: {shown}", flush=True)
    return results


def paired_ratio(
    numerator: Sequence[Measurement], denominator: Sequence[Measurement], quantity: str
) -> float:
    """Median over repetitions of the ratio of two sides' runs of the same repetition.

    Runs of one repetition are next to each other in time, so slow drifts of
    the machine's load cancel out of their ratio.
    """
    return statistics.median(
        a[quantity] / b[quantity] for a, b in zip(numerator, denominator, strict=True)
    )


#: Student's t 0.975 quantiles for 1-7 degrees of freedom; from 8 on, the
#: Cornish-Fisher expansion below is within 0.001 of the tables.
_T975_SMALL = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365)


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (two-sided 95 %)."""
    if df < 1:
        raise ValueError(f"t975 needs at least 1 degree of freedom, got {df}.")
    if df <= len(_T975_SMALL):
        return _T975_SMALL[df - 1]
    z = statistics.NormalDist().inv_cdf(0.975)
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def mean_interval95(values: Sequence[float]) -> tuple[float, float]:
    """The 95 % confidence interval of the mean of ``values`` (t interval; needs two or more).

    What a paired comparison over a few seeds can say: a gap whose interval
    holds 0 is not shown, one whose interval lies inside +-1 is shown to be
    under a point.
    """
    if len(values) < 2:
        raise ValueError(f"an interval needs at least two values, got {len(values)}.")
    mean = statistics.mean(values)
    half = t975(len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return mean - half, mean + half


def quiet_run_flags(root: Path) -> list[str]:
    """The flags of a bench's own ``spml`` run: its folder, no progress bar or summary."""
    return [
        "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]  # fmt: skip


def fit_then_test(args: Sequence[str], root: Path, extra: Sequence[str] = ()) -> float:
    """``spml fit`` with ``args`` into ``root`` (:func:`quiet_run_flags`), then ``extra``'s
    flags; its best-val checkpoint tested: the test mAP."""
    from spml_lightning.cli import run_cli

    cli = run_cli(["fit", *args, *quiet_run_flags(root), *extra])
    (result,) = cli.trainer.test(
        cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False
    )
    return float(result["test/mAP"])


def read_records(path: Path) -> list[dict]:
    """The records of a JSON-lines results file (none when there is no file yet)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _by_seed(runs: Sequence[Mapping], loss: str) -> dict[int, float]:
    """Test mAP by seed of one loss among result records (``loss``, ``seed``, ``test_map``)."""
    return {run["seed"]: run["test_map"] for run in runs if run["loss"] == loss}


def paired_gap(runs: Sequence[Mapping], first: str, second: str) -> dict[str, float]:
    """``first`` minus ``second`` paired by seed, over the seeds both losses ran.

    Pairing removes what a seed does to both losses alike (the same initial
    network and batch order), so the spread left is the method's own.

    Returns:
        ``n`` (paired seeds), ``mean`` and ``std`` of the differences, ``se``
        (standard error of the mean, std / sqrt(n)) and ``ahead`` (seeds where
        ``first`` scored higher).
    """
    a, b = _by_seed(runs, first), _by_seed(runs, second)
    diffs = [a[seed] - b[seed] for seed in sorted(a.keys() & b.keys())]
    if len(diffs) < 2:
        raise ValueError(
            f"a paired gap of {first} and {second} needs two or more seeds both ran, "
            f"found {len(diffs)}."
        )
    std = statistics.stdev(diffs)
    return {
        "n": len(diffs),
        "mean": statistics.mean(diffs),
        "std": std,
        "se": std / len(diffs) ** 0.5,
        "ahead": sum(d > 0 for d in diffs),
    }


def describe_gap(first: str, second: str, gap: Mapping[str, float]) -> str:
    """One line: the paired gap, its standard error and how many seeds agree."""
    if gap["se"] > 0:
        spread = f"the gap is {gap['mean'] / gap['se']:.1f}x its standard error"
    else:  # no spread to measure the gap by: say what the seeds show instead of a ratio
        spread = "no difference on any seed" if gap["mean"] == 0 else "the same gap on every seed"
    return (
        f"{first} - {second}, paired over {gap['n']} seeds: {gap['mean']:+.2f} ± {gap['std']:.2f} "
        f"(standard error {gap['se']:.2f}; {spread}); "
        f"{first} ahead on {gap['ahead']} of {gap['n']} seeds"
    )


def order_by_seed(runs: Sequence[Mapping], order: Sequence[str]) -> str:
    """One line: on how many seeds the losses' test mAPs fall in the given order.

    Raises:
        ValueError: when no seed was run by all of them (a misspelt name, say).
    """
    by_loss = [_by_seed(runs, loss) for loss in order]
    seeds = sorted(set.intersection(*(set(values) for values in by_loss)))
    if not seeds:
        ran = sorted({run["loss"] for run in runs})
        raise ValueError(
            f"no seed was run by every one of {', '.join(order)} (losses run: {', '.join(ran)})."
        )
    held = [
        seed
        for seed in seeds
        if all(high[seed] > low[seed] for high, low in zip(by_loss, by_loss[1:], strict=False))
    ]
    return f"{' > '.join(order)} on {len(held)} of {len(seeds)} seeds"


def print_side(name: str, runs: Sequence[Measurement], quantity: str, unit: str) -> float:
    """Print a side's median and every run of one quantity; return the median."""
    values = [run[quantity] for run in runs]
    median = statistics.median(values)
    shown = " ".join(f"{v:.4g}" for v in values)
    print(f"{name:<24} {quantity:<10} {unit:<10} median {median:10.4g}   runs {shown}", flush=True)
    return median


def _print_goal(kind: str, label: str, value: float, goal: float | None, at_most: bool) -> bool:
    met = True
    goal_text = ""
    if goal is not None:
        met = value <= goal if at_most else value >= goal
        goal_text = f"   goal {'<=' if at_most else '>='} {goal:g}   {'MET' if met else 'NOT MET'}"
    print(f"{kind:<6} {label:<72} {value:9.3f}{goal_text}", flush=True)
    return met


def print_ratio(label: str, value: float, goal: float | None = None, at_most: bool = False) -> bool:
    """Print a ``ratio`` line (ours / the reference), with the goal and whether it is met."""
    return _print_goal("ratio", label, value, goal, at_most)


def print_check(label: str, value: float, goal: float | None = None, at_most: bool = True) -> bool:
    """Print a ``check`` line: an absolute quantity (seconds, MB, levels) against its goal."""
    return _print_goal("check", label, value, goal, at_most)


# -- synthetic data ---------------------------------------------------------------


def write_synthetic_jpeg(path: Path, width: int, height: int, seed: int, quality: int = 90) -> None:
    """A photo-like JPEG: smooth colour fields plus fine noise (decodes like a real photo).

    Pure noise compresses badly and decodes slower than photos; flat colour
    decodes faster. A bicubically upsampled 8x6 colour grid with mild noise has
    the file size (about 0.3 bytes per pixel at quality 90) of natural images.
    """
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.BICUBIC), dtype=np.int16)
    noisy = np.clip(smooth + rng.normal(0, 6, size=smooth.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(path, quality=quality)


def _write_one(args: tuple[str, int, int, int]) -> None:
    path, width, height, seed = args
    write_synthetic_jpeg(Path(path), width, height, seed)


def write_formatted_dataset(
    root: Path,
    num_train: int,
    num_test: int,
    num_classes: int = 80,
    width: int = 500,
    height: int = 375,
    distinct_images: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a data set in the community's formatted layout with synthetic JPEGs.

    ``FormattedDataModule(root=root)`` reads it. Every row has 1 to 4 positive
    labels drawn at random (at least one, so every row gets a single positive).

    Args:
        root: folder to write into (created); images go to ``root/images/`` and
            are named relative to ``root`` (the default image root).
        num_train: rows of the official training phase (split into train/val).
        num_test: rows of the test phase.
        num_classes: label columns.
        width: image width in pixels (500 x 375 is a typical COCO/VOC photo).
        height: image height in pixels.
        distinct_images: write only this many distinct JPEGs and make every
            other row a hard link to one of them (for data sets of many rows
            whose pixels do not matter, e.g. memory measurements); default: one
            file per row.
        seed: seed of the images and labels.

    Returns:
        ``root``.
    """
    root = Path(root)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    total = num_train + num_test
    distinct = total if distinct_images is None else max(1, min(distinct_images, total))
    names = np.asarray([f"images/{i:07d}.jpg" for i in range(total)])
    jobs = [
        (str(root / names[i]), width, height, seed * 1_000_003 + i)
        for i in range(distinct)
        if not (root / names[i]).is_file()
    ]
    if jobs:
        processes = max(
            1, min(16, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
        )
        if processes > 1 and len(jobs) > 64:
            with ProcessPoolExecutor(processes) as pool:
                list(pool.map(_write_one, jobs, chunksize=32))
        else:
            for job in jobs:
                _write_one(job)
    for i in range(distinct, total):
        target = root / names[i]
        if not target.exists():
            os.link(root / names[i % distinct], target)
    labels = np.zeros((total, num_classes), dtype=np.uint8)
    counts = rng.integers(1, 5, size=total)
    for row, count in enumerate(counts):
        labels[row, rng.choice(num_classes, size=count, replace=False)] = 1
    for phase, rows in (("train", slice(0, num_train)), ("val", slice(num_train, total))):
        np.save(root / f"formatted_{phase}_images.npy", names[rows])
        np.save(root / f"formatted_{phase}_labels.npy", labels[rows])
    (root / "class_names.txt").write_text("".join(f"class_{i}\n" for i in range(num_classes)))
    return root
