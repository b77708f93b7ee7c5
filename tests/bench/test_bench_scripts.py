"""The bench/ scripts run at tiny sizes (their numbers are not checked here)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# -- the benchmark scripts run (tiny sizes; their numbers are not checked) ----------------------


def goal_lines(output: str) -> dict[str, str]:
    """``ratio`` and ``check`` lines of a benchmark's output by label."""
    return {
        re.split(r"\s{2,}", line[7:])[0]: line
        for line in output.splitlines()
        if line.startswith(("ratio ", "check "))
    }


def test_train_throughput_runs(bench_module, capsys):
    bench = bench_module("train_throughput")
    bench.main(
        [
            "--steps",
            "2",
            "--warmup",
            "1",
            "--val-batches",
            "1",
            "--repeats",
            "1",
            "--image-size",
            "32",
            "--jpeg-size",
            "40x30",
            "--workers",
            "0",
            "--fast-workers",
            "0",
            "--fast-batch-size",
            "8",
            "--sides",
            "reference",
            "spml-paper",
            "spml-fast",
            "ceiling-fast",
        ]
    )
    lines = goal_lines(capsys.readouterr().out)
    assert {
        "train spml-paper/reference (goal 1)",
        "val spml-paper/reference (goal 1)",
        "train spml-fast/ceiling-fast (goal 2, on a GPU)",
    } <= set(lines)


def test_spml_sides_are_built_alike_with_and_without_the_cli(bench_module, tmp_path):
    bench = bench_module("train_throughput")
    settings = bench.Settings(
        device=torch.device("cpu"),
        data_root=tmp_path,
        work_dir=tmp_path,
        backbone="resnet18",
        image_size=32,
        batch_size=8,
        workers=0,
        fast_batch_size=16,
        fast_workers=0,
        warmup=1,
        steps=1,
        val_batches=1,
        compile=False,
        decode_on="device",
        progress_bar=False,
    )
    bench.write_formatted_dataset(tmp_path, 40, 4, 80, 40, 30)
    values = bench.spml_settings(settings, fast=True)
    built = [bench.build_with_cli(values), bench.build_without_cli(values)]
    for trainer, model, data in built:
        assert trainer.precision == "bf16-mixed" and model.hparams.channels_last
        assert (data.batch_size, data.decode_on, data.num_workers) == (16, "device", 0)
        assert [
            type(c).__name__
            for c in trainer.callbacks
            if "Checkpoint" in type(c).__name__ or "Stopping" in type(c).__name__
        ] == ["DropFromBestStopping", "ResumableCheckpoint"]


def test_data_pipeline_runs_and_device_decode_agrees(bench_module, capsys):
    bench_module("data_pipeline").main(
        [
            "--image-size",
            "32",
            "--jpeg-size",
            "40x30",
            "--batch-size",
            "4",
            "--batches",
            "2",
            "--warmup",
            "1",
            "--repeats",
            "1",
            "--workers",
            "0",
        ]
    )
    lines = goal_lines(capsys.readouterr().out)
    decode_checks = [
        line for label, line in lines.items() if label.startswith("decode_on=device vs PIL")
    ]
    assert len(decode_checks) == 2 and all(line.endswith("  MET") for line in decode_checks)
    assert "loader spml-workers/reference, 0 worker(s) (goal 3: per core)" in lines


def test_eval_speed_runs_and_agrees_with_sklearn(bench_module, capsys):
    bench_module("eval_speed").main(["--rows", "300", "--classes", "6", "--repeats", "1"])
    lines = goal_lines(capsys.readouterr().out)
    agreement = lines["max |AP spml - AP sklearn| over classes"]
    reads = [line for label, line in lines.items() if label.startswith("host reads")]
    assert (
        agreement.endswith("  MET") and len(reads) == 2 and all(r.endswith("  MET") for r in reads)
    )


def test_loader_memory_runs(bench_module, capsys):
    # A child process that is not a loader worker (as a previous test's leftover
    # would be) must not be counted as one.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        bench_module("loader_memory").main(["--rows", "300", "--workers", "2", "--batches", "3"])
    finally:
        bystander.kill()
        bystander.wait()
    out = capsys.readouterr().out
    lines = goal_lines(out)
    assert "one worker's peak USS (its private pages), MB" in lines
    assert "workers_seen 2.0" in out
    total = float(lines["main + 2 workers, peak total PSS, MB"].split()[-1])
    assert math.isfinite(total) and total > 0


def test_step_overhead_runs(bench_module, capsys):
    bench_module("step_overhead").main(["--steps", "3", "--warmup", "2", "--repeats", "1"])
    assert "overhead of spml over plain, ms per step" in goal_lines(capsys.readouterr().out)


def test_gpu_check_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(BENCH / "gpu_check.sh")], check=True)


def test_profile_accuracy_summarizes_a_results_file_paired_by_seed(bench_module, tmp_path, capsys):
    # --summary_only trains nothing: the verdicts come from the stored runs, paired by seed.
    one, other = {"bench_run": "one"}, {"bench_run": "other"}
    runs = [
        {"loss": "GR", "profile": "paper", "seed": 0, "mAP": 60.0, "seconds": 100.0, **one},
        {"loss": "GR", "profile": "paper", "seed": 1, "mAP": 62.0, "seconds": 100.0, **one},
        {"loss": "GR", "profile": "fast", "seed": 0, "mAP": 61.0, "seconds": 50.0, **one},
        {"loss": "GR", "profile": "fast", "seed": 1, "mAP": 60.0, "seconds": 60.0, **other},
        {"loss": "GR", "profile": "batch", "seed": 0, "mAP": 59.0, "seconds": 80.0, **other},
        {"loss": "GR", "profile": "batch", "seed": 1, "mAP": 60.5, "seconds": 80.0},
        {"loss": "GR", "profile": "channels_last", "seed": 1, "mAP": 63.0, "seconds": 90.0},
    ]
    results = tmp_path / "runs.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in runs))
    bench_module("profile_accuracy").main_bench(
        ["--results", str(results), "--summary_only", "--seeds", "0", "1",
         "--profiles", "fast", "batch", "channels_last"]
    )  # fmt: skip
    out = capsys.readouterr().out
    # One seed has no spread: its value alone, not "± 0.00".
    assert "| channels_last | 63.00 (1 seed) | +1.00 (1 seed) |" in out, out
    assert "± 0.00" not in out, out
    # fast: +1 and -2 -> mean -0.5, std 2.12: within a point and the spread.
    assert re.search(r"check  GR fast - paper.*-0\.500 .* std 2\.121\s+MET", out), out
    # batch: -1 and -1.5 -> mean -1.25: more than a point.
    assert re.search(r"check  GR batch - paper.*-1\.250 .*NOT MET", out), out
    # Wall time only from the seeds one bench run timed side by side (fast seed 0).
    assert re.search(r"paper/fast \(1 seed in one run\)\s+2\.000   goal >= 1.5   MET", out), out
    # batch's runs come from other bench runs than paper's: no ratio of them.
    assert re.search(r"paper/batch\s+n/a   not timed side by side", out), out
    # Two seeds cannot resolve a point: the t interval is +-19 points wide.
    assert re.search(r"interval  GR fast - paper.*\[-19\.56, \+18\.56\]\s+unresolved", out), out


def test_profile_accuracy_compares_wall_times_only_within_one_bench_run(
    bench_module, tmp_path, tiny_demo_root, capsys
):
    # A resumed comparison mixes runs timed under other loads: its speed ratio is refused.
    from probes import TINY_DEMO_FLAGS

    results = tmp_path / "runs.jsonl"
    tiny = ["--workers", "0", "--results", str(results), "--data.init_args.root",
            str(tiny_demo_root), *TINY_DEMO_FLAGS]  # fmt: skip
    bench = bench_module("profile_accuracy").main_bench
    bench(["--seeds", "0", "--profiles", "channels_last", *tiny])
    bench(["--seeds", "0", "--profiles", "batch", "--resume", *tiny])
    runs = {r["profile"]: r for r in map(json.loads, results.read_text().splitlines())}
    assert runs["paper"]["bench_run"] == runs["channels_last"]["bench_run"]
    assert runs["batch"]["bench_run"] != runs["paper"]["bench_run"]
    out = capsys.readouterr().out
    assert re.search(r"paper/channels_last \(1 seed in one run\)\s+\d+\.\d{3}$", out, re.M), out
    assert re.search(r"paper/batch\s+n/a   not timed side by side", out), out


def test_t975_matches_the_t_tables(bench_module):
    t975 = bench_module("harness").t975
    # Student's t, two-sided 95 %, from the printed tables.
    for df, table in [(1, 12.706), (4, 2.776), (7, 2.365), (8, 2.306), (10, 2.228), (29, 2.045)]:
        assert t975(df) == pytest.approx(table, abs=1.5e-3), df
    assert t975(10_000) == pytest.approx(1.960, abs=1e-3)
    with pytest.raises(ValueError, match="degree of freedom"):
        t975(0)


def test_mean_interval95_is_the_t_interval(bench_module):
    interval = bench_module("harness").mean_interval95
    low, high = interval([1.0, 2.0, 3.0, 4.0, 5.0])  # mean 3, std 1.581, t 2.776
    half = 2.776 * 1.5811 / 5**0.5
    assert (low, high) == pytest.approx((3 - half, 3 + half), abs=1e-3)
    with pytest.raises(ValueError, match="at least two"):
        interval([1.0])


@pytest.mark.parametrize(
    ("paired", "shown"),
    [
        ([0.1, -0.2, 0.3, 0.0, -0.1, 0.2], "under a point: shown"),
        ([-2.0, -2.5, -1.5, -2.2], "a gap: shown"),
        ([1.6, -2.5, -4.9], r"unresolved \(about \d+ seeds"),
    ],
)
def test_profile_accuracy_interval_says_what_the_seeds_show(bench_module, capsys, paired, shown):
    bench_module("profile_accuracy").print_interval("GR fast - paper", paired)
    out = capsys.readouterr().out
    assert re.search(rf"interval  GR fast - paper, 95 % interval .*\] +{shown}", out), out


def test_seeds_for_a_point_grows_with_the_spread(bench_module):
    seeds_for_a_point = bench_module("profile_accuracy").seeds_for_a_point
    t975 = bench_module("harness").t975
    for spread in (0.5, 1.0, 2.5):
        n = seeds_for_a_point(spread)
        # The smallest n whose interval is within +-1.
        assert t975(n - 1) * spread / n**0.5 <= 1.0 < t975(n - 2) * spread / (n - 1) ** 0.5
    assert seeds_for_a_point(1.0) < seeds_for_a_point(2.5)


def test_profile_accuracy_summary_only_needs_a_results_file(bench_module, tmp_path):
    with pytest.raises(SystemExit):
        bench_module("profile_accuracy").main_bench(
            ["--summary_only", "--results", str(tmp_path / "none.jsonl")]
        )


def test_demo_time_runs_the_installed_spml_and_reads_its_test_map(bench_module, tmp_path, capsys):
    # The demo config at tiny sizes (the sizes of tests/probes.py), one repeat.
    import yaml

    config = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    config["trainer"].update(max_epochs=1, limit_train_batches=2, enable_progress_bar=False)
    config["data"]["init_args"].update(
        num_train=80, num_test=40, render_size=32, image_size=32, num_workers=0
    )
    tiny = tmp_path / "tiny_demo.yaml"
    tiny.write_text(yaml.safe_dump(config))
    bench = bench_module("demo_time")
    if not bench.SPML.is_file():
        pytest.skip(f"no installed spml next to {sys.executable}")
    bench.main_bench(["--config", str(tiny), "--repeats", "1"])
    output = capsys.readouterr().out
    assert re.search(
        r"run 1/1: fit [\d.]+ s, test [\d.]+ s, together [\d.]+ s; test mAP \d+\.\d\d", output
    )
    assert set(goal_lines(output)) == {
        "demo data, first generation (s)",
        "demo fit + test, median of 1 (s)",
    }


def test_cached_features_times_both_sides_and_reuses_one_extraction(
    bench_module, tmp_path, capsys, tiny_demo_root
):
    bench = bench_module("cached_features")
    bench.main_bench([
        "--epochs", "1", "--", "--data.init_args.root", str(tiny_demo_root),
        "--data.init_args.num_train", "80", "--data.init_args.num_test", "40",
        "--data.init_args.render_size", "32", "--data.init_args.image_size", "32",
        "--data.init_args.num_workers", "0", "--trainer.limit_train_batches", "2",
    ])  # fmt: skip
    output = capsys.readouterr().out
    assert re.search(r"run 1/1 frozen: epochs [\d.]+ s", output)
    assert re.search(r"run 1/1 cached: epochs [\d.]+ s", output)
    assert set(goal_lines(output)) == {
        "extraction of every split, once (s)",
        "epoch through the frozen backbone, median (s)",
        "epoch on the cached features, median (s)",
        "epoch time, frozen backbone / cached features",
    }


def test_serve_bench_prints_throughput_and_latency_per_concurrency(
    bench_module, tmp_path, capsys, monkeypatch
):
    monkeypatch.syspath_prepend(str(REPO / "tests" / "deploy"))
    from serving import tiny_onnx_model

    model = tiny_onnx_model(tmp_path / "model.onnx")
    bench = bench_module("serve")
    bench.main(
        ["--model", str(model), "--requests", "3", "--warmup", "1", "--concurrency", "1", "2"]
    )
    lines = goal_lines(capsys.readouterr().out)
    assert set(lines) == {
        f"{clients} client(s), 3 requests: {name}"
        for clients in (1, 2)
        for name in ("requests/s", "p50 ms", "p99 ms", "mean batch size")
    }
    assert all(float(line.split()[-1]) > 0 for line in lines.values()), lines
    # One client at a time: every request ran alone.
    assert float(lines["1 client(s), 3 requests: mean batch size"].split()[-1]) == 1.0


def test_prior_quality_pairs_gr_with_gpr_and_vlpl_on_a_prior_of_chosen_map(
    bench_module, tmp_path, capsys, tiny_demo_root
):
    bench = bench_module("prior_quality")
    out = tmp_path / "runs.jsonl"
    argv = [
        "--maps", "80", "--seeds", "0", "1", "--out", str(out), "--",
        "--data.init_args.root", str(tiny_demo_root),
        "--data.init_args.num_train", "80", "--data.init_args.num_test", "40",
        "--data.init_args.render_size", "32", "--data.init_args.image_size", "32",
        "--data.init_args.num_workers", "0", "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "1",
    ]  # fmt: skip
    records = bench.main_bench(argv)
    assert sorted((r["loss"], r["seed"]) for r in records) == [
        ("GPR", 0), ("GPR", 1), ("GR", 0), ("GR", 1), ("VLPL", 0), ("VLPL", 1)
    ]  # fmt: skip
    assert all(abs(r["prior_map_reached"] - 80) <= 1 for r in records if r["loss"] != "GR")
    output = capsys.readouterr().out
    assert "prior mAP 80: GPR - GR, paired over 2 seeds" in output
    assert "prior mAP 80: VLPL - GR, paired over 2 seeds" in output
    # A second call resumes: every run is already in the file, none is trained again.
    again = bench.main_bench(argv)
    assert len(again) == 6 and len(out.read_text().splitlines()) == 6


def test_prior_cost_times_the_papers_recomputation_against_the_cache(
    bench_module, tmp_path, capsys, tiny_demo_root
):
    pytest.importorskip("open_clip")
    from prior_files import tiny_clip_flags

    bench = bench_module("prior_cost")
    result = bench.main_bench([
        "--config", str(Path(__file__).parents[2] / "configs" / "demo.yaml"), "--repeats", "2",
        "--images", "12", "--",
        "--data.init_args.root", str(tiny_demo_root),
        "--data.init_args.num_train", "80", "--data.init_args.num_test", "40",
        "--data.init_args.render_size", "32", "--data.init_args.image_size", "32",
        "--data.init_args.num_workers", "0", "--trainer.max_epochs", "3",
        *tiny_clip_flags(tmp_path),
    ])  # fmt: skip
    output = capsys.readouterr().out
    assert set(goal_lines(output)) == {
        "loading the model and embedding the prompts (s)",
        "recomputed: scoring 12 images' views, one epoch (s)",
        "cached: scoring 12 images into the cache, first run (s)",
        "cached: reading 12 images' scores, later runs (s)",
        "prior seconds per 3-epoch run, recomputed / cached first run",
        "prior seconds per 3-epoch run, recomputed / cached later run",
    }
    assert "5 views per orientation, flip True" in output and "12 of 64 training images" in output
    assert result["images"] == 12
    # Timings only (a loaded machine moves them): what they mean is the bench's to show.
    assert all(result[k] > 0 for k in ("load", "epoch", "build", "read"))
    assert result["first_run_ratio"] > 0 and result["later_run_ratio"] > 0


def test_tune_demo_runs_a_study_then_pairs_the_best_config_with_the_default_by_seed(
    bench_module, tmp_path, capsys, tiny_demo_root
):
    results = tmp_path / "tune_demo.json"
    record = bench_module("tune_demo").main_bench([
        "--n_trials", "2", "--seeds", "1", "2", "--work", str(tmp_path / "work"),
        "--results", str(results), "--",
        "--data.init_args.root", str(tiny_demo_root),
        "--data.init_args.num_train", "80", "--data.init_args.num_test", "40",
        "--data.init_args.render_size", "32", "--data.init_args.image_size", "32",
        "--data.init_args.num_workers", "0", "--trainer.limit_train_batches", "2",
        "--trainer.max_epochs", "1",
    ])  # fmt: skip
    output = capsys.readouterr().out
    assert re.search(r"tuned - default, paired over 2 seeds: [+-]\d", output)
    assert set(goal_lines(output)) == {
        "test mAP, tuned - default, mean over paired seeds",
        "test mAP, its standard error",
    }
    assert [(r["loss"], r["seed"]) for r in record["runs"]] == [
        ("default", 1), ("tuned", 1), ("default", 2), ("tuned", 2),
    ]  # fmt: skip
    assert json.loads(results.read_text())["gap"]["n"] == 2
    assert "q2:" in record["best_yaml"]
