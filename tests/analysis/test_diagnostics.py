"""SPML diagnostics against hand-computed cases and scipy."""

import numpy as np
import pytest

from spml_lightning.analysis.diagnostics import (
    class_statistics,
    distinguishing_ability,
    false_negative_rate,
    unknown_mask,
    wasserstein_distance,
)

# Three images, three classes. Observed: 1 observed positive, 0 unknown, -1 observed negative.
TARGETS = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]])
OBSERVED = np.array([[1, 0, 0], [0, 1, 0], [1, 0, -1]])


def test_class_statistics_by_hand():
    stats = class_statistics(TARGETS, OBSERVED)
    # class 0: positives in rows 0 and 2, both observed. class 1: rows 0 (unknown) and 1 (observed).
    # class 2: rows 1 (unknown) and 2 (observed NEGATIVE -1, so not missing).
    np.testing.assert_array_equal(stats.positives, [2, 2, 2])
    np.testing.assert_array_equal(stats.missing_positives, [0, 1, 1])
    assert stats.images == 3


def test_unknown_means_observed_zero_only():
    np.testing.assert_array_equal(unknown_mask(OBSERVED), OBSERVED == 0)
    assert unknown_mask(OBSERVED).sum() == 5


def test_false_negative_rate_by_hand():
    probs = np.array([[0.90, 0.10, 0.30], [0.00, 0.50, 0.26], [0.70, 1.00, 0.99]])
    # Unknown entries (observed 0): (0,1) p=.10 y=1; (0,2) p=.30 y=0; (1,0) p=0 y=0;
    # (1,2) p=.26 y=1; (2,1) p=1.0 y=0. Entry (2,2) is an observed negative: excluded.
    # Bins of width 0.25 on [0, 1]: [0,.25) [.25,.5) [.5,.75) [.75,1].
    curve = false_negative_rate(probs, OBSERVED, TARGETS, bins=4)
    np.testing.assert_allclose(curve.edges, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.centers, [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_array_equal(curve.false_negatives, [1, 1, 0, 0])
    np.testing.assert_array_equal(
        curve.true_negatives, [1, 1, 0, 1]
    )  # p = 1.0 lands in the last bin
    np.testing.assert_allclose(curve.rate, [0.5, 0.5, np.nan, 0.0])  # empty bin: NaN


def test_false_negative_rate_uses_the_shared_range_whatever_the_scores():
    rng = np.random.default_rng(0)
    probs = rng.uniform(0.4, 0.45, size=(50, 4))
    targets = rng.integers(0, 2, size=(50, 4))
    curve = false_negative_rate(probs, np.zeros_like(targets), targets)
    assert len(curve.rate) == 100
    np.testing.assert_allclose(curve.edges, np.linspace(0, 1, 101))
    filled = ~np.isnan(curve.rate)
    np.testing.assert_array_equal(np.flatnonzero(filled), [40, 41, 42, 43, 44])  # [0.40, 0.45) only
    assert (
        curve.false_negatives.sum() == targets.sum()
        and curve.true_negatives.sum() == (1 - targets).sum()
    )
    assert ((curve.rate[filled] >= 0) & (curve.rate[filled] <= 1)).all()


def test_false_negative_rate_rejects_logits():
    with pytest.raises(ValueError, match="sigmoid"):
        false_negative_rate(np.array([[3.0]]), np.array([[0]]), np.array([[1]]))
    with pytest.raises(ValueError, match="bins"):
        false_negative_rate(np.array([[0.3]]), np.array([[0]]), np.array([[1]]), bins=0)


def test_wasserstein_hand_cases():
    assert wasserstein_distance([0.0], [1.0]) == pytest.approx(1.0)
    assert wasserstein_distance([0.0, 1.0], [0.5]) == pytest.approx(0.5)
    assert wasserstein_distance([0.2, 0.4], [0.4, 0.2]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="need values"):
        wasserstein_distance([], [0.5])


def test_wasserstein_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for n, m in ((1, 7), (50, 300), (200, 13)):
        u, v = rng.beta(2, 5, n), rng.beta(3, 2, m)
        assert wasserstein_distance(u, v) == pytest.approx(
            scipy_stats.wasserstein_distance(u, v), rel=1e-12
        )


def test_distinguishing_ability_splits_unknown_entries_by_truth():
    probs = np.array([[0.9, 0.1, 0.3], [0.0, 0.5, 0.26], [0.7, 1.0, 0.99]])
    result = distinguishing_ability(probs, OBSERVED, TARGETS)
    np.testing.assert_allclose(np.sort(result.positive), [0.1, 0.26])
    np.testing.assert_allclose(np.sort(result.negative), [0.0, 0.3, 1.0])
    # Hand-computed: CDF gap integrated over the pooled values 0, .1, .26, .3, 1.
    expected = (1 / 3) * 0.1 + (1 / 2 - 1 / 3) * 0.16 + (1 - 1 / 3) * 0.04 + (1 - 2 / 3) * 0.7
    assert result.wasserstein == pytest.approx(expected)


def test_distinguishing_ability_without_unknown_positives_is_nan():
    result = distinguishing_ability(np.array([[0.9, 0.2]]), np.array([[1, 0]]), np.array([[1, 0]]))
    assert result.positive.size == 0 and np.isnan(result.wasserstein)
