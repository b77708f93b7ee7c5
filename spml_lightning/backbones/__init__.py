"""Backbones: a torchvision name, a timm name, or any ``nn.Module`` -> (module, feature size).

A backbone maps images (B, 3, H, W) to features: (B, D) vectors, or a (B, D, H', W')
map that ``SPMLModule`` averages over H' and W' (global average pooling, what
every torchvision and timm classifier does before its last Linear layer). Three
kinds (docs/guides/backbones.md):

* a torchvision classification model by name (``resnet50``), its classifier removed;
* a timm model as ``timm/<name>`` or ``timm:<name>`` (``timm/convnext_atto``; a
  pretrained tag such as ``timm/resnet18.a1_in1k`` too), built headless with
  ``num_classes=0`` -- needs the optional extra ``pip install "spml_lightning[timm]"``;
* any ``nn.Module``, or its config ``{"class_path": ..., "init_args": {...}}`` (what a
  YAML config gives, and what a checkpoint records).

``weights`` says what the backbone starts from: ``pretrained`` (default) -- the
weights the backbone comes with: torchvision's ``IMAGENET1K_V1`` (the legacy
``pretrained=True``, behind every published SPML number), timm's default
pretrained tag from the Hugging Face hub, a module's own as given; ``none`` --
random initialisation (a module: as given; spml never re-initialises one); a
torchvision weights-enum name (``IMAGENET1K_V2``, ``DEFAULT``); or a local
state-dict file (``.pth``/``.pt``/``.bin``/``.ckpt``, or ``.safetensors``; an spml
checkpoint's backbone too), which must hold every parameter and buffer of the
backbone and nothing else but the classifier the backbone removed (``weights.py``).

The feature size D is the module's ``head_hidden_size`` (timm), ``num_features``
or ``out_features`` attribute, the first that is an int; otherwise one forward
pass of a zero batch (in eval mode, without gradients) measures it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from spml_lightning.backbones.features import (
    PROBE_SIZE,
    backbone_preprocessing,
    check_backbone_output,
    check_input_size,
    feature_size,
    pooled_features,
)
from spml_lightning.backbones.modules import backbone_config, backbone_hparam, module_from_config
from spml_lightning.backbones.simple import SimpleConvNet
from spml_lightning.backbones.timm_models import TIMM_PREFIXES, timm_backbone, timm_name
from spml_lightning.backbones.torchvision_models import BACKBONES, torchvision_backbone
from spml_lightning.backbones.weights import (
    PRETRAINED,
    initial_weights_skipped,
    initial_weights_wanted,
    load_local_weights,
    weights_kind,
)

__all__ = [
    "BACKBONES",
    "TIMM_PREFIXES",
    "SimpleConvNet",
    "backbone_config",
    "backbone_hparam",
    "backbone_preprocessing",
    "build_backbone",
    "check_backbone_output",
    "check_input_size",
    "initial_weights_skipped",
    "pooled_features",
]


def build_backbone(
    backbone: str | nn.Module | Mapping[str, Any],
    weights: str | os.PathLike | None = PRETRAINED,
    image_size: int | None = None,
) -> tuple[nn.Module, int]:
    """Build a backbone without classifier and find its feature size.

    Args:
        backbone: a torchvision model name (``resnet50``, see ``BACKBONES``), a timm
            model as ``timm/<name>`` or ``timm:<name>``, an ``nn.Module``, or a
            module's config ``{"class_path": ..., "init_args": {...}}``.
        weights: ``pretrained`` (the weights the backbone comes with), ``none``/None,
            a torchvision weights-enum name (torchvision backbones), or a local
            state-dict file (see the module docstring).
        image_size: input side of the forward pass that measures the feature size
            of a module without a feature-size attribute (default: the module's
            ``pretrained_cfg`` input size, else 224).

    Returns:
        (module mapping images to (B, D) features or a (B, D, H, W) map, D).
    """
    if not initial_weights_wanted():
        weights = "none"
    if isinstance(backbone, str):
        model_name = timm_name(backbone)
        if model_name is None:
            return torchvision_backbone(backbone, weights)
        module = timm_backbone(backbone, model_name, weights)
        what = f"the timm backbone {backbone!r}"
    else:
        if isinstance(backbone, Mapping):
            module = module_from_config(backbone, "SPMLModule(backbone=MyNet(...))")
        elif isinstance(backbone, nn.Module):
            module = backbone
        else:
            raise TypeError(
                "backbone must be a torchvision model name, 'timm/<name>', an nn.Module or its "
                f"config (class_path, init_args); got {type(backbone).__name__}."
            )
        what = f"the backbone {type(module).__name__}"
        kind, path = weights_kind(weights)
        if kind == "name":
            raise ValueError(
                f"weights={os.fspath(weights or '')!r} is a torchvision weights name, but the "
                f"backbone is a module ({type(module).__name__}): pass 'pretrained' or 'none' "
                "(the module as given) or a local weights file to load into it."
            )
        if path is not None:
            load_local_weights(module, path, type(module).__name__)
    probe_size = image_size or backbone_preprocessing(module).get("image_size") or PROBE_SIZE
    return module, feature_size(module, probe_size, what)
