"""Image preprocessing of the reference protocol.

As Cole et al. (CVPR 2021) do in their released code (``get_transforms`` in
``datasets.py``), and GR Loss after them: resize to a square (aspect ratio not
kept), random horizontal flip for training only, ImageNet mean/std
normalisation. The same eval transform is
stored in every checkpoint so that a trained model predicts on raw images
without its datamodule.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image
from torch import Tensor
from torchvision import transforms

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "RESIZE_RULE", "reference_transform", "with_transform"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: How ``reference_transform`` resizes: what a cache of its outputs records (change it with it).
RESIZE_RULE = "square: Resize((S, S)), aspect ratio not kept, bilinear, antialiased"


def reference_transform(
    image_size: int,
    train: bool,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> transforms.Compose:
    """PIL image -> normalised (3, S, S) float tensor, as the reference code does."""
    if image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}.")
    steps: list = [transforms.Resize((image_size, image_size))]
    if train:
        steps.append(transforms.RandomHorizontalFlip(0.5))
    steps += [transforms.ToTensor(), transforms.Normalize(mean=list(mean), std=list(std))]
    return transforms.Compose(steps)


def with_transform(dataset: Any, transform: Callable[[Image.Image], Tensor]) -> Any:
    """A shallow copy of an SPML dataset that reads its images with ``transform``.

    The copy shares the dataset's arrays (paths, labels): only the transform
    differs, e.g. the training set read without its random flip.
    """
    copied = copy.copy(dataset)
    copied.transform = transform
    return copied
