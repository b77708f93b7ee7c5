"""Image files made byte by byte for the tests: decompression bombs, 16-bit PNGs, noise."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def noise(size: int = 32, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (size, size, channels), dtype=np.uint8)


def write_png(
    path: Path, width: int, height: int, bit_depth: int, color_type: int, raw: bytes
) -> None:
    """A PNG written by hand from its IHDR fields and raw (filtered) scanlines.

    The scanlines may be too few for the header.
    """

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def write_png_rgb48(path: Path, rgb16: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    height, width, _ = rgb16.shape
    write_png(
        path, width, height, 16, 2, b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)
    )


def decompression_bomb(path: Path) -> None:
    """A 1-bit grey PNG of 65 bytes whose header claims 20000 x 20000 pixels.

    That is more than twice Pillow's limit.
    """
    write_png(path, 20000, 20000, 1, 0, b"")
