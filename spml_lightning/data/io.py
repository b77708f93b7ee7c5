"""Reading image files: decode to RGB, or say why a file cannot be decoded.

Every reader of image files in ``data/`` goes through here; this module imports
nothing else from the package but the leaf ``spml_lightning.image_modes``
(the mode conversion, shared with the torch-free predictor of ``deploy/``), so
the dataset code (``base.py``) and the device decoder (``device_decode.py``)
can both depend on it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from PIL import Image, UnidentifiedImageError

from spml_lightning.image_modes import DECOMPRESSION_BOMB_ERRORS, to_rgb

__all__ = [
    "DECOMPRESSION_BOMB_ERRORS",
    "image_size",
    "load_rgb",
    "missing_files",
    "to_rgb",
    "unreadable_reason",
    "unreadable_reasons",
]


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
