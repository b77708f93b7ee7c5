"""Resume after SIGKILL: a real `spml fit` killed mid-epoch ends where an uninterrupted run ends.

Also: a resume with a relative root keeps its top-k, best and last checkpoint;
a resume with changed arguments applies or refuses each change; checkpoints
are written atomically (a kill or an error while saving leaves the previous
checkpoint readable); runs started together in one root get folders of their own.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from spml_lightning.cli import main, run_cli
from spml_lightning.training import (
    AtomicCheckpointIO,
    ResumableCheckpoint,
    atomic_torch_save,
    refuse_resume_early,
    resolve_checkpoint,
)

from conftest import REPO_ROOT
from probes import (
    demo_args,
    final_weights,
    folder_locked_elsewhere,
    read_records,
    subprocess_env,
    write_callbacks_config,
)


def resume_args(
    tmp_path: Path, tiny_demo_root: Path, name: str, pause_at_step: int | None = None
) -> list[str]:
    """Tiny demo: 64 train images in 4 batches, 2 epochs, last.ckpt refreshed every 3 steps."""
    run = tmp_path / name
    run.mkdir(exist_ok=True)
    callbacks = [("probes.RunRecorder", {"prefix": str(run / "record")})]
    if pause_at_step is not None:
        callbacks.append(
            ("probes.PauseAtStep", {"step": pause_at_step, "marker": str(run / "paused")})
        )
    config = run / ("callbacks.yaml" if pause_at_step is None else "callbacks_with_pause.yaml")
    return [
        *demo_args(run, tiny_demo_root),
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_train_batches",
        "1.0",
        "--data.init_args.batch_size",
        "16",
        "--trainer.num_sanity_val_steps",
        "0",
        "--trainer.deterministic",
        "true",
        "--checkpoint.last_every_n_train_steps",
        "3",
        # The learned k is loss state that must survive the crash too.
        "--model.loss.init_args.k_form",
        "learned",
        "--config",
        str(write_callbacks_config(config, callbacks)),
    ]


def by_step(records: list[dict]) -> dict[int, dict]:
    """The latest record of each training step (a killed run records some steps twice)."""
    return {r["step"]: r for r in records if r["kind"] == "train"}


def test_sigkilled_fit_resumes_mid_epoch_to_identical_results(
    tmp_path, tiny_demo_root, restore_determinism
):
    # The run to compare against, never interrupted.
    reference = resume_args(tmp_path, tiny_demo_root, "reference")
    run_cli(["fit", *reference])

    # The same run as a real `spml fit` process, paused one step after the
    # mid-epoch save of global step 6 (epoch 1, batch 2 of 4) and SIGKILLed.
    marker = tmp_path / "killed" / "paused"
    log = (tmp_path / "killed.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spml_lightning",
            "fit",
            *resume_args(tmp_path, tiny_demo_root, "killed", 7),
        ],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 300
    while not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(
                f"the fit did not reach step 7:\n{(tmp_path / 'killed.log').read_text()[-3000:]}"
            )
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL

    killed_root = tmp_path / "killed" / "runs"
    (last,) = killed_root.rglob("last.ckpt")
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (1, 6)
    (loader_state,) = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state["epoch"] == 1 and loader_state["position"] == 32  # 2 of 4 batches of 16

    killed = resume_args(tmp_path, tiny_demo_root, "killed")  # the same run, without the pause
    resumed = run_cli(["fit", *killed, "--ckpt_path", "last"])
    assert resumed.trainer.ckpt_path == str(last)
    assert resumed.trainer.global_step == 8

    ref_records = read_records(tmp_path / "reference" / "record")
    got_records = read_records(tmp_path / "killed" / "record")
    ref_steps, got_steps = by_step(ref_records), by_step(got_records)
    # Every step after the checkpoint was trained again, on the same images, with
    # the schedule of its epoch (the first resumed step is in epoch 1) and the same loss.
    assert sorted(got_steps) == sorted(ref_steps) == list(range(1, 9))
    for step in range(7, 9):
        assert got_steps[step]["epoch"] == ref_steps[step]["epoch"]
        assert got_steps[step]["index"] == ref_steps[step]["index"]
        assert got_steps[step]["schedule"] == ref_steps[step]["schedule"]
        assert got_steps[step]["loss"] == ref_steps[step]["loss"]
    assert got_steps[7]["schedule"] != ref_steps[3]["schedule"]  # epoch 1's values, not epoch 0's

    # Same validation mAP every epoch, bit-identical final weights and loss state.
    val = lambda records: {r["epoch"]: r["mAP"] for r in records if r["kind"] == "val"}  # noqa: E731
    assert val(got_records) == val(ref_records) and len(val(ref_records)) == 2
    ends = lambda records: [r for r in records if r["kind"] == "epoch_end"][-1]  # noqa: E731
    assert ends(got_records) == ends(ref_records)  # weights and loss state after the last epoch
    reference_weights, resumed_weights = (
        final_weights(tmp_path / "reference" / "runs"),
        final_weights(killed_root),
    )
    assert reference_weights.keys() == resumed_weights.keys()
    assert "loss.k_bias" in resumed_weights
    for name, value in reference_weights.items():
        assert torch.equal(value, resumed_weights[name]), name

    # The resumed run kept the interrupted run's checkpoint folder, so its
    # top-k (save_top_k=1) and best model carry on: one best file, the same as the reference's.
    folder = last.parent
    assert sorted(p.name for p in folder.glob("*.ckpt")) == sorted(
        p.name for p in (tmp_path / "reference" / "runs").rglob("*.ckpt")
    )
    assert len(list(folder.glob("best-*.ckpt"))) == 1
    ref_test = run_cli(["test", *reference, "--ckpt_path", "best"]).trainer.callback_metrics[
        "test/mAP"
    ]
    got_test = run_cli(["test", *killed, "--ckpt_path", "best"]).trainer.callback_metrics[
        "test/mAP"
    ]
    assert got_test.item() == ref_test.item()


def test_fit_ckpt_path_last_starts_fresh_when_nothing_to_resume(tmp_path, tiny_demo_root):
    cli = run_cli(
        [
            "fit",
            *demo_args(tmp_path, tiny_demo_root),
            "--trainer.max_epochs",
            "1",
            "--ckpt_path",
            "last",
        ]
    )
    assert cli.trainer.ckpt_path is None and cli.trainer.current_epoch == 1


def test_spml_installs_atomic_checkpoint_writes(tmp_path, tiny_demo_root):
    cli = run_cli([*demo_args(tmp_path, tiny_demo_root)], run=False)
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert isinstance(cli.trainer.checkpoint_callback, ResumableCheckpoint)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip", b"not a checkpoint"])
def test_unreadable_checkpoint_is_named_before_torch_sees_it(tmp_path, content):
    bad = tmp_path / "model.ckpt"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        resolve_checkpoint(str(bad), trainer=None)


def test_last_checkpoint_follows_every_epoch_even_without_improvement(tmp_path, tiny_demo):
    """Lightning >= 2.5 refreshes last.ckpt only with a new top-k file; resumes need every epoch."""
    from lightning.pytorch import Callback

    from probes import make_trainer, tiny_model

    class ConstantMetric(Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            pl_module.log("constant", 1.0)  # never improves after epoch 0

    def last_epoch(callback_class):
        folder = tmp_path / callback_class.__name__
        callback = callback_class(dirpath=folder, monitor="constant", mode="max", save_last=True)
        trainer = make_trainer(
            tmp_path,
            max_epochs=2,
            limit_train_batches=1,
            limit_val_batches=1,
            enable_checkpointing=True,
            callbacks=[ConstantMetric(), callback],
        )
        trainer.fit(tiny_model(), tiny_demo)
        return torch.load(folder / "last.ckpt", map_location="cpu", weights_only=False)["epoch"]

    assert last_epoch(ModelCheckpoint) == 0  # what plain Lightning leaves to resume from
    assert last_epoch(ResumableCheckpoint) == 1


def test_resumable_checkpoint_needs_save_last():
    with pytest.raises(ValueError, match="save_last"):
        ResumableCheckpoint(last_every_n_train_steps=10, save_last=False)


# -- atomic writes ------------------------------------------------------------------------------

#: Saves a first checkpoint, then a second one with torch.save replaced by a writer
#: that stops half-way (prints WRITING and sleeps) so the parent can SIGKILL it mid-write.
KILLED_WRITER = textwrap.dedent(
    """
    import io, sys, time
    import torch

    path, mode = sys.argv[1], sys.argv[2]
    if mode == "atomic":
        from spml_lightning.training import AtomicCheckpointIO
        write = AtomicCheckpointIO().save_checkpoint
    else:
        write = lambda obj, p: torch.save(obj, p)
    write({"version": 1, "weights": torch.arange(100_000)}, path)

    real_save = torch.save
    def half_written_save(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        target = open(f, "wb") if isinstance(f, str) else f
        target.write(data[: len(data) // 2])
        target.flush()
        print("WRITING", flush=True)
        time.sleep(600)
    torch.save = half_written_save
    write({"version": 2, "weights": torch.arange(100_000)}, path)
    """
)


@pytest.mark.parametrize("mode", ["atomic", "direct"])
def test_kill_during_save(tmp_path, mode):
    """SIGKILL mid-write: the atomic writer keeps the old file.

    A direct torch.save (the control) does not.
    """
    path = tmp_path / "last.ckpt"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path), mode],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "WRITING"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    if mode == "direct":
        with pytest.raises(RuntimeError):  # torch: "failed finding central directory"
            torch.load(path, weights_only=True)
        return
    assert torch.load(path, weights_only=True)["version"] == 1
    # The next save removes what the killed writer left and replaces the file.
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] != []
    atomic_torch_save({"version": 3}, path)
    assert torch.load(path, weights_only=True)["version"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_error_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"version": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot serialise this")

    with pytest.raises(RuntimeError, match="cannot serialise"):
        io.save_checkpoint({"version": 2, "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["version"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left


# -- resuming with a relative root, with changed arguments ---------------------------------------


@pytest.fixture
def lightning_log(caplog):
    """What a run prints through Lightning's logger, at INFO whatever level other tests left it at.

    The logger need not propagate to caplog's root handler (Lightning adds its own handler when
    the root logger has none), hence caplog's handler on it.
    """
    logger = logging.getLogger("lightning.pytorch")
    caplog.set_level(logging.INFO, logger=logger.name)
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


#: The tiny demo with a backbone a seventh of resnet18's size: its checkpoints are written in a
#: fraction of the time.
SMALL = [
    "--model.backbone", "mobilenet_v3_small", "--trainer.num_sanity_val_steps", "0",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip


def scripted_args(tmp_path: Path, tiny_demo_root: Path, values: list[float]) -> list[str]:
    """The tiny demo run, its best checkpoint chosen on ``scripted`` = ``values[epoch]``."""
    config = write_callbacks_config(
        tmp_path / "scripted.yaml",
        [("probes.ScriptedMetric", {"name": "scripted", "values": values})],
    )
    return [
        *demo_args(tmp_path, tiny_demo_root),
        *SMALL,
        "--config",
        str(config),
        "--checkpoint.monitor",
        "scripted",
    ]


def test_resume_with_a_relative_root_keeps_top_k_best_and_last(
    tmp_path, tiny_demo_root, monkeypatch, lightning_log
):
    # Every shipped config has a relative default_root_dir (runs/...).
    monkeypatch.chdir(tmp_path)
    args = [
        *scripted_args(tmp_path, tiny_demo_root, [10.0, 30.0, 20.0]),
        "--trainer.default_root_dir",
        "runs",
    ]
    run_cli(["fit", *args])  # epochs 0 and 1: epoch 1 is the best
    resumed = run_cli(
        ["fit", *args, "--trainer.max_epochs", "3", "--ckpt_path", "last"]
    )  # epoch 2 is worse
    assert resumed.trainer.current_epoch == 3

    # One checkpoint folder, with one last.ckpt (no last-v1.ckpt) and the best epoch's file only
    # (save_top_k 1).
    (folder,) = {path.parent for path in (tmp_path / "runs").rglob("*.ckpt")}
    assert sorted(path.name for path in folder.iterdir()) == ["best-01.ckpt", "last.ckpt"]
    assert torch.load(folder / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 2
    test = run_cli(["test", *args, "--ckpt_path", "best"])
    assert os.path.samefile(test.trainer.ckpt_path, folder / "best-01.ckpt")
    assert (
        "best so far best-01.ckpt, scripted 30" in lightning_log.text
    )  # the resume said where it started


def one_epoch_run(tmp_path: Path, tiny_demo_root: Path) -> tuple[list[str], Path]:
    """The arguments of a 1-epoch tiny demo run, fitted, and its last.ckpt.

    The run trains GR Loss with lr 1e-3, lr_mult 1.
    """
    args = [*demo_args(tmp_path, tiny_demo_root), *SMALL, "--trainer.max_epochs", "1"]
    run_cli(["fit", *args])
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    return args, last


@pytest.mark.parametrize("form", ["last", "path"])
def test_resume_with_a_new_learning_rate_trains_with_it(
    tmp_path, tiny_demo_root, lightning_log, form
):
    args, last = one_epoch_run(tmp_path, tiny_demo_root)
    resumed = run_cli([
        "fit", *args, "--trainer.max_epochs", "2",
        "--ckpt_path", "last" if form == "last" else str(last),
        "--model.lr", "0.5", "--model.lr_mult", "2",
    ])  # fmt: skip
    assert resumed.trainer.current_epoch == 2
    rates = {group["name"]: group["lr"] for group in resumed.trainer.optimizers[0].param_groups}
    assert rates == {"backbone": 0.5, "head": 1.0}
    # Logged in the resumed epoch.
    assert resumed.trainer.callback_metrics["lr/backbone"].item() == 0.5
    assert (
        "Resumed with lr 0.5 (the checkpoint trained with 0.003), "
        "lr_mult 2.0 (the checkpoint trained with 1.0)." in lightning_log.text
    )
    assert (
        yaml.safe_load((Path(resumed.trainer.log_dir) / "config.yaml").read_text())["model"]["lr"]
        == 0.5
    )


#: Changes a resume refuses, with what the message says about each.
REFUSED_CHANGES = [
    (["--model.loss", "AN"], "loss: GRLoss in the checkpoint, AssumeNegativeLoss now"),
    (["--model.loss.init_args.q2", "0.05"], "loss GRLoss: q2 0.01 -> 0.05 (checkpoint -> now)"),
    (
        ["--model.backbone", "resnet18"],
        "backbone: 'mobilenet_v3_small' in the checkpoint, 'resnet18' now",
    ),
]


def test_resume_refuses_another_network_or_loss(tmp_path, tiny_demo_root, capsys):
    args, last = one_epoch_run(tmp_path, tiny_demo_root)
    saved = last.read_bytes()
    for change, named in REFUSED_CHANGES:
        with pytest.raises(ValueError, match="Cannot resume from .*last.ckpt") as refusal:
            run_cli(["fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last", *change])
        assert named in str(refusal.value)
    assert last.read_bytes() == saved  # nothing written was lost
    # The spml command: exit status 1, the reason and what to do in one line, no traceback.
    capsys.readouterr()
    assert (
        main(
            ["fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last", "--model.loss", "AN"]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"spml fit: error: Cannot resume from checkpoint {last}" in err
    assert "Resume with the checkpoint's settings, or train with the new ones in a new run" in err


def test_a_refused_resume_stops_before_the_set_up_work(tmp_path, tiny_demo_root):
    args, last = one_epoch_run(tmp_path, tiny_demo_root)
    features = tmp_path / "features"
    with pytest.raises(ValueError, match="Cannot resume from .*train_mode: 'end_to_end'"):
        run_cli([
            "fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last",
            "--model.train_mode", "linear_fixed_features", "--model.feature_dir", str(features),
        ])  # fmt: skip
    # Refused before the model's set-up extracted the features it would never use.
    assert not features.exists()


def test_resume_refuses_other_training_rows_but_not_a_moved_data_root(tmp_path, tiny_demo_root):
    args, last = one_epoch_run(tmp_path, tiny_demo_root)
    saved = last.read_bytes()
    # Other observed labels (another seed or strategy) or another split: the same number of rows,
    # other rows.
    for change in (
        ["--data.init_args.observe_seed", "7"],
        ["--data.init_args.observe", "frequency"],
        ["--data.init_args.split_seed", "7"],
    ):
        with pytest.raises(ValueError, match="train and val rows of DemoDataModule differ"):
            run_cli(["fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last", *change])
    assert last.read_bytes() == saved
    # The same data set copied elsewhere is the same training set.
    moved = tmp_path / "moved_demo"
    shutil.copytree(tiny_demo_root, moved)
    resumed = run_cli([
        "fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last",
        "--data.init_args.root", str(moved),
    ])  # fmt: skip
    assert resumed.trainer.current_epoch == 2


# -- runs that share a root -----------------------------------------------------------------------


def test_concurrent_fits_in_one_root_get_a_version_folder_each(tmp_path, tiny_demo_root):
    # Three `spml fit` processes started together, held until all three reach the point at which
    # Lightning has listed the version folders but created none (StartTogether).
    args = [
        *demo_args(tmp_path, tiny_demo_root), *SMALL, "--trainer.max_epochs", "1",
        "--config", str(write_callbacks_config(tmp_path / "together.yaml", [
            ("probes.StartTogether", {"folder": str(tmp_path / "started"), "count": 3}),
        ])),
    ]  # fmt: skip
    logs = [tmp_path / f"run{i}.log" for i in range(3)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "spml_lightning", "fit", *args],
            cwd=REPO_ROOT,
            env=subprocess_env(),
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        for log in logs
    ]
    for process, log in zip(processes, logs, strict=True):
        assert process.wait(timeout=300) == 0, log.read_text()[-3000:]
    versions = tmp_path / "runs" / "lightning_logs"
    assert sorted(p.name for p in versions.iterdir()) == ["version_0", "version_1", "version_2"]
    for folder in versions.iterdir():
        assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == [
            "best-00.ckpt",
            "last.ckpt",
        ]
    said = sorted(
        line.split("Logging to ")[1]
        for log in logs
        for line in log.read_text().splitlines()
        if "Logging to " in line
    )
    assert said == [str(versions / f"version_{i}") for i in range(3)]


def test_atomic_save_removes_only_the_temporary_files_of_writers_that_are_gone(tmp_path):
    path = tmp_path / "best-00.ckpt"
    host = socket.gethostname()
    gone = 2**22  # above Linux's largest pid_max: no process has this pid
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        temporary = {
            "live writer": f".best-00.ckpt.tmp-{host}-{live.pid}-0123abcd",
            "writer of this host that is gone": f".best-00.ckpt.tmp-{host}-{gone}-0123abcd",
            "older version's name, writer gone": f".best-00.ckpt.tmp-{gone}",
            "other host, recent": ".best-00.ckpt.tmp-elsewhere-12-89abcdef",
            "other host, untouched for 2 h": ".best-00.ckpt.tmp-elsewhere-13-89abcdef",
        }
        for name in temporary.values():
            (tmp_path / name).write_bytes(b"half a checkpoint")
        two_hours_ago = time.time() - 7200
        os.utime(
            tmp_path / temporary["other host, untouched for 2 h"], (two_hours_ago, two_hours_ago)
        )
        atomic_torch_save({"version": 1}, path)
        assert torch.load(path, weights_only=True) == {"version": 1}
        left = {what for what, name in temporary.items() if (tmp_path / name).exists()}
        assert left == {"live writer", "other host, recent"}
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("logger_class", [TensorBoardLogger, CSVLogger])
def test_a_version_folder_taken_after_the_listing_is_skipped(tmp_path, monkeypatch, logger_class):
    from spml_lightning.training import reserve_log_version

    trainer = Trainer(
        logger=logger_class(tmp_path), enable_checkpointing=False, enable_progress_bar=False
    )
    (tmp_path / "lightning_logs" / "version_0").mkdir(parents=True)
    monkeypatch.setattr(
        logger_class, "_get_next_version", lambda self: 0
    )  # listed before another run made it
    reserve_log_version(trainer)
    assert trainer.logger.version == 1 and (tmp_path / "lightning_logs" / "version_1").is_dir()
    reserve_log_version(trainer)  # a logger that has its version keeps it
    assert trainer.logger.version == 1 and not (tmp_path / "lightning_logs" / "version_2").exists()


def test_a_second_fit_writing_into_a_locked_checkpoint_folder_is_refused(
    tmp_path, tiny_demo_root, capsys
):
    args, last = one_epoch_run(tmp_path, tiny_demo_root)
    saved = last.read_bytes()
    # Another process holds the folder, as a fit resumed from it (or still training in it) does.
    with folder_locked_elsewhere(last.parent):
        resume = ["fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last"]
        assert main(resume) == 1
        err = capsys.readouterr().err
        assert f"Another process is writing checkpoints into {last.parent}" in err
        assert "Traceback" not in err
        assert last.read_bytes() == saved
    # The holder gone, the same command resumes (the refused fit let nothing stay locked).
    assert run_cli(resume).trainer.current_epoch == 2


# -- a resumed epoch with another batch size -----------------------------------------------------


def crashed_mid_epoch(tmp_path: Path, tiny_demo_root: Path) -> tuple[list[str], Path, int]:
    """A 1-epoch run at batch 8 (8 batches) that crashed after step 3, last.ckpt at step 2.

    Returns its arguments (without the batch size), the records' prefix and the
    checkpoint's step.
    """
    prefix = tmp_path / "record"
    args = [
        *demo_args(tmp_path, tiny_demo_root), *SMALL, "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "1.0", "--checkpoint.last_every_n_train_steps", "2",
        "--config", str(write_callbacks_config(tmp_path / "crash.yaml", [
            ("probes.RunRecorder", {"prefix": str(prefix)}),
            ("probes.FailAtStep", {"step": 3}),
        ])),
    ]  # fmt: skip
    with pytest.raises(RuntimeError, match="FailAtStep"):
        run_cli(["fit", *args, "--data.init_args.batch_size", "8"])
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    step = torch.load(last, weights_only=False)["global_step"]
    assert step == 2
    resume = [a if a != str(tmp_path / "crash.yaml") else str(write_callbacks_config(
        tmp_path / "resume.yaml", [("probes.RunRecorder", {"prefix": str(prefix)})]
    )) for a in args]  # fmt: skip
    return [*resume, "--ckpt_path", "last"], prefix, step


def test_a_larger_batch_size_mid_epoch_is_refused_a_smaller_one_sees_every_image_once(
    tmp_path, tiny_demo_root
):
    args, prefix, step = crashed_mid_epoch(tmp_path, tiny_demo_root)
    with pytest.raises(ValueError, match="saved in the middle of epoch 0 .after 16 of its 64") as e:
        run_cli(["fit", *args, "--data.init_args.batch_size", "16"])
    assert "--data.init_args.batch_size 8; adding --trainer.max_epochs 1 stops" in str(e.value)
    run_cli(["fit", *args, "--data.init_args.batch_size", "4"])
    records = [r for r in read_records(prefix) if r["kind"] == "train"]
    before = [r for r in records[:step]]  # the crashed run's steps up to its checkpoint
    after = records[step + 1 :]  # after the crashed step 3, the resumed run's
    assert [len(r["index"]) for r in before + after] == [8, 8] + [4] * 12
    seen = sorted(i for r in before + after for i in r["index"])
    assert seen == list(range(64))  # every training image of the epoch exactly once


def test_a_resume_that_changes_eval_label_less_says_so(tmp_path, tiny_demo_root, lightning_log):
    args, _ = one_epoch_run(tmp_path, tiny_demo_root)
    run_cli([
        "fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last",
        "--data.init_args.eval_label_less", "exclude",
    ])  # fmt: skip
    assert (
        "Resumed with eval_label_less 'exclude' (the checkpoint evaluated with 'keep')"
        in lightning_log.text
    )


def test_refused_commands_leave_no_version_folder(tmp_path, tiny_demo_root, capsys):
    args, last = one_epoch_run(tmp_path, tiny_demo_root)
    versions = last.parents[2]
    assert sorted(p.name for p in versions.iterdir()) == ["version_0"]
    refused = [
        ["fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last",
         "--data.init_args.split_seed", "7"],  # other training rows
        ["test", *args, "--ckpt_path", "best", "--data.init_args.image_size", "48"],
        ["validate", *args, "--ckpt_path", "best", "--data.init_args.split_seed", "5"],
    ]  # fmt: skip
    for command in refused:
        assert main(command) == 1, capsys.readouterr().err
    # LightningCLI had saved config.yaml (and TensorBoard an empty event file) in each.
    assert sorted(p.name for p in versions.iterdir()) == ["version_0"]


def test_best_of_a_root_whose_run_resumed_another_root_s_checkpoint(tmp_path, tiny_demo_root):
    args, last = one_epoch_run(tmp_path / "first", tiny_demo_root)
    second = tmp_path / "second"
    resumed = [*args, "--trainer.default_root_dir", str(second), "--trainer.max_epochs", "2"]
    run_cli(["fit", *resumed, "--ckpt_path", str(last)])
    assert not list(second.rglob("*.ckpt"))  # it kept writing into the first root's folder
    test = run_cli(["test", *resumed, "--ckpt_path", "best"])
    assert Path(test.trainer.ckpt_path).parent == last.parent
    # A fit there still starts its own run rather than continue another root's.
    assert resolve_checkpoint("last", Trainer(default_root_dir=second), missing_ok=True) is None


def test_a_larger_batch_size_at_an_epoch_end_is_applied(tmp_path, tiny_demo_root):
    # 2 batches of 8 per epoch (limit_train_batches): the epoch ends with its loader at 16 of 64
    # images, which is no mid-epoch position -- the resumed run starts the next epoch.
    args = [*demo_args(tmp_path, tiny_demo_root), *SMALL, "--data.init_args.batch_size", "8"]
    run_cli(["fit", *args, "--trainer.max_epochs", "1"])
    resumed = run_cli([
        "fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last",
        "--data.init_args.batch_size", "16",
    ])  # fmt: skip
    assert resumed.trainer.current_epoch == 2


def test_the_early_refusal_reads_plain_hyper_parameters_and_leaves_objects_to_the_restore(
    tmp_path,
):
    plain, objects = tmp_path / "plain.ckpt", tmp_path / "objects.ckpt"
    gr = {"class_path": "spml_lightning.losses.GRLoss", "init_args": {"q2": 0.01}}
    torch.save({"hyper_parameters": {"loss": gr, "lr": 1e-3}}, plain)
    torch.save({"hyper_parameters": {"loss": gr, "backbone": torch.nn.Linear(2, 2)}}, objects)
    an = {"class_path": "spml_lightning.losses.AssumeNegativeLoss", "init_args": {}}
    with pytest.raises(ValueError, match="loss: GRLoss in the checkpoint, AssumeNegativeLoss now"):
        refuse_resume_early(plain, {"loss": an, "lr": 1e-3})
    refuse_resume_early(plain, {"loss": gr, "lr": 0.5})  # the lr a resume may change
    # A module in the hyper-parameters cannot be read without running pickled code: the
    # restore (which loads the checkpoint whole) checks that resume instead.
    refuse_resume_early(objects, {"loss": an})
