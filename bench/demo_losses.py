"""full / AN / GR Loss on the offline demo data, 3 seeds each.

Trains every loss with the demo config through the spml CLI (same data, same
seeds, same everything but the loss), tests the best-val checkpoint, and prints
mean +- std of test mAP: the README's demo table.

    python bench/demo_losses.py [--seeds 0 1 2] [--losses full AN GR] [--epochs N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from spml_lightning.cli import main
from spml_lightning.losses import LOSSES

REPO = Path(__file__).resolve().parent.parent


def run(loss: str, seed: int, config: Path, workdir: Path, extra: list[str]) -> float:
    cls = LOSSES[loss]
    args = [
        "--config", str(config),
        "--seed_everything", str(seed),
        "--model.loss", f"{cls.__module__}.{cls.__qualname__}",
        "--trainer.default_root_dir", str(workdir / f"{loss}-{seed}"),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        *extra,
    ]
    cli = main(["fit", *args])
    (result,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)
    return result["test/mAP"]


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--losses", nargs="+", default=["full", "AN", "GR"], choices=sorted(LOSSES))
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs")
    args = parser.parse_args()
    extra = ["--trainer.max_epochs", str(args.epochs)] if args.epochs else []
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Seed-major order: an interrupted run still compares every loss.
        for seed in args.seeds:
            for loss in args.losses:
                start = time.perf_counter()
                value = run(loss, seed, args.config, Path(tmp), extra)
                results.setdefault(loss, []).append(value)
                print(f"{loss:>5} seed {seed}: test mAP {value:.2f}  ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"\n| loss | test mAP (mean ± std over seeds {', '.join(map(str, args.seeds))}) |")
    print("|---|---|")
    for loss, values in results.items():
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {loss} | {statistics.mean(values):.2f} ± {std:.2f} |")


if __name__ == "__main__":
    main_bench()
