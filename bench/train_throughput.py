"""Training and validation throughput: ``spml fit`` against a plain PyTorch loop.

Sides, all on the same model, data and device, interleaved in one run:

- ``reference``: a plain PyTorch loop that follows the reference protocol
  (Cole et al., CVPR 2021) -- PIL decode, ``Resize((S, S))``, random flip,
  ImageNet normalisation, fp32, Adam (head at 10x), batch 8; validation
  collects sigmoid scores and computes exact mAP. It
  is written lean (no per-step ``.item()``, no logging), so it is the fastest
  honest plain loop, not the slower published one.
- ``spml-paper``: ``spml fit`` (LightningCLI -> Trainer -> SPMLModule +
  FormattedDataModule) with the same settings: the paper profile.
- ``spml-fast``: ``spml fit --config configs/fast.yaml`` (bf16-mixed,
  channels_last, big batches, persistent pinned workers, rare progress-bar
  refresh); the batch size and workers can be overridden.
- ``ceiling-fast``: the model step alone at the fast profile's batch and
  precision, on one batch that already sits on the device -- what the
  fast profile could reach if data loading and the framework were free.

Training images/s are timed from the end of step ``warmup`` to the end of
the last step (the device synchronised at both ends); validation images/s
from the first validation batch to the computed mAP.

    python bench/train_throughput.py                       # CPU defaults: resnet18, 64 px, 1 thread
    python bench/train_throughput.py --device cuda --backbone resnet50 --image-size 448 \\
        --jpeg-size 500x375 --workers 4 --fast-workers 14 \\
        --sides reference spml-paper spml-fast ceiling-fast

On a shared CPU the intra-op threads default to 1: with several threads,
OpenMP's barriers wait for threads that other processes pushed off the cores
and a step becomes 10-20x slower and erratic.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's spml_lightning
from harness import (  # noqa: E402  (bench/ is not a package)
    Timer,
    describe_machine,
    interleave,
    paired_ratio,
    print_load,
    print_ratio,
    print_side,
    write_formatted_dataset,
)

REPO = Path(__file__).resolve().parent.parent
FAST_CONFIG = REPO / "configs" / "fast.yaml"
SIDES = ("reference", "spml-paper", "spml-fast", "ceiling-fast")


@dataclass
class Settings:
    """Everything the sides share."""

    device: torch.device
    data_root: Path
    work_dir: Path
    backbone: str
    image_size: int
    batch_size: int
    workers: int
    fast_batch_size: int | None
    fast_workers: int | None
    warmup: int
    steps: int
    val_batches: int
    compile: bool
    decode_on: str | None
    progress_bar: bool
    lr: float = 1e-5
    lr_mult: float = 10.0


# -- the plain reference loop ---------------------------------------------------------


class ReferenceDataset(Dataset):
    """The reference protocol's data set as the reference code writes it: PIL decode per item."""

    def __init__(
        self, paths: list[str], observed: np.ndarray, targets: np.ndarray, train: bool, size: int
    ) -> None:
        self.paths, self.observed, self.targets = paths, observed, targets
        steps: list = [transforms.Resize((size, size))]
        if train:
            steps.append(transforms.RandomHorizontalFlip(0.5))
        steps += [
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
        self.transform = transforms.Compose(steps)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        with Image.open(self.paths[index]) as raw:
            image = self.transform(raw.convert("RGB"))
        return {
            "image": image,
            "observed": torch.from_numpy(self.observed[index].astype(np.float32)),
            "target": torch.from_numpy(self.targets[index].astype(np.float32)),
            "index": index,
        }


def reference_datasets(root: Path, size: int) -> tuple[ReferenceDataset, ReferenceDataset]:
    """Train and val sets of the formatted data set by the protocol (Cole et al., CVPR 2021)."""
    from spml_lightning.data.protocol import observe_single_positive, split_train_val

    names = np.load(root / "formatted_train_images.npy")
    labels = np.load(root / "formatted_train_labels.npy")
    observed = observe_single_positive(labels, 1200, 1, 0)
    train_idx, val_idx = split_train_val(len(labels), 0.2, 1200)
    paths = [str(root / str(name)) for name in names]
    train = ReferenceDataset(
        [paths[i] for i in train_idx], observed[train_idx], labels[train_idx], True, size
    )
    val = ReferenceDataset(
        [paths[i] for i in val_idx], observed[val_idx], labels[val_idx], False, size
    )
    return train, val


def build_model(settings: Settings, num_classes: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The reference model (backbone + Linear head) and its Adam with a 10x head."""
    from spml_lightning.backbones import build_backbone

    torch.manual_seed(0)
    backbone, dim = build_backbone(settings.backbone, "none")
    head = nn.Linear(dim, num_classes)
    model = nn.Sequential(backbone, head).to(settings.device)
    optimizer = torch.optim.Adam(
        [
            {"params": backbone.parameters(), "lr": settings.lr},
            {"params": head.parameters(), "lr": settings.lr * settings.lr_mult},
        ]
    )
    return model, optimizer


def run_reference(settings: Settings) -> dict[str, float]:
    """One epoch of the plain loop: ``warmup + steps`` training steps, then validation."""
    from spml_lightning.losses import GRLoss
    from spml_lightning.metrics import average_precision_per_class

    device = settings.device
    train_set, val_set = reference_datasets(settings.data_root, settings.image_size)
    num_classes = train_set.targets.shape[1]
    model, optimizer = build_model(settings, num_classes)
    criterion = GRLoss()
    criterion.set_epoch(0, 1)
    pin = device.type == "cuda"
    loader_args = {
        "batch_size": settings.batch_size,
        "num_workers": settings.workers,
        "pin_memory": pin,
    }
    train_loader = DataLoader(train_set, shuffle=True, drop_last=True, **loader_args)
    timer = Timer(device)
    last = settings.warmup + settings.steps - 1
    model.train()
    for step, batch in enumerate(train_loader):
        images = batch["image"].to(device, non_blocking=True)
        observed = batch["observed"].to(device, non_blocking=True)
        loss = criterion(model(images).float(), observed)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step == settings.warmup - 1:
            timer.start()
        if step == last:
            break
    train_seconds = timer.stop()
    train_cpu_seconds = timer.cpu_seconds
    del train_loader

    val_loader = DataLoader(val_set, shuffle=False, **loader_args)
    model.eval()
    scores, targets = [], []
    with torch.no_grad():
        batches = itertools.islice(iter(val_loader), settings.val_batches)
        first = next(batches)
        timer.start()
        count = 0
        for batch in itertools.chain([first], batches):
            images = batch["image"].to(device, non_blocking=True)
            scores.append(torch.sigmoid(model(images).float()))
            targets.append(batch["target"].to(device, non_blocking=True))
            count += len(images)
        average_precision_per_class(torch.cat(scores), torch.cat(targets)).mean()
        val_seconds = timer.stop()
    return {
        "train": settings.steps * settings.batch_size / train_seconds,
        "val": count / val_seconds,
        "train_cpu_ms": timer_cpu_ms_per_step(train_cpu_seconds, settings.steps),
    }


def timer_cpu_ms_per_step(cpu_seconds: float, steps: int) -> float:
    """Main-process CPU milliseconds per training step."""
    return cpu_seconds / steps * 1000


# -- spml fit ---------------------------------------------------------------------------


def make_timer_callback(settings: Settings, batch_size: int):
    """A Lightning callback timing the same windows as the plain loop."""
    from lightning.pytorch import Callback

    class ThroughputTimer(Callback):
        def __init__(self) -> None:
            self.train = Timer(settings.device)
            self.val = Timer(settings.device)
            self.train_images = settings.steps * batch_size
            self.val_images = 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if batch_idx == settings.warmup - 1:
                self.train.start()
            if batch_idx == settings.warmup + settings.steps - 1:
                self.train.stop()

        def on_validation_batch_start(
            self, trainer, pl_module, batch, batch_idx, dataloader_idx=0
        ) -> None:
            if batch_idx == 0:
                self.val.start()
            self.val_images += len(batch["observed"])

        def on_validation_end(self, trainer, pl_module) -> None:
            self.val.stop()

    return ThroughputTimer()


def spml_settings(settings: Settings, fast: bool) -> dict[str, object]:
    """The ``spml fit`` settings of a side, as ``group.key -> value`` (the CLI's flag names)."""
    values: dict[str, object] = {
        "seed_everything": 0,
        "model.backbone": settings.backbone,
        "model.weights": "none",
        "model.lr": settings.lr,
        "model.lr_mult": settings.lr_mult,
        # The paper side's batch is the one lr is set for (the fast side scales lr from it).
        "model.lr_batch_size": settings.batch_size,
        "data.root": str(settings.data_root),
        "data.image_size": settings.image_size,
        "data.batch_size": settings.batch_size,
        "data.num_workers": settings.workers,
        "trainer.accelerator": "gpu" if settings.device.type == "cuda" else "cpu",
        "trainer.devices": 1,
        "trainer.max_epochs": 1,
        "trainer.limit_train_batches": settings.warmup + settings.steps,
        "trainer.limit_val_batches": settings.val_batches,
        "trainer.num_sanity_val_steps": 0,
        "trainer.enable_model_summary": False,
        "trainer.enable_progress_bar": settings.progress_bar,
        "trainer.default_root_dir": str(settings.work_dir / ("fast" if fast else "paper")),
        "checkpoint.save_top_k": 0,
        "checkpoint.save_last": False,
    }
    if fast:
        config = fast_config()
        for group in ("trainer", "model"):
            values.update(
                {f"{group}.{key}": value for key, value in (config.get(group) or {}).items()}
            )
        values.update({f"data.{key}": value for key, value in config["data"]["init_args"].items()})
        if settings.fast_batch_size is not None:
            values["data.batch_size"] = settings.fast_batch_size
        if settings.fast_workers is not None:
            values["data.num_workers"] = settings.fast_workers
        if settings.compile:
            values["model.compile"] = True
        if settings.decode_on:
            values["data.decode_on"] = settings.decode_on
    return values


def build_with_cli(values: dict[str, object]):
    """Trainer, model and datamodule exactly as ``spml fit`` builds them (LightningCLI)."""
    from spml_lightning.cli import run_cli

    args = ["--data", "spml_lightning.data.FormattedDataModule"]
    for key, value in values.items():
        args += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns about this script's own arguments
    try:
        cli = run_cli(args, run=False)  # run=False: no subcommand; fit below
    finally:
        sys.argv = argv
    return cli.trainer, cli.model, cli.datamodule


def build_without_cli(values: dict[str, object]):
    """The same objects through the Python API.

    For machines without jsonargparse (LightningCLI's parser).
    """
    from lightning.pytorch import Trainer, seed_everything

    from spml_lightning.data import FormattedDataModule
    from spml_lightning.module import SPMLModule
    from spml_lightning.training import ResumableCheckpoint
    from spml_lightning.training.callbacks import DropFromBestStopping

    def group(name: str) -> dict:
        return {
            key.split(".", 1)[1]: value
            for key, value in values.items()
            if key.startswith(name + ".")
        }

    seed_everything(int(values["seed_everything"]), workers=True)
    datamodule = FormattedDataModule(**group("data"))
    model = SPMLModule(
        num_classes=datamodule.num_classes, class_names=datamodule.class_names, **group("model")
    )
    # The callbacks and defaults spml's CLI adds (cli.py).
    checkpoint = ResumableCheckpoint(monitor="val/mAP", mode="max", **group("checkpoint"))
    trainer = Trainer(callbacks=[checkpoint, DropFromBestStopping()], **group("trainer"))
    return trainer, model, datamodule


def has_cli() -> bool:
    """Whether LightningCLI can run here (it needs jsonargparse)."""
    try:
        import jsonargparse  # noqa: F401
    except ImportError:
        return False
    return True


def run_spml(settings: Settings, fast: bool) -> dict[str, float]:
    """One ``spml fit`` epoch of a profile, timed like the plain loop."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    values = spml_settings(settings, fast)
    trainer, model, datamodule = build_with_cli(values) if has_cli() else build_without_cli(values)
    timer = make_timer_callback(settings, datamodule.batch_size)
    trainer.callbacks.insert(0, timer)
    # Lightning draws the progress bar (its cost counts) into /dev/null, not over this output.
    with (
        open(os.devnull, "w") as sink,
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        trainer.fit(model, datamodule=datamodule)
    result = {
        "train": timer.train_images / timer.train.seconds,
        "val": timer.val_images / timer.val.seconds,
        "train_cpu_ms": timer_cpu_ms_per_step(timer.train.cpu_seconds, settings.steps),
    }
    del trainer, model, datamodule
    gc.collect()
    return result


# -- the model step alone ---------------------------------------------------------------


def fast_config() -> dict:
    """configs/fast.yaml as a dict."""
    import yaml

    return yaml.safe_load(FAST_CONFIG.read_text())


def fast_profile_facts() -> dict:
    """Precision, batch size and channels_last of configs/fast.yaml."""
    config = fast_config()
    return {
        "precision": config["trainer"]["precision"],
        "batch_size": config["data"]["init_args"]["batch_size"],
        "channels_last": config["model"]["channels_last"],
    }


def run_ceiling(settings: Settings) -> dict[str, float]:
    """Training steps of the fast profile's model on one batch resident on the device."""
    from spml_lightning.module import SPMLModule

    facts = fast_profile_facts()
    batch_size = settings.fast_batch_size or facts["batch_size"]
    device = settings.device
    torch.manual_seed(0)
    module = SPMLModule(
        num_classes=80,
        backbone=settings.backbone,
        weights="none",
        lr=settings.lr,
        lr_mult=settings.lr_mult,
        channels_last=facts["channels_last"],
    ).to(device)
    if settings.compile:
        module.backbone.compile()
    module.loss.set_epoch(0, 1)
    optimizer = module.configure_optimizers()
    images = torch.randn(batch_size, 3, settings.image_size, settings.image_size, device=device)
    observed = torch.zeros(batch_size, 80, device=device)
    observed[torch.arange(batch_size), torch.randint(0, 80, (batch_size,))] = 1
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(facts["precision"])
    timer = Timer(device)
    module.train()
    for step in range(settings.warmup + settings.steps):
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = module(images)
        loss = module.loss(logits.float(), observed)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step == settings.warmup - 1:
            timer.start()
    seconds = timer.stop()
    del module, optimizer
    return {
        "train": settings.steps * batch_size / seconds,
        "train_cpu_ms": timer_cpu_ms_per_step(timer.cpu_seconds, settings.steps),
    }


# -- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    parser.add_argument(
        "--sides",
        nargs="+",
        choices=SIDES,
        default=None,
        help="default: reference spml-paper on a CPU, all four on a GPU",
    )
    parser.add_argument(
        "--backbone", default=None, help="default resnet18 on a CPU, resnet50 on a GPU"
    )
    parser.add_argument(
        "--image-size", type=int, default=None, help="default 64 on a CPU, 448 on a GPU"
    )
    parser.add_argument(
        "--jpeg-size", default=None, help="WxH of the synthetic JPEGs; default 96x72 / 500x375"
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="paper profile and reference batch"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="loader workers of the paper profile and the reference; default 4, at most the cores",
    )
    parser.add_argument(
        "--fast-batch-size", type=int, default=None, help="override configs/fast.yaml"
    )
    parser.add_argument(
        "--fast-workers",
        type=int,
        default=None,
        help="override configs/fast.yaml (default: cores - 2)",
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps; default 30 (CPU) / 40 (GPU)"
    )
    parser.add_argument("--val-batches", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads; default 1 on a CPU"
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile in the fast profile and ceiling"
    )
    parser.add_argument(
        "--decode-on",
        choices=["workers", "device"],
        default=None,
        help="where the fast profile decodes JPEGs (default: the config's)",
    )
    parser.add_argument(
        "--progress-bar",
        choices=["on", "off"],
        default="on",
        help="spml's progress bar (on: as a user runs it, its cost included)",
    )
    parser.add_argument(
        "--data-root", type=Path, default=None, help="reuse/keep the synthetic data here"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, list]:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    gpu = device.type == "cuda"
    if args.threads or not gpu:
        torch.set_num_threads(args.threads or 1)
    cores = len(__import__("os").sched_getaffinity(0))
    backbone = args.backbone or ("resnet50" if gpu else "resnet18")
    image_size = args.image_size or (448 if gpu else 64)
    width, height = map(int, (args.jpeg_size or ("500x375" if gpu else "96x72")).split("x"))
    steps = args.steps or (40 if gpu else 30)
    sides = args.sides or (list(SIDES) if gpu else ["reference", "spml-paper"])
    fast_batch = args.fast_batch_size or (
        fast_profile_facts()["batch_size"] if "spml-fast" in sides else 8
    )
    fast_workers = args.fast_workers if args.fast_workers is not None else max(1, cores - 2)
    workers = args.workers if args.workers is not None else min(4, cores)
    most = max(args.batch_size, fast_batch if {"spml-fast", "ceiling-fast"} & set(sides) else 0)
    # Enough rows that no epoch runs out of batches (train is 80 % of the phase).
    num_train = (
        int((args.warmup + steps) * most / 0.8) + 2 * most + args.val_batches * most * 5 // 4
    )
    print(f"# train_throughput: {backbone}, {image_size} px from {width}x{height} JPEGs, {device}")
    print(f"# machine: {describe_machine(device)}")
    print(f"# paper/reference: fp32, batch {args.batch_size}, {workers} workers")
    if {"spml-fast", "ceiling-fast"} & set(sides):
        print(
            f"# fast: configs/fast.yaml, batch {fast_batch}, {fast_workers} workers"
            f"{', torch.compile' if args.compile else ''}"
            f"{', decode_on ' + args.decode_on if args.decode_on else ''}"
        )
    print(
        f"# {args.warmup} warm-up + {steps} timed steps, {args.val_batches} val batches, "
        f"{args.repeats} interleaved runs per side"
    )
    if not has_cli() and {"spml-paper", "spml-fast"} & set(sides):
        print(
            "# jsonargparse is not installed: the spml sides are built through the Python API "
            "with the CLI's callbacks and defaults (cli.py), not parsed by LightningCLI"
        )
    print_load("start")
    with tempfile.TemporaryDirectory() as tmp:
        data_root = args.data_root or Path(tmp) / "data"
        write_formatted_dataset(data_root, num_train, 16, 80, width, height)
        settings = Settings(
            device=device,
            data_root=data_root,
            work_dir=Path(tmp) / "runs",
            backbone=backbone,
            image_size=image_size,
            batch_size=args.batch_size,
            workers=workers,
            fast_batch_size=fast_batch,
            fast_workers=fast_workers,
            warmup=args.warmup,
            steps=steps,
            val_batches=args.val_batches,
            compile=args.compile,
            decode_on=args.decode_on,
            progress_bar=args.progress_bar == "on",
        )
        runners: dict[str, Callable[[], dict[str, float]]] = {
            "reference": lambda: run_reference(settings),
            "spml-paper": lambda: run_spml(settings, fast=False),
            "spml-fast": lambda: run_spml(settings, fast=True),
            "ceiling-fast": lambda: run_ceiling(settings),
        }
        results = interleave({name: runners[name] for name in sides}, args.repeats)
    print_load("end")
    medians: dict[tuple[str, str], float] = {}
    for name, runs in results.items():
        for quantity in runs[0]:
            unit = "ms (CPU)" if quantity.endswith("cpu_ms") else "images/s"
            medians[name, quantity] = print_side(name, runs, quantity, unit)
    if "spml-paper" in results and "reference" in results:
        paper, reference = results["spml-paper"], results["reference"]
        for quantity in ("train", "val"):
            print_ratio(
                f"{quantity} spml-paper/reference (goal 1)",
                medians["spml-paper", quantity] / medians["reference", quantity],
                1.0,
            )
            print_ratio(
                f"{quantity} spml-paper/reference, median of paired runs",
                paired_ratio(paper, reference, quantity),
            )
        if not gpu:  # CPU time per step: the same comparison, barely moved by other users' load
            print_ratio(
                "train CPU time per step, reference/spml-paper",
                medians["reference", "train_cpu_ms"] / medians["spml-paper", "train_cpu_ms"],
            )
    if ("spml-fast", "train") in medians and ("reference", "train") in medians:
        print_ratio(
            "train spml-fast/reference (goal 2, on a GPU)",
            medians["spml-fast", "train"] / medians["reference", "train"],
            3.0 if gpu else None,
        )
    if ("spml-fast", "train") in medians and ("ceiling-fast", "train") in medians:
        print_ratio(
            "train spml-fast/ceiling-fast (goal 2, on a GPU)",
            medians["spml-fast", "train"] / medians["ceiling-fast", "train"],
            0.9 if gpu else None,
        )
    return results


if __name__ == "__main__":
    main()
