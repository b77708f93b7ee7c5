"""A tiny exported model, and bench/serve.py's server launcher and client (for the serve tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spml_lightning import SPMLModule
from spml_lightning.deploy import ModelMetadata, Preprocessing
from spml_lightning.deploy.onnx_export import export_onnx

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
from serve import exchange, post, serving  # noqa: E402

__all__ = ["exchange", "post", "serving", "tiny_onnx_model"]


def tiny_onnx_model(path: Path, classes: int = 4, size: int = 16) -> Path:
    """An exported model of random weights (a two-layer CNN), with thresholds of its own."""
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2), nn.ReLU(), nn.Conv2d(6, 8, 3))
    model = SPMLModule(num_classes=classes, backbone=backbone, weights="none", image_size=size)
    facts = ModelMetadata(
        class_names=tuple(f"class{i}" for i in range(classes)),
        preprocessing=Preprocessing(size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        thresholds=tuple(np.linspace(0.3, 0.6, classes).tolist()),
        threshold_rule="global",
    )
    return export_onnx(model, path, facts)
