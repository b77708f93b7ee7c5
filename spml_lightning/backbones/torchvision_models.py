"""torchvision classification models as backbones: built by name, their classifier removed."""

from __future__ import annotations

import os

from torch import nn
from torchvision import models

from spml_lightning.backbones.weights import PRETRAINED, load_local_weights, weights_kind

BACKBONES: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "convnext_tiny",
    "convnext_small",
    "efficientnet_b0",
    "efficientnet_b3",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "vit_b_16",
)
"""torchvision backbones known to work; any torchvision classifier ending in a Linear works."""


def strip_classifier(model: nn.Module) -> tuple[nn.Module, int]:
    """Replace the model's final Linear by Identity; return the feature size."""
    for attr in ("fc", "classifier", "heads", "head"):
        head = getattr(model, attr, None)
        if head is None:
            continue
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Identity())
            return model, head.in_features
        if isinstance(head, nn.Sequential):
            linear_positions = [i for i, m in enumerate(head) if isinstance(m, nn.Linear)]
            if linear_positions:
                last = linear_positions[-1]
                linear = head[last]
                assert isinstance(linear, nn.Linear)
                head[last] = nn.Identity()
                return model, linear.in_features
    raise ValueError(
        f"Cannot find the classification layer of {type(model).__name__}; "
        f"use one of {', '.join(BACKBONES)}."
    )


def resolve_weights(name: str, weights: str) -> models.WeightsEnum:
    """The weights enum member a ``weights`` name asks for (``pretrained``: IMAGENET1K_V1)."""
    try:
        enum = models.get_model_weights(name)
    except (ValueError, KeyError) as err:  # pragma: no cover - name checked before
        raise ValueError(f"Backbone {name!r} has no pretrained weights.") from err
    choices = [w.name for w in enum]
    if weights.lower() == PRETRAINED:  # what the legacy pretrained=True loaded
        return enum["IMAGENET1K_V1"] if "IMAGENET1K_V1" in choices else enum.DEFAULT
    if weights.upper() == "DEFAULT":
        return enum.DEFAULT
    try:
        return enum[weights]
    except KeyError:
        raise ValueError(
            f"Unknown weights {weights!r} for backbone {name!r}. Choose one of "
            f"{', '.join(choices + ['DEFAULT', PRETRAINED])}, a path to a local .pth file, or "
            "'none'."
        ) from None


def torchvision_backbone(name: str, weights: str | os.PathLike | None) -> tuple[nn.Module, int]:
    """The torchvision model ``name`` without its classifier, with its ``weights``; and D."""
    available = set(models.list_models(module=models))
    if name not in available:
        raise ValueError(
            f"Unknown backbone {name!r}. Choose one of {', '.join(BACKBONES)} "
            "(or another torchvision classification model), timm/<name> for a timm model, or "
            "give an nn.Module (a class_path in a config)."
        )
    kind, path = weights_kind(weights)
    if kind in ("none", "file"):
        model = models.get_model(name, weights=None)
    else:
        enum = resolve_weights(name, os.fspath(weights or ""))
        try:
            model = models.get_model(name, weights=enum)
        except Exception as err:  # download or file-cache failure
            raise RuntimeError(
                f"Could not load the pretrained weights {name}/{enum.name} from {enum.url} "
                f"({type(err).__name__}: {err}). Without internet access, pass "
                "--model.weights none (random initialisation) or --model.weights "
                "/path/to/weights.pth (a local state-dict file)."
            ) from err
    full = set(model.state_dict())
    model, dim = strip_classifier(model)
    if path is not None:
        # A file of the full classifier may bring the removed layer's keys, and only those.
        head = sorted({key.rpartition(".")[0] + "." for key in full - set(model.state_dict())})
        load_local_weights(model, path, repr(name), tuple(head))
    return model, dim
