"""The prior's quality against the full labels, and priors of a chosen quality."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from spml_lightning.metrics import mean_average_precision
from spml_lightning.priors import prior_quality
from spml_lightning.priors.synthetic import noisy_scores


def test_quality_counts_pseudo_positives_per_class_and_missed_observed_positives():
    targets = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 0, 0]])
    observed = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]])
    proposed = np.array([[0, 1, 1], [1, 0, 1], [0, 0, 1], [1, 0, 0]])
    scores = np.array([[0.9, 0.8, 0.7], [0.6, 0.1, 0.9], [0.2, 0.3, 0.8], [0.7, 0.2, 0.1]])
    quality = prior_quality(scores, proposed, observed, targets, ["a", "b", "c"])
    # Pseudo-positives: (0,1) true, (0,2) false, (1,0) true, (2,2) true.
    np.testing.assert_array_equal(quality.pseudo_positives, [1, 1, 2])
    np.testing.assert_array_equal(quality.true_pseudo_positives, [1, 1, 1])
    np.testing.assert_array_equal(quality.missing_positives, [1, 1, 1])
    assert quality.precision == pytest.approx(75.0) and quality.recall == pytest.approx(100.0)
    # Observed positives (0,0) and (2,1) are not proposed.
    assert (quality.observed_positives, quality.missed_observed) == (4, 2)
    expected_ap = [100 * average_precision_score(targets[:, c], scores[:, c]) for c in range(3)]
    np.testing.assert_allclose(quality.average_precision, expected_ap)
    rows = quality.per_class()
    assert rows[2]["precision"] == pytest.approx(50.0) and rows[0]["recall"] == 100.0
    assert "missed 2 of the 4 observed positives" in quality.summary()


def test_no_pseudo_positive_gives_an_undefined_precision_not_a_division_error():
    quality = prior_quality(
        np.array([[0.1, 0.9]]), np.zeros((1, 2)), np.array([[0, 1]]), np.array([[1, 1]]), "ab"
    )
    assert math.isnan(quality.precision) and quality.recall == 0.0


@pytest.mark.parametrize("wanted", [60.0, 80.0, 95.0])
def test_noisy_scores_reach_the_map_asked_for(wanted):
    rng = np.random.default_rng(1)
    targets = (rng.random((300, 6)) < 0.3).astype(np.float64)
    scores, reached = noisy_scores(targets, wanted, seed=2, tolerance=0.5)
    measured = float(mean_average_precision(torch.from_numpy(scores), torch.tensor(targets)))
    assert abs(measured - wanted) <= 0.5 and measured == pytest.approx(reached, abs=1e-3)
    assert scores.shape == targets.shape and ((0 < scores) & (scores < 1)).all()
    with pytest.raises(ValueError, match="out of reach"):
        noisy_scores(targets, 100.0)
