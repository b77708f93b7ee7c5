"""The fingerprint of a feature cache: everything that determines the cached arrays.

Cached features are right only as long as every input of the extraction is the
same: the backbone (what it is and its exact weights), the preprocessing (image
size, resize rule, mean/std), the stored dtype, whether a flipped copy is kept,
and the images (each split's list, with each file's size and modification time).
A fingerprint holds one entry per such part, so that a cache made with other
inputs can say *which* part differs (:func:`differing_parts`), not just that
something does.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spml_lightning.data.transforms import RESIZE_RULE

__all__ = [
    "FINGERPRINT_PARTS",
    "differing_parts",
    "feature_fingerprint",
    "images_entry",
    "weights_digest",
]

FINGERPRINT_PARTS: tuple[str, ...] = (
    "backbone",
    "weights",
    "image_size",
    "resize",
    "mean",
    "std",
    "dtype",
    "flip",
    "images",
)
"""The parts of a fingerprint, in the order a message about them names them."""


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of a module's state dict: each parameter's and buffer's name, dtype, shape, bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{data.dtype}:{tuple(tensor.shape)}\0".encode())
        # As bytes: numpy has no bf16, and the bytes are what must not change.
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def images_entry(paths: Sequence[str], root: Path | None) -> dict[str, Any]:
    """A split's images: their count and a digest of (path, size, mtime) of each, in row order.

    Paths count relative to ``root`` (when under it), so that moving the data set with its
    cache is no change.
    """
    digest = hashlib.sha256()
    prefix = os.path.abspath(root) + os.sep if root is not None else ""
    for path in paths:
        stat = os.stat(path)
        name = os.path.abspath(path).removeprefix(prefix) if prefix else os.fspath(path)
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return {"count": len(paths), "sha256": digest.hexdigest()}


def feature_fingerprint(
    *,
    backbone: nn.Module,
    identity: Any,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: str,
    flip: bool,
    splits: Mapping[str, Sequence[str]],
    root: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The fingerprint of the features of ``backbone`` on the images of ``splits``.

    Args:
        backbone: the feature extractor (its weights are hashed).
        identity: what the backbone is, as its config records it (a name, a class path and
            arguments); together with the module's class.
        image_size: side of the square the images are resized to.
        mean: per-channel normalisation mean.
        std: per-channel normalisation standard deviation.
        dtype: the stored dtype (``float16`` or ``float32``).
        flip: whether a horizontally flipped copy is stored too.
        splits: each split's image paths, in row order.
        root: the data set's folder: image paths count relative to it.

    Returns:
        A JSON-able dict with one entry per ``FINGERPRINT_PARTS`` name.
    """
    kind = type(backbone)
    described = json.dumps(identity, sort_keys=True, default=str)
    return {
        "backbone": f"{kind.__module__}.{kind.__qualname__} {described}",
        "weights": weights_digest(backbone),
        "image_size": int(image_size),
        "resize": RESIZE_RULE,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "dtype": dtype,
        "flip": bool(flip),
        "images": {
            split: images_entry(paths, Path(root) if root else None)
            for split, paths in splits.items()
        },
    }


def differing_parts(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The parts of ``current`` that ``recorded`` holds otherwise, as a message names them.

    Images are named with the splits whose list, file sizes or modification times differ,
    e.g. ``images (train)``. Parts beyond ``FINGERPRINT_PARTS`` (another cache's, such as a
    prior's) are compared too and named after them, in name order.
    """
    # Parts of other caches' fingerprints (a prior's provider, classes, grid) count too.
    others = sorted((recorded.keys() | current.keys()) - set(FINGERPRINT_PARTS))
    parts = []
    for part in (*FINGERPRINT_PARTS, *others):
        if recorded.get(part) == current.get(part):
            continue
        if part == "images" and isinstance(recorded.get(part), Mapping):
            before, now = recorded[part], current[part]
            splits = sorted(s for s in before.keys() | now.keys() if before.get(s) != now.get(s))
            parts.append(f"images ({', '.join(splits)})")
        else:
            parts.append(part)
    return parts
