"""Per-step cost of Lightning + SPMLModule over a plain loop, on a model too small to matter.

A training step of a real model takes tens to hundreds of milliseconds; the
framework's share of it (hooks, logging, the progress bar) is a millisecond
or two and drowns in the noise of a throughput benchmark. Here the model is
a 2-layer perceptron on 8 x 8 images held in memory (no loader workers), so
a step's time is almost all framework:

- ``plain``: the same module's forward, loss, backward and Adam step in a for loop;
- ``spml``: ``Trainer.fit`` of ``SPMLModule`` with the callbacks ``spml fit``
  adds and its defaults (progress bar, TensorBoard/CSV logger);
- ``spml-no-bar``: the same without the progress bar;
- ``spml-log-every-step``: the module as it was before this benchmark, logging
  ``train/loss`` on every step with ``prog_bar=True`` (what the fix saved).

Prints milliseconds per step (medians of interleaved runs) and the overhead
of each spml side over ``plain``.

    python bench/step_overhead.py [--steps 300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import describe_machine, interleave, print_check, print_load, print_side  # noqa: E402

NUM_CLASSES = 80


class InMemory(Dataset):
    """SPML items of 8 x 8 images, made on the fly (nothing to load)."""

    def __len__(self) -> int:
        return 1_000_000

    def __getitem__(self, index: int) -> dict:
        observed = torch.zeros(NUM_CLASSES)
        observed[index % NUM_CLASSES] = 1
        return {
            "image": torch.full((3, 8, 8), index % 7 / 7),
            "observed": observed,
            "target": observed.clone(),
            "index": index,
        }


def tiny_module(log_every_step: bool = False):
    """An SPMLModule whose backbone and head are a 2-layer perceptron."""
    from spml_lightning.module import SPMLModule

    class EveryStepLogging(SPMLModule):
        """SPMLModule's training step before the fix.

        It calls self.log on every step and shows the loss on the progress bar.
        """

        def training_step(self, batch, batch_idx):
            logits = self(batch["image"]).float()
            loss = self.loss(logits, batch["observed"], batch.get("index"))
            self.log(
                "train/loss",
                loss,
                on_step=True,
                on_epoch=True,
                prog_bar=True,
                batch_size=len(logits),
            )
            return loss

    torch.manual_seed(0)
    cls = EveryStepLogging if log_every_step else SPMLModule
    module = cls(num_classes=NUM_CLASSES, backbone="resnet18", weights="none", lr=1e-3)
    module.backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU())
    module.head = nn.Linear(32, NUM_CLASSES)
    return module


def run_plain(steps: int, warmup: int) -> dict[str, float]:
    module = tiny_module()
    module.loss.set_epoch(0, 1)
    optimizer = module.configure_optimizers()
    loader = DataLoader(InMemory(), batch_size=8, shuffle=True)
    for step, batch in enumerate(loader):
        loss = module.loss(module(batch["image"]).float(), batch["observed"], batch["index"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step == warmup - 1:
            start = time.perf_counter()
        if step == warmup + steps - 1:
            break
    return {"ms_per_step": (time.perf_counter() - start) / steps * 1000}


def run_spml(
    steps: int, warmup: int, work_dir: Path, progress_bar: bool, log_every_step: bool = False
):
    from lightning.pytorch import Callback, Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint

    from spml_lightning.training.callbacks import DropFromBestStopping

    class StepTimer(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == warmup - 1:
                self.start = time.perf_counter()
            if batch_idx == warmup + steps - 1:
                self.ms = (time.perf_counter() - self.start) / steps * 1000

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    timer = StepTimer()
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=warmup + steps,
        limit_val_batches=0,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        default_root_dir=str(work_dir),
        callbacks=[
            timer,
            ModelCheckpoint(monitor="val/mAP", mode="max", save_top_k=0, save_last=False),
            DropFromBestStopping(),
        ],
    )
    # Lightning draws the progress bar (its cost counts) into /dev/null, not over this output.
    with (
        open(os.devnull, "w") as sink,
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        trainer.fit(
            tiny_module(log_every_step),
            train_dataloaders=DataLoader(InMemory(), batch_size=8, shuffle=True),
        )
    return {"ms_per_step": timer.ms}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    print(f"# step_overhead: 2-layer perceptron, batch 8, {args.steps} timed steps, CPU")
    print(f"# machine: {describe_machine(torch.device('cpu'))}")
    print_load("start")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sides = {
            "plain": lambda: run_plain(args.steps, args.warmup),
            "spml": lambda: run_spml(args.steps, args.warmup, work, progress_bar=True),
            "spml-no-bar": lambda: run_spml(args.steps, args.warmup, work, progress_bar=False),
            "spml-log-every-step": lambda: run_spml(
                args.steps, args.warmup, work, True, log_every_step=True
            ),
        }
        results = interleave(sides, args.repeats, verbose=False)
    print_load("end")
    medians = {name: print_side(name, runs, "ms_per_step", "ms") for name, runs in results.items()}
    for name in ("spml", "spml-no-bar", "spml-log-every-step"):
        print_check(f"overhead of {name} over plain, ms per step", medians[name] - medians["plain"])


if __name__ == "__main__":
    main()
