"""The installed ``spml`` command: exit statuses, what it prints, what it writes."""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spml_lightning.cli import main

from conftest import REPO_ROOT
from integration.helpers import (
    NOISE,
    describe,
    installed_spml,
    run,
    user_env,
)
from probes import TINY_DEMO_FLAGS

DEMO = str(REPO_ROOT / "configs" / "demo.yaml")


def demo_flags(tmp_path: Path, data_root: Path) -> list[str]:
    return [
        "--config",
        DEMO,
        *TINY_DEMO_FLAGS,
        "--data.init_args.root",
        str(data_root),
        "--trainer.default_root_dir",
        str(tmp_path / "runs"),
    ]


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def test_fit_then_test_predict_and_suggest_exit_0_in_a_shell(tmp_path, tiny_demo_root):
    spml = installed_spml()
    flags = " ".join(demo_flags(tmp_path, tiny_demo_root))
    chain = (
        f"{spml} fit {flags} && {spml} test {flags} --ckpt_path best && "
        f"{spml} predict {flags} --ckpt_path best --prediction.output_path {tmp_path / 'pred.csv'} "
        f"&& {spml} suggest {flags} --ckpt_path best --suggestions.top_n 20 "
        f"--suggestions.output {tmp_path / 'suggestions.csv'}"
    )
    result = run(chain, cwd=tmp_path)
    assert result.returncode == 0, describe(result)

    output = result.stdout + result.stderr
    assert "test/mAP" in output  # the test step ran after fit, and printed its table
    for noise in NOISE:
        assert noise not in output, f"{noise!r} printed:\n{output[-3000:]}"
    # The filters are narrow: a real warning about this run (2 batches, logging every 10) shows.
    assert "is smaller than the logging interval" in output
    version = tmp_path / "runs" / "lightning_logs" / "version_0"
    assert list(version.glob("events.out.tfevents.*")), "fit wrote no TensorBoard events"
    assert (version / "checkpoints" / "last.ckpt").is_file()
    with (tmp_path / "pred.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:2] == ["image", "labels"] and len(rows[0]) == 2 + 14 and len(rows) == 1 + 40
    # suggest: the 20 likeliest missing labels of the 64 training images, and how good they are.
    with (tmp_path / "suggestions.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["image", "class", "probability", "rank"] and len(rows) == 1 + 20
    assert [row[3] for row in rows[1:]] == [str(rank) for rank in range(1, 21)]
    assert re.search(r"^precision@20 \d\.\d{3} \(random ranking 0\.\d{3}, \d+\.\dx\)", output, re.M)


#: (flags, the last line spml prints): usage errors, i.e. exit status 2.
BAD_VALUES = [
    (
        ["--data.init_args.batch_size", "0"],
        "spml fit: error: batch_size must be at least 1, got 0.",
    ),
    (
        ["--model.loss", "GRLoss", "--model.loss.init_args.q2", "0"],
        "spml fit: error: q2 must be a finite number > 0 (exponent of the robust positive loss "
        "L2), found 0.0.",
    ),
    (
        ["--trainer.max_epochs", "0"],
        "spml fit: error: --trainer.max_epochs 0: spml fit trains for a number",
    ),
    (
        ["--model.lr", "fast"],
        "spml fit: error: --model.lr: Expected a <class 'float'>. Got value: fast",
    ),
    (
        ["--model.no_such_knob", "1"],
        # (jsonargparse 4.41 writes "Unrecognized", newer releases "unrecognized")
        "spml fit: error: unrecognized arguments: --model.no_such_knob 1",
    ),
]


@pytest.mark.parametrize(
    "extra,message",
    BAD_VALUES,
    ids=["batch_size 0", "q2 0", "max_epochs 0", "lr not a number", "unknown flag"],
)
def test_a_bad_value_returns_2_with_one_line_naming_it(
    tmp_path, tiny_demo_root, capsys, extra, message
):
    # In process, the same main() the console script calls (one subprocess below checks the script).
    assert main(["fit", *demo_flags(tmp_path, tiny_demo_root), *extra]) == 2
    stderr = capsys.readouterr().err
    assert last_line(stderr).lower().startswith(message.lower()), stderr
    assert "Traceback" not in stderr and "Namespace(" not in stderr, stderr
    assert len(stderr.splitlines()) <= 3, stderr


def test_the_installed_script_exits_2_on_a_bad_value(tmp_path, tiny_demo_root):
    extra, message = BAD_VALUES[1]
    result = run(
        [str(installed_spml()), "fit", *demo_flags(tmp_path, tiny_demo_root), *extra], cwd=tmp_path
    )
    assert result.returncode == 2, describe(result)
    assert last_line(result.stderr) == message, describe(result)
    assert "Traceback" not in result.stderr, describe(result)


def test_a_failed_run_exits_1_and_python_m_is_the_same_command(tmp_path, tiny_demo_root):
    # Nothing was trained under this root: `test --ckpt_path best` has no checkpoint to test.
    args = ["test", *demo_flags(tmp_path, tiny_demo_root), "--ckpt_path", "best"]
    for command in ([str(installed_spml())], [sys.executable, "-m", "spml_lightning"]):
        result = run([*command, *args], cwd=tmp_path)
        assert result.returncode == 1, describe(result)
        assert last_line(result.stderr).startswith(
            "spml test: error: --ckpt_path best: no checkpoint found"
        ), describe(result)
        assert "Traceback" not in result.stderr


def test_top_level_help_names_every_command_of_spml(capsys):
    # report and serve have parsers of their own (main dispatches them), so LightningCLI's
    # subcommand list lacks them: the help names them below it.
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for command in ("fit", "test", "predict", "suggest", "features", "export", "tune"):
        assert command in text, command
    assert "'spml report'" in text and "'spml serve'" in text
    assert main(["report", "--help"]) == 0 and main(["serve", "--help"]) == 0


def test_help_returns_0(capsys):
    assert main(["fit", "--help"]) == 0
    assert "--model.loss" in capsys.readouterr().out


def test_ctrl_c_exits_130(tmp_path, tiny_demo_root):
    args = [
        *demo_flags(tmp_path, tiny_demo_root),
        "--trainer.max_epochs",
        "1000",
        "--trainer.limit_train_batches",
        "1.0",
    ]
    marker = (
        tmp_path / "runs" / "lightning_logs" / "version_0" / "hparams.yaml"
    )  # written when training starts
    process = subprocess.Popen(
        [str(installed_spml()), "fit", *args],
        cwd=tmp_path,
        env=user_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # pytest may run with SIGINT ignored (inherited by children): give the child the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, "the run ended before it could be interrupted"
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr[-3000:]
    assert last_line(stderr) == "spml fit: interrupted."
