"""What a cached prior saves: scoring the training images (what every epoch costs when the
pseudo-labels are recomputed at each step, as the papers' code does) against reading them.

On a config with a prior provider (``data.init_args.prior_provider``), in one run:

1. ``scored``: the provider scores every training image (the whole image, the grid of crops,
   the mirror image), with its cache in a fresh folder: the work the papers' code repeats
   for each image at each step, so once per epoch;
2. ``cached``: the same provider again, which reuses the cache, and the policy's
   pseudo-positives of every training image read from it: what a cached prior costs per run;

then the seconds of each, median over ``--repeats`` interleaved runs, and their ratio.

    python bench/prior_cost.py --config configs/voc.yaml --config configs/losses/gpr.yaml \
        --config configs/priors/openclip_vit_b16.yaml [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import cpu_name, print_check, print_load, print_ratio

from spml_lightning.cli import run_cli


def timed(provider, datamodule, dataset) -> float:
    """Seconds to get the scores of ``dataset`` from ``provider`` and make the pseudo-positives."""
    start = time.perf_counter()
    scores, _ = provider.scores(dataset.image_paths, datamodule.class_names, datamodule.root)
    datamodule.prior_policy.pseudo_positives(scores, dataset.observed)
    return time.perf_counter() - start


def main_bench(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", required=True, help="spml config(s)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more spml flags")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        sys.exit("--repeats must be at least 1.")
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
    print(f"# prior_cost: {' '.join(args.config)}; {len(dataset)} training images; {cpu_name()}")
    print_load("start")
    seconds: dict[str, list[float]] = {"scored": [], "cached": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            provider.cache_dir = str(Path(tmp) / f"cache{repeat}")
            seconds["scored"].append(timed(provider, datamodule, dataset))  # a fresh cache
            seconds["cached"].append(timed(provider, datamodule, dataset))  # reused
    print_load("end")
    scored, cached = statistics.median(seconds["scored"]), statistics.median(seconds["cached"])
    print_check("scoring every training image, once per epoch when recomputed (s)", scored)
    print_check("reading the cached scores and making the pseudo-positives (s)", cached)
    print_ratio("seconds per epoch, recomputed / cached", scored / cached)
    return {"scored": scored, "cached": cached}


if __name__ == "__main__":
    main_bench()
