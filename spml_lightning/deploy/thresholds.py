"""Per-class decision thresholds from validation scores: the F1-maximising cut of each class.

A deployed multi-label model must say yes or no per class, and one global 0.5
suits few classes of a model trained from single positives (their
probabilities are calibrated to the observed labels, not to the truth). The
threshold of a class is the score at which its F1 on the validation set is
highest when every image scoring at least that much is called positive.
"""

from __future__ import annotations

import numpy as np

__all__ = ["f1_thresholds"]


def f1_thresholds(
    probabilities: np.ndarray, targets: np.ndarray, fallback: float = 0.5
) -> tuple[np.ndarray, list[int]]:
    """The F1-maximising threshold of each class.

    Args:
        probabilities: (N, C) scores of the validation images.
        targets: (N, C) labels in {0, 1} (the full labels where known).
        fallback: the threshold of a class without a positive in ``targets``, whose F1 is 0 at
            every threshold.

    Returns:
        ``(thresholds, without_positive)``: (C,) float64 thresholds (a class is predicted where
        its probability >= its threshold; ties at the best cut are all positive), and the
        columns that had no positive and got ``fallback``.
    """
    scores = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(targets) > 0
    if scores.ndim != 2 or scores.shape != labels.shape:
        raise ValueError(
            f"probabilities {scores.shape} and targets {labels.shape} must both be (N, C)."
        )
    thresholds = np.full(scores.shape[1], fallback, dtype=np.float64)
    without_positive = []
    for column in range(scores.shape[1]):
        positives = int(labels[:, column].sum())
        if positives == 0:
            without_positive.append(column)
            continue
        order = np.argsort(-scores[:, column], kind="stable")
        ranked = scores[order, column]
        true_positives = np.cumsum(labels[order, column])
        called = np.arange(1, len(ranked) + 1)
        f1 = 2 * true_positives / (called + positives)
        # Only cuts between different scores are thresholds: a tie is called as one.
        distinct = np.append(ranked[1:] != ranked[:-1], True)
        best = int(np.argmax(np.where(distinct, f1, -1.0)))
        thresholds[column] = ranked[best]
    return thresholds, without_positive
