"""The examples of embedding spml_lightning in another Lightning project run, as users run them.

Each script runs in its own process, as ``python examples/<script>.py``, on the tiny
demo set of the test session: only its size arguments change, never its code.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import REPO_ROOT, TINY_DEMO
from probes import subprocess_env

EXAMPLES = REPO_ROOT / "examples"


def run_example(script: str, tmp_path: Path, tiny_demo_root: Path, *extra: str):
    sizes = [
        "--root",
        str(tiny_demo_root),
        "--epochs",
        "2",
        "--num-train",
        str(TINY_DEMO["num_train"]),
        "--num-test",
        str(TINY_DEMO["num_test"]),
        "--render-size",
        str(TINY_DEMO["render_size"]),
        "--image-size",
        "32",
        "--batch-size",
        "16",
        "--limit-batches",
        "2",
        "--output",
        str(tmp_path / "runs"),
    ]
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *sizes, *extra],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def test_gr_loss_in_your_own_lightning_module(tmp_path, tiny_demo_root):
    result = run_example("gr_loss_in_your_lightning_module.py", tmp_path, tiny_demo_root)
    assert "validation mAP after 2 epochs:" in result.stdout, result.stdout
    # The module's own on_train_epoch_start moved GR Loss's schedule every epoch.
    (events,) = (tmp_path / "runs").rglob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    w = [event.value for event in accumulator.Scalars("gr/w")]
    assert len(w) == 2 and w[0] != w[1], w  # the reference schedule: w moves from epoch to epoch


def test_your_backbone_in_spml_module_with_your_trainer(tmp_path, tiny_demo_root):
    result = run_example(
        "your_backbone_in_spml_module.py", tmp_path, tiny_demo_root, "--width", "8"
    )
    output = result.stdout
    assert "epoch 0: new best val/mAP" in output, output  # the user's callback ran
    # The reloaded best checkpoint labelled three test images, two labels each.
    labelled = [line for line in output.splitlines() if "images/test/" in line]
    assert len(labelled) == 3 and all(line.count(", ") == 1 for line in labelled), output
    # The user's logger wrote the metrics, including the user's LearningRateMonitor's.
    (metrics,) = (tmp_path / "runs" / "my_backbone").rglob("metrics.csv")
    columns = next(csv.reader(metrics.open()))
    assert {"val/mAP", "test/mAP", "train/loss_epoch"} <= set(columns), columns
    assert any(column.startswith("lr-") for column in columns), columns
    (best,) = (tmp_path / "runs" / "my_backbone").rglob("best-*.ckpt")
    assert best.is_file()
