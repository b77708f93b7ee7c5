"""A prior's per-image class scores: the whole image, a grid of crops, and the mirror image.

Scores are whatever the prior gives per class (an open_clip model's cosine similarities
between the image and each class prompt, or a user's own numbers); the pseudo-labelling
policies (``policies.py``) turn them into pseudo-positives, so that a policy can be
changed without computing the scores again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PriorScores"]


@dataclass(frozen=True)
class PriorScores:
    """Per-image, per-class scores of the training images, in the training set's row order.

    Attributes:
        views: ``(N, V, C)`` float scores: view 0 the whole image, views ``1..n²`` the
            tiles of an ``n × n`` grid of crops, row by row (``V = 1`` without crops).
        flipped: the same of the horizontally flipped images, or None.
    """

    views: np.ndarray
    flipped: np.ndarray | None = None

    def __post_init__(self) -> None:
        views = np.asarray(self.views)
        if views.ndim != 3 or views.shape[1] < 1:
            raise ValueError(
                f"Prior scores must be an (images, views, classes) array, got shape {views.shape}."
            )
        if self.flipped is not None and np.shape(self.flipped) != views.shape:
            raise ValueError(
                f"The flipped images' scores have shape {np.shape(self.flipped)}, the images' "
                f"{views.shape}: they must describe the same images, views and classes."
            )
        if not np.isfinite(views).all() or (
            self.flipped is not None and not np.isfinite(self.flipped).all()
        ):
            raise ValueError("Prior scores must be finite numbers; the scores hold NaN or inf.")
        if self.grid * self.grid + 1 != views.shape[1] and views.shape[1] != 1:
            raise ValueError(
                f"{views.shape[1]} views per image: expected the whole image alone (1) or with "
                "an n x n grid of crops (1 + n²: 5, 10, 17, 26, ...)."
            )

    @property
    def num_images(self) -> int:
        """N."""
        return int(self.views.shape[0])

    @property
    def num_classes(self) -> int:
        """C."""
        return int(self.views.shape[2])

    @property
    def grid(self) -> int:
        """n, the side of the grid of crops (0: the whole image only)."""
        return math.isqrt(int(self.views.shape[1]) - 1)
