"""Where bf16 costs at evaluation: one trained checkpoint's test mAP in fp32, bf16, bf16 head.

The same weights score the same test images three ways: fp32; bf16-mixed with
the head in fp32 (``fp32_head``, the default); bf16-mixed with the head in bf16
too (the fast profile before ``fp32_head``). A bf16 head rounds every logit to 8
significant bits, so scores tie across images and the ranking (AP) loses
resolution; the script prints the mAP and the share of tied scores per class.
Training-side effects of bf16 are for ``bench/profile_accuracy.py --profiles
bf16 bf16_head`` (on a GPU or a CPU with native bf16).

    python bench/experiments/bf16_eval.py --ckpt_path runs/demo_resnet/.../checkpoints/last.ckpt
        [--config configs/demo_resnet.yaml] [spml flags, e.g. --data.init_args.root DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: harness
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout
from harness import cpu_name, print_load, print_ratio  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def tied_share(scores: torch.Tensor) -> float:
    """Mean over classes of the share of images whose score another image of the class has too."""
    shares = []
    for column in scores.T:
        _, inverse, counts = torch.unique(column, return_inverse=True, return_counts=True)
        shares.append((counts[inverse] > 1).float().mean().item())
    return sum(shares) / len(shares)


def main_bench(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--config", default=str(REPO / "configs" / "demo_resnet.yaml"))
    args, spml_flags = parser.parse_known_args(argv)

    from spml_lightning import SPMLModule
    from spml_lightning.cli import run_cli
    from spml_lightning.metrics import average_precision_per_class

    cli = run_cli(["--config", args.config, *spml_flags], run=False)
    data = cli.datamodule
    data.setup("test")
    model = SPMLModule.load_from_checkpoint(args.ckpt_path, map_location="cpu").eval()
    loader = torch.utils.data.DataLoader(data.test_dataset, batch_size=64, num_workers=0)
    batches = [(batch["image"], batch["target"]) for batch in loader]
    targets = torch.cat([target for _, target in batches])
    print(f"# bf16_eval: {args.ckpt_path}, {len(targets)} test images; machine: {cpu_name()}")
    print_load("start")
    results = {}
    for name, bf16, fp32_head in [
        ("fp32", False, True),
        ("bf16, fp32 head", True, True),
        ("bf16, bf16 head", True, False),
    ]:
        model.hparams.fp32_head = fp32_head
        start = time.perf_counter()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            scores = torch.cat([torch.sigmoid(model(images).float()) for images, _ in batches])
        seconds = time.perf_counter() - start
        results[name] = average_precision_per_class(scores, targets).mean().item() * 100
        tied = 100 * tied_share(scores)
        print(
            f"{name:<16} test mAP {results[name]:6.2f}   tied scores {tied:5.1f}%"
            f"   ({seconds:.0f} s)",
            flush=True,
        )
    print_load("end")
    print_ratio(
        "test mAP points, bf16 with fp32 head - fp32", results["bf16, fp32 head"] - results["fp32"]
    )
    print_ratio(
        "test mAP points, bf16 with bf16 head - fp32", results["bf16, bf16 head"] - results["fp32"]
    )


if __name__ == "__main__":
    main_bench()
