"""The extraction pass: a frozen backbone's features of every image of every split, cached once.

The backbone runs in eval mode (batch norm on its running statistics, no
dropout), without gradients, in float32, on the images read with the evaluation
transform (resize to a square, normalise; no random flip). With ``flip`` a
horizontally flipped copy of each image is run too: the flip training's
augmentation applies, to the same resized image, so a features mode can pick
either copy at random. Rows follow the datasets' row order, so row ``i`` of a
split's array is item ``i`` of its dataset. The arrays are written straight into
memory-mapped ``.npy`` files of the cache (``store.py``), never held whole in memory.

Several processes (DDP ranks) share one extraction (``SharedExtraction``, ``shared.py``):
each runs the backbone over every ``world_size``-th image of each split, from its
``rank``, into a float32 shard next to the cache; rank 0 then interleaves the shards into
the cache (taking the cache's lock, writing atomically) and the others reuse it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from spml_lightning.backbones import pooled_features
from spml_lightning.data.transforms import reference_transform, with_transform
from spml_lightning.features.fingerprint import feature_fingerprint
from spml_lightning.features.shared import SharedExtraction, shard_name, shared_build
from spml_lightning.features.store import CachedFeatures, build_or_reuse

__all__ = [
    "CACHE_FOLDER",
    "FEATURE_DTYPES",
    "FeatureOptions",
    "SharedExtraction",
    "cached_features",
    "datamodule_features",
    "default_cache_dir",
]

FEATURE_DTYPES: tuple[str, ...] = ("float16", "float32")
"""The dtypes a cache stores its features in."""

CACHE_FOLDER = Path(".spml_cache") / "features"
"""Where, inside a data set's root, the feature caches live by default (one folder per backbone)."""

#: The splits of a datamodule that are cached, in order.
_SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class FeatureOptions:
    """How features are cached (``spml features --cache.*``).

    Attributes:
        dir: the cache folder; default ``<data root>/.spml_cache/features/<backbone>``.
        dtype: ``float16`` (half the disk and memory; the default) or ``float32``
            (the backbone's outputs exactly).
        flip: also store the features of each image flipped horizontally; default (None):
            when the datamodule augments its training images (``train_augment``), as a
            cached-features fit then serves either copy at random.
    """

    dir: str | None = None
    dtype: Literal["float16", "float32"] = "float16"
    flip: bool | None = None

    def __post_init__(self) -> None:
        if self.dtype not in FEATURE_DTYPES:
            raise ValueError(
                f"--cache.dtype {self.dtype!r}: the features are stored as "
                f"{' or '.join(FEATURE_DTYPES)}."
            )


def default_cache_dir(root: str | os.PathLike, backbone: Any) -> Path:
    """``<root>/.spml_cache/features/<backbone name>``: one cache per backbone of a data set.

    Args:
        root: the data set's folder.
        backbone: the backbone as its config records it: a name (``resnet50``,
            ``timm/convnext_atto``) or ``{"class_path": ..., ...}``.
    """
    if isinstance(backbone, Mapping):
        name = str(backbone.get("class_path", "backbone")).rpartition(".")[2]
    else:
        name = str(backbone if isinstance(backbone, str) else type(backbone).__name__)
    return Path(root).expanduser() / CACHE_FOLDER / re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


@torch.no_grad()
def _extract(
    backbone: nn.Module,
    feature_dim: int,
    dataset: Dataset,
    out: np.ndarray,
    flipped_out: np.ndarray | None,
    *,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    progress: str | None,
) -> None:
    """Write the pooled features of ``dataset``'s images (and of their mirror images)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    row = 0
    for batch in tqdm(loader, desc=progress, disable=progress is None, leave=False):
        images = batch["image"].to(device)
        rows = slice(row, row + len(images))
        out[rows] = pooled_features(backbone(images), feature_dim).float().cpu().numpy()
        if flipped_out is not None:
            mirrored = backbone(torch.flip(images, dims=[-1]))
            flipped_out[rows] = pooled_features(mirrored, feature_dim).float().cpu().numpy()
        row += len(images)


def cached_features(
    backbone: nn.Module,
    feature_dim: int,
    splits: Mapping[str, Any],
    *,
    identity: Any,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    cache_dir: str | os.PathLike,
    dtype: str = "float16",
    flip: bool = False,
    root: str | os.PathLike | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
    shared: SharedExtraction | None = None,
) -> CachedFeatures:
    """The features of ``backbone`` on every split's images: from the cache, or extracted into it.

    Args:
        backbone: maps (B, 3, S, S) images to (B, D) features or a (B, D, H, W) map
            (averaged over H and W, as ``SPMLModule`` does).
        feature_dim: D.
        splits: name -> SPML dataset (items ``{"image", ...}``, ``image_paths``), in row order.
        identity: what the backbone is, as its config records it (part of the fingerprint).
        image_size: side of the square the images are resized to.
        mean: per-channel normalisation mean.
        std: per-channel normalisation standard deviation.
        cache_dir: the cache folder.
        dtype: ``float16`` or ``float32``.
        flip: also cache the features of the horizontally flipped images.
        root: the data set's folder (image paths count relative to it in the fingerprint).
        batch_size: images per forward pass.
        num_workers: loader worker processes.
        device: where the backbone runs (default: where its parameters are).
        progress: show a progress bar (with an estimated time) per split.
        shared: the processes that share the extraction, when several call this together
            (every one of them must); None: this process alone.
    """
    if dtype not in FEATURE_DTYPES:
        raise ValueError(f"dtype must be {' or '.join(FEATURE_DTYPES)}, got {dtype!r}.")
    fingerprint = feature_fingerprint(
        backbone=backbone,
        identity=identity,
        image_size=image_size,
        mean=mean,
        std=std,
        dtype=dtype,
        flip=flip,
        splits={name: dataset.image_paths for name, dataset in splits.items()},
        root=root,
    )
    transform = reference_transform(image_size, False, mean, std)

    target = torch.device(device) if device is not None else _device_of(backbone)

    def extract(folder: Path, part: SharedExtraction | None = None) -> list[str]:
        """Write every split's features (``part``: its rows, as float32 ``.rank<k>`` shards)."""
        array_dtype = "float32" if part is not None else dtype
        names: list[str] = []
        with _evaluating(backbone, target) as moved:
            for name, dataset in splits.items():
                rows = part.rows(len(dataset)) if part is not None else range(len(dataset))
                arrays = {
                    kind: np.lib.format.open_memmap(
                        folder / f"{shard_name(kind, part) if part else kind}.npy",
                        "w+",
                        array_dtype,
                        (len(rows), feature_dim),
                    )
                    for kind in ([name, f"{name}.flipped"] if flip else [name])
                }
                images = with_transform(dataset, transform)
                _extract(
                    moved,
                    feature_dim,
                    images if part is None else Subset(images, rows),
                    arrays[name],
                    arrays.get(f"{name}.flipped"),
                    batch_size=batch_size,
                    num_workers=num_workers,
                    device=target,
                    progress=f"features {shard_name(name, part) if part else name}"
                    if progress
                    else None,
                )
                for array in arrays.values():
                    array.flush()
                names += list(arrays)
                del arrays  # close the maps before the files are checksummed
        return names

    def write(folder: Path) -> list[str]:
        return extract(folder, None)

    if shared is None or shared.world_size == 1:
        return build_or_reuse(cache_dir, fingerprint, write)
    return shared_build(
        Path(cache_dir).expanduser(), fingerprint, write, extract, shared, dtype=dtype
    )


@contextlib.contextmanager
def _evaluating(backbone: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """The backbone on ``device`` in eval mode; its train/eval mode restored afterwards."""
    was_training = backbone.training
    try:
        yield backbone.to(device).eval()
    finally:
        backbone.train(was_training)


def _device_of(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def datamodule_features(
    model: Any,
    datamodule: Any,
    options: FeatureOptions = FeatureOptions(),
    device: torch.device | str | None = None,
    progress: bool = False,
    shared: SharedExtraction | None = None,
) -> CachedFeatures:
    """The cached features of an ``SPMLModule``'s backbone on a set-up ``SPMLDataModule``.

    Every split the datamodule has set up (``train``, ``val``, ``test``), read with its
    preprocessing (``image_size``, ``mean``, ``std``), in its batch size and workers.

    Args:
        model: has ``backbone``, ``head`` (its ``in_features`` is D) and ``hparams.backbone``.
        datamodule: set up for the splits to cache (``setup("fit")``, ``setup("test")``).
        options: where and how (``FeatureOptions``).
        device: where the backbone runs (default: where its parameters are).
        progress: show a progress bar per split.
        shared: the processes that share the extraction (DDP ranks; every one calls this).
    """
    splits = {
        name: dataset
        for name in _SPLITS
        if (dataset := getattr(datamodule, f"{name}_dataset", None)) is not None
    }
    if not splits:
        raise RuntimeError(
            f"{type(datamodule).__name__} has no split set up: call setup('fit') and "
            "setup('test') before extracting features."
        )
    root = getattr(datamodule, "root", None)
    identity = model.hparams.get("backbone")
    if options.dir is not None:
        cache_dir = Path(options.dir).expanduser()
    elif root is not None:
        cache_dir = default_cache_dir(root, identity)
    else:
        raise ValueError(
            f"{type(datamodule).__name__} has no root folder to keep the feature cache in: "
            "pass one (spml features: --cache.dir; a fit: --model.feature_dir)."
        )
    preprocessing = datamodule.preprocessing
    flip = (
        options.flip
        if options.flip is not None
        else bool(getattr(datamodule, "train_augment", False))
    )
    return cached_features(
        model.backbone,
        model.head.in_features,
        splits,
        identity=identity,
        image_size=preprocessing["image_size"],
        mean=preprocessing["mean"],
        std=preprocessing["std"],
        cache_dir=cache_dir,
        dtype=options.dtype,
        flip=flip,
        root=root,
        batch_size=datamodule.batch_size,
        num_workers=datamodule.num_workers,
        device=device,
        progress=progress,
        shared=shared,
    )
