"""Every SPML loss on the offline demo data: our analogue of the paper's Table 1.

Trains each loss with the demo config through the spml CLI -- same data, same
seeds, same everything but the loss, each loss configured by its preset
(``configs/losses/<name>.yaml``: the settings the papers used for VOC) --, tests
the best-val checkpoint, and prints mean ± std of the test mAP over the seeds.
Every finished run is appended to a JSON-lines file at once, so an interrupted
comparison continues where it stopped (``--resume``) and ``--table-only``
prints the table of what is there.

    python bench/compare_losses.py                        # 16 losses x 3 seeds, config's 12 epochs
    python bench/compare_losses.py --losses full AN GR    # make bench-demo
    python bench/compare_losses.py --epochs 4 --seeds 0 1 2 --resume
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import yaml

from spml_lightning.cli import run_cli
from spml_lightning.losses import LOSSES

REPO = Path(__file__).resolve().parent.parent
PRESETS = REPO / "configs" / "losses"


def preset_for(loss: str) -> Path:
    """The preset of a registry name: ``EM+APL`` -> ``configs/losses/em_apl.yaml``."""
    path = PRESETS / f"{loss.lower().replace('+', '_').replace('-', '_')}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"No preset {path} for loss {loss!r}; every registry name needs one."
        )
    return path


#: The run length the presets' VOC values were published for (8 epochs on VOC, as the papers
#: trained).
PAPER_EPOCHS = 8


def loss_arguments(loss: str, epochs: int) -> list[str]:
    """CLI arguments selecting the loss; APL's warm-up keeps its share of the run.

    The paper pseudo-labels after epoch 5 of 8, i.e. during the last 3/8 of the
    run. A run of another length keeps that share (warm-up 5 of 8 -> 4 of 6,
    8 of 12): kept at 5, a 6-epoch run would pseudo-label only in its last epoch,
    and EM+APL would mostly measure EM.
    """
    args = ["--config", str(preset_for(loss))]
    init_args = yaml.safe_load(preset_for(loss).read_text())["model"]["loss"].get("init_args", {})
    warmup = init_args.get("warmup_epochs")
    if warmup is not None and epochs != PAPER_EPOCHS:
        scaled = min(max(1, round(warmup * epochs / PAPER_EPOCHS)), epochs - 1)
        print(
            f"note: {loss} warm-up {warmup} of {PAPER_EPOCHS} epochs -> "
            f"warmup_epochs={scaled} of {epochs}",
            flush=True,
        )
        args += ["--model.loss.init_args.warmup_epochs", str(scaled)]
    return args


def run(loss: str, seed: int, config: Path, workdir: Path, epochs: int, extra: list[str]) -> float:
    """Fit one loss with one seed, test its best-val checkpoint; return test mAP."""
    args = [
        "--config",
        str(config),
        *loss_arguments(loss, epochs),
        "--seed_everything",
        str(seed),
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.default_root_dir",
        str(workdir / f"{preset_for(loss).stem}-{seed}"),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        *extra,
    ]
    cli = run_cli(["fit", *args])
    (result,) = cli.trainer.test(
        cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False
    )
    return float(result["test/mAP"])


def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def table(records: list[dict], losses: list[str]) -> str:
    """Markdown table of mean ± std test mAP per loss, in registry order."""
    # Per-seed values too: with 3 seeds a gap smaller than the spread only shows seed by seed.
    lines = [
        "| loss | test mAP (mean ± std) | per seed | seeds | epochs |",
        "|---|---|---|---|---|",
    ]
    for loss in losses:
        rows = sorted((r for r in records if r["loss"] == loss), key=lambda r: r["seed"])
        if not rows:
            continue
        values = [r["test_map"] for r in rows]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        per_seed = " / ".join(f"{v:.2f}" for v in values)
        seeds = ", ".join(str(r["seed"]) for r in rows)
        epochs = ", ".join(sorted({str(r["epochs"]) for r in rows}))
        lines.append(
            f"| {loss} | {statistics.mean(values):.2f} ± {std:.2f} | {per_seed} | {seeds} "
            f"| {epochs} |"
        )
    return "\n".join(lines)


def main_bench() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument(
        "--losses",
        nargs="+",
        default=list(LOSSES),
        choices=list(LOSSES),
        metavar="NAME",
        help=f"registry names (default: all of {', '.join(LOSSES)})",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--epochs", type=int, default=None, help="trainer.max_epochs (default: the config's)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO / "runs" / "compare_losses",
        help="runs and the results file go here",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip (loss, seed, epochs) already in the results file",
    )
    parser.add_argument(
        "--table-only", action="store_true", help="print the table of the results file and exit"
    )
    parser.add_argument(
        "extra", nargs=argparse.REMAINDER, help="after --: more spml arguments for every run"
    )
    args = parser.parse_args()
    results = args.workdir / "results.jsonl"
    epochs = args.epochs or int(yaml.safe_load(args.config.read_text())["trainer"]["max_epochs"])
    if not args.table_only:
        args.workdir.mkdir(parents=True, exist_ok=True)
        done = (
            {(r["loss"], r["seed"], r["epochs"]) for r in read_results(results)}
            if args.resume
            else set()
        )
        if not args.resume and results.exists():
            results.unlink()
        extra = [a for a in args.extra if a != "--"]
        for loss in args.losses:
            for seed in args.seeds:
                if (loss, seed, epochs) in done:
                    continue
                start = time.perf_counter()
                value = run(loss, seed, args.config, args.workdir, epochs, extra)
                seconds = time.perf_counter() - start
                record = {
                    "loss": loss,
                    "seed": seed,
                    "epochs": epochs,
                    "test_map": value,
                    "seconds": round(seconds),
                }
                with results.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                print(f"{loss:>6} seed {seed}: test mAP {value:.2f}  ({seconds:.0f} s)", flush=True)
    records = [r for r in read_results(results) if r["loss"] in args.losses]
    print(f"\n{table(records, args.losses)}")


if __name__ == "__main__":
    main_bench()
