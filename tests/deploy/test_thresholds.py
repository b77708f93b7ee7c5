"""The F1-maximising thresholds, against a brute-force search with scikit-learn's F1."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from spml_lightning.deploy.thresholds import f1_thresholds


def test_each_threshold_reaches_the_best_f1_any_threshold_reaches():
    rng = np.random.default_rng(0)
    targets = rng.random((60, 6)) < 0.3
    # Informative scores, rounded so that ties occur, and one class scored at random.
    scores = np.round(np.clip(targets * 0.3 + rng.random((60, 6)) * 0.7, 0, 1), 2)
    scores[:, 5] = np.round(rng.random(60), 1)
    thresholds, without_positive = f1_thresholds(scores, targets)
    assert without_positive == []
    for c in range(6):
        best = max(f1_score(targets[:, c], scores[:, c] >= t) for t in np.unique(scores[:, c]))
        assert f1_score(targets[:, c], scores[:, c] >= thresholds[c]) == pytest.approx(best)
        assert thresholds[c] in scores[:, c]


def test_a_class_without_a_positive_gets_the_fallback():
    scores = np.array([[0.9, 0.2], [0.1, 0.8], [0.4, 0.3]])
    targets = np.array([[1, 0], [0, 0], [0, 0]])
    thresholds, without_positive = f1_thresholds(scores, targets, fallback=0.7)
    assert without_positive == [1]
    np.testing.assert_array_equal(thresholds, [0.9, 0.7])


def test_shapes_must_agree():
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        f1_thresholds(np.zeros((3, 2)), np.zeros((3, 3)))
