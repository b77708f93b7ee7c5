"""What a backbone gives the head: its feature size, pooled features, its own preprocessing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

#: Input side of the one forward pass that measures a module's feature size, when
#: neither ``image_size`` nor the module's own ``pretrained_cfg`` gives one.
PROBE_SIZE = 224


def backbone_preprocessing(module: nn.Module) -> dict[str, Any]:
    """The preprocessing a backbone brings: ``image_size``, ``mean``, ``std`` of its config.

    timm models carry it (the input size, normalisation and whether the input
    size is fixed, as the pretrained weights were trained). An empty dict for a
    module without one (torchvision models: ImageNet's normalisation applies).
    Also ``fixed_input_size: True`` for a model that takes only that size (ViTs).

    Args:
        module: the backbone.
    """
    cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None)
    if not isinstance(cfg, Mapping):
        return {}
    own: dict[str, Any] = {}
    input_size = cfg.get("input_size")
    if isinstance(input_size, Sequence) and len(input_size) == 3:
        own["image_size"] = int(input_size[-1])
    for key in ("mean", "std"):
        value = cfg.get(key)
        if isinstance(value, Sequence) and len(value) == 3:
            own[key] = [float(v) for v in value]
    if cfg.get("fixed_input_size") and "image_size" in own:
        own["fixed_input_size"] = True
    return own


def check_input_size(own: Mapping[str, Any], image_size: int | None, backbone: Any) -> None:
    """Refuse an input size that a backbone with a fixed one (timm's ViTs) cannot take.

    Args:
        own: the backbone's own preprocessing (``backbone_preprocessing``).
        image_size: the side the images are resized to (None: not known yet).
        backbone: the backbone hyper-parameter (a name, a config or a module), for the message.

    Raises:
        ValueError: naming the size the backbone takes and the flag that sets it.
    """
    size = own.get("image_size")
    if own.get("fixed_input_size") and image_size is not None and image_size != size:
        raise ValueError(
            f"The backbone {_backbone_name(backbone)} takes {size} x {size} images only (its "
            f"pretrained_cfg has fixed_input_size), but the images are resized to {image_size}: "
            f"set the data's image_size to {size} (spml: --data.init_args.image_size {size})."
        )


def _backbone_name(backbone: Any) -> str:
    """How messages name a backbone hyper-parameter (a name, or a config's class path)."""
    if isinstance(backbone, Mapping):
        return str(backbone.get("class_path", backbone))
    return repr(backbone) if isinstance(backbone, str) else type(backbone).__name__


def pooled_features(
    features: Any, expected: int | None = None, backbone: str = "The backbone"
) -> Tensor:
    """(B, D) features of a backbone's output: (B, D) as it is, (B, D, H, W) averaged over H, W.

    Args:
        features: what the backbone returned.
        expected: the feature size D the head was built for (None: not checked).
        backbone: how error messages name the backbone.

    Raises:
        ValueError: for any other output, or another D than ``expected``, saying what is expected.
    """
    if isinstance(features, Tensor) and features.ndim in (2, 4):
        pooled = features if features.ndim == 2 else features.mean(dim=(2, 3))
        if expected is not None and pooled.shape[1] != expected:
            raise ValueError(
                f"{backbone} returned {pooled.shape[1]} features per image, but its feature size "
                f"was found to be {expected} (from its head_hidden_size, num_features or "
                "out_features attribute, or a first forward pass). A module that still ends in "
                "its classifier? Remove it (timm: num_classes=0), or correct the attribute."
            )
        return pooled
    shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
    raise ValueError(
        f"{backbone[:1].upper()}{backbone[1:]} returned {shape}; SPMLModule needs a tensor of "
        "(B, D) features or a (B, D, H, W) feature map (averaged over H and W). Make the module "
        "return one, e.g. pool a ViT's (B, tokens, D) output yourself (its class token: "
        "x[:, 0]), or select one output of a module that returns several."
    )


def check_backbone_output(
    module: nn.Module, image_size: int | None, expected: int, backbone: Any
) -> None:
    """Run a module's backbone once on two blank images of the data's size, before training.

    A size attribute (``num_features``, ``out_features``) gives the feature size
    without a forward pass, so a module that does not map images to features --
    ``torch.nn.Linear`` given as a backbone -- would otherwise fail inside torch at
    the first training step. Eager (``forward``, not a compiled call), in eval
    mode and without gradients: nothing of the module changes. A backbone given by
    name (torchvision, timm) takes images by construction and is not run.

    Args:
        module: the backbone.
        image_size: the side of the data's images (None: not known yet, nothing checked).
        expected: the feature size the head was built for.
        backbone: the backbone hyper-parameter (a name, a config or a module).

    Raises:
        ValueError: when the pass fails or gives other than (B, ``expected``) features.
    """
    if not image_size or isinstance(backbone, str):
        return
    what = f"The backbone {_backbone_name(backbone)}"
    try:
        output = _blank_forward(module.forward, module, image_size)  # eager, not a compiled call
    except Exception as err:
        raise ValueError(
            f"{what} cannot take the data's images: a forward pass of a "
            f"(2, 3, {image_size}, {image_size}) batch failed ({type(err).__name__}: {err}). A "
            "backbone maps images (B, 3, H, W) to (B, D) features or a (B, D, H', W') map; "
            "check the module (e.g. torch.nn.Linear takes vectors, not images) and the data's "
            "image_size."
        ) from err
    pooled_features(output, expected, what)


def _blank_forward(forward: Any, module: nn.Module, size: int) -> Any:
    """``forward`` of two blank ``size`` x ``size`` images, in eval mode, without gradients.

    On the module's device and in its floating dtype; its training mode is restored
    after, so nothing of the module changes.
    """
    parameter = next(module.parameters(), None)
    images = torch.zeros(
        2,
        3,
        size,
        size,
        device=parameter.device if parameter is not None else "cpu",
        dtype=parameter.dtype if parameter is not None and parameter.is_floating_point() else None,
    )
    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            return forward(images)
    finally:
        module.train(training)


def feature_size(module: nn.Module, probe_size: int, what: str) -> int:
    """The feature size D of a backbone: its size attribute, else one forward pass measures it."""
    for attribute in ("head_hidden_size", "num_features", "out_features"):
        value = getattr(module, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    try:
        output = _blank_forward(module, module, probe_size)
    except Exception as err:
        raise ValueError(
            f"Could not measure the feature size of {what}: a forward pass of a (2, 3, "
            f"{probe_size}, {probe_size}) batch failed ({type(err).__name__}: {err}). Give the "
            "module a `num_features` attribute (its feature size), or pass SPMLModule the "
            "image_size it takes."
        ) from err
    features = pooled_features(output, backbone=what)
    if features.shape[0] != 2:
        raise ValueError(
            f"{what[:1].upper()}{what[1:]} mapped a batch of 2 images to "
            f"{tuple(output.shape)}: the first dimension must be the batch."
        )
    return int(features.shape[1])
