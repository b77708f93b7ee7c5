"""The exported graph computes what the eager model computes, for every kind of backbone."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from PIL import Image
from torch import nn

from spml_lightning import SPMLModule
from spml_lightning.deploy import ModelMetadata, Preprocessing, model_input, read_image
from spml_lightning.deploy.onnx_export import ExportError, export_onnx

from image_files import noise

SIZE = 32


class TinyUserNet(nn.Module):
    """A user's own backbone: conv, norm, activation, a (B, D, H, W) map."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.GELU(),
            nn.Conv2d(8, 12, 3),
        )
        self.out_features = 12

    def forward(self, images):
        return self.layers(images)


class NoOnnxOperator(nn.Module):
    """A backbone using an operator neither exporter translates to ONNX (Hurwitz zeta)."""

    out_features = 3

    def forward(self, images):
        pooled = images.mean(dim=(2, 3))
        return torch.special.zeta(pooled.abs() + 2.0, torch.ones_like(pooled))


def metadata(classes: int, size: int = SIZE) -> ModelMetadata:
    return ModelMetadata(
        class_names=tuple(f"c{i}" for i in range(classes)),
        preprocessing=Preprocessing(size, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)),
        thresholds=(0.5,) * classes,
        threshold_rule="global",
    )


def images(tmp_path, count: int) -> np.ndarray:
    """Preprocessed input of ``count`` different image files, as the predictor makes it."""
    paths = []
    for i in range(count):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.roll(noise(40 + i), i, axis=0)).save(path)
        paths.append(path)
    return model_input([read_image(p) for p in paths], metadata(1).preprocessing)


def eager_probabilities(model: SPMLModule, batch: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(batch))).numpy()


def random_model(backbone) -> SPMLModule:
    torch.manual_seed(0)
    model = SPMLModule(num_classes=5, backbone=backbone, weights="none", image_size=SIZE)
    for module in model.modules():  # BatchNorm statistics other than 0 / 1, as after training
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize(
    ("backbone", "exporter"),
    [
        ("resnet18", "dynamo"),  # torchvision
        ("timm/test_convnext", "dynamo"),  # timm
        (TinyUserNet(), "dynamo"),  # a user's nn.Module
        (TinyUserNet(), "legacy"),  # the fallback exporter
    ],
    ids=["torchvision", "timm", "user-module", "user-module-legacy"],
)
def test_onnxruntime_matches_the_eager_model_at_batch_1_2_and_5(backbone, exporter, tmp_path):
    model = random_model(backbone)
    path = export_onnx(model, tmp_path / "model.onnx", metadata(5), exporter=exporter)
    assert model.training, "the caller's model is left in its mode"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = images(tmp_path, 5)
    for size in (1, 2, 5):
        (got,) = session.run(None, {"images": batch[:size]})
        expected = eager_probabilities(model, batch[:size])
        assert got.shape == (size, 5) and got.dtype == np.float32
        assert np.abs(got - expected).max() <= 1e-4, (size, np.abs(got - expected).max())
    model.train()


def test_the_file_holds_its_metadata_and_a_dynamic_batch(tmp_path):
    model = random_model(TinyUserNet())
    facts = metadata(5)
    path = export_onnx(model, tmp_path / "sub" / "model.onnx", facts)
    proto = onnx.load(str(path))
    properties = {p.key: p.value for p in proto.metadata_props}
    assert ModelMetadata.from_properties(properties) == facts
    (graph_input,) = proto.graph.input
    assert graph_input.name == "images"
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, SIZE, SIZE]
    assert [o.name for o in proto.graph.output] == ["probabilities"]
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["model.onnx"]  # no scratch left


@pytest.mark.parametrize(
    ("exporter", "operator", "fallback"),
    [("dynamo", "prims.zeta", "legacy"), ("legacy", "aten::special_zeta", "dynamo")],
)
def test_an_operator_without_onnx_translation_is_named_in_one_line(
    exporter, operator, fallback, tmp_path
):
    model = SPMLModule(num_classes=2, backbone=NoOnnxOperator(), weights="none", image_size=8)
    with pytest.raises(ExportError) as caught:
        export_onnx(model, tmp_path / "model.onnx", metadata(2, 8), exporter, "backbone Zeta")
    message = str(caught.value)
    assert "\n" not in message
    assert f"Cannot export backbone Zeta with the {exporter} ONNX exporter: " in message
    assert f"operator {operator}" in message and f"--exporter {fallback}" in message
    assert not (tmp_path / "model.onnx").exists()
