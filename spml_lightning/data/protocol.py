"""The SPML benchmark protocol: train/val split and single-positive observation.

Every published SPML number (Cole et al., "Multi-Label Learning from Single
Positive Labels", CVPR 2021, and every paper built on their code, GR Loss
included) uses the same split of the official training set and the same
observed single positives. Both are reproduced here bit for bit from their
released code (github.com/elijahcole/single-positive-multi-label:
``generate_split`` in ``datasets.py``, ``preproc/generate_observed_labels.py``),
with numpy only, so that the label matrices are identical to the community's
``formatted_*_labels_obs.npy`` files.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SEED_RANGE", "check_counts", "check_seed", "observe_single_positive", "split_train_val"]

#: The seeds numpy's ``RandomState`` takes: 0 to 2**32 - 1.
SEED_RANGE: tuple[int, int] = (0, 2**32 - 1)


def _as_binary_matrix(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(
            f"labels must be a 2-D (num_images, num_classes) matrix, got shape {labels.shape}."
        )
    if labels.size and not np.isin(labels, (0, 1)).all():
        found = np.unique(labels[~np.isin(labels, (0, 1))])[:5]
        raise ValueError(
            f"labels must contain only 0 and 1, found {found.tolist()}. "
            "Convert -1/+1 or soft labels to {0, 1} first."
        )
    return labels


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or int(value) != value or (value < 0 and value != -1):
        raise ValueError(f"{name} must be a non-negative integer or -1 (all), got {value!r}.")


def check_counts(num_pos: int, num_neg: int) -> None:
    """Refuse observation counts other than a non-negative integer or -1 (all).

    ``num_pos`` 0 is refused too: no image would have an observed positive, so
    there would be nothing to learn.
    """
    _check_count("num_pos", num_pos)
    _check_count("num_neg", num_neg)
    if num_pos == 0:
        raise ValueError(
            "num_pos must be 1 or more positives observed per image, or -1 (all); 0 observes no "
            "positive at all, so there would be nothing to learn."
        )


def check_seed(name: str, value: int) -> None:
    """Refuse a seed numpy's generator does not take, naming the option.

    Args:
        name: the option, as the message names it (``observe_seed``).
        value: its value.

    Raises:
        ValueError: for anything but an integer from 0 to 2**32 - 1.
    """
    low, high = SEED_RANGE
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not (low <= value <= high)
    ):
        raise ValueError(f"{name} must be an integer from {low} to 2**32 - 1, got {value!r}.")


def observe_single_positive(
    labels: np.ndarray, seed: int = 1200, num_pos: int = 1, num_neg: int = 0
) -> np.ndarray:
    """Observe ``num_pos`` random positives (and ``num_neg`` negatives) per row.

    Reproduces the community generator exactly: one ``RandomState(seed)`` for the
    whole matrix; per row in order, the indices of the positives are shuffled and
    the first ``num_pos`` kept, then the indices of the negatives are shuffled
    and the first ``num_neg`` kept. The second shuffle happens even when
    ``num_neg == 0`` because it consumes random state that later rows depend on.

    Args:
        labels: (N, C) full label matrix in {0, 1}.
        seed: seed of the generator (1200 in every published protocol).
        num_pos: positives to observe per row (-1: all).
        num_neg: negatives to observe per row (-1: all).

    Returns:
        (N, C) float64 matrix: 1 observed positive, -1 observed negative, 0 unknown.
        With ``num_neg=0`` this is {0, 1}, byte-identical to the community's
        ``formatted_*_labels_obs.npy`` for the same float64 label matrix. Rows
        without any positive stay all zero.
    """
    labels = _as_binary_matrix(labels)
    check_counts(num_pos, num_neg)
    check_seed("seed", seed)
    signed = np.where(labels == 1, 1.0, -1.0)
    observed = np.zeros(labels.shape, dtype=np.float64)
    rng = np.random.RandomState(seed)
    for i in range(signed.shape[0]):
        for value, count in ((1.0, num_pos), (-1.0, num_neg)):
            idx = np.nonzero(signed[i] == value)[0]
            rng.shuffle(idx)
            if count != -1:
                idx = idx[:count]
            observed[i, idx] = value
    return observed


def split_train_val(
    n: int, val_fraction: float = 0.2, seed: int = 1200
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``n`` rows of the official training set into train and val indices.

    ``n_val = round(val_fraction * n)``; ``perm = RandomState(seed).permutation(n)``;
    train = sorted first ``n - n_val`` entries, val = sorted last ``n_val``.

    Returns:
        (train_idx, val_idx), sorted int64 arrays.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be a positive number of rows, got {n!r}.")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}.")
    check_seed("seed", seed)
    n_val = int(np.round(val_fraction * n))
    perm = np.random.RandomState(seed).permutation(n)
    train_idx = np.sort(perm[: n - n_val])
    val_idx = np.sort(perm[n - n_val :]) if n_val else np.zeros(0, dtype=perm.dtype)
    return train_idx, val_idx
