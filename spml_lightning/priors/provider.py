"""Prior providers: a model that scores every class on every training image, run once, cached.

A provider (``OpenCLIPPrior``, or a subclass of ``PriorProvider`` for another model) says
what it is (``identity``, part of the cache's fingerprint) and loads a ``ClassScorer`` for
the data set's classes. This module does the rest, the same for every provider: each
training image is read, resized to the scorer's square input, with the tiles of an
``n × n`` grid of crops and, with ``flip``, the mirror image's views; the scores go into a
cache with the rules of the feature cache (``spml_lightning.features.store``): a
fingerprint of everything that determines them (the provider, its weights, the classes,
the grid, the flip, each image's path, size and modification time), written atomically,
reused when nothing changed (said in the log), recomputed with the reason otherwise;
under DDP every process scores a share of the images and one writes the cache
(``spml_lightning.features.shared``).
"""

from __future__ import annotations

import abc
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torchvision.transforms import functional as TF
from tqdm.auto import tqdm

from spml_lightning.data.io import load_rgb
from spml_lightning.features.fingerprint import images_entry
from spml_lightning.features.shared import SharedExtraction, shard_name, shared_build
from spml_lightning.features.store import build_or_reuse
from spml_lightning.priors.scores import PriorScores

__all__ = ["PRIOR_CACHE_FOLDER", "ClassScorer", "PriorProvider", "image_views"]

PRIOR_CACHE_FOLDER = Path(".spml_cache") / "priors"
"""Where, inside a data set's root, the prior caches live by default (one folder per provider)."""


@dataclass(frozen=True)
class ClassScorer:
    """A loaded prior model: images in, one score per class out.

    Attributes:
        score: maps a ``(B, 3, S, S)`` normalised batch to ``(B, C)`` scores.
        image_size: S.
        mean: per-channel normalisation mean.
        std: per-channel normalisation standard deviation.
        weights: a digest of the model's weights (part of the fingerprint).
        device: where the batches go.
    """

    score: Any
    image_size: int
    mean: Sequence[float]
    std: Sequence[float]
    weights: str
    device: torch.device


def image_views(image: Image.Image, grid: int, size: int) -> list[Image.Image]:
    """The whole image, then the ``grid × grid`` tiles row by row, each resized to ``size²``.

    Tiles split the image into equal parts (the last row and column take the remainder
    pixels); ``grid`` 0 or 1: the whole image only.
    """
    views = [image]
    if grid >= 2:
        width, height = image.size
        xs = [round(i * width / grid) for i in range(grid + 1)]
        ys = [round(j * height / grid) for j in range(grid + 1)]
        for j in range(grid):
            for i in range(grid):
                box = (xs[i], ys[j], max(xs[i + 1], xs[i] + 1), max(ys[j + 1], ys[j] + 1))
                views.append(image.crop(box))
    return [view.resize((size, size), Image.Resampling.BILINEAR) for view in views]


class PriorProvider(abc.ABC):
    """A model that scores classes on images, computed once per training image and cached.

    Args:
        grid: n of the ``n × n`` grid of crops scored besides the whole image (AEVLP: 4,
            CUB 5); 0: the whole image only.
        flip: also score the mirror image (its views are averaged in by the policies).
        cache_dir: the cache's folder; default ``<data root>/.spml_cache/priors/<name>``.
        batch_size: views per forward pass.
        device: where the model runs (default: a GPU when there is one).
        progress: show a progress bar while scoring.
    """

    def __init__(
        self,
        grid: int = 4,
        flip: bool = True,
        cache_dir: str | None = None,
        batch_size: int = 64,
        device: str | None = None,
        progress: bool = True,
    ) -> None:
        if isinstance(grid, bool) or not isinstance(grid, int) or grid < 0 or grid == 1:
            raise ValueError(f"grid must be 0 (no crops) or a whole number >= 2, got {grid!r}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.grid = grid
        self.flip = flip
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.device = device
        self.progress = progress

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """A short name for the default cache folder (e.g. the model's)."""

    @abc.abstractmethod
    def identity(self) -> dict[str, Any]:
        """What the provider is (JSON-able): model, weights source, prompts; fingerprinted."""

    @abc.abstractmethod
    def load(self, class_names: Sequence[str], device: torch.device) -> ClassScorer:
        """Load the model and prepare it to score ``class_names``."""

    def _device(self) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def cache_path(self, root: str | os.PathLike) -> Path:
        """The cache folder for a data set's ``root``."""
        if self.cache_dir is not None:
            return Path(self.cache_dir).expanduser()
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name)
        return Path(root).expanduser() / PRIOR_CACHE_FOLDER / name

    def scores(
        self,
        image_paths: Sequence[str],
        class_names: Sequence[str],
        root: str | os.PathLike,
        shared: SharedExtraction | None = None,
    ) -> tuple[PriorScores, str]:
        """The scores of ``image_paths`` for ``class_names``: from the cache, or computed into it.

        Args:
            image_paths: the training images, in the training set's row order.
            class_names: the data set's classes.
            root: the data set's folder (where the default cache lives).
            shared: the processes that share the scoring (DDP ranks; every one calls this):
                each scores every ``world_size``-th image, rank 0 writes the cache.

        Returns:
            The scores, and a sentence on where they come from (for the log).
        """
        scorer = self.load(class_names, self._device())
        fingerprint = {
            "provider": f"{type(self).__module__}.{type(self).__qualname__} "
            + json.dumps(self.identity(), sort_keys=True, default=str),
            "weights": scorer.weights,
            "classes": list(class_names),
            "image_size": int(scorer.image_size),
            "mean": [float(m) for m in scorer.mean],
            "std": [float(s) for s in scorer.std],
            "grid": self.grid,
            "flip": bool(self.flip),
            "images": {"train": images_entry(list(image_paths), Path(root).expanduser())},
        }
        num_views = 1 + self.grid * self.grid if self.grid else 1
        names = ["train", "train.flipped"] if self.flip else ["train"]

        def write_rows(
            folder: Path, rows: Sequence[int], part: SharedExtraction | None
        ) -> list[str]:
            shape = (len(rows), num_views, len(class_names))
            arrays = [
                np.lib.format.open_memmap(
                    folder / f"{shard_name(name, part) if part else name}.npy",
                    "w+",
                    np.float32,
                    shape,
                )
                for name in names
            ]
            self._score_all(scorer, [image_paths[row] for row in rows], *arrays)
            for array in arrays:
                array.flush()
            del arrays  # close the maps before the files are checksummed
            return names

        def write(folder: Path) -> list[str]:
            return write_rows(folder, range(len(image_paths)), None)

        def write_share(folder: Path, part: SharedExtraction) -> list[str]:
            return write_rows(folder, part.rows(len(image_paths)), part)

        path = self.cache_path(root)
        naming = {"cache_name": "Prior cache", "contents": "prior scores"}
        if shared is None or shared.world_size == 1:
            cache = build_or_reuse(path, fingerprint, write, **naming)
        else:
            cache = shared_build(
                path, fingerprint, write, write_share, shared, **naming, work="scoring"
            )
        views = np.asarray(cache.features("train"))
        flipped = np.asarray(cache.features("train", flipped=True)) if self.flip else None
        how = "reused" if cache.reused else "computed"
        return PriorScores(views, flipped), f"{type(self).__name__} {self.name} ({how}, {path})"

    @torch.no_grad()
    def _score_all(
        self,
        scorer: ClassScorer,
        image_paths: Sequence[str],
        out: np.ndarray,
        flipped: np.ndarray | None = None,
    ) -> None:
        copies: list[tuple[np.ndarray, bool]] = [(out, False)]
        if flipped is not None:
            copies.append((flipped, True))
        pending: list[Tensor] = []
        targets: list[tuple[np.ndarray, int, int]] = []  # (array, row, view) of each pending

        def run() -> None:
            batch = torch.stack(pending).to(scorer.device)
            result = scorer.score(batch).float().cpu().numpy()
            for (array, row, view), values in zip(targets, result, strict=True):
                array[row, view] = values
            pending.clear()
            targets.clear()

        rows = tqdm(
            enumerate(image_paths),
            total=len(image_paths),
            desc="prior scores",
            disable=not self.progress,
            leave=False,
        )
        for row, path in rows:
            image = load_rgb(path)
            for array, mirrored in copies:
                shown = ImageOps.mirror(image) if mirrored else image
                for view, crop in enumerate(image_views(shown, self.grid, scorer.image_size)):
                    tensor = TF.normalize(TF.to_tensor(crop), list(scorer.mean), list(scorer.std))
                    pending.append(tensor)
                    targets.append((array, row, view))
                    if len(pending) == self.batch_size:
                        run()
        if pending:
            run()
