"""Reading image files: decode to RGB, or say why a file cannot be decoded.

Every reader of image files in ``data/`` goes through here; this module imports
nothing else from the package, so the dataset code (``base.py``) and the
device decoder (``device_decode.py``) can both depend on it.

The reference code reads every image with ``Image.open(path).convert("RGB")``.
That is right for the 8-bit modes (RGB, L, P, CMYK, RGBA, ...), and kept for
them bit for bit, but silently wrong for high-bit-depth ones: Pillow clips a
16-bit grey value to 255, so a 16-bit scan becomes an almost white image.
Those are scaled to 8 bits here; floating-point images, whose range nobody
agrees on, are refused with an explanation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "DECOMPRESSION_BOMB_ERRORS",
    "image_size",
    "load_rgb",
    "missing_files",
    "to_rgb",
    "unreadable_reason",
    "unreadable_reasons",
]

#: What Pillow raises for an image whose header claims more pixels than
#: ``Image.MAX_IMAGE_PIXELS`` allows: the error above twice the limit, and the warning
#: above the limit when warnings are errors.
DECOMPRESSION_BOMB_ERRORS: tuple[type[Exception], ...] = (
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)

#: Modes holding integers up to 16 bits (PNG and TIFF grey images load as these).
HIGH_BIT_DEPTH_MODES: frozenset[str] = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of ``image``.

    Args:
        image: a PIL image of any mode.

    Returns:
        ``image.convert("RGB")`` for 8-bit modes; 16-bit grey images are first
        scaled to 8 bits (``round(v / 257)``, so 65535 -> 255).

    Raises:
        ValueError: for floating-point (``F``) images, and 32-bit integer
            images with values outside the 16-bit range.
    """
    if image.mode in HIGH_BIT_DEPTH_MODES:
        values = np.asarray(image, dtype=np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(
                f"{image.mode} image with values in [{values.min()}, {values.max()}], outside "
                "the 16-bit range this reader scales to 8 bits; save it as an 8- or 16-bit image."
            )
        eight_bit = np.rint(values / 257.0).astype(np.uint8)
        return Image.fromarray(eight_bit, mode="L").convert("RGB")
    if image.mode == "F":
        raise ValueError(
            "floating-point (mode F) images have no agreed value range; save the image as an 8- or "
            "16-bit PNG, JPEG or TIFF."
        )
    return image.convert("RGB")


def load_rgb(path: str) -> Image.Image:
    """Open an image file as 8-bit RGB, naming the file when it cannot be read.

    Args:
        path: the image file.

    Returns:
        The decoded image (fully loaded, file closed).

    Raises:
        FileNotFoundError: if there is no such file.
        OSError: if the file is empty, truncated, not an image, unreadable, too
            large for Pillow's decompression-bomb limit, or of an unsupported mode.
    """
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except FileNotFoundError:
        raise FileNotFoundError(f"Image file not found: {path}") from None
    except DECOMPRESSION_BOMB_ERRORS as err:
        raise OSError(
            f"Cannot read image {path}: {err} If the image is genuine, raise "
            "PIL.Image.MAX_IMAGE_PIXELS; otherwise replace the file or remove its row from the "
            "data set."
        ) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise OSError(
            f"Cannot read image {path} ({type(err).__name__}: {err}). Replace or delete the "
            "file, or remove its row from the data set."
        ) from err


def image_size(path: str) -> tuple[int, int]:
    """``(width, height)`` of an image file, read from its header (nothing is decoded).

    Raises:
        OSError: naming the file, if it is missing or not an image.
    """
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise OSError(
            f"Cannot read the size of image {path} ({type(err).__name__}: {err})."
        ) from err


def unreadable_reason(path: str) -> str | None:
    """Why an image file cannot be decoded, or None if it can.

    JPEGs are decoded at 1/8 scale (``draft``): that still reads the whole
    compressed stream, so truncated files are caught, at a fraction of the cost.
    A file whose header claims more pixels than Pillow's decompression-bomb
    limit is unreadable too (``load_rgb`` would refuse it).

    Args:
        path: the image file.

    Returns:
        ``"missing"`` for a file that does not exist, the error's type and
        message for one that cannot be decoded, None for a readable image.
    """
    try:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))
            image.load()
    except FileNotFoundError:
        return "missing"
    except DECOMPRESSION_BOMB_ERRORS as err:
        return (
            f"{type(err).__name__}: {err} Raise PIL.Image.MAX_IMAGE_PIXELS if the image is genuine."
        )
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def missing_files(paths: Sequence[str]) -> list[str]:
    """The paths that are not files, in order (a quick check: nothing is decoded)."""
    return [path for path in paths if not os.path.isfile(path)]


def unreadable_reasons(paths: Sequence[str]) -> list[str | None]:
    """:func:`unreadable_reason` of every path, in order, decoded by a pool of threads."""
    with ThreadPoolExecutor(max_workers=max(1, min(16, os.cpu_count() or 1))) as pool:
        return list(pool.map(unreadable_reason, list(paths), chunksize=64))
