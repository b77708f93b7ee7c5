"""A linear probe's epoch on cached features against one through the frozen backbone.

On a config (the demo by default), in one run:

1. ``spml features``: one extraction of every split's features (seconds);
2. ``frozen``: the head trains for ``--epochs`` epochs with the images going through
   the frozen backbone every epoch (``model.linear_init`` covering those epochs);
3. ``cached``: the head trains for as many epochs on the cached features
   (``model.train_mode linear_fixed_features``, reusing the extraction of step 1);

then each side's seconds per epoch (median over its epochs; an epoch includes its
validation) and frozen / cached. The sides are interleaved ``--repeats`` times, A B B A.

    python bench/cached_features.py [--config configs/demo.yaml] [--epochs 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import cpu_name, print_check, print_load, print_ratio
from lightning.pytorch import Callback

from spml_lightning.cli import run_cli

REPO = Path(__file__).resolve().parent.parent


class EpochTimer(Callback):
    """Seconds of each training epoch (with its validation); stops the fit after ``epochs``."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        if len(self.seconds) >= self.epochs:
            trainer.should_stop = True  # the frozen side's last epoch would train end to end


def timed_fit(args: list[str], epochs: int) -> list[float]:
    """Fit with ``args``; the seconds of its first ``epochs`` epochs."""
    cli = run_cli(list(args), run=False)  # run=False: no subcommand
    timer = EpochTimer(epochs)
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return timer.seconds


def main_bench(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs of each side")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more spml flags")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.repeats < 1:
        sys.exit("--epochs and --repeats must be at least 1.")
    extra = [a for a in args.extra if a != "--"]
    print(f"# cached_features: {args.config}; machine: {cpu_name()}")
    print_load("start")
    with tempfile.TemporaryDirectory() as tmp:
        cache = str(Path(tmp) / "features")
        common = [
            "--config", str(args.config), *extra,
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        ]  # fmt: skip
        start = time.perf_counter()
        run_cli(
            ["features", *common, "--trainer.default_root_dir", f"{tmp}/f", "--cache.dir", cache]
        )
        extraction = time.perf_counter() - start
        sides = {
            "frozen": [
                "--model.linear_init", str(args.epochs),
                "--trainer.max_epochs", str(args.epochs + 1),
            ],
            "cached": [
                "--model.train_mode", "linear_fixed_features", "--model.feature_dir", cache,
                "--trainer.max_epochs", str(args.epochs),
            ],
        }  # fmt: skip
        seconds: dict[str, list[float]] = {name: [] for name in sides}
        for repeat in range(args.repeats):
            order = list(sides) if repeat % 2 == 0 else list(reversed(list(sides)))
            for name in order:
                root = ["--trainer.default_root_dir", f"{tmp}/{name}{repeat}"]
                seconds[name] += timed_fit([*common, *root, *sides[name]], args.epochs)
                shown = " ".join(f"{s:.2f}" for s in seconds[name][-args.epochs :])
                print(f"#   run {repeat + 1}/{args.repeats} {name}: epochs {shown} s", flush=True)
    print_load("end")
    frozen, cached = statistics.median(seconds["frozen"]), statistics.median(seconds["cached"])
    print_check("extraction of every split, once (s)", extraction)
    print_check("epoch through the frozen backbone, median (s)", frozen)
    print_check("epoch on the cached features, median (s)", cached)
    print_ratio("epoch time, frozen backbone / cached features", frozen / cached)


if __name__ == "__main__":
    main_bench()
