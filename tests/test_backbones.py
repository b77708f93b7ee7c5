"""Backbones by name, weights by enum name / local file / none."""

import urllib.error

import pytest
import torch
from torchvision import models

from spml_lightning import backbones
from spml_lightning.backbones import build_backbone


@pytest.mark.parametrize(
    "name,dim", [("resnet18", 512), ("mobilenet_v3_small", 1024), ("efficientnet_b0", 1280)]
)
def test_features_have_the_reported_size(name, dim):
    model, feature_dim = build_backbone(name, "none")
    assert feature_dim == dim
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, dim)


def test_local_weights_file_with_imagenet_head_is_loaded(tmp_path):
    source = models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)  # includes fc.*, which the backbone drops
    model, _ = build_backbone("resnet18", str(path))
    torch.testing.assert_close(model.conv1.weight, source.conv1.weight)
    torch.testing.assert_close(model.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)


def test_local_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "mobilenet.pth"
    torch.save(models.mobilenet_v3_small(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit this backbone"):
        build_backbone("resnet18", str(path))


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_backbone("resnet18", str(tmp_path / "nope.pth"))


def test_unknown_backbone_lists_choices():
    with pytest.raises(ValueError, match="resnet50") as err:
        build_backbone("resnet9000", "none")
    assert "Unknown backbone 'resnet9000'" in str(err.value)


def test_unknown_weights_name_lists_choices():
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        build_backbone("resnet18", "IMAGENET_42")


def test_download_failure_says_how_to_proceed(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(backbones.models, "get_model", offline)
    with pytest.raises(RuntimeError, match="--model.weights none"):
        build_backbone("resnet50", "IMAGENET1K_V1")
