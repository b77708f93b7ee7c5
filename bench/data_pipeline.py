r"""Loader throughput: the reference PIL pipeline vs spml's datamodule, and decoding on the device.

Sides, interleaved in one run, each reading the same synthetic JPEGs with the
training transform (resize to S x S, random flip, normalise) and nothing
else running in the main process:

- ``reference``: a plain DataLoader over the PIL data set of Cole et al.'s
  released code (``bench/train_throughput.py``'s ``ReferenceDataset``).
- ``spml-workers``: ``FormattedDataModule(...).train_dataloader()``, decoding
  in the workers (the default).
- ``spml-device``: the same datamodule with ``decode_on="device"``: workers
  read the files, the main process decodes and transforms each batch on the
  device (nvJPEG on a GPU), synchronised before the clock is read.
- ``ceiling-fast`` (GPU): the fast profile's model step alone, to compare the
  loader against (goal 3: loader images/s >= 1.2x the step rate).

It also checks that ``decode_on="device"`` produces the PIL path's tensors
within resize tolerance (differences in 8-bit levels).

    python bench/data_pipeline.py    # CPU: 448 px from 500x375 JPEGs, 1 worker per side
    python bench/data_pipeline.py --device cuda --workers 4 14 \
        --sides reference spml-workers spml-device ceiling-fast
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import (  # noqa: E402
    Timer,
    describe_machine,
    interleave,
    paired_ratio,
    print_check,
    print_load,
    print_ratio,
    print_side,
    write_formatted_dataset,
)
from train_throughput import Settings, reference_datasets, run_ceiling  # noqa: E402

SIDES = ("reference", "spml-workers", "spml-device", "ceiling-fast")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def time_loader(
    loader: DataLoader, batches: int, warmup: int, device: torch.device, decode=None
) -> float:
    """Images/s of a loader over ``batches`` batches after ``warmup``.

    The warm-up batches start the workers and fill their queues.
    """
    timer = Timer(device)
    images = 0
    for step, batch in enumerate(loader):
        if decode is not None:
            batch["image"] = decode(batch["image"])
        if step == warmup - 1:
            timer.start()
        elif step >= warmup:
            images += len(batch["observed"])
        if step == warmup + batches - 1:
            break
    return images / timer.stop()


def spml_loader(root: Path, size: int, batch_size: int, workers: int, decode_on: str) -> DataLoader:
    from spml_lightning.data import FormattedDataModule

    datamodule = FormattedDataModule(
        root=str(root),
        image_size=size,
        batch_size=batch_size,
        num_workers=workers,
        decode_on=decode_on,
    )
    datamodule.setup("fit")
    return datamodule.train_dataloader()


def check_device_decode(
    root: Path, size: int, device: torch.device, count: int = 32
) -> tuple[float, float]:
    """(max, mean) absolute difference in 8-bit levels between decode_on=device and the PIL path."""
    from spml_lightning.data.device_decode import decode_and_transform, read_encoded
    from spml_lightning.data.io import load_rgb
    from spml_lightning.data.transforms import reference_transform

    names = sorted((root / "images").glob("*.jpg"))[:count]
    transform = reference_transform(size, False, MEAN, STD)
    reference = torch.stack([transform(load_rgb(str(p))) for p in names])
    ours = decode_and_transform(
        [read_encoded(str(p)) for p in names], size, MEAN, STD, False, device
    ).cpu()
    levels = ((ours - reference) * torch.tensor(STD).view(1, 3, 1, 1) * 255).abs()
    return levels.max().item(), levels.mean().item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--sides",
        nargs="+",
        choices=SIDES,
        default=None,
        help="default: reference spml-workers spml-device (+ ceiling-fast on a GPU)",
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1], help="worker counts to measure"
    )
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--jpeg-size", default="500x375")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--batches", type=int, default=None, help="timed batches; default 15 (CPU) / 40 (GPU)"
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbone", default="resnet50", help="model of the ceiling-fast side")
    args = parser.parse_args(argv)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    gpu = device.type == "cuda"
    if not gpu:
        torch.set_num_threads(
            1
        )  # the device side decodes in this process: one core, as one worker has
    sides = args.sides or (list(SIDES) if gpu else list(SIDES[:3]))
    batches = args.batches or (40 if gpu else 15)
    width, height = map(int, args.jpeg_size.split("x"))
    most_workers = max(args.workers)
    # Every worker prefetches 2 batches: enough rows that no run reaches the end of the epoch.
    rows = int(((args.warmup + batches) + 2 * most_workers + 2) * args.batch_size / 0.8) + 1
    print(
        f"# data_pipeline: {args.image_size} px from {width}x{height} JPEGs, "
        f"batch {args.batch_size}, {device}"
    )
    print(f"# machine: {describe_machine(device)}")
    print(
        f"# {args.warmup} warm-up + {batches} timed batches, "
        f"{args.repeats} interleaved runs per side"
    )
    print_load("start")
    with tempfile.TemporaryDirectory() as tmp:
        root = write_formatted_dataset(Path(tmp) / "data", rows, 8, 80, width, height)
        largest, mean = check_device_decode(root, args.image_size, device)
        print_check(
            f"decode_on=device vs PIL on {device.type}: max |difference| (8-bit levels)",
            largest,
            2.0 if not gpu else 8.0,
        )
        print_check(
            f"decode_on=device vs PIL on {device.type}: mean |difference| (8-bit levels)",
            mean,
            0.5 if not gpu else 1.0,
        )
        train_set, _ = reference_datasets(root, args.image_size)

        def decode_on_device(images):
            from spml_lightning.data.device_decode import decode_and_transform

            return decode_and_transform(images, args.image_size, MEAN, STD, True, device)

        runners = {}
        for workers in args.workers:
            pin = gpu
            if "reference" in sides:
                runners[f"reference/{workers}w"] = lambda w=workers, pin=pin: {
                    "loader": time_loader(
                        DataLoader(
                            train_set,
                            batch_size=args.batch_size,
                            shuffle=True,
                            num_workers=w,
                            pin_memory=pin,
                        ),
                        batches,
                        args.warmup,
                        device,
                    )
                }
            if "spml-workers" in sides:
                runners[f"spml-workers/{workers}w"] = lambda w=workers: {
                    "loader": time_loader(
                        spml_loader(root, args.image_size, args.batch_size, w, "workers"),
                        batches,
                        args.warmup,
                        device,
                    )
                }
            if "spml-device" in sides:
                runners[f"spml-device/{workers}w"] = lambda w=workers: {
                    "loader": time_loader(
                        spml_loader(root, args.image_size, args.batch_size, w, "device"),
                        batches,
                        args.warmup,
                        device,
                        decode=decode_on_device,
                    )
                }
        if "ceiling-fast" in sides:
            settings = Settings(
                device=device,
                data_root=root,
                work_dir=Path(tmp),
                backbone=args.backbone,
                image_size=args.image_size,
                batch_size=8,
                workers=0,
                fast_batch_size=None,
                fast_workers=None,
                warmup=5,
                steps=20,
                val_batches=0,
                compile=False,
                decode_on=None,
                progress_bar=False,
            )
            runners["ceiling-fast"] = lambda: {"step": run_ceiling(settings)["train"]}
        results = interleave(runners, args.repeats)
    print_load("end")
    medians = {}
    for name, runs in results.items():
        quantity = next(iter(runs[0]))
        medians[name] = print_side(name, runs, quantity, "images/s")
    for workers in args.workers:
        ref = medians.get(f"reference/{workers}w")
        for side in ("spml-workers", "spml-device"):
            ours = medians.get(f"{side}/{workers}w")
            if ref and ours:
                goal = 1.0 if side == "spml-workers" else None
                print_ratio(
                    f"loader {side}/reference, {workers} worker(s) (goal 3: per core)",
                    ours / ref,
                    goal,
                )
                print_ratio(
                    f"loader {side}/reference, {workers} worker(s), median of paired runs",
                    paired_ratio(
                        results[f"{side}/{workers}w"], results[f"reference/{workers}w"], "loader"
                    ),
                )
    if "ceiling-fast" in medians:
        best = max((v, k) for k, v in medians.items() if k.startswith("spml-"))
        print_ratio(
            f"loader {best[1]} / fast step rate (goal 3)", best[0] / medians["ceiling-fast"], 1.2
        )
    print(f"# cores available to the loader: {len(os.sched_getaffinity(0))}")


if __name__ == "__main__":
    main()
