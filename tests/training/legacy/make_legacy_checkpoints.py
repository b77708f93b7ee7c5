"""Write the checkpoints that pin the file format of spml_lightning 0.1.0 (commit 6ad6629).

Run once, from that commit: ``python tests/training/legacy/make_legacy_checkpoints.py``.
Never regenerate them with later code: their purpose is to be what an older
release wrote, so that tests/training/test_legacy_checkpoints.py proves newer
code still loads them. Each is a real ``last.ckpt`` of a 1-epoch tiny demo fit
(ResNet-18, 14 classes, 32 px); its floating-point tensors (weights, optimizer
and loss state) are then set to zero so that the gzipped file is a few KB --
the structure (keys, hyper-parameters, loss class paths, callback and loop
states) is exactly what that version wrote.
"""

from __future__ import annotations

import gzip
import shutil
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

LOSSES = {"gr": "GR", "ll_cp": "LL-Cp", "role": "ROLE"}


def _zeroed(value):
    if isinstance(value, torch.Tensor):
        return torch.zeros_like(value) if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: _zeroed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_zeroed(v) for v in value]
    return value


def main() -> None:
    from spml_lightning.cli import run_cli
    from spml_lightning.data.demo import write_demo_dataset

    from conftest import TINY_DEMO

    with tempfile.TemporaryDirectory() as tmp:
        data = write_demo_dataset(
            Path(tmp) / "demo",
            TINY_DEMO["num_train"],
            TINY_DEMO["num_test"],
            TINY_DEMO["render_size"],
            seed=0,
        )
        for stem, loss in LOSSES.items():
            root = Path(tmp) / stem
            run_cli(
                [
                    "fit",
                    "--config",
                    str(REPO / "configs" / "demo.yaml"),
                    "--model.loss",
                    loss,
                    "--trainer.max_epochs",
                    "1",
                    "--trainer.limit_train_batches",
                    "2",
                    "--trainer.enable_progress_bar",
                    "false",
                    "--trainer.default_root_dir",
                    str(root),
                    "--data.init_args.root",
                    str(data),
                    "--data.init_args.num_workers",
                    "0",
                    "--data.init_args.image_size",
                    "32",
                    *[f"--data.init_args.{k}={v}" for k, v in TINY_DEMO.items()],
                ]
            )
            (last,) = root.rglob("last.ckpt")
            checkpoint = torch.load(last, map_location="cpu", weights_only=False)
            for key in ("state_dict", "optimizer_states"):
                checkpoint[key] = _zeroed(checkpoint[key])
            plain = Path(tmp) / f"{stem}.ckpt"
            torch.save(checkpoint, plain)
            with open(plain, "rb") as source, gzip.open(HERE / f"{stem}.ckpt.gz", "wb") as target:
                shutil.copyfileobj(source, target)


if __name__ == "__main__":
    main()
