"""Helpers for tests that drive real `spml` runs, subprocesses included.

The callbacks are injected with --config (write_callbacks_config); they only
observe (and, for PauseAtStep and StartTogether, wait; ScriptedMetric logs a
metric whose values a test chooses), none changes what is trained.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from spml_lightning import SPMLModule
from spml_lightning.cli import run_cli

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent

#: A demo set small enough for seconds-long training runs on a 2-core CPU.
TINY_DEMO = {"num_train": 80, "num_test": 40, "render_size": 32}


#: Size flags that shrink configs/demo.yaml to seconds on a CPU (2 epochs of 2 batches, 32 px).
TINY_DEMO_FLAGS: tuple[str, ...] = (
    "--trainer.max_epochs", "2",
    "--trainer.limit_train_batches", "2",
    "--data.init_args.num_train", str(TINY_DEMO["num_train"]),
    "--data.init_args.num_test", str(TINY_DEMO["num_test"]),
    "--data.init_args.render_size", str(TINY_DEMO["render_size"]),
    "--data.init_args.image_size", "32",
    "--data.init_args.num_workers", "0",
)  # fmt: skip


def demo_args(tmp_path: Path, tiny_demo_root: Path) -> list[str]:
    """spml flags: configs/demo.yaml on the tiny demo set, 2 short epochs, runs in ``tmp_path``."""
    return [
        "--config", str(REPO_ROOT / "configs" / "demo.yaml"),
        "--trainer.default_root_dir", str(tmp_path / "runs"),
        "--trainer.enable_progress_bar", "false",
        "--data.init_args.root", str(tiny_demo_root),
        *TINY_DEMO_FLAGS,
    ]  # fmt: skip


def subprocess_env() -> dict[str, str]:
    """Environment in which a child process imports this checkout's package and these probes."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(TESTS_DIR), env.get("PYTHONPATH", "")])
    return env


def run_ddp_driver(cwd: Path, args: list[str]) -> subprocess.CompletedProcess:
    """Run tests/ddp_driver.py (fit, validate, test) with spml ``args`` in ``cwd``; must exit 0."""
    result = subprocess.run(
        [sys.executable, str(TESTS_DIR / "ddp_driver.py"), *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@contextlib.contextmanager
def folder_locked_elsewhere(folder: Path) -> Iterator[None]:
    """Another process holds ``folder``'s ``FolderLock`` while the block runs."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from spml_lightning.training.folder_lock import FolderLock
            assert FolderLock({str(folder)!r}).acquire()
            print("locked", flush=True)
            time.sleep(600)
        """)],
        cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()
        holder.wait()


def write_callbacks_config(path: Path, callbacks: list[tuple[str, dict]]) -> Path:
    """A config file adding ``trainer.callbacks`` given as (class path, init args) pairs."""
    lines = ["trainer:", "  callbacks:"]
    for class_path, init_args in callbacks:
        lines.append(f"    - class_path: {class_path}")
        if init_args:
            lines.append("      init_args:")
            lines += [f"        {key}: {value!r}" for key, value in init_args.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def final_weights(run_root: Path) -> dict[str, torch.Tensor]:
    """The state dict in the one last.ckpt below ``run_root``."""
    (last,) = run_root.rglob("last.ckpt")
    return torch.load(last, map_location="cpu", weights_only=False)["state_dict"]


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names and exact bytes."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class PauseAtStep(Callback):
    """At the end of global step ``step``, write ``marker`` and sleep.

    A test can then SIGKILL the run there.

    Args:
        step: global step (optimizer steps done) to stop at.
        marker: file written when the run is paused.
    """

    def __init__(self, step: int, marker: str) -> None:
        self.step = step
        self.marker = marker

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        if trainer.global_step == self.step:
            Path(self.marker).write_text(f"{os.getpid()} {trainer.current_epoch} {batch_idx}\n")
            time.sleep(600)


class FailAtStep(Callback):
    """Raise ``RuntimeError`` at the end of global step ``step``: a crash, in the same process.

    Args:
        step: global step (optimizer steps done) to fail at.
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"FailAtStep: crashed at step {self.step}")


class NaNHeadWhenLrAbove(Callback):
    """Fill the head's weights with NaN before each step of a run whose ``lr`` exceeds ``lr``.

    A diverging run on demand: the NaN guard stops it at its first step.

    Args:
        lr: the learning rate above which the run diverges.
    """

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx
    ) -> None:
        if pl_module.hparams.lr > self.lr:
            with torch.no_grad():
                pl_module.head.weight.fill_(float("nan"))


class WriteFileOnPredictStart(Callback):
    """Write ``text`` to ``path`` when prediction starts: another process's output, meanwhile.

    Args:
        path: the file.
        text: its content.
    """

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        Path(self.path).write_text(self.text)


class ScriptedMetric(Callback):
    """Log ``name`` = ``values[epoch]`` at every validation, so a test decides which epoch is best.

    Args:
        name: the metric's name (monitor it with ``--checkpoint.monitor``).
        values: one value per epoch.
    """

    def __init__(self, name: str, values: list[float]) -> None:
        self.name = name
        self.values = values

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module.log(self.name, float(self.values[trainer.current_epoch]))


class StartTogether(Callback):
    """Hold each run in ``setup`` until ``count`` runs got there.

    They then go on at the same moment.

    Lightning's loggers have chosen their version folder by then but not yet
    created it: the moment at which runs started together collided.

    Args:
        folder: where each run leaves a file named by its pid.
        count: the number of runs to wait for.
        timeout: seconds to wait before failing the run.
    """

    def __init__(self, folder: str, count: int, timeout: float = 120.0) -> None:
        self.folder = Path(folder)
        self.count = count
        self.timeout = timeout

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / str(os.getpid())).touch()
        deadline = time.monotonic() + self.timeout
        while len(list(self.folder.iterdir())) < self.count:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {len(list(self.folder.iterdir()))} of {self.count} runs started"
                )
            time.sleep(0.05)


#: The F1 metrics a RunRecorder records at test time, besides the mAP.
F1_RECORDED = ("OF1", "CF1", "top3/OF1", "top3/CF1")


class RunRecorder(Callback):
    """Append what a run did to ``<prefix>.rank<R>.jsonl``, one JSON object per event.

    Events: ``train`` (every step: global step, epoch, the loss's schedule
    values in force, the loss value, each parameter group's learning rate),
    ``epoch_end`` (digests of the model weights and of the loss's state),
    ``val`` (mAP) and ``test`` (mAP and ``F1_RECORDED``).

    Args:
        prefix: path prefix of the record files.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _write(self, trainer: Trainer, record: dict) -> None:
        with open(f"{self.prefix}.rank{trainer.global_rank}.jsonl", "a") as file:
            file.write(json.dumps(record) + "\n")

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        current = getattr(pl_module.loss, "current", None)
        self._write(
            trainer,
            {
                "kind": "train",
                "step": trainer.global_step,
                "epoch": trainer.current_epoch,
                "batch_idx": batch_idx,
                "schedule": current.as_dict() if current is not None else None,
                "loss": float(outputs["loss"]),
                "index": [int(i) for i in batch["index"]],
                # the rates the step just taken used
                "lr": {
                    g.get("name", str(i)): g["lr"]
                    for i, g in enumerate(trainer.optimizers[0].param_groups)
                },
            },
        )

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(
            trainer,
            {
                "kind": "epoch_end",
                "epoch": trainer.current_epoch,
                "weights": tensor_digest(pl_module.state_dict()),
                "loss_state": tensor_digest(pl_module.loss.state_dict()),
            },
        )

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking and "val/mAP" in trainer.callback_metrics:
            self._write(
                trainer,
                {
                    "kind": "val",
                    "epoch": trainer.current_epoch,
                    "mAP": float(trainer.callback_metrics["val/mAP"]),
                },
            )

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = trainer.callback_metrics
        record = {"kind": "test", "mAP": float(metrics["test/mAP"])}
        record.update({name: float(metrics[f"test/{name}"]) for name in F1_RECORDED})
        self._write(trainer, record)


def read_records(prefix: str | Path, rank: int = 0) -> list[dict]:
    """The events a RunRecorder wrote for one rank, in order."""
    path = Path(f"{prefix}.rank{rank}.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def make_trainer(tmp_path: Path, **kwargs) -> Trainer:
    """A quiet one-epoch CPU Trainer (no logger, checkpoints or sanity check).

    ``kwargs`` override the defaults.
    """
    defaults = dict(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    defaults.update(kwargs)
    return Trainer(**defaults)


def tiny_model(**kwargs) -> SPMLModule:
    """A from-scratch ResNet-18 SPMLModule for the 14 demo classes; ``kwargs`` override."""
    defaults = dict(num_classes=14, backbone="resnet18", weights="none", lr=1e-3, lr_mult=1.0)
    defaults.update(kwargs)
    return SPMLModule(**defaults)


class PhaseRecorder(Callback):
    """What each epoch trained and validated on (images or cached features), its rates, its
    first batch's Adam state, the observed labels trained on, the weights before its first step
    and at its end."""

    def __init__(self) -> None:
        self.train: dict[int, set[str]] = {}
        self.val: dict[int, set[str]] = {}
        self.rates: dict[int, dict[str, float]] = {}
        self.adam_states: dict[int, int] = {}
        self.initial: dict[str, torch.Tensor] = {}
        self.at_end: dict[int, dict[str, torch.Tensor]] = {}
        self.at_start: dict[int, dict[str, torch.Tensor]] = {}  # before the epoch's first step
        self.observed: dict[int, np.ndarray] = {}  # the observed labels trained on, by row
        self.val_rows: dict[int, int] = {}

    @staticmethod
    def _kind(batch: dict) -> str:
        return "features" if "features" in batch else "image"

    def on_train_start(self, trainer, pl_module) -> None:
        self.initial = copy.deepcopy(pl_module.state_dict())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        epoch = trainer.current_epoch
        self.train.setdefault(epoch, set()).add(self._kind(batch))
        for index, observed in zip(batch["index"], batch["observed"], strict=True):
            self.observed[int(index)] = observed.cpu().numpy()
        if epoch not in self.rates:
            optimizer = trainer.optimizers[0]
            self.rates[epoch] = {group["name"]: group["lr"] for group in optimizer.param_groups}
            self.adam_states[epoch] = len(optimizer.state)
            self.at_start[epoch] = copy.deepcopy(pl_module.state_dict())

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            epoch = trainer.current_epoch
            self.val.setdefault(epoch, set()).add(self._kind(batch))
            self.val_rows[epoch] = self.val_rows.get(epoch, 0) + len(batch["index"])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.at_end[trainer.current_epoch] = copy.deepcopy(pl_module.state_dict())


#: The train modes that read cached features.
MODES: tuple[str, ...] = ("linear_fixed_features", "linear_init")


def mode_args(mode: str) -> list[str]:
    """spml flags for ``mode``; ``linear_init`` with a linear phase of one epoch."""
    return ["--model.train_mode", mode] + (["--model.linear_init", "1"] * (mode == "linear_init"))


def features_fit(args: list[str]) -> tuple[object, PhaseRecorder]:
    """``spml fit`` with ``args`` and a PhaseRecorder; the CLI object and the recorder."""
    cli = run_cli(args, run=False)
    phases = PhaseRecorder()
    cli.trainer.callbacks.append(phases)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli, phases


#: A sitecustomize that makes every import of torch, torchvision or Lightning fail.
TORCH_BLOCKER = textwrap.dedent(
    """
    import sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "lightning", "pytorch_lightning"):
                raise ImportError(f"{name} is not installed here (blocked by the test)")
            return None

    sys.meta_path.insert(0, NoTorch())
    """
)


def write_torch_blocker(folder: Path) -> Path:
    """``folder`` with a sitecustomize.py blocking torch (first on a child's PYTHONPATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(TORCH_BLOCKER)
    return folder
