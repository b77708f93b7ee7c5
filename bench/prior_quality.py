"""From what prior quality on does a prior pay? GR against GPR and VLPL on priors of chosen mAP.

No CLIP weights are needed: for each mAP asked for (``--maps``), a prior is made from the
training images' full labels with noise (``spml_lightning.priors.synthetic.noisy_scores``),
written as a scores CSV, and GPR and VLPL train on its pseudo-positives (the default
policy: the 3 best classes of probability >= 0.5); GR, which takes no prior, trains on the
same seeds. Each run is fit, then test of its best-val checkpoint; the results are paired by
seed: GPR - GR and VLPL - GR at each prior quality. One JSON line per run goes to ``--out``
(``loss``, ``seed``, ``prior_map`` asked, ``prior_map_reached``, ``test_map``), so that an
interrupted run resumes where it stopped.

    python bench/prior_quality.py [--config configs/demo.yaml] [--maps 60 80 95] \
        [--seeds 0 1 2] [--out bench/results/cpu_prior_quality_demo.jsonl] [-- spml flags]

On the demo this is 3 maps x 3 seeds x 2 losses + 3 GR runs: 21 fits.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
from pathlib import Path

from harness import cpu_name, describe_gap, fit_then_test, paired_gap, print_load, read_records

from spml_lightning.cli import run_cli
from spml_lightning.priors.synthetic import noisy_scores

REPO = Path(__file__).resolve().parent.parent

#: The losses compared with GR, and GR itself (which takes no prior).
PRIOR_LOSSES = ("GPR", "VLPL")
BASELINE = "GR"


def training_images(common: list[str]):
    """The config's datamodule, set up for fitting: its training set and class names."""
    cli = run_cli(list(common), run=False)
    datamodule = cli.datamodule
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def write_prior(datamodule, target_map: float, seed: int, path: Path) -> float:
    """A scores CSV of the training images with about ``target_map``; the mAP reached."""
    dataset = datamodule.train_dataset
    scores, reached = noisy_scores(dataset.targets, target_map, seed=seed, tolerance=1.0)
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["image", *datamodule.class_names])
        for image, row in zip(dataset.image_paths, scores, strict=True):
            writer.writerow([os.path.abspath(image), *(f"{v:.6f}" for v in row)])
    return reached


def fit_and_test(common: list[str], loss: str, seed: int, workdir: Path, extra: list[str]) -> float:
    """Fit ``loss`` with ``seed`` and test its best-val checkpoint; the test mAP."""
    args = [*common, "--model.loss", loss, "--seed_everything", str(seed)]
    return fit_then_test(args, workdir, extra)


def report(records: list[dict], maps: list[float]) -> list[str]:
    """One line per prior quality and loss: its paired gap to GR over the seeds."""
    lines = []
    baseline = [r for r in records if r["loss"] == BASELINE]
    for target in maps:
        for loss in PRIOR_LOSSES:
            runs = baseline + [r for r in records if r["loss"] == loss and r["prior_map"] == target]
            try:
                gap = paired_gap(runs, loss, BASELINE)
            except ValueError as error:
                lines.append(f"prior mAP {target:g}: {error}")
                continue
            lines.append(f"prior mAP {target:g}: {describe_gap(loss, BASELINE, gap)}")
    return lines


def main_bench(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--maps", type=float, nargs="+", default=[60.0, 80.0, 95.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per run")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more spml flags")
    args = parser.parse_args(argv)
    extra = [a for a in args.extra if a != "--"]
    common = ["--config", str(args.config), *extra]
    print(f"# prior_quality: {args.config}; machine: {cpu_name()}")
    print_load("start")
    records = read_records(args.out)
    done = {(r["loss"], r["seed"], r.get("prior_map")) for r in records}
    datamodule = training_images(common)
    # The expected positives per image of GPR's regulariser, from the training labels (as the
    # papers take theirs).
    expected = float(datamodule.train_dataset.targets.sum(axis=1).mean())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plans = [(BASELINE, seed, None) for seed in args.seeds] + [
            (loss, seed, target)
            for target in args.maps
            for seed in args.seeds
            for loss in PRIOR_LOSSES
        ]
        for loss, seed, target in plans:
            if (loss, seed, target) in done:
                continue
            flags, reached = [], None
            if target is not None:
                prior = work / f"prior_{target:g}.csv"
                reached = write_prior(datamodule, target, 0, prior)
                flags = ["--data.init_args.prior", str(prior)]
            run_dir = work / f"{loss}_{seed}_{target}"
            chosen = loss
            if loss == "GPR":
                chosen = (
                    "{class_path: spml_lightning.losses.GPRLoss, "
                    f"init_args: {{expected_positives: {expected:.4f}}}}}"
                )
            test_map = fit_and_test(common, chosen, seed, run_dir, flags)
            record = {"loss": loss, "seed": seed, "prior_map": target,
                      "prior_map_reached": reached, "test_map": test_map}  # fmt: skip
            records.append(record)
            with open(args.out, "a", encoding="utf-8") as file:
                file.write(json.dumps(record) + "\n")
            print(f"#   {loss} seed {seed} prior {target}: test mAP {test_map:.2f}", flush=True)
    print_load("end")
    for line in report(records, args.maps):
        print(line)
    return records


if __name__ == "__main__":
    main_bench()
