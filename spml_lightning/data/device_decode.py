"""JPEG decoding and the reference transform on the model's device (``decode_on="device"``).

The reference pipeline decodes and resizes every image with PIL in the loader
workers, which takes about one CPU core per 100-150 images/s at 448 px. A
machine with few cores per GPU can instead let the workers only read the
files' bytes and decode them in batches on the GPU (nvJPEG, through
``torchvision.io.decode_jpeg``), then resize, flip and normalise there.

The result matches the PIL path within resize tolerance (``bench/data_pipeline.py``
and ``tests/data/test_device_decode.py`` measure it): the same bilinear filter with
PIL's antialiasing, rounded to 8 bits as PIL does; decoders differ by an
occasional level of rounding. Files that are not JPEGs (PNG, ...) are
decoded by PIL in the worker and only resized on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import default_collate
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.functional import pil_to_tensor

from spml_lightning.data.io import load_rgb

__all__ = ["collate_encoded", "decode_and_transform", "read_encoded"]

_JPEG_MAGIC = b"\xff\xd8\xff"


def read_encoded(path: str) -> Tensor:
    """A JPEG file's bytes as a 1-D uint8 tensor; any other image decoded to (3, H, W) uint8.

    Raises:
        FileNotFoundError / OSError: naming the file, as ``load_rgb`` does.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"Image file not found: {path}") from None
    if data[:3] == _JPEG_MAGIC:
        return torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return pil_to_tensor(load_rgb(path))  # the reference decoder for the rest


def collate_encoded(items: Sequence[dict]) -> dict:
    """Collate items whose images are encoded files of different lengths: ``image`` stays a list."""
    labels = [{key: value for key, value in item.items() if key != "image"} for item in items]
    batch = default_collate(labels)
    batch["image"] = [item["image"] for item in items]
    return batch


def _decode(images: Sequence[Tensor], device: torch.device) -> list[Tensor]:
    """(3, H, W) uint8 images on ``device``; JPEG bytes are decoded there in one batch."""
    decoded: list[Tensor | None] = [None] * len(images)
    jpegs = [i for i, image in enumerate(images) if image.ndim == 1]
    if jpegs:
        encoded = [images[i].cpu() for i in jpegs]  # decode_jpeg reads its input from host memory
        try:
            results = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            # A JPEG the device decoder rejects (e.g. CMYK on nvJPEG): the CPU decoder
            # converts it; one failure must not lose the batch.
            results = [decode_jpeg(data, mode=ImageReadMode.RGB).to(device) for data in encoded]
        for i, image in zip(jpegs, results, strict=True):
            decoded[i] = image
    for i, image in enumerate(images):
        if decoded[i] is None:
            decoded[i] = image.to(device, non_blocking=True)
    return decoded  # type: ignore[return-value]


def decode_and_transform(
    images: Sequence[Tensor],
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    flip: bool,
    device: torch.device | str,
) -> Tensor:
    """The reference transform of a batch of encoded images, on ``device``.

    The reference transform is Cole et al.'s (CVPR 2021, Sec. 4 and their
    released code; GR Loss uses it unchanged): ``Resize((S, S))`` without
    keeping the aspect, ``RandomHorizontalFlip(0.5)`` in training, ImageNet
    mean/std normalisation (``transforms.py`` is the PIL version).

    Args:
        images: what ``read_encoded`` returns, one tensor per image.
        image_size: side of the square the images are resized to (aspect not kept).
        mean: per-channel normalisation mean.
        std: per-channel normalisation standard deviation.
        flip: flip each image horizontally with probability 1/2 (training).
        device: where to decode and transform.

    Returns:
        (B, 3, S, S) float32 normalised images.
    """
    device = torch.device(device)
    resized = (
        torch.stack(
            [
                # Bilinear with antialiasing is PIL's filter; rounding to integers
                # reproduces the 8-bit image PIL hands to ToTensor.
                F.interpolate(
                    image.unsqueeze(0).float(),
                    size=(image_size, image_size),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )[0]
                for image in _decode(images, device)
            ]
        )
        .round_()
        .clamp_(0, 255)
    )
    if flip:
        flipped = torch.rand(len(resized), device=device) < 0.5
        resized = torch.where(flipped[:, None, None, None], resized.flip(-1), resized)
    # Per channel with Python scalars: a (3,) tensor built here would be a host-to-device copy
    # per batch.
    for channel, (m, s) in enumerate(zip(mean, std, strict=True)):
        resized[:, channel].sub_(255.0 * m).div_(255.0 * s)
    return resized
