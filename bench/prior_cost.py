"""What a cached prior saves: the papers' per-step recomputation against scoring once and reading.

AEVLP's and VLPL's released code run CLIP on every training image at every step (the
whole image and its grid of crops, on the randomly flipped training view). Here the scores
are made once per image, both orientations, and cached. On a config with a prior provider
(``data.init_args.prior_provider``), on the first ``--images`` training images, one run
measures side by side, interleaved over ``--repeats``:

1. ``load``: building the model and embedding the class prompts (both ways pay it once
   per run);
2. ``epoch``: scoring each image's views in one orientation: the prior's work in one
   epoch when it is recomputed at each step;
3. ``build``: the provider into a fresh cache (the load, both orientations, the writes):
   a cached prior's first run;
4. ``read``: the provider again, reusing its cache (the load, which fingerprints the
   weights, and the read), and the policy's pseudo-positives: every later run.

Over a run of E epochs (``trainer.max_epochs``), the prior costs ``load + E × epoch``
recomputed, ``build`` cached on its first run and ``read`` on each later one (other seeds,
tuning trials, other losses on the same data); the ratios of those are printed, each the
median of the repetitions' ratios.

    python bench/prior_cost.py --config configs/demo.yaml --config configs/losses/gpr.yaml \
        --config configs/priors/openclip_vit_b16.yaml --images 16 [--repeats 3] \
        [-- more spml flags]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import cpu_name, interleave, paired_ratio, print_check, print_load, print_ratio

from spml_lightning.cli import run_cli


def seconds(work) -> float:
    """Wall-clock seconds of ``work()``."""
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main_bench(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", required=True, help="spml config(s)")
    parser.add_argument("--images", type=int, default=None, help="the first N training images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more spml flags")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        sys.exit("--repeats must be at least 1.")
    if args.images is not None and args.images < 1:
        sys.exit("--images must be at least 1.")
    common = [f for c in args.config for f in ("--config", c)]
    common += [a for a in args.extra if a != "--"]
    cli = run_cli(common, run=False)
    datamodule = cli.datamodule
    provider = datamodule.prior
    if provider is None or isinstance(provider, str):
        sys.exit("The config has no prior provider (data.init_args.prior_provider) to time.")
    provider.progress = False
    # The training set without its prior: the provider is timed here, not in setup.
    datamodule.prior = None
    datamodule.prepare_data()
    datamodule.setup("fit")
    dataset = datamodule.train_dataset
    count = len(dataset) if args.images is None else min(args.images, len(dataset))
    paths = list(dataset.image_paths[:count])
    observed = np.asarray(dataset.observed)[:count]
    classes, root, device = datamodule.class_names, datamodule.root, provider._device()
    epochs = int(cli.trainer.max_epochs)
    views = 1 + provider.grid**2 if provider.grid else 1
    print(
        f"# prior_cost: {' '.join(args.config)}; {type(provider).__name__} {provider.name}, "
        f"{views} views per orientation, flip {provider.flip}, on {device}; {count} of "
        f"{len(dataset)} training images; {epochs} epochs; {cpu_name()}"
    )
    print_load("start")
    scorer = provider.load(classes, device)

    def epoch() -> None:
        scores = np.empty((count, views, len(classes)), np.float32)
        provider._score_all(scorer, paths, scores, None)

    with tempfile.TemporaryDirectory() as tmp:
        folders = iter(range(10**9))

        def build() -> None:
            provider.cache_dir = str(Path(tmp) / f"cache{next(folders)}")
            provider.scores(paths, classes, root)

        def read() -> None:  # the cache of the latest build
            scores, _ = provider.scores(paths, classes, root)
            datamodule.prior_policy.pseudo_positives(scores, observed)

        runs = interleave(
            {
                "load": lambda: {"s": seconds(lambda: provider.load(classes, device))},
                "epoch": lambda: {"s": seconds(epoch)},
                "build": lambda: {"s": seconds(build)},
                "read": lambda: {"s": seconds(read)},
            },
            args.repeats,
        )
    print_load("end")
    median = {name: statistics.median(r["s"] for r in side) for name, side in runs.items()}
    recomputed = [
        {"s": load["s"] + epochs * one["s"]}
        for load, one in zip(runs["load"], runs["epoch"], strict=True)
    ]
    print_check("loading the model and embedding the prompts (s)", median["load"])
    print_check(f"recomputed: scoring {count} images' views, one epoch (s)", median["epoch"])
    print_check(f"cached: scoring {count} images into the cache, first run (s)", median["build"])
    print_check(f"cached: reading {count} images' scores, later runs (s)", median["read"])
    first = paired_ratio(recomputed, runs["build"], "s")
    later = paired_ratio(recomputed, runs["read"], "s")
    print_ratio(f"prior seconds per {epochs}-epoch run, recomputed / cached first run", first)
    print_ratio(f"prior seconds per {epochs}-epoch run, recomputed / cached later run", later)
    return {**median, "first_run_ratio": first, "later_run_ratio": later, "images": count}


if __name__ == "__main__":
    main_bench()
