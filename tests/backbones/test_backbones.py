"""Backbones: torchvision and timm names, any nn.Module or its config; weights; feature sizes."""

import os
import re
import subprocess
import sys
import urllib.error

import pytest
import torch
from torch import nn
from torchvision import models

from spml_lightning import backbones
from spml_lightning.backbones import (
    SimpleConvNet,
    backbone_config,
    backbone_preprocessing,
    build_backbone,
    check_input_size,
    initial_weights_skipped,
    pooled_features,
)

from probes import REPO_ROOT


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

    monkeypatch.setattr(backbones.torchvision_models.models, "get_model", offline)
    with pytest.raises(RuntimeError, match="--model.weights none"):
        build_backbone("resnet50", "IMAGENET1K_V1")


# -- torchvision: "pretrained" is the legacy pretrained=True ---------------------------------


def test_pretrained_is_imagenet1k_v1_for_torchvision(monkeypatch):
    asked = []

    def get_model(name, weights=None):
        asked.append(weights)
        return models.resnet18(weights=None)

    monkeypatch.setattr(backbones.torchvision_models.models, "get_model", get_model)
    build_backbone("resnet50", "pretrained")
    build_backbone("resnet50", "DEFAULT")
    assert [w.name for w in asked] == ["IMAGENET1K_V1", "IMAGENET1K_V2"]


# -- timm --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,dim",
    [
        ("timm/test_convnext", 64),
        ("timm:test_efficientnet", 256),
        ("timm/test_mambaout", 256),  # head_hidden_size (256), not num_features (64)
    ],
)
def test_timm_backbones_are_headless_with_their_feature_size(name, dim):
    model, feature_dim = build_backbone(name, "none")
    assert feature_dim == dim
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, dim)


def test_unknown_timm_model_lists_close_matches():
    with pytest.raises(ValueError, match="Unknown timm model 'convnext_atom'") as err:
        build_backbone("timm/convnext_atom", "none")
    assert "convnext_atto" in str(err.value)


def test_missing_timm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    with pytest.raises(ImportError, match=re.escape('pip install "spml_lightning[timm]"')):
        build_backbone("timm/resnet18", "none")


def test_timm_takes_no_torchvision_weights_name():
    with pytest.raises(ValueError, match="'pretrained'.*'none'.*local weights file"):
        build_backbone("timm/test_convnext", "IMAGENET1K_V1")


def test_timm_pretrained_asks_timm_for_its_pretrained_weights(monkeypatch):
    import timm

    asked = []
    create_model = timm.create_model

    def spy(name, pretrained=False, **kwargs):
        asked.append((name, pretrained, kwargs))
        return create_model(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    build_backbone("timm/test_convnext.r160_in1k", "pretrained")
    assert asked == [("test_convnext.r160_in1k", True, {"num_classes": 0})]


def test_timm_pretrained_offline_says_how_to_get_the_weights(tmp_path):
    # The real hub client, offline (as on a machine without internet), with an empty cache.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    code = (
        "from spml_lightning.backbones import build_backbone\n"
        "try:\n"
        "    build_backbone('timm/test_convnext', 'pretrained')\n"
        "except RuntimeError as err:\n"
        "    print(err)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    message = result.stdout
    assert "Could not load the pretrained weights of the timm backbone" in message, message
    for fix in ("timm/test_convnext.r160_in1k", "--model.weights /path/to/model.safetensors"):
        assert fix in message, message
    assert "HF_HUB_OFFLINE=1" in message and "--model.weights none" in message, message


@pytest.mark.parametrize("suffix,with_head", [(".safetensors", True), (".pth", False)])
def test_timm_local_weights_file_is_loaded(tmp_path, suffix, with_head):
    import safetensors.torch
    import timm

    source = timm.create_model("test_convnext", num_classes=10 if with_head else 0)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":  # the file the hub serves (model.safetensors), head included
        safetensors.torch.save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)
    model, _ = build_backbone("timm/test_convnext", str(path))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[name])


def test_timm_weights_of_another_model_are_refused(tmp_path):
    import timm

    path = tmp_path / "other.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), path)
    with pytest.raises(ValueError, match="does not fit this backbone \\('timm/test_convnext'\\)"):
        build_backbone("timm/test_convnext", str(path))


def test_timm_preprocessing_comes_from_its_pretrained_cfg():
    model, _ = build_backbone("timm/test_convnext", "none")
    assert backbone_preprocessing(model) == {
        "image_size": 160,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
    }
    vit, _ = build_backbone("timm/test_vit", "none")
    assert backbone_preprocessing(vit)["fixed_input_size"] is True
    assert backbone_preprocessing(models.resnet18()) == {}  # torchvision: ImageNet's applies


def test_fixed_input_size_is_checked():
    own = {"image_size": 160, "fixed_input_size": True}
    check_input_size(own, 160, "timm/test_vit")
    check_input_size(own, None, "timm/test_vit")  # not known yet
    check_input_size({"image_size": 160}, 64, "timm/test_convnext")  # any size
    with pytest.raises(ValueError, match="takes 160 x 160 images only.*image_size 160"):
        check_input_size(own, 64, "timm/test_vit")


# -- any nn.Module -------------------------------------------------------------------------------


class NoForward(nn.Module):
    """Declares its feature size; its forward must not be needed to find it."""

    def __init__(self) -> None:
        super().__init__()
        self.num_features = 12

    def forward(self, images):
        raise AssertionError("forward called")


def test_module_feature_size_from_its_attribute():
    module = NoForward()
    built, dim = build_backbone(module, None)
    assert built is module and dim == 12


@pytest.mark.parametrize(
    "layers,dim",
    [
        ([nn.Conv2d(3, 6, 3), nn.ReLU()], 6),  # a (B, D, H, W) map: pooled
        ([nn.Conv2d(3, 4, 3, stride=4), nn.Flatten(), nn.LazyLinear(7)], 7),  # (B, D)
    ],
)
def test_module_feature_size_by_one_forward_pass(layers, dim):
    module = nn.Sequential(*layers).train()
    _, found = build_backbone(module, "none", image_size=32)
    assert found == dim
    assert module.training  # the dry pass ran in eval mode and put it back


class Tokens(nn.Module):
    def forward(self, images):
        return images.flatten(2).transpose(1, 2)  # (B, H*W, 3), as a ViT's tokens


class TwoOutputs(nn.Module):
    def forward(self, images):
        return images.mean((2, 3)), images


@pytest.mark.parametrize(
    "module,found", [(Tokens(), r"\(2, 1024, 3\)"), (TwoOutputs(), "returned tuple")]
)
def test_module_with_another_output_is_refused(module, found):
    with pytest.raises(ValueError, match=f"{found}; SPMLModule needs a tensor of \\(B, D\\)"):
        build_backbone(module, "none", image_size=32)


def test_module_whose_forward_fails_says_what_to_give():
    module = nn.Conv2d(5, 8, 3)  # expects 5 channels
    with pytest.raises(ValueError, match="num_features. attribute.*image_size"):
        build_backbone(module, "none")


def test_pooled_features_checks_the_feature_size():
    features = torch.arange(24.0).reshape(1, 6, 2, 2)
    torch.testing.assert_close(pooled_features(features, 6), features.mean((2, 3)))
    with pytest.raises(ValueError, match="returned 6 features per image.*found to be 5"):
        pooled_features(features, 5)


def test_module_weights_file_is_loaded_and_names_refused(tmp_path):
    source = SimpleConvNet([4, 8])
    path = tmp_path / "mine.pt"
    torch.save({"state_dict": source.state_dict()}, path)  # a wrapped state dict works too
    module, dim = build_backbone(SimpleConvNet([4, 8]), str(path))
    assert dim == 8
    torch.testing.assert_close(module.features[0].weight, source.features[0].weight)
    with pytest.raises(ValueError, match="torchvision weights name"):
        build_backbone(SimpleConvNet([4, 8]), "IMAGENET1K_V1")
    kept = SimpleConvNet([4, 8])
    before = kept.features[0].weight.clone()
    for weights in ("pretrained", "none", None):  # the module as given
        assert torch.equal(build_backbone(kept, weights)[0].features[0].weight, before)


class Recorded(nn.Module):
    """Keeps ``width`` and ``depth`` as attributes; ``norm`` and ``*extra`` are not recorded."""

    def __init__(self, width: int, depth: int = 2, norm=nn.BatchNorm2d, *extra) -> None:
        super().__init__()
        self.width = width
        self.depth = (depth,)  # a tuple: recorded as a list
        self.body = nn.Conv2d(3, width, 3)
        self.num_features = width

    def forward(self, images):
        return self.body(images)


def test_backbone_config_records_the_arguments_kept_as_attributes():
    assert backbone_config(SimpleConvNet([4, 8])) == {
        "class_path": "spml_lightning.backbones.simple.SimpleConvNet",
        "init_args": {"widths": [4, 8]},
    }
    assert backbone_config(Recorded(5)) == {
        "class_path": "test_backbones.Recorded",
        "init_args": {"width": 5, "depth": [2]},
        "unrecorded": ["norm", "*extra"],
    }
    assert backbone_config(nn.Sequential(nn.ReLU()))["unrecorded"] == ["*args"]


def test_a_config_builds_its_module():
    config = {"class_path": "spml_lightning.backbones.SimpleConvNet", "init_args": {"widths": [3]}}
    module, dim = build_backbone(config, "none")
    assert isinstance(module, SimpleConvNet) and module.widths == [3] and dim == 3


@pytest.mark.parametrize(
    "config,match",
    [
        ({"class_path": "spml_lightning.NoSuchNet"}, "Cannot import the backbone class"),
        ({"class_path": "no_such_package.models.Net"}, "Cannot import"),
        ({"class_path": "collections.OrderedDict"}, "is not an nn.Module class"),
        ({"init_args": {}}, "needs a 'class_path'"),
        (
            {"class_path": "spml_lightning.backbones.SimpleConvNet", "init_args": {"depth": 3}},
            "Check its init_args",
        ),
        (
            {"class_path": "torch.nn.Sequential", "init_args": {}, "unrecorded": ["*args"]},
            r"arguments \*args could not be recorded.*backbone=torch.nn.Sequential\(...\)",
        ),
    ],
)
def test_bad_configs_are_explained(config, match):
    with pytest.raises(ValueError, match=match):
        build_backbone(config, "none")


def test_simple_convnet_validates_its_widths():
    with pytest.raises(ValueError, match="widths"):
        SimpleConvNet([])


def test_initial_weights_are_skipped_when_a_checkpoint_replaces_them(monkeypatch, tmp_path):
    def no_download(name, weights=None):
        assert weights is None, "tried to load pretrained weights"
        return models.resnet18(weights=None)

    monkeypatch.setattr(backbones.torchvision_models.models, "get_model", no_download)
    with initial_weights_skipped():
        build_backbone("resnet18", "IMAGENET1K_V1")
        build_backbone("resnet18", str(tmp_path / "moved_away.pth"))  # not read
        build_backbone("timm/test_convnext", "pretrained")  # not downloaded
    with pytest.raises(RuntimeError, match="tried to load"):
        build_backbone("resnet18", "IMAGENET1K_V1")


def test_same_class_sees_through_re_exports():
    from spml_lightning.backbones.modules import same_class

    public, defining = "spml_lightning.backbones.SimpleConvNet", SimpleConvNet.__module__
    assert defining == "spml_lightning.backbones.simple"
    assert same_class(public, f"{defining}.SimpleConvNet")
    assert not same_class(public, "torch.nn.Identity")
    assert not same_class("no_such_package.Net", "no_such_package.Net2")


# -- weights files: only a removed classifier may be dropped; files that are no state dict ------


def test_local_weights_with_keys_the_backbone_lacks_are_refused(tmp_path):
    # A file of a deeper SimpleConvNet: every key of the backbone fits, but 3 layers are extra.
    path = tmp_path / "deeper.pt"
    torch.save(SimpleConvNet([4, 8, 16]).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit this backbone") as error:
        build_backbone(SimpleConvNet([4, 8]), str(path))
    message = str(error.value)
    assert "keys of the file that are not the backbone's: 6 (first: features.6.weight" in message
    assert str(path) in message


def test_torchvision_weights_may_bring_only_the_removed_classifier(tmp_path):
    state = models.resnet18(weights=None, num_classes=7).state_dict()  # another head: dropped
    path = tmp_path / "resnet18_7.pth"
    torch.save(state, path)
    build_backbone("resnet18", str(path))
    state["extra.weight"] = torch.zeros(3)  # not the classifier: refused
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"only the removed classifier's, fc\., may be\): 1 "):
        build_backbone("resnet18", str(path))


def test_local_weights_of_another_architecture_name_counts_and_shapes(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit this backbone \\('resnet18'") as error:
        build_backbone("resnet18", str(path))
    # resnet34 holds every tensor of resnet18, and 2 + 5 + 4 more blocks.
    assert "keys of the file that are not the backbone's (only the removed classifier's" in str(
        error.value
    )
    wide = tmp_path / "wide.pt"
    torch.save(SimpleConvNet([4, 9]).state_dict(), wide)
    with pytest.raises(ValueError, match=r"another shape: 5 \(first: features.3.weight \(9, 4"):
        build_backbone(SimpleConvNet([4, 8]), str(wide))


def test_timm_weights_may_bring_only_the_removed_classifier(tmp_path):
    import timm

    state = timm.create_model("test_convnext", num_classes=10).state_dict()
    state["head.extra"] = torch.zeros(1)
    path = tmp_path / "convnext.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"head\.fc\., may be\): 1 \(first: head.extra\)"):
        build_backbone("timm/test_convnext", str(path))


def spml_checkpoint(path, backbone) -> "torch.nn.Module":
    """An spml checkpoint as Lightning writes one: hyper-parameters and a prefixed state dict."""
    from spml_lightning.module import SPMLModule

    model = SPMLModule(num_classes=3, backbone=backbone, weights="none")
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return model


def test_an_spml_checkpoint_gives_its_backbone_weights(tmp_path):
    path = tmp_path / "run.ckpt"
    trained = spml_checkpoint(path, {"class_path": "spml_lightning.backbones.SimpleConvNet",
                                     "init_args": {"widths": [4, 8]}})  # fmt: skip
    module, _ = build_backbone(SimpleConvNet([4, 8]), str(path))
    torch.testing.assert_close(module.state_dict(), trained.backbone.state_dict())
    resnet = tmp_path / "resnet.ckpt"
    spml_checkpoint(resnet, "resnet18")
    with pytest.raises(ValueError, match=r"\(saved from resnet18\) does not fit this backbone"):
        build_backbone(SimpleConvNet([4, 8]), str(resnet))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("random.pth", b"\x80\x02garbage" + bytes(range(200)), "not a file torch.save wrote"),
        ("empty.pt", b"", "not a file torch.save wrote"),
        ("broken.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json", "safetensors"),
    ],
)
def test_a_corrupt_weights_file_is_named(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        build_backbone(SimpleConvNet([4, 8]), str(path))
    assert f"Weights file {path} is not a state dict" in str(error.value)
    assert "weights_only=False" not in str(error.value)


def test_a_pickled_model_or_a_dict_of_other_things_is_no_state_dict(tmp_path):
    whole = tmp_path / "whole.pt"
    torch.save(SimpleConvNet([4, 8]), whole)
    with pytest.raises(ValueError, match="pickled Python objects .* save model.state_dict"):
        build_backbone(SimpleConvNet([4, 8]), str(whole))
    other = tmp_path / "other.pt"
    torch.save({"epoch": 3, "features.0.weight": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match=r"1 of its 2 entries are not tensors by name \(first: "):
        build_backbone(SimpleConvNet([4, 8]), str(other))
