"""Backbones tried on the demo: feature size, parameters, one demo epoch's fit time, test mAP.

Each backbone trains ``configs/demo_resnet.yaml`` (GR Loss, 64 px, batch 32, from scratch:
``--model.weights none``, nothing is downloaded) for ``--epochs`` epochs, then its
last weights are tested. The three kinds of backbone (docs/guides/backbones.md) are
given exactly as a user gives them on the command line: a torchvision name, a
``timm/<name>``, and a module's ``class_path`` (``--model.backbone.class_path``).
Runs are sequential on one machine; the load average is printed at the start and
the end. The demo set is rendered before the first run; the seconds are the whole
``spml fit`` call (reading the data, the epochs, validation, checkpointing) divided by
the epochs.

    python bench/backbones.py [--epochs 1] [--backbones resnet18 timm/convnext_atto ...]
        [--table bench/results/cpu_backbones.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import cpu_name, print_load  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

#: The table of docs/guides/backbones.md: torchvision names, timm names, a module by class path.
DEFAULT_BACKBONES = (
    "resnet18",
    "resnet50",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "timm/resnet18",
    "timm/convnext_atto",
    "timm/mobilenetv3_small_100",
    "timm/efficientnet_b0",
    "spml_lightning.backbones.SimpleConvNet",
)


def backbone_flags(backbone: str) -> list[str]:
    """The ``spml`` flags a user passes for this backbone (a dotted class path: a module)."""
    if "." in backbone and not backbone.startswith(("timm/", "timm:")):
        return ["--model.backbone.class_path", backbone]
    return ["--model.backbone", backbone]


def fit_one(backbone: str, epochs: int, work: Path) -> dict[str, object]:
    """Fit the demo with one backbone; its sizes, seconds per epoch and test mAP."""
    from spml_lightning.cli import run_cli

    args = [
        "--config", str(REPO / "configs" / "demo_resnet.yaml"),
        *backbone_flags(backbone),
        "--model.weights", "none",
        "--trainer.max_epochs", str(epochs),
        "--trainer.default_root_dir", str(work / backbone.replace("/", "_")),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]  # fmt: skip
    start = time.perf_counter()
    cli = run_cli(["fit", *args])
    seconds = (time.perf_counter() - start) / epochs
    (result,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    model = cli.model
    row = {
        "backbone": backbone,
        "features": model.head.in_features,
        "params_m": sum(p.numel() for p in model.backbone.parameters()) / 1e6,
        "seconds_per_epoch": seconds,
        "test_mAP": result["test/mAP"],
    }
    print(f"#   {row}", flush=True)
    return row


def prepare_demo_data() -> None:
    """Render the demo set before the first timed run (the first fit would otherwise)."""
    import yaml

    from spml_lightning import DemoDataModule

    init_args = yaml.safe_load((REPO / "configs" / "demo_resnet.yaml").read_text())["data"][
        "init_args"
    ]
    DemoDataModule(**init_args).prepare_data()


def main_bench(argv: list[str] | None = None) -> None:
    """Run every backbone and print the table of docs/guides/backbones.md."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbones", nargs="+", default=list(DEFAULT_BACKBONES))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--table",
        type=Path,
        default=None,
        help="also write the table to this file (docs/guides/backbones.md includes "
        "bench/results/cpu_backbones.md)",
    )
    args = parser.parse_args(argv)
    print(f"# backbones: demo, GR Loss, {args.epochs} epoch(s), seed 0; machine: {cpu_name()}")
    prepare_demo_data()
    print_load("start")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [fit_one(backbone, args.epochs, Path(tmp)) for backbone in args.backbones]
    print_load("end")
    table = [
        f"| backbone | feature size | parameters (M) | s per demo epoch (CPU) "
        f"| test mAP after {args.epochs} epoch(s) |",
        "|---|---|---|---|---|",
    ]
    table += [
        f"| `{row['backbone']}` | {row['features']} | {row['params_m']:.2f} "
        f"| {row['seconds_per_epoch']:.0f} | {row['test_mAP']:.1f} |"
        for row in rows
    ]
    print("\n" + "\n".join(table))
    if args.table is not None:
        args.table.write_text("\n".join(table) + "\n")


if __name__ == "__main__":
    main_bench()
