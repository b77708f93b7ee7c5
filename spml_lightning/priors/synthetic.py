"""Priors of a chosen quality, made from the full labels with noise (for controlled experiments).

No vision-language weights are needed to ask "from what prior quality on does a prior
pay?": scores ``y + σ·ε`` (``y`` the full labels, ``ε`` standard normal noise drawn with
a seed) rank the labels with an mAP that falls as ``σ`` grows; :func:`noisy_scores`
finds the ``σ`` that gives the mAP asked for (bisection on the measured mAP) and returns
the scores as probabilities (``sigmoid``), ready for a ``threshold`` or ``top_k`` policy
with ``temperature: null`` (``bench/prior_quality.py``).
"""

from __future__ import annotations

import numpy as np
import torch

from spml_lightning.metrics import mean_average_precision

__all__ = ["noisy_scores"]


def _scores(targets: np.ndarray, noise: np.ndarray, sigma: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(4 * (targets - 0.5) + sigma * noise)))


def _map(scores: np.ndarray, targets: np.ndarray) -> float:
    return float(mean_average_precision(torch.from_numpy(scores), torch.from_numpy(targets)))


def noisy_scores(
    targets: np.ndarray, target_map: float, seed: int = 0, tolerance: float = 0.25
) -> tuple[np.ndarray, float]:
    """``(N, C)`` scores whose mAP against ``targets`` is ``target_map`` (within ``tolerance``).

    Args:
        targets: ``(N, C)`` full labels in {0, 1}; every class needs a positive and a negative.
        target_map: the mAP x 100 wanted, strictly between chance and 100.
        seed: the noise's seed.
        tolerance: how close (mAP points) the result must come.

    Returns:
        The scores (probabilities) and their measured mAP.

    Raises:
        ValueError: If the mAP cannot be reached (at or below chance, or 100).
    """
    targets = (np.asarray(targets) > 0).astype(np.float64)
    if not (targets.any(axis=0).all() and (~targets.astype(bool)).any(axis=0).all()):
        raise ValueError("Every class needs a positive and a negative image to rank.")
    noise = np.random.default_rng(seed).standard_normal(targets.shape)
    low, high = 0.0, 1.0
    while _map(_scores(targets, noise, high), targets) > target_map:
        high *= 2
        if high > 1e6:
            raise ValueError(f"No noise level brings the mAP down to {target_map}.")
    if _map(_scores(targets, noise, 1e-9), targets) < target_map or target_map >= 100:
        raise ValueError(f"An mAP of {target_map} is out of reach (100 is the most).")
    for _ in range(60):
        sigma = (low + high) / 2
        reached = _map(_scores(targets, noise, sigma), targets)
        if abs(reached - target_map) <= tolerance:
            return _scores(targets, noise, sigma).astype(np.float32), reached
        low, high = (sigma, high) if reached > target_map else (low, sigma)
    raise ValueError(
        f"No noise level gives an mAP within {tolerance} of {target_map} on these labels (too "
        "few images for so fine a tolerance); raise the tolerance."
    )
