"""The GR Loss paper's diagnostics (Chen et al., IJCAI 2024) as pure functions of arrays.

Everything here takes the model's probabilities ``p`` (N, C), the observed
labels (N, C; 1 observed positive, 0 unknown, -1 observed negative) and the
full labels (N, C) of the same images, and returns numbers -- no model, no
Lightning, no plotting (``plots.py`` draws these, ``analysis.py`` feeds them
from a checkpoint). An *unknown* entry is one with observed label 0; among
them the truly positive ones are the false negatives (FN) an assume-negative
loss would train on, the truly negative ones the true negatives (TN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ClassStatistics",
    "DistinguishingAbility",
    "FalseNegativeRate",
    "class_statistics",
    "distinguishing_ability",
    "false_negative_rate",
    "unknown_mask",
    "wasserstein_distance",
]


def _as_matrices(*arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays as numpy matrices of one common (N, C) shape."""
    matrices = [np.asarray(a.detach().cpu() if hasattr(a, "detach") else a) for a in arrays]
    shapes = {m.shape for m in matrices}
    if len(shapes) != 1 or matrices[0].ndim != 2:
        raise ValueError(
            "Expected (num_images, num_classes) matrices of one shape, got shapes "
            f"{[m.shape for m in matrices]}."
        )
    return matrices


def unknown_mask(observed: np.ndarray) -> np.ndarray:
    """Boolean (N, C) mask of the unknown entries (observed label 0)."""
    return np.asarray(observed) == 0


@dataclass(frozen=True)
class ClassStatistics:
    """Per-class label counts of one split, as in the paper's class statistics.

    Attributes:
        positives: (C,) images where the class is truly present.
        missing_positives: (C,) of those, the ones whose positive label is not
            observed (unknown in the training labels).
        images: number of images of the split (the same for every class).
    """

    positives: np.ndarray
    missing_positives: np.ndarray
    images: int


def class_statistics(targets: np.ndarray, observed: np.ndarray) -> ClassStatistics:
    """Count positives and missing positives of every class.

    Args:
        targets: (N, C) full labels in {0, 1}.
        observed: (N, C) observed labels (1 observed positive, 0 unknown, -1 observed negative).

    Returns:
        The counts.
    """
    targets, observed = _as_matrices(targets, observed)
    positive = targets > 0.5
    return ClassStatistics(
        positives=positive.sum(axis=0).astype(np.int64),
        missing_positives=(positive & unknown_mask(observed)).sum(axis=0).astype(np.int64),
        images=int(targets.shape[0]),
    )


@dataclass(frozen=True)
class FalseNegativeRate:
    """The empirical P(y = 1 | unknown, p) per confidence bin.

    Attributes:
        edges: (bins + 1,) bin edges on the shared range [0, 1].
        centers: (bins,) bin centres.
        false_negatives: (bins,) unknown entries that are truly positive.
        true_negatives: (bins,) unknown entries that are truly negative.
        rate: (bins,) FN / (FN + TN); NaN in bins holding no unknown entry
            (there is nothing to estimate there; plots leave them out).
    """

    edges: np.ndarray
    centers: np.ndarray
    false_negatives: np.ndarray
    true_negatives: np.ndarray
    rate: np.ndarray


def false_negative_rate(
    probabilities: np.ndarray, observed: np.ndarray, targets: np.ndarray, bins: int = 100
) -> FalseNegativeRate:
    """FN/(FN+TN) of the unknown entries per bin of p (the GR Loss paper's Fig. 5).

    The bins split the SHARED range [0, 1] into ``bins`` equal parts (the
    last one closed, so p = 1 counts), whatever range the scores cover, so
    curves of different checkpoints line up bin for bin.

    Args:
        probabilities: (N, C) predicted probabilities in [0, 1].
        observed: (N, C) observed labels; only entries equal to 0 count.
        targets: (N, C) full labels in {0, 1}.
        bins: number of bins.

    Returns:
        Counts and rate per bin.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}.")
    probabilities, observed, targets = _as_matrices(probabilities, observed, targets)
    unknown = unknown_mask(observed)
    p = probabilities[unknown].astype(np.float64)
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError("probabilities must lie in [0, 1]; pass sigmoid(logits), not logits.")
    is_positive = targets[unknown] > 0.5
    edges = np.linspace(0.0, 1.0, bins + 1)
    false_negatives = np.histogram(p[is_positive], bins=edges)[0]
    true_negatives = np.histogram(p[~is_positive], bins=edges)[0]
    total = false_negatives + true_negatives
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(total > 0, false_negatives / np.maximum(total, 1), np.nan)
    return FalseNegativeRate(
        edges=edges,
        centers=(edges[:-1] + edges[1:]) / 2,
        false_negatives=false_negatives,
        true_negatives=true_negatives,
        rate=rate,
    )


def wasserstein_distance(u: np.ndarray, v: np.ndarray) -> float:
    """Exact 1-D Wasserstein-1 distance between two samples: ∫ |F_u(x) - F_v(x)| dx.

    The empirical CDFs are step functions, so the integral is a finite sum
    over the pooled sorted values (the same definition as
    ``scipy.stats.wasserstein_distance`` without weights).

    Args:
        u: First sample (any shape; flattened).
        v: Second sample.

    Returns:
        The distance, >= 0.

    Raises:
        ValueError: If a sample is empty.
    """
    u = np.sort(np.asarray(u, dtype=np.float64).ravel())
    v = np.sort(np.asarray(v, dtype=np.float64).ravel())
    if u.size == 0 or v.size == 0:
        raise ValueError(f"Both samples need values; got {u.size} and {v.size}.")
    pooled = np.sort(np.concatenate([u, v]))
    widths = np.diff(pooled)
    cdf_u = np.searchsorted(u, pooled[:-1], side="right") / u.size
    cdf_v = np.searchsorted(v, pooled[:-1], side="right") / v.size
    return float(np.sum(np.abs(cdf_u - cdf_v) * widths))


@dataclass(frozen=True)
class DistinguishingAbility:
    """How well the scores separate unknown positives from unknown negatives.

    Attributes:
        positive: p of the unknown entries that are truly positive (FN).
        negative: p of the unknown entries that are truly negative (TN).
        wasserstein: Wasserstein-1 distance between the two (larger separates
            better); NaN when one of the two groups is empty.
    """

    positive: np.ndarray
    negative: np.ndarray
    wasserstein: float


def distinguishing_ability(
    probabilities: np.ndarray, observed: np.ndarray, targets: np.ndarray
) -> DistinguishingAbility:
    """Split the unknown entries' p by their true label (the paper's distinguishing ability).

    Args:
        probabilities: (N, C) predicted probabilities.
        observed: (N, C) observed labels; only entries equal to 0 count.
        targets: (N, C) full labels.

    Returns:
        The two samples and their Wasserstein distance.
    """
    probabilities, observed, targets = _as_matrices(probabilities, observed, targets)
    unknown = unknown_mask(observed)
    p = probabilities[unknown].astype(np.float64)
    is_positive = targets[unknown] > 0.5
    positive, negative = p[is_positive], p[~is_positive]
    distance = (
        wasserstein_distance(positive, negative)
        if positive.size and negative.size
        else float("nan")
    )
    return DistinguishingAbility(positive=positive, negative=negative, wasserstein=distance)
