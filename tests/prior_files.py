"""Tiny demo datamodules with a prior, and scores files written for their training images."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from spml_lightning.data import DemoDataModule
from spml_lightning.priors.synthetic import noisy_scores

from probes import TINY_DEMO

#: An open_clip model of a few thousand weights (random): no weights are ever downloaded.
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def tiny_clip_flags(folder: Path) -> list[str]:
    """``spml`` flags of a prior provider: the tiny random open_clip model on the CPU, a 2x2 grid.

    Its open_clip config is written into ``folder``.
    """
    config = folder / "tiny-clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    return [
        "--data.init_args.prior_provider", "spml_lightning.priors.OpenCLIPPrior",
        "--data.init_args.prior_provider.model", "tiny-clip",
        "--data.init_args.prior_provider.pretrained", "null",
        "--data.init_args.prior_provider.model_config", str(config),
        "--data.init_args.prior_provider.grid", "2",
        "--data.init_args.prior_provider.device", "cpu",
    ]  # fmt: skip


def tiny_demo(root: Path, **kwargs: Any) -> DemoDataModule:
    """The tiny demo set (already written at ``root``) as a datamodule."""
    return DemoDataModule(
        root=str(root),
        num_train=TINY_DEMO["num_train"],
        num_test=TINY_DEMO["num_test"],
        render_size=TINY_DEMO["render_size"],
        image_size=32,
        num_workers=0,
        **kwargs,
    )


def training_set(root: Path):
    """The tiny demo's training set, without a prior."""
    datamodule = tiny_demo(root)
    datamodule.setup("fit")
    return datamodule, datamodule.train_dataset


def write_scores_csv(
    path: Path,
    root: Path,
    target_map: float = 80.0,
    columns: list[str] | None = None,
    absolute: bool = False,
) -> tuple[Path, np.ndarray]:
    """A CSV of scores of the tiny demo's training images with about ``target_map``.

    The image column holds paths relative to ``root``, or absolute ones (``absolute``).
    """
    datamodule, dataset = training_set(root)
    scores, _ = noisy_scores(dataset.targets, target_map, seed=0, tolerance=3.0)
    names = datamodule.class_names
    order = columns or names
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["image", *order])
        for image, row in zip(dataset.image_paths, scores, strict=True):
            values = dict(zip(names, row, strict=True))
            name = os.path.abspath(image) if absolute else os.path.relpath(image, root)
            writer.writerow([name, *(values[c] for c in order)])
    return path, scores
