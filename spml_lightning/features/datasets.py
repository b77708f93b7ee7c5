"""Datasets that serve cached feature rows in place of images."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["CachedFeatureDataset"]


class CachedFeatureDataset(Dataset):
    """An SPML dataset's rows with cached features instead of images.

    Items are ``{"features", "observed", "target", "index"}`` and the image dataset's
    ``extras`` (a prior's ``pseudo_positive``): the same labels and
    row ``index`` as the image dataset's items (per-sample loss state is keyed by
    it), ``features`` the row of the cache as a float32 (D,) tensor: with ``flipped``,
    the row of the flipped image instead with probability 1/2, drawn from torch's
    random generator as ``RandomHorizontalFlip`` draws (so a seeded loader, such as
    ``ResumableDataLoader``, picks the same copies again). The dataset's
    ``image_paths``, ``observed``, ``targets`` stay readable (a checkpoint's record
    of the training rows is computed from them).

    Args:
        dataset: the image dataset the features were extracted from, in row order
            (``image_paths``, ``observed``, ``targets``, ``evaluate_on``).
        features: its (N, D) cached features (a memory map).
        flipped: the (N, D) features of the flipped images, to serve at random; None: never.

    Raises:
        ValueError: If the features do not have one row per item.
    """

    def __init__(
        self, dataset: Any, features: np.ndarray, flipped: np.ndarray | None = None
    ) -> None:
        if len(features) != len(dataset) or (flipped is not None and len(flipped) != len(dataset)):
            raise ValueError(
                f"{len(features)} cached feature rows for {len(dataset)} images: the cache does "
                "not describe this dataset; extract it again (spml features)."
            )
        self.dataset = dataset
        self.features = features
        self.flipped = flipped
        self.transform = getattr(dataset, "transform", None)

    @property
    def image_paths(self) -> list[str]:
        """The image dataset's paths, in row order."""
        return list(self.dataset.image_paths)

    @property
    def observed(self) -> np.ndarray:
        """The observed labels (N, C)."""
        return self.dataset.observed

    @property
    def targets(self) -> np.ndarray:
        """The full labels (N, C)."""
        return self.dataset.targets

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        evaluated = self.observed if self.dataset.evaluate_on == "observed" else self.targets
        rows = self.features
        if self.flipped is not None and torch.rand(1) < 0.5:
            rows = self.flipped
        item = {
            "features": torch.from_numpy(np.asarray(rows[index], dtype=np.float32)),
            "observed": torch.from_numpy(self.observed[index].astype(np.float32)),
            "target": torch.from_numpy(evaluated[index].astype(np.float32)),
            "index": index,
        }
        # The image dataset's per-row extras (a prior's pseudo-positives) travel along.
        for name, extra in getattr(self.dataset, "extras", {}).items():
            item[name] = torch.from_numpy(np.asarray(extra[index], dtype=np.float32))
        return item
