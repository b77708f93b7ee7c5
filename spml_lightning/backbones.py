"""torchvision backbones by name, with their classifier removed.

A backbone maps images (B, 3, H, W) to pooled features (B, D). Weights are a
torchvision weights-enum name (``IMAGENET1K_V1`` is the legacy
``pretrained=True`` ResNet-50 behind every published SPML number), a path to a
local state-dict file, or ``none`` (random initialisation).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torchvision import models

__all__ = ["BACKBONES", "build_backbone"]

#: Backbones known to work with ``build_backbone``; any classification model
#: of torchvision whose head ends in a Linear layer also works.
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

_NO_WEIGHTS = {"none", "null", "random", ""}


def _strip_classifier(model: nn.Module) -> tuple[nn.Module, int]:
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
                dim = head[last].in_features
                head[last] = nn.Identity()
                return model, dim
    raise ValueError(
        f"Cannot find the classification layer of {type(model).__name__}; "
        f"use one of {', '.join(BACKBONES)}."
    )


def _resolve_weights(name: str, weights: str) -> models.WeightsEnum:
    try:
        enum = models.get_model_weights(name)
    except (ValueError, KeyError) as err:  # pragma: no cover - name checked before
        raise ValueError(f"Backbone {name!r} has no pretrained weights.") from err
    choices = [w.name for w in enum]
    key = "DEFAULT" if weights.upper() == "DEFAULT" else weights
    try:
        return enum[key] if key != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise ValueError(
            f"Unknown weights {weights!r} for backbone {name!r}. Choose one of "
            f"{', '.join(choices + ['DEFAULT'])}, a path to a local .pth file, or 'none'."
        ) from None


def _load_local_weights(model: nn.Module, path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"Weights file {path} does not contain a state dict.")
    own = model.state_dict()
    # Files saved from a full classifier carry the ImageNet head: drop whatever
    # this headless backbone does not have, but insist that the body matches.
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable]
    if missing:
        raise ValueError(
            f"Weights file {path} does not fit this backbone: {len(missing)} parameters "
            f"missing or of another shape (first: {missing[:3]}). Check --model.backbone."
        )
    model.load_state_dict(usable)


def build_backbone(
    name: str, weights: str | os.PathLike | None = "IMAGENET1K_V1"
) -> tuple[nn.Module, int]:
    """Build a torchvision model without its classifier.

    Args:
        name: torchvision model name, e.g. ``resnet50`` (see ``BACKBONES``).
        weights: weights-enum name (``IMAGENET1K_V1``, ``DEFAULT``, ...), path to a
            local state-dict file, or ``none``/``None`` for random initialisation.

    Returns:
        (module mapping images to (B, D) features, D).
    """
    available = set(models.list_models(module=models))
    if name not in available:
        raise ValueError(
            f"Unknown backbone {name!r}. Choose one of {', '.join(BACKBONES)} "
            "(or another torchvision classification model)."
        )
    weights_str = "none" if weights is None else str(weights)
    local = Path(weights_str).expanduser()
    is_path = weights_str.lower() not in _NO_WEIGHTS and (
        local.suffix in {".pth", ".pt", ".ckpt", ".bin"} or os.sep in weights_str
    )
    if weights_str.lower() in _NO_WEIGHTS or is_path:
        model = models.get_model(name, weights=None)
    else:
        enum = _resolve_weights(name, weights_str)
        try:
            model = models.get_model(name, weights=enum)
        except Exception as err:  # download or file-cache failure
            raise RuntimeError(
                f"Could not load the pretrained weights {name}/{enum.name} from {enum.url} "
                f"({type(err).__name__}: {err}). Without internet access, pass "
                "--model.weights none (random initialisation) or --model.weights "
                "/path/to/weights.pth (a local state-dict file)."
            ) from err
    model, dim = _strip_classifier(model)
    if is_path:
        if not local.is_file():
            raise FileNotFoundError(
                f"Weights file {local} does not exist. Pass an existing .pth file, a torchvision "
                "weights name such as IMAGENET1K_V1, or 'none'."
            )
        _load_local_weights(model, local)
    return model, dim
