"""Any Pillow image to 8-bit RGB, as every image reader of the project does (numpy and Pillow only).

The reference code reads every image with ``Image.open(path).convert("RGB")``.
That is right for the 8-bit modes (RGB, L, P, CMYK, RGBA, ...), and kept for
them bit for bit, but silently wrong for high-bit-depth ones: Pillow clips a
16-bit grey value to 255, so a 16-bit scan becomes an almost white image.
Those are scaled to 8 bits here; floating-point images, whose range nobody
agrees on, are refused with an explanation.

This module imports nothing from the package and no torch: the training data
(``data/io.py``) and the torch-free predictor (``deploy/predictor.py``) read
images through the same code, so a deployed model sees the pixels it was
trained on.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["DECOMPRESSION_BOMB_ERRORS", "HIGH_BIT_DEPTH_MODES", "to_rgb"]

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
