"""Performance features: no host reads in the steps, loss logging without syncs, decoding on
the device, the fast profile's config, torch.compile, and the benchmark scripts (tiny sizes).

No test here times anything: speed is measured by bench/ and recorded in bench/README.md.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

from spml_lightning.data.device_decode import collate_encoded, decode_and_transform, read_encoded
from spml_lightning.data.io import load_rgb
from spml_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD, reference_transform
from spml_lightning.module import SPMLModule

from probes import make_trainer

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

#: Tensor methods that read a value back to the host (a device synchronisation on a GPU).
HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")


@contextlib.contextmanager
def no_host_reads():
    """Fail on any call of a HOST_READS method inside the block."""

    def forbidden(name):
        def method(self, *args, **kwargs):
            raise AssertionError(f"Tensor.{name}() read a tensor back to the host")

        return method

    with pytest.MonkeyPatch.context() as patch:
        for name in HOST_READS:
            patch.setattr(torch.Tensor, name, forbidden(name))
        yield


def tiny_module() -> SPMLModule:
    torch.manual_seed(0)
    return SPMLModule(num_classes=5, backbone="resnet18", weights="none")


def make_batch(device: torch.device | str = "cpu", rows: int = 3) -> dict:
    generator = torch.Generator().manual_seed(1)
    observed = torch.zeros(rows, 5)
    observed[torch.arange(rows), torch.arange(rows) % 5] = 1
    return {
        "image": torch.randn(rows, 3, 32, 32, generator=generator).to(device),
        "observed": observed.to(device),
        "target": (torch.rand(rows, 5, generator=generator) < 0.5).float().to(device),
        "index": torch.arange(rows).to(device),
    }


# -- goal 4: evaluation adds no per-batch host reads ------------------------------------


def test_host_read_guard_catches_reads():
    # The guard below must be able to fail, or the next test proves nothing.
    with pytest.raises(AssertionError, match="item"), no_host_reads():
        torch.ones(1).item()
    with pytest.raises(AssertionError, match="__bool__"), no_host_reads():
        bool(torch.ones(1))


def test_eval_steps_keep_outputs_on_the_device_and_read_nothing_back():
    module = tiny_module().eval()
    batch = make_batch()
    with torch.no_grad():
        expected = torch.sigmoid(module(batch["image"]))
        with no_host_reads():
            module.validation_step(batch, 0)
            module.test_step(batch, 0)
    for split in ("val", "test"):
        ((index, scores, targets),) = module._evaluators[split].batches
        assert {t.device for t in (index, scores, targets)} == {module.device}
        torch.testing.assert_close(scores, expected)
        torch.testing.assert_close(targets, batch["target"])
        assert index.tolist() == [0, 1, 2]


@CUDA
def test_steps_do_not_synchronise_cuda():
    module = tiny_module().cuda()
    batch = make_batch("cuda")
    module.training_step(batch, 0)  # first calls: cuDNN/cuBLAS set-up is not a step's cost
    module.eval()
    with torch.no_grad():
        module.validation_step(batch, 0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.no_grad():
            module.validation_step(batch, 1)
            module.test_step(batch, 1)
        module.train()
        module.training_step(batch, 1).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


# -- training-loss logging: no per-step sync, same numbers as Lightning's on_epoch mean ----


class LossRecorder(Callback):
    def __init__(self) -> None:
        self.losses: list[tuple[float, int]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append((float(outputs["loss"]), len(batch["observed"])))


def test_training_loss_is_logged_on_logging_steps_and_as_a_weighted_epoch_mean(tmp_path, tiny_demo):
    tiny_demo.batch_size = 24  # 64 training rows: batches of 24, 24 and 16
    recorder = LossRecorder()
    trainer = make_trainer(
        tmp_path,
        limit_val_batches=0,
        log_every_n_steps=2,
        logger=CSVLogger(tmp_path, name="run"),
        callbacks=[recorder],
    )
    module = SPMLModule(num_classes=tiny_demo.num_classes, backbone="resnet18", weights="none")
    trainer.fit(module, tiny_demo)
    assert [size for _, size in recorder.losses] == [24, 24, 16]
    weighted = sum(loss * size for loss, size in recorder.losses) / 64
    assert trainer.callback_metrics["train/loss_epoch"].item() == pytest.approx(weighted, rel=1e-6)
    # The progress bar shows the epoch mean only: a per-step value would be read back every step.
    assert "train/loss_step" not in trainer.progress_bar_metrics
    assert trainer.progress_bar_metrics["train/loss_epoch"] == pytest.approx(weighted, rel=1e-6)
    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    step_values = [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")]
    # log_every_n_steps=2: the second step's loss, and nothing stale from other steps.
    assert step_values == [pytest.approx(recorder.losses[1][0], rel=1e-6)]


# -- decoding on the device -----------------------------------------------------------------


@pytest.fixture(scope="module")
def varied_images(tmp_path_factory) -> list[str]:
    """JPEGs of several sizes and aspect ratios, a grayscale JPEG and a PNG."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i, (width, height) in enumerate([(120, 90), (90, 120), (64, 64), (33, 47), (200, 40)]):
        coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize(
            (width, height), Image.BICUBIC
        )
        path = folder / f"{i}.jpg"
        coarse.save(path, quality=90)
        paths.append(str(path))
    Image.open(paths[0]).convert("L").save(folder / "gray.jpg")
    Image.open(paths[1]).save(folder / "png.png")
    return [*paths, str(folder / "gray.jpg"), str(folder / "png.png")]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("size", [32, 64, 150])
def test_device_decode_matches_the_pil_path_within_resize_tolerance(varied_images, size, device):
    reference = torch.stack([reference_transform(size, False)(load_rgb(p)) for p in varied_images])
    ours = decode_and_transform(
        [read_encoded(p) for p in varied_images],
        size,
        IMAGENET_MEAN,
        IMAGENET_STD,
        flip=False,
        device=device,
    )
    assert ours.device.type == device
    ours = ours.cpu()
    assert ours.shape == reference.shape and ours.dtype == torch.float32
    levels = ((ours - reference) * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255).abs()
    if device == "cpu":
        # Same decoder library, same filter, same 8-bit rounding: at most one level apart, rarely
        # that.
        assert levels.max().item() <= 1 + 1e-3
        assert levels.mean().item() <= 0.3
    else:
        # nvJPEG's IDCT and chroma upsampling differ from libjpeg-turbo's by a few levels.
        assert levels.max().item() <= 8
        assert levels.mean().item() <= 1.0


def test_device_decode_reads_jpeg_bytes_and_decodes_other_formats(varied_images):
    jpeg, png = read_encoded(varied_images[0]), read_encoded(varied_images[-1])
    assert jpeg.ndim == 1 and jpeg.dtype == torch.uint8 and bytes(jpeg[:2].tolist()) == b"\xff\xd8"
    assert png.shape == (3, 120, 90) and png.dtype == torch.uint8
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_encoded(str(Path(varied_images[0]).with_name("missing.jpg")))


def test_device_decode_flips_about_half_of_the_images(varied_images):
    images = [read_encoded(varied_images[0])] * 64
    plain = decode_and_transform(
        images[:1], 32, IMAGENET_MEAN, IMAGENET_STD, flip=False, device="cpu"
    )[0]
    torch.manual_seed(0)
    out = decode_and_transform(images, 32, IMAGENET_MEAN, IMAGENET_STD, flip=True, device="cpu")
    flipped = [torch.equal(o, plain.flip(-1)) for o in out]
    unchanged = [torch.equal(o, plain) for o in out]
    assert all(f != u for f, u in zip(flipped, unchanged, strict=True))
    assert 16 <= sum(flipped) <= 48


def test_collate_encoded_keeps_images_as_a_list():
    items = [
        {
            "image": torch.zeros(n, dtype=torch.uint8),
            "observed": torch.ones(3),
            "target": torch.ones(3),
            "index": n,
        }
        for n in (5, 7)
    ]
    batch = collate_encoded(items)
    assert [len(x) for x in batch["image"]] == [5, 7]
    assert batch["observed"].shape == (2, 3) and batch["index"].tolist() == [5, 7]


def test_decode_on_device_trains_validates_and_tests(tmp_path, tiny_demo):
    tiny_demo.decode_on = "device"
    trainer = make_trainer(
        tmp_path,
        accelerator="auto",  # on a GPU machine: decoding on the GPU
        limit_train_batches=2,
        limit_val_batches=2,
        limit_test_batches=1,
        num_sanity_val_steps=2,
    )
    module = SPMLModule(num_classes=tiny_demo.num_classes, backbone="resnet18", weights="none")
    trainer.fit(module, tiny_demo)
    # The workers hand over the file (JPEG bytes; the demo's PNGs decoded but not transformed).
    assert tiny_demo.train_dataset[0]["image"].dtype == torch.uint8
    (result,) = trainer.test(module, tiny_demo, verbose=False)
    assert 0 <= result["test/mAP"] <= 100


def test_decode_on_is_validated():
    from spml_lightning.data import DemoDataModule

    with pytest.raises(ValueError, match="decode_on"):
        DemoDataModule(root="unused", decode_on="gpu")


# -- the fast profile ----------------------------------------------------------------------


def test_fast_profile_stacks_on_a_benchmark_config():
    from spml_lightning.cli import run_cli

    cli = run_cli(
        [
            "--config",
            str(REPO / "configs" / "demo.yaml"),
            "--config",
            str(REPO / "configs" / "fast.yaml"),
            "--data.num_workers",
            "0",
            "--data.root",
            "unused",
            "--trainer.logger",
            "false",
        ],
        run=False,
    )
    assert cli.trainer.precision == "bf16-mixed"
    assert cli.model.hparams.channels_last and not cli.model.hparams.compile
    data = cli.datamodule
    assert (data.batch_size, data.pin_memory, data.decode_on) == (64, True, "workers")
    assert type(data).__name__ == "DemoDataModule"  # the benchmark config's data set is kept


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_that_emulates_it_is_warned_against(monkeypatch, recwarn, native):
    from spml_lightning import cli as spml_cli

    monkeypatch.setattr(spml_cli, "_native_cpu_bf16", lambda: native)
    args = [
        "--config", str(REPO / "configs" / "demo.yaml"), "--data.root", "unused",
        "--trainer.logger", "false", "--trainer.accelerator", "cpu",
    ]  # fmt: skip
    warned = "no native bf16) is emulated and several times slower than fp32"
    spml_cli.run_cli([*args, "--trainer.precision", "bf16-mixed"], run=False)
    assert any(warned in str(w.message) for w in recwarn) == (not native)
    recwarn.clear()
    spml_cli.run_cli(args, run=False)  # fp32: nothing to say
    assert not any(warned in str(w.message) for w in recwarn)


def test_compile_option_compiles_the_backbone_in_place():
    module = SPMLModule(num_classes=5, backbone="resnet18", weights="none", compile=True)
    keys = list(module.state_dict())
    module.setup("fit")
    module.setup("test")  # a second set-up does not wrap it twice
    assert module.backbone._compiled_call_impl is not None
    assert list(module.state_dict()) == keys  # checkpoints are the same as without it


@pytest.mark.slow
def test_compiled_backbone_computes_the_same_logits():
    module = tiny_module().eval()
    images = make_batch()["image"]
    with torch.no_grad():
        eager = module(images)
        module.backbone.compile()
        torch.testing.assert_close(module(images), eager, rtol=1e-4, atol=1e-4)


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
