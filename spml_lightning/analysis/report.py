r"""Write a checkpoint's diagnostics as PNGs and a markdown summary.

    spml report --config configs/demo.yaml --ckpt_path best
    spml report --config configs/voc.yaml --ckpt_path runs/voc/.../best.ckpt \
        --output_dir report/ --data.init_args.root /data/VOC \
        --sweep_root runs/q2_sweep --sweep_parameter q2

Every ``spml`` flag (``--data.init_args.root`` ...) is passed on to the config.
The output folder (default: ``report_<checkpoint name>`` beside the run's
``checkpoints`` folder) receives ``summary.md`` (mAP, OF1/CF1 and the other
precision/recall/F1 numbers, per-class table, the observation strategy with the
observed vs true positives per class, figures), ``summary.json`` (the same
numbers: ``mAP``, ``OF1``, ``top3/CF1``, ..., ``observed_by``), ``per_class.csv``,
``false_negative_rate.csv`` and
the PNGs ``false_negative_rate``, ``distinguishing_ability``,
``loss_gradients`` (and ``sweep`` with ``--sweep_root``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

from spml_lightning.analysis.analyze import CheckpointAnalysis, analyze
from spml_lightning.analysis.run import load_run
from spml_lightning.analysis.sweep import SweepPoint
from spml_lightning.console import RunProgress, run_command
from spml_lightning.metrics import METRIC_NAMES, TOP_K
from spml_lightning.training.folder_lock import FolderLock

__all__ = ["command", "default_output_dir", "main", "write_report"]


def default_output_dir(ckpt_path: Path) -> Path:
    """Where a checkpoint's report goes by default.

    ``version_N/report_<stem>`` for ``version_N/checkpoints/<stem>.ckpt``, else
    ``report_<stem>`` beside the file.
    """
    folder = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
    return folder / f"report_{ckpt_path.stem}"


def _prepare(output_dir: Path, overwrite: bool) -> FolderLock:
    """Make the output folder, locked for this report: two reports never mix their files."""
    _check_empty(output_dir, overwrite)
    lock = FolderLock(str(output_dir))  # creates the folder
    if not lock.acquire():
        raise FileExistsError(
            f"Another report is being written into {output_dir}; pass another --output_dir, or "
            "wait for it to end."
        )
    _check_empty(output_dir, overwrite)  # a report that ended between the check and the lock
    return lock


def _check_empty(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{output_dir} exists and is not empty; pass another --output_dir, or --overwrite to "
            "replace the report files in it."
        )


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def _operating_points_table(result: CheckpointAnalysis) -> list[str]:
    """The F1 metrics of the evaluated split as markdown lines: one row per operating point."""
    values = result.operating_points
    lines = [
        f"## Precision, recall and F1 ({result.table.split})",
        "",
        "Overall (O: micro) and per-class (C: macro) precision, recall, F1 "
        "(docs/guides/inspecting.md).",
        "",
        "| predicted labels | " + " | ".join(METRIC_NAMES) + " |",
        "|---|" + "---:|" * len(METRIC_NAMES),
    ]
    for label, prefix in (("p ≥ 0.5", ""), (f"top {TOP_K} with p ≥ 0.5", f"top{TOP_K}/")):
        cells = " | ".join(f"{values[prefix + name]:.2f}" for name in METRIC_NAMES)
        lines.append(f"| {label} | {cells} |")
    return lines


def write_report(
    result: CheckpointAnalysis,
    ckpt_path: Path,
    output_dir: Path,
    sweep: tuple[str, str, Sequence[SweepPoint]] | None = None,
) -> list[Path]:
    """Write the report files of ``result`` into ``output_dir``; returns the written files.

    Args:
        result: from ``analysis.analyze``.
        ckpt_path: the analysed checkpoint (named in the summary).
        output_dir: existing folder.
        sweep: optional ``(hyper_parameter, metric, points)`` of a sweep to draw.
    """
    written: list[Path] = []
    figures = result.figures()
    if sweep is not None:
        from spml_lightning.analysis.plots import plot_sweep

        figures["sweep"] = plot_sweep(sweep[2], sweep[0], sweep[1])
    for name, figure in figures.items():
        written.append(output_dir / f"{name}.png")
        figure.savefig(written[-1], dpi=120)

    written.append(output_dir / "per_class.csv")
    result.table.to_csv(written[-1])

    curve = result.false_negative_rate
    written.append(output_dir / "false_negative_rate.csv")
    with written[-1].open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["bin_start", "bin_end", "false_negatives", "true_negatives", "rate"])
        for i in range(len(curve.centers)):
            rate = "" if math.isnan(curve.rate[i]) else f"{curve.rate[i]:.6g}"
            writer.writerow(
                [
                    f"{curve.edges[i]:.4g}",
                    f"{curve.edges[i + 1]:.4g}",
                    int(curve.false_negatives[i]),
                    int(curve.true_negatives[i]),
                    rate,
                ]
            )

    unknown_fn, unknown_tn = int(curve.false_negatives.sum()), int(curve.true_negatives.sum())
    numbers = {
        "checkpoint": str(ckpt_path),
        "loss_schedule": result.schedule,
        "split": result.table.split,
        "mAP": result.table.mean_average_precision,
        "wasserstein_distance": None
        if math.isnan(result.distinguishing.wasserstein)
        else result.distinguishing.wasserstein,
        "unknown_labels": unknown_fn + unknown_tn,
        "unknown_positives": unknown_fn,
        "gradient_failures": result.gradient_failures,
        **result.operating_points,
        "observed_by": result.observed_by,
        **_prior_numbers(result),
    }
    written.append(output_dir / "summary.json")
    written[-1].write_text(json.dumps(numbers, indent=1))

    share = unknown_fn / max(unknown_fn + unknown_tn, 1)
    lines = [
        f"# Checkpoint report: {ckpt_path.name}",
        "",
        f"- checkpoint: `{ckpt_path}`",
        f"- loss schedule at: {result.schedule}",
        f"- **mAP ({result.table.split}): {result.table.mean_average_precision:.2f}**",
        f"- unknown labels in the training set: {unknown_fn + unknown_tn}, of which truly positive "
        f"(false negatives): {unknown_fn} ({100 * share:.2f} %)",
        f"- Wasserstein distance between p of unknown positives and unknown negatives: "
        f"{_number(result.distinguishing.wasserstein)}",
        "",
        *_operating_points_table(result),
        "",
        "## Per-class AP and class statistics",
        "",
        result.table.to_markdown(),
        "",
        *_observation_lines(result),
        *_prior_lines(result),
        "## FN / (FN + TN) of the unknown labels per confidence bin",
        "",
        "100 bins on [0, 1]; bins without unknown labels are empty (not drawn). "
        "Counts per bin: `false_negative_rate.csv`.",
        "",
        "![FN rate](false_negative_rate.png)",
        "",
        "## Distinguishing ability",
        "",
        "![distinguishing ability](distinguishing_ability.png)",
        "",
        "## Gradient of the losses w.r.t. the logit of an unknown label",
        "",
        "![loss gradients](loss_gradients.png)",
    ]
    for name, reason in result.gradient_failures.items():
        lines.append(f"\n- {name}: not drawn, it cannot be built with default arguments ({reason})")
    if sweep is not None:
        parameter, metric, points = sweep
        lines += [
            "",
            f"## {metric} over {parameter}",
            "",
            "![sweep](sweep.png)",
            "",
            f"| {parameter} | {metric} | run |",
            "|---:|---:|---|",
        ]
        lines += [f"| {p.value} | {p.metric:.2f} | `{p.run_dir}` |" for p in points]
    written.append(output_dir / "summary.md")
    written[-1].write_text("\n".join(lines) + "\n")
    return written


def _observation_lines(result: CheckpointAnalysis) -> list[str]:
    """Which positives the training set observes: the strategy, and the counts per class."""
    targets, observed = result.train.targets > 0.5, result.train.observed == 1
    lines = [
        "## Observed positives in the training set",
        "",
        f"Observed by: **{result.observed_by or 'unknown'}** (the datamodule's `observe`; "
        "`given`: the labels came with the data). A biased strategy shows as observed shares "
        "that differ between classes.",
        "",
        "| class | true positives | observed positives | observed share |",
        "|---|---:|---:|---:|",
    ]
    for name, true, seen in zip(
        result.table.class_names, targets.sum(axis=0), observed.sum(axis=0), strict=True
    ):
        share = f"{100 * seen / true:.1f} %" if true else "n/a"
        lines.append(f"| {name} | {int(true)} | {int(seen)} | {share} |")
    lines.append(f"| **total** | {int(targets.sum())} | {int(observed.sum())} | |")
    return [*lines, ""]


def _prior_numbers(result: CheckpointAnalysis) -> dict[str, float | int]:
    """The prior's quality for summary.json (nothing without a prior)."""
    quality = result.prior_quality
    if quality is None:
        return {}
    return {
        "prior_mAP": quality.mean_average_precision,
        "prior_pseudo_positives": int(quality.pseudo_positives.sum()),
        "prior_precision": quality.precision,
        "prior_recall": quality.recall,
        "prior_missed_observed": quality.missed_observed,
    }


def _prior_lines(result: CheckpointAnalysis) -> list[str]:
    """The vision-language prior's quality against the full labels, per class."""
    quality = result.prior_quality
    if quality is None:
        return []
    lines = [
        "## The prior (pseudo-positives)",
        "",
        f"The datamodule's prior: {quality.summary()}",
        "",
        "| class | AP of the scores | pseudo-positives | precision | recall |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in quality.per_class():
        lines.append(
            f"| {row['class']} | {_number(float(row['AP']))} | {row['pseudo_positives']} | "
            f"{_number(float(row['precision']))} | {_number(float(row['recall']))} |"
        )
    return [*lines, ""]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spml report",
        description="Write a checkpoint's per-class table and SPML diagnostics (PNGs + "
        "summary.md). Flags not listed here (--data.init_args.root ...) are spml config overrides.",
        allow_abbrev=False,
    )
    parser.add_argument("--config", required=True, help="the spml YAML the model was trained with")
    parser.add_argument(
        "--ckpt_path", default="best", help="a .ckpt file, or best/last of the newest run"
    )
    parser.add_argument(
        "--output_dir", type=Path, default=None, help="default: report_<ckpt> beside the run"
    )
    parser.add_argument(
        "--split", default="test", choices=("test", "val", "train"), help="split of the AP table"
    )
    parser.add_argument(
        "--bins", type=int, default=100, help="bins of the FN/(FN+TN) curve on [0, 1]"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the files of an existing report"
    )
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--sweep_root", type=Path, default=None, help="folder of runs for a sweep plot"
    )
    parser.add_argument(
        "--sweep_parameter", default=None, help="hyper-parameter of the sweep, e.g. q2"
    )
    parser.add_argument("--sweep_metric", default="test/mAP", help="metric of the sweep")
    return parser


def main(argv: Sequence[str] | None = None, progress: RunProgress | None = None) -> Path:
    """Write the report of ``argv`` (the command line without the program name); the output folder.

    Errors propagate; :func:`command` is the command line's entry point with exit statuses.
    """
    parser = _parser()
    args, overrides = parser.parse_known_args(argv)
    if (args.sweep_root is None) != (args.sweep_parameter is None):
        parser.error("--sweep_root and --sweep_parameter go together.")
    unknown = [a for a in overrides if a.startswith("--") and "." not in a.split("=")[0]]
    if unknown:
        parser.error(
            f"unrecognised arguments {unknown} (spml overrides look like --data.init_args.root)."
        )
    if progress is not None:
        progress.started = True
    run = load_run(args.config, args.ckpt_path, overrides)
    output_dir = args.output_dir or default_output_dir(run.ckpt_path)
    lock = _prepare(output_dir, args.overwrite)
    try:
        sweep = None
        if args.sweep_root is not None:
            from spml_lightning.analysis.sweep import collect_sweep

            sweep = (
                args.sweep_parameter,
                args.sweep_metric,
                collect_sweep(args.sweep_root, args.sweep_parameter, args.sweep_metric),
            )
        result = analyze(run, split=args.split, bins=args.bins, progress=not args.no_progress)
        write_report(result, run.ckpt_path, output_dir, sweep)
        print(f"Report written to {output_dir / 'summary.md'}")
    finally:
        lock.release()
    return output_dir


def command(argv: Sequence[str] | None = None) -> int:
    """``spml report``: :func:`main` with exit statuses (``spml_lightning.console``).

    Returns 0 on success, 1 when the report fails, 2 for bad arguments.
    """
    return run_command("spml report", main, argv)
