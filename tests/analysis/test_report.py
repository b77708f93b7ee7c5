"""spml report on a checkpoint of a tiny demo run."""

import csv
import json
import math

import pytest

from spml_lightning.analysis.report import default_output_dir, main

PNGS = ("false_negative_rate", "distinguishing_ability", "loss_gradients", "sweep")


def test_report_writes_every_file(tiny_run, tmp_path):
    out = tmp_path / "report"
    args = [
        *tiny_run["args"],
        "--ckpt_path",
        str(tiny_run["best"]),
        "--output_dir",
        str(out),
        "--no_progress",
        "--sweep_root",
        str(tiny_run["runs"]),
        "--sweep_parameter",
        "q2",
    ]
    assert main(args) == out
    for name in PNGS:
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name

    with (out / "per_class.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert (
        list(rows[0]) == ["class", "AP", "positives", "missing_positives", "images"]
        and len(rows) == 14
    )
    for row in rows:
        assert 0 <= float(row["AP"]) <= 100
        assert 0 <= int(row["missing_positives"]) <= int(row["positives"]) <= int(row["images"])

    with (out / "false_negative_rate.csv").open(newline="") as handle:
        bins = list(csv.DictReader(handle))
    assert len(bins) == 100 and float(bins[0]["bin_start"]) == 0 and float(bins[-1]["bin_end"]) == 1
    for row in bins:
        counted = int(row["false_negatives"]) + int(row["true_negatives"])
        if counted:
            assert float(row["rate"]) == pytest.approx(
                int(row["false_negatives"]) / counted, abs=1e-5
            )
            assert 0 <= float(row["rate"]) <= 1
        else:
            assert row["rate"] == ""  # empty bin: no estimate

    summary = json.loads((out / "summary.json").read_text())
    assert summary["mAP"] == pytest.approx(tiny_run["test_map"], abs=1e-4)
    assert summary["wasserstein_distance"] >= 0 and math.isfinite(summary["wasserstein_distance"])
    assert summary["unknown_positives"] == sum(int(r["false_negatives"]) for r in bins)
    assert summary["unknown_positives"] == sum(int(r["missing_positives"]) for r in rows)
    # The F1 metrics are the ones `spml test` logged for the same checkpoint.
    logged = tiny_run["test_results"]
    for name in ("OP", "OR", "OF1", "CP", "CR", "CF1"):
        for key in (name, f"top3/{name}"):
            assert summary[key] == pytest.approx(logged[f"test/{key}"], abs=1e-4), key
    markdown = (out / "summary.md").read_text()
    assert f"mAP (test): {summary['mAP']:.2f}" in markdown
    assert "| predicted labels | OP | OR | OF1 | CP | CR | CF1 |" in markdown
    top3_cells = " | ".join(f"{summary[f'top3/{n}']:.2f}" for n in ("OP", "OR", "OF1"))
    assert f"| top 3 with p ≥ 0.5 | {top3_cells} | " in markdown
    for name in PNGS:
        assert f"({name}.png)" in markdown


def test_report_keeps_existing_files(tiny_run, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        main([*tiny_run["args"], "--ckpt_path", str(tiny_run["best"]), "--output_dir", str(out)])
    assert (out / "notes.txt").read_text() == "mine"


def test_report_argument_errors(tiny_run):
    with pytest.raises(SystemExit):
        main([*tiny_run["args"], "--sweep_root", "runs"])  # without --sweep_parameter
    with pytest.raises(SystemExit):
        main([*tiny_run["args"], "--bogus"])


def test_default_output_dir(tmp_path):
    assert default_output_dir(tmp_path / "version_3" / "checkpoints" / "best-07.ckpt") == (
        tmp_path / "version_3" / "report_best-07"
    )
    assert default_output_dir(tmp_path / "model.ckpt") == tmp_path / "report_model"


def test_report_shows_the_observation_strategy_and_observed_positives(tiny_run, tmp_path):
    out = tmp_path / "report"
    main([*tiny_run["args"], "--ckpt_path", str(tiny_run["best"]), "--output_dir", str(out)])
    assert json.loads((out / "summary.json").read_text())["observed_by"] == "uniform"
    markdown = (out / "summary.md").read_text()
    assert "Observed by: **uniform**" in markdown
    with (out / "per_class.csv").open(newline="") as handle:
        per_class = {row["class"]: row for row in csv.DictReader(handle)}
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "%" in line]
    assert len(rows) == 14
    observed_total = 0
    for line in rows:
        name, true, seen, share = (cell.strip() for cell in line.strip("|").split("|"))
        # Observed = true positives minus the missing ones of the per-class table.
        row = per_class[name]
        assert int(true) == int(row["positives"])
        assert int(seen) == int(row["positives"]) - int(row["missing_positives"])
        assert share == f"{100 * int(seen) / int(true):.1f} %"
        observed_total += int(seen)
    # One observed positive per training image (every demo image has 1 to 4 positives).
    images = int(next(iter(per_class.values()))["images"])
    assert observed_total == images
    assert (
        f"| **total** | {sum(int(r['positives']) for r in per_class.values())} | {images} | |"
        in (markdown)
    )


def test_spml_report_is_a_subcommand(tiny_run, tmp_path, capsys):
    from spml_lightning.cli import main as spml

    out = tmp_path / "report"
    args = [*tiny_run["args"], "--ckpt_path", str(tiny_run["best"]), "--no_progress"]
    assert spml(["report", *args, "--output_dir", str(out)]) == 0
    assert (out / "summary.md").exists() and (out / "summary.json").exists()
    assert spml(["report", *args, "--bogus"]) == 2
    assert "spml report" in capsys.readouterr().err


def test_report_refuses_data_with_other_training_rows(tiny_run, tmp_path, capsys):
    from spml_lightning.analysis.report import command

    out = tmp_path / "report"
    args = [*tiny_run["args"], "--ckpt_path", str(tiny_run["best"]), "--output_dir", str(out)]
    assert command([*args, "--data.init_args.observe_seed", "7"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "The train and val rows of DemoDataModule differ from those the checkpoint" in err
    assert "observe_seed" in err and not out.exists()


def test_a_report_folder_another_report_is_writing_is_refused(tiny_run, tmp_path):
    from probes import folder_locked_elsewhere

    out = tmp_path / "report"
    args = [*tiny_run["args"], "--ckpt_path", str(tiny_run["best"]), "--output_dir", str(out)]
    with folder_locked_elsewhere(out):
        with pytest.raises(FileExistsError, match="Another report is being written into"):
            main(args)
    assert not any(out.iterdir())


def test_report_shows_the_priors_quality_per_class(tiny_run, tiny_demo_root, tmp_path):
    from prior_files import write_scores_csv

    scores, _ = write_scores_csv(tmp_path / "scores.csv", tiny_demo_root, target_map=80.0)
    out = tmp_path / "report"
    main([*tiny_run["args"], "--data.init_args.prior", str(scores),
          "--ckpt_path", str(tiny_run["best"]), "--output_dir", str(out)])  # fmt: skip
    numbers = json.loads((out / "summary.json").read_text())
    assert abs(numbers["prior_mAP"] - 80) <= 3 and numbers["prior_pseudo_positives"] > 0
    assert 0 <= numbers["prior_precision"] <= 100 and numbers["prior_missed_observed"] >= 0
    markdown = (out / "summary.md").read_text()
    assert "## The prior (pseudo-positives)" in markdown
    rows = [line for line in markdown.split("## The prior")[1].splitlines() if line.count("|") == 6]
    assert len(rows) == 2 + 14  # header, rule, one row per class
    # Without a prior there is no such section.
    plain = tmp_path / "plain"
    main([*tiny_run["args"], "--ckpt_path", str(tiny_run["best"]), "--output_dir", str(plain)])
    assert "The prior" not in (plain / "summary.md").read_text()
