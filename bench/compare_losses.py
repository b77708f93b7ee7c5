"""Every SPML loss on the offline demo data: our analogue of the paper's Table 1.

Trains each loss with the demo config through the spml CLI -- same data, same
seeds, same everything but the loss, each loss configured by its preset
(``configs/losses/<name>.yaml``: the settings the papers used for VOC) --, tests
the best-val checkpoint, and prints mean ± std of the test mAP over the seeds.
Every finished run is appended to a JSON-lines file at once, so an interrupted
comparison continues where it stopped (``--resume``) and ``--table-only``
prints the table of what is there.

    python bench/compare_losses.py                        # every loss, 3 seeds, config's epochs
    python bench/compare_losses.py --losses full GR AN EM --seeds 0 1 2 3 4 \
        --order full GR AN --gap GR AN                       # make bench-demo
    python bench/compare_losses.py --epochs 4 --seeds 0 1 2 --resume
    python bench/compare_losses.py --losses AN GR --observe frequency --observe_seeds 1200 1 2

``--gap A B`` prints A's test mAP minus B's paired by seed (mean, std, standard error,
seeds where A is ahead); ``--order A B C`` the seeds on which A > B > C holds.

``--observe`` trains every run with that observation strategy
(``--data.init_args.observe``: which positive of a training image is observed),
``--observe_seeds`` with each of those observation draws
(``--data.init_args.observe_seed``); with more than one draw the table reports
the spread over observation draws beside the spread over training seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import yaml
from harness import (
    code_version,
    describe_gap,
    fit_then_test,
    order_by_seed,
    paired_gap,
    read_records,
)

from spml_lightning.data.observation import OBSERVE_STRATEGIES
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


def observation_arguments(observe: str | None, observe_seed: int | None) -> list[str]:
    """The spml flags of an observation strategy and draw; none for the config's own."""
    args = [] if observe is None else ["--data.init_args.observe", observe]
    return args + (
        [] if observe_seed is None else ["--data.init_args.observe_seed", str(observe_seed)]
    )


def run_name(loss: str, seed: int, observe: str | None, observe_seed: int | None) -> str:
    """The run's folder under the workdir: ``<preset>-<seed>``, then the observation if given."""
    name = f"{preset_for(loss).stem}-{seed}"
    if observe is not None:
        name += f"-{observe}"
    return name if observe_seed is None else f"{name}-draw{observe_seed}"


def run(
    loss: str,
    seed: int,
    config: Path,
    workdir: Path,
    epochs: int,
    extra: list[str],
    observe: str | None = None,
    observe_seed: int | None = None,
) -> float:
    """Fit one loss with one seed (and observation), test its best-val checkpoint; test mAP."""
    args = [
        "--config", str(config), *loss_arguments(loss, epochs),
        "--seed_everything", str(seed), "--trainer.max_epochs", str(epochs),
    ]  # fmt: skip
    root = workdir / run_name(loss, seed, observe, observe_seed)
    return fit_then_test(args, root, [*observation_arguments(observe, observe_seed), *extra])


def _spread(records: list[dict], key: str) -> float:
    """Std over the values of ``key`` of the mean test mAP of each value (0 for one value)."""
    groups: dict = {}
    for r in records:
        groups.setdefault(r.get(key), []).append(r["test_map"])
    means = [statistics.mean(values) for values in groups.values()]
    return statistics.stdev(means) if len(means) > 1 else 0.0


def draws_table(records: list[dict], losses: list[str]) -> str:
    """Markdown table over training seeds x observation draws, per loss in registry order.

    The mean ± std of all runs, then the two sources of spread apart: the std
    over training seeds of each seed's mean over the draws, and the std over
    observation draws (``observe_seed``) of each draw's mean over the seeds.
    """
    lines = [
        "| loss | observe | test mAP (mean ± std, all runs) | std over training seeds "
        "| std over observation draws | seeds | observe seeds | epochs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for loss in losses:
        rows = [r for r in records if r["loss"] == loss]
        if not rows:
            continue
        values = [r["test_map"] for r in rows]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        observe = ", ".join(sorted({str(r.get("observe") or "config") for r in rows}))
        seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in rows}))
        draws = ", ".join(str(s) for s in sorted({r.get("observe_seed") for r in rows}))
        epochs = ", ".join(sorted({str(r["epochs"]) for r in rows}))
        lines.append(
            f"| {loss} | {observe} | {statistics.mean(values):.2f} ± {std:.2f} "
            f"| {_spread(rows, 'seed'):.2f} | {_spread(rows, 'observe_seed'):.2f} | {seeds} "
            f"| {draws} | {epochs} |"
        )
    return "\n".join(lines)


def table(records: list[dict], losses: list[str]) -> str:
    """Markdown table of mean ± std test mAP per loss, in registry order.

    With several observation draws (``observe_seed``) among the records, the
    table of ``draws_table``.
    """
    if len({r.get("observe_seed") for r in records}) > 1:
        return draws_table(records, losses)
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


def key(record: dict) -> tuple:
    """What identifies a run in the results file (records from before --observe lack those)."""
    return (
        record["loss"],
        record["seed"],
        record.get("observe"),
        record.get("observe_seed"),
        record["epochs"],
    )


#: The losses a run needs nothing more for: GPR and VLPL also need a prior
#: (``--data.init_args.prior``, after ``--``), so they run only when named.
WITHOUT_EXTRA_INPUTS = [name for name, loss in LOSSES.items() if not loss.batch_inputs]


def main_bench() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument(
        "--losses",
        nargs="+",
        default=WITHOUT_EXTRA_INPUTS,
        choices=list(LOSSES),
        metavar="NAME",
        help="registry names (default: every loss that needs no prior: "
        f"{', '.join(WITHOUT_EXTRA_INPUTS)})",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--observe",
        choices=OBSERVE_STRATEGIES,
        default=None,
        help="observation strategy of every run (default: the config's)",
    )
    parser.add_argument(
        "--observe_seeds",
        type=int,
        nargs="+",
        default=None,
        help="observation draws (observe_seed) each training seed runs with (default: the "
        "config's)",
    )
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
        help="skip (loss, seed, observation, epochs) already in the results file",
    )
    parser.add_argument(
        "--table-only", action="store_true", help="print the table of the results file and exit"
    )
    parser.add_argument(
        "--gap",
        nargs=2,
        action="append",
        default=[],
        metavar=("A", "B"),
        help="print A - B paired by seed with its standard error (repeatable)",
    )
    parser.add_argument(
        "--order",
        nargs="+",
        default=None,
        metavar="LOSS",
        help="print on how many seeds the test mAPs fall in this order (highest first)",
    )
    parser.add_argument(
        "extra", nargs=argparse.REMAINDER, help="after --: more spml arguments for every run"
    )
    args = parser.parse_args()
    results = args.workdir / "results.jsonl"
    epochs = args.epochs or int(yaml.safe_load(args.config.read_text())["trainer"]["max_epochs"])
    if not args.table_only:
        args.workdir.mkdir(parents=True, exist_ok=True)
        done = {key(r) for r in read_records(results)} if args.resume else set()
        if not args.resume and results.exists():
            results.unlink()
        extra = [a for a in args.extra if a != "--"]
        code = code_version()  # the code every run of this invocation uses
        for loss in args.losses:
            for seed in args.seeds:
                for draw in args.observe_seeds or [None]:
                    record = {
                        "loss": loss,
                        "seed": seed,
                        "epochs": epochs,
                        "observe": args.observe,
                        "observe_seed": draw,
                    }
                    if key(record) in done:
                        continue
                    start = time.perf_counter()
                    value = run(
                        loss, seed, args.config, args.workdir, epochs, extra, args.observe, draw
                    )
                    seconds = time.perf_counter() - start
                    record.update(test_map=value, seconds=round(seconds), code=code)
                    with results.open("a") as handle:
                        handle.write(json.dumps(record) + "\n")
                    print(
                        f"{loss:>6} seed {seed}"
                        + ("" if draw is None else f" draw {draw}")
                        + f": test mAP {value:.2f}  ({seconds:.0f} s)",
                        flush=True,
                    )
    # Runs of another observation strategy (or of the config's) belong in another table.
    records = [
        r
        for r in read_records(results)
        if r["loss"] in args.losses and r.get("observe") == args.observe
    ]
    print(f"\n{table(records, args.losses)}")
    try:  # too few paired seeds, or a name that ran no seed: say so, without a traceback
        if args.order:
            print(order_by_seed(records, args.order))
        for first, second in args.gap:
            print(describe_gap(first, second, paired_gap(records, first, second)))
    except ValueError as err:
        sys.exit(f"compare_losses.py: {err}")


if __name__ == "__main__":
    main_bench()
