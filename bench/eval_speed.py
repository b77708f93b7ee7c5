"""Evaluation speed: exact mAP of COCO's test set size, and host reads in the validation step.

1. ``spml_lightning.metrics.average_precision_per_class`` on 40,137 x 80
   scores on the CPU (goal 4: <= 2 s), against the reference code's way of
   computing it (sklearn's ``average_precision_score`` class by class), in
   interleaved runs; the two results must agree to 1e-12. On a GPU the same
   metric on the device is timed too.
2. Per-batch device-to-host reads in ``SPMLModule.validation_step`` and
   ``test_step`` (goal 4: none beyond the metric's own at the epoch end): on
   a GPU every synchronising CUDA call is counted with
   ``torch.cuda.set_sync_debug_mode``; on a CPU, where nothing synchronises,
   the calls that would read a tensor back (``item``, ``tolist``, ``numpy``,
   ``cpu``, ``bool(tensor)``, ...) are counted instead.

    python bench/eval_speed.py [--device cuda] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import (
    Timer,
    describe_machine,
    interleave,
    print_check,
    print_load,
    print_ratio,
    print_side,
)  # noqa: E402

#: Tensor methods that copy a value to the host (or, for ``cpu``, may).
HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")


def coco_sized_scores(rows: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random scores and targets with COCO's 2.9 positives per image, the scores correlated."""
    generator = torch.Generator().manual_seed(seed)
    targets = (torch.rand(rows, classes, generator=generator) < 2.9 / classes).float()
    scores = torch.sigmoid(torch.randn(rows, classes, generator=generator) + 1.5 * targets)
    return scores, targets


def sklearn_map(scores: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Per-class AP the way the reference code computes it."""
    from sklearn.metrics import average_precision_score

    s, t = scores.numpy(), targets.numpy()
    return np.array(
        [
            average_precision_score(t[:, c], s[:, c]) if t[:, c].any() else 0.0
            for c in range(s.shape[1])
        ]
    )


@contextmanager
def count_host_reads(device: torch.device):
    """Count host reads (CPU: calls of HOST_READS; CUDA: synchronising calls) inside the block."""
    counter = {"reads": 0}
    if device.type == "cuda":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                yield counter
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counter["reads"] = sum("synchroniz" in str(w.message) for w in caught)
        return
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def counting(original):
        def wrapper(self, *args, **kwargs):
            counter["reads"] += 1
            return original(self, *args, **kwargs)

        return wrapper

    try:
        for name, original in originals.items():
            setattr(torch.Tensor, name, counting(original))
        yield counter
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def eval_step_host_reads(device: torch.device, batches: int = 4) -> dict[str, int]:
    """Host reads per batch of validation_step / test_step of a small SPMLModule on ``device``."""
    from spml_lightning.module import SPMLModule

    module = SPMLModule(num_classes=80, backbone="resnet18", weights="none").to(device).eval()
    generator = torch.Generator().manual_seed(0)
    made = [
        {
            "image": torch.randn(4, 3, 32, 32, generator=generator).to(device),
            "observed": torch.zeros(4, 80).to(device),
            "target": (torch.rand(4, 80, generator=generator) < 0.1).float().to(device),
            "index": torch.arange(4 * i, 4 * i + 4).to(device),
        }
        for i in range(batches)
    ]
    result = {}
    with torch.no_grad():
        module.validation_step(
            made[0], 0
        )  # first call: lazy initialisation (cuDNN handles) is not a step's cost
        for name, step in (
            ("validation_step", module.validation_step),
            ("test_step", module.test_step),
        ):
            with count_host_reads(device) as counter:
                for i, batch in enumerate(made):
                    step(batch, i)
            result[name] = counter["reads"]
            # The step kept its outputs on the module's device: the metric runs there.
            stored = module._evaluators["val" if name == "validation_step" else "test"].batches
            assert all(t.device.type == device.type for item in stored for t in item), (
                "outputs left the device"
            )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rows", type=int, default=40137)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    args = parser.parse_args(argv)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    from spml_lightning.metrics import average_precision_per_class

    scores, targets = coco_sized_scores(args.rows, args.classes)
    print(
        f"# eval_speed: exact mAP of {args.rows} x {args.classes}; "
        f"validation-step host reads on {device}"
    )
    print(f"# machine: {describe_machine(device)}")
    print_load("start")
    ours = average_precision_per_class(scores, targets).numpy()
    reference = sklearn_map(scores, targets)
    difference = float(np.abs(ours - reference).max())

    def timed(function, on: torch.device):
        def run():
            timer = Timer(on)
            timer.start()
            function()
            return {"seconds": timer.stop()}

        return run

    sides = {
        "spml-cpu": timed(
            lambda: average_precision_per_class(scores, targets), torch.device("cpu")
        ),
        "sklearn-cpu": timed(lambda: sklearn_map(scores, targets), torch.device("cpu")),
    }
    if device.type == "cuda":
        on_device = scores.to(device), targets.to(device)
        average_precision_per_class(*on_device)  # kernels loaded before timing
        sides["spml-cuda"] = timed(lambda: average_precision_per_class(*on_device), device)
    results = interleave(sides, args.repeats)
    reads = eval_step_host_reads(device)
    print_load("end")
    medians = {name: print_side(name, runs, "seconds", "s") for name, runs in results.items()}
    print_check("max |AP spml - AP sklearn| over classes", difference, 1e-12)
    print_check(
        f"mAP of {args.rows} x {args.classes} on the CPU, seconds (goal 4)",
        medians["spml-cpu"],
        2.0,
    )
    print_ratio("mAP speed spml-cpu/sklearn-cpu", medians["sklearn-cpu"] / medians["spml-cpu"])
    if "spml-cuda" in medians:
        print_check(
            f"mAP of {args.rows} x {args.classes} on {torch.cuda.get_device_name(device)}, seconds",
            medians["spml-cuda"],
        )
    kind = "synchronising CUDA calls" if device.type == "cuda" else "host reads (item/cpu/bool/...)"
    for name, count in reads.items():
        print_check(f"{kind} in {name}, per batch (goal 4)", count / 4, 0.0)


if __name__ == "__main__":
    main()
