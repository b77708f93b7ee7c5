"""Images to the model's input with numpy and Pillow: the evaluation transform without torch.

The training side reads an image with ``spml_lightning.data.io.load_rgb`` and
``reference_transform(image_size, train=False, mean, std)``: decode to 8-bit RGB,
``Resize((S, S))`` (on a PIL image: Pillow's bilinear resize, antialiased),
``ToTensor`` (/ 255 in float32) and ``Normalize`` (``(x - mean) / std`` in float32).
This module does the same steps in the same order and the same float32
arithmetic, so the arrays are the tensors' values (the tests compare them).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from spml_lightning.deploy.metadata import Preprocessing
from spml_lightning.image_modes import DECOMPRESSION_BOMB_ERRORS, to_rgb

__all__ = ["ImageSource", "UnreadableImage", "model_input", "read_image"]

ImageSource = str | os.PathLike | bytes | Image.Image
"""What the predictor takes: an image file's path, its bytes, or a PIL image."""


class UnreadableImage(ValueError):
    """An input that is not an image the model can read (the message says why and what to do)."""


def read_image(source: ImageSource) -> Image.Image:
    """An 8-bit RGB image from a path, encoded bytes or a PIL image, as the training data is read.

    Raises:
        FileNotFoundError: for a path that is no file.
        UnreadableImage: for empty bytes, bytes or a file that is not an image (or is truncated),
            an image past Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``), or
            a floating-point image.
    """
    if isinstance(source, Image.Image):
        return _converted(source, "the image")
    if isinstance(source, bytes | bytearray):
        if not source:
            raise UnreadableImage("empty body: send the bytes of an image file (JPEG, PNG, ...).")
        return _opened(io.BytesIO(source), f"the {len(source)} bytes given")
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: {path}")
    return _opened(path, path)


def _opened(file: str | io.BytesIO, name: str) -> Image.Image:
    try:
        with Image.open(file) as image:
            return _converted(image, name)
    except DECOMPRESSION_BOMB_ERRORS as err:
        raise UnreadableImage(
            f"{name}: {err} Send a smaller image, or raise PIL.Image.MAX_IMAGE_PIXELS if such "
            "images are expected."
        ) from err
    except UnidentifiedImageError as err:
        raise UnreadableImage(
            f"{name} are not an image Pillow can read (JPEG, PNG, TIFF, WebP, ...)."
            if isinstance(file, io.BytesIO)
            else f"{file} is not an image Pillow can read (JPEG, PNG, TIFF, WebP, ...)."
        ) from err
    except (OSError, SyntaxError) as err:
        raise UnreadableImage(
            f"{name} cannot be decoded ({type(err).__name__}: {err}): a truncated or corrupt image?"
        ) from err


def _converted(image: Image.Image, name: str) -> Image.Image:
    try:
        return to_rgb(image)
    except ValueError as err:
        raise UnreadableImage(f"{name}: {err}") from err


def model_input(images: Sequence[Image.Image], preprocessing: Preprocessing) -> np.ndarray:
    """The (N, 3, S, S) float32 input of RGB images, as the evaluation transform makes it.

    Args:
        images: 8-bit RGB images (from :func:`read_image`).
        preprocessing: the model's (its file's metadata).
    """
    size = preprocessing.image_size
    mean = np.asarray(preprocessing.mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(preprocessing.std, dtype=np.float32).reshape(3, 1, 1)
    batch = np.empty((len(images), 3, size, size), dtype=np.float32)
    for row, image in enumerate(images):
        # torchvision's Resize((S, S)) on a PIL image is this call (its antialias applies to
        # tensors only: Pillow's resize always filters over the whole footprint).
        resized = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), np.uint8)
        pixels = resized.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        batch[row] = (pixels - mean) / std
    return batch
