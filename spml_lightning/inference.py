"""The one evaluation loop: a model's scores on a dataset or on raw images, without augmentation.

Everything that runs a model outside Lightning's own validation, test and
predict loops goes through :func:`score_dataset`: ``SPMLModule`` scoring its
training set between epochs (EM+APL's pseudo-labels), the analysis scoring a
split, and :func:`predict_images` labelling PIL images, tensors or files with
the preprocessing the model was trained with. :func:`predicted_labels` turns
probabilities into label names (``spml predict``, notebooks).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler
from torchvision.transforms.functional import to_pil_image
from tqdm.auto import tqdm

from spml_lightning.data.io import load_rgb
from spml_lightning.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    reference_transform,
    with_transform,
)

__all__ = [
    "ImageInput",
    "evaluation_transform",
    "predict_images",
    "predicted_labels",
    "score_dataset",
    "score_train_set",
]

ImageInput = Image.Image | Tensor | str | os.PathLike
"""What :func:`predict_images` takes: a PIL image, a (C, H, W) tensor, or an image file."""


def evaluation_transform(
    image_size: int | None, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> Callable[[Image.Image], Tensor]:
    """The reference evaluation transform (resize to a square, no flip, normalise).

    Args:
        image_size: side of the square input; None (a model never fitted with a
            datamodule and given no size) is an error that says what to pass.
        mean: per-channel normalisation mean (default ImageNet's).
        std: per-channel normalisation standard deviation (default ImageNet's).
    """
    if image_size is None:
        raise RuntimeError(
            "This model does not know its input size: it was never fitted with a datamodule "
            "and got no image_size. Pass image_size (and mean/std) to SPMLModule."
        )
    return reference_transform(image_size, False, mean or IMAGENET_MEAN, std or IMAGENET_STD)


@torch.no_grad()
def score_dataset(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int,
    num_workers: int = 0,
    sampler: Sampler | None = None,
    forward_context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    progress: str | None = None,
) -> tuple[Tensor, Tensor]:
    """The logits of ``model`` on every item of ``dataset`` (or of ``sampler``'s share of it).

    The model runs in eval mode (restored afterwards) on its own device, in
    ``forward_context`` (e.g. a trainer's autocast); the dataset's items are
    ``{"image", "index", ...}`` dictionaries.

    Args:
        model: maps a (B, 3, H, W) batch to (B, C) logits.
        dataset: the items to score, with the transform they are to be read with.
        batch_size: images per forward pass.
        num_workers: loader worker processes.
        sampler: which items, in which order (e.g. a DistributedSampler's shard); default all,
            in order.
        forward_context: a context manager factory entered around the forward passes.
        progress: a progress bar's description; None shows none.

    Returns:
        ``(index, logits)``: the items' ``index`` values and their fp32 logits, in the order scored.
    """
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=num_workers
    )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    indices, logits = [], []
    try:
        with forward_context():
            for batch in tqdm(loader, desc=progress, disable=progress is None, leave=False):
                indices.append(torch.as_tensor(batch["index"], device=device))
                logits.append(model(batch["image"].to(device)).float())
    finally:
        model.train(was_training)
    if not logits:
        return torch.zeros(0, dtype=torch.long, device=device), torch.zeros(0, device=device)
    return torch.cat(indices), torch.cat(logits)


def score_train_set(
    model: nn.Module, trainer: Any, transform: Callable[[Image.Image], Tensor], reader: str
) -> tuple[Tensor, Tensor]:
    """(index, logits) of this rank's shard of a fit's training set, read with ``transform``.

    Args:
        model: maps a (B, 3, H, W) batch to (B, C) logits.
        trainer: the fitting trainer; its datamodule's ``train_dataset`` is scored, each
            process its ``DistributedSampler`` shard, in the trainer's precision.
        transform: how the images are read (the model's evaluation transform: no augmentation).
        reader: who needs the scores, for the error message (e.g. the loss's class name).

    Raises:
        RuntimeError: If the trainer's datamodule has no ``train_dataset``.
    """
    datamodule = getattr(trainer, "datamodule", None)
    dataset = getattr(datamodule, "train_dataset", None)
    if dataset is None:
        raise RuntimeError(
            f"{reader} scores the training set between epochs and needs "
            "trainer.datamodule.train_dataset; fit with an SPMLDataModule."
        )
    scoring = with_transform(dataset, transform)
    sampler = None
    if trainer.world_size > 1:
        sampler = DistributedSampler(
            scoring, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
        )
    return score_dataset(
        model,
        scoring,
        batch_size=getattr(datamodule, "batch_size", 32),
        num_workers=getattr(datamodule, "num_workers", 0),
        sampler=sampler,
        forward_context=trainer.precision_plugin.forward_context,
    )


def as_pil(image: ImageInput) -> Image.Image:
    """An RGB PIL image from a PIL image, a (C, H, W) uint8/[0, 1] float tensor or an image file."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(
                f"Image tensors must be (C, H, W) with 1 or 3 channels, got {tuple(image.shape)}."
            )
        return to_pil_image(image.cpu()).convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        return load_rgb(os.fspath(Path(image).expanduser()))
    raise TypeError(
        f"Cannot predict on a {type(image).__name__}; pass PIL images, tensors or paths."
    )


class _Images(Dataset):
    """Raw images as dataset items, transformed when read."""

    def __init__(self, images: Sequence[ImageInput], transform: Callable[[Image.Image], Tensor]):
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.transform(as_pil(self.images[index])), "index": index}


def predict_images(
    model: nn.Module,
    images: Sequence[ImageInput],
    transform: Callable[[Image.Image], Tensor],
    num_classes: int,
    batch_size: int = 32,
) -> Tensor:
    """Label probabilities (N, C) on the CPU for PIL images, (C, H, W) tensors or image paths.

    Args:
        model: maps a batch of transformed images to (B, C) logits.
        images: the images, in the order of the result's rows.
        transform: the model's evaluation transform (see :func:`evaluation_transform`).
        num_classes: C, the shape of the result when ``images`` is empty.
        batch_size: images per forward pass.
    """
    if not len(images):
        return torch.zeros(0, num_classes)
    _, logits = score_dataset(model, _Images(images, transform), batch_size=batch_size)
    return torch.sigmoid(logits).cpu()


def predicted_labels(
    probabilities: Tensor,
    class_names: Sequence[str],
    threshold: float = 0.5,
    top_k: int | None = None,
) -> list[list[str]]:
    """The labels predicted for each image, most probable first.

    Args:
        probabilities: (N, C) label probabilities.
        class_names: the C class names.
        threshold: labels with probability >= threshold (when ``top_k`` is None).
        top_k: if given, the ``top_k`` most probable labels of every image instead.
    """
    probabilities = torch.as_tensor(probabilities).detach().cpu()
    if probabilities.ndim != 2 or probabilities.shape[1] != len(class_names):
        raise ValueError(
            f"Expected (N, {len(class_names)}) probabilities for {len(class_names)} classes, "
            f"got shape {tuple(probabilities.shape)}."
        )
    if top_k is not None and not 1 <= top_k <= len(class_names):
        raise ValueError(
            f"top_k must be between 1 and the number of classes ({len(class_names)}), got {top_k}."
        )
    order = torch.argsort(probabilities, dim=1, descending=True, stable=True)
    labels = []
    for row, ranking in zip(probabilities, order, strict=True):
        chosen = (
            ranking[:top_k] if top_k is not None else [c for c in ranking if row[c] >= threshold]
        )
        labels.append([class_names[int(c)] for c in chosen])
    return labels
