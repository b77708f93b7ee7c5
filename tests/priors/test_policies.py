"""Pseudo-labelling policies on hand-made scores: each rule, and what a policy refuses."""

from __future__ import annotations

import numpy as np
import pytest

from spml_lightning.priors import PriorScores, PseudoLabelPolicy
from spml_lightning.priors.policies import aggregated_scores


def scores(*rows: list[float]) -> PriorScores:
    """Whole-image scores only: one row per image."""
    return PriorScores(np.asarray(rows, dtype=np.float32)[:, None, :])


OBSERVED = np.array([[1, 0, 0, 0], [0, 0, 0, 1]])


def test_threshold_takes_every_class_at_or_above_it_and_never_an_observed_positive():
    prior = scores([0.9, 0.5, 0.2, 0.7], [0.1, 0.6, 0.49, 0.95])
    policy = PseudoLabelPolicy(kind="threshold", threshold=0.5, temperature=None)
    np.testing.assert_array_equal(
        policy.pseudo_positives(prior, OBSERVED), [[0, 1, 0, 1], [0, 1, 0, 0]]
    )
    # The proposals keep the observed positive the policy also proposes.
    np.testing.assert_array_equal(policy.proposals(prior, OBSERVED), [[1, 1, 0, 1], [0, 1, 0, 1]])


def test_top_k_keeps_the_k_best_above_the_threshold():
    prior = scores([0.9, 0.8, 0.7, 0.6], [0.1, 0.2, 0.3, 0.95])
    policy = PseudoLabelPolicy(kind="top_k", threshold=0.25, k=2, temperature=None)
    # Row 0: top 2 are classes 0 (observed) and 1; row 1: classes 3 (observed) and 2.
    np.testing.assert_array_equal(
        policy.pseudo_positives(prior, OBSERVED), [[0, 1, 0, 0], [0, 0, 1, 0]]
    )


def test_vlpl_thresholds_the_softmax_with_temperature_strictly():
    similarities = np.array([[0.30, 0.29, 0.10, 0.00]], dtype=np.float32)
    prior = PriorScores(similarities[:, None, :])
    observed = np.array([[0, 0, 0, 1]])
    soft = np.exp(similarities[0] / 0.01) / np.exp(similarities[0] / 0.01).sum()
    assert soft[0] > 0.5 and 0.2 < soft[1] < 0.3
    policy = PseudoLabelPolicy(kind="vlpl", threshold=0.3, temperature=0.01)
    np.testing.assert_array_equal(policy.pseudo_positives(prior, observed), [[1, 0, 0, 0]])
    lower = PseudoLabelPolicy(kind="vlpl", threshold=0.2, temperature=0.01)
    np.testing.assert_array_equal(lower.pseudo_positives(prior, observed), [[1, 1, 0, 0]])
    # Without the softmax the raw similarities would pass no threshold of 0.3.
    raw = PseudoLabelPolicy(kind="threshold", threshold=0.3, temperature=None)
    np.testing.assert_array_equal(raw.pseudo_positives(prior, observed), [[1, 0, 0, 0]])
    assert float(soft[1]) != pytest.approx(similarities[0, 1])


def test_aevlp_aggregates_with_the_crop_maximum_above_the_adaptive_threshold_else_minimum():
    # One image, 3 classes, a 2 x 2 grid: views = whole image + 4 tiles (probabilities).
    whole = [0.5, 0.3, 0.2]
    tiles = [[0.6, 0.05, 0.35], [0.5, 0.1, 0.4], [0.55, 0.15, 0.3], [0.45, 0.2, 0.35]]
    prior = PriorScores(np.asarray([[whole, *tiles]], dtype=np.float32))
    observed = np.array([[1, 0, 0]])
    # η = min(s_observed = 0.5, eta): eta 0.3 -> η 0.3; class 1's max 0.2 <= η takes the
    # min 0.05, class 2's max 0.4 > η takes it.
    got = aggregated_scores(prior, observed, temperature=None, eta=0.3)
    np.testing.assert_allclose(got, [[0.5 * (0.5 + 0.6), 0.5 * (0.3 + 0.05), 0.5 * (0.2 + 0.4)]])
    # eta 0.1 -> η 0.1: class 1's max 0.2 > η now counts.
    got = aggregated_scores(prior, observed, temperature=None, eta=0.1)
    np.testing.assert_allclose(got[0, 1], 0.5 * (0.3 + 0.2))
    # The observed positive's score caps η: eta 0.9 -> η = s_observed = 0.5, so every
    # class whose crops stay at or below 0.5 takes its minimum.
    got = aggregated_scores(prior, observed, temperature=None, eta=0.9)
    np.testing.assert_allclose(got, [[0.5 * (0.5 + 0.6), 0.5 * (0.3 + 0.05), 0.5 * (0.2 + 0.3)]])
    policy = PseudoLabelPolicy(kind="aevlp", threshold=0.3, k=3, temperature=None, eta=0.3)
    np.testing.assert_array_equal(policy.pseudo_positives(prior, observed), [[0, 0, 1]])
    policy = PseudoLabelPolicy(kind="aevlp", threshold=0.1, k=2, temperature=None, eta=0.3)
    np.testing.assert_array_equal(policy.pseudo_positives(prior, observed), [[0, 0, 1]])


def test_the_mirror_images_scores_are_averaged_in_after_the_softmax():
    views = np.array([[[0.02, 0.0, 0.0]]], dtype=np.float32)
    mirror = np.array([[[0.0, 0.02, 0.0]]], dtype=np.float32)
    prior = PriorScores(views, mirror)
    policy = PseudoLabelPolicy(kind="threshold", threshold=0.4, temperature=0.01)
    # Alone, the image proposes class 0 only (softmax 0.78); with its mirror classes 0
    # and 1 each average (0.78 + 0.106) / 2 = 0.44.
    np.testing.assert_array_equal(
        policy.pseudo_positives(PriorScores(views), np.zeros((1, 3))), [[1, 0, 0]]
    )
    np.testing.assert_array_equal(policy.pseudo_positives(prior, np.zeros((1, 3))), [[1, 1, 0]])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kind="nearest"), "prior_policy.kind"),
        (dict(kind="vlpl", temperature=None), "temperature"),
        (dict(k=0), "prior_policy.k"),
        (dict(temperature=0.0), "temperature must be > 0"),
    ],
)
def test_bad_policies_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PseudoLabelPolicy(**kwargs)


def test_aevlp_needs_crops_and_scores_must_describe_the_training_set():
    with pytest.raises(ValueError, match="grid of crops"):
        PseudoLabelPolicy(kind="aevlp").pseudo_positives(scores([0.1, 0.2]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="training set has 2 x 2"):
        PseudoLabelPolicy(kind="threshold").pseudo_positives(scores([0.1, 0.2]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="1 \\+ n²"):
        PriorScores(np.zeros((1, 3, 2)))
