"""OP, OR, OF1, CP, CR, CF1 at 0.5 and for the top 3, against a plain numpy oracle."""

import numpy as np
import pytest
import torch

from spml_lightning.metrics import (
    METRIC_NAMES,
    label_decisions,
    operating_point_metrics,
    precision_recall_f1,
)


def oracle(scores: np.ndarray, targets: np.ndarray, top_k: int | None = None) -> dict[str, float]:
    """ML-GCN's evaluation written out per image and per class, with our 0 / 0 = 0."""
    n, c = scores.shape
    predicted = np.zeros((n, c), dtype=bool)
    for i in range(n):
        # Candidates: every class, or the top_k by (score descending, class index ascending).
        candidates = sorted(range(c), key=lambda j: (-scores[i, j], j))[: top_k or c]
        for j in candidates:
            predicted[i, j] = scores[i, j] >= 0.5
    positive = targets > 0.5
    tp = np.array([np.sum(predicted[:, j] & positive[:, j]) for j in range(c)], dtype=float)
    n_pred = predicted.sum(0).astype(float)
    n_pos = positive.sum(0).astype(float)

    def ratio(a, b):
        return a / b if b else 0.0

    def f1(p, r):
        return ratio(2 * p * r, p + r)

    op, o_r = ratio(tp.sum(), n_pred.sum()), ratio(tp.sum(), n_pos.sum())
    cp = np.mean([ratio(tp[j], n_pred[j]) for j in range(c)])
    cr = np.mean([ratio(tp[j], n_pos[j]) for j in range(c)])
    values = (op, o_r, f1(op, o_r), cp, cr, f1(cp, cr))
    return {name: 100 * v for name, v in zip(METRIC_NAMES, values, strict=True)}


def ours(scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    metrics = operating_point_metrics(torch.from_numpy(scores), torch.from_numpy(targets))
    return {name: value.item() for name, value in metrics.items()}


# Two images, four classes. Class 2 has no positive; row 0 ties classes 2 and 3 at 0.7.
HAND_SCORES = np.array([[0.9, 0.8, 0.7, 0.7], [0.2, 0.6, 0.1, 0.3]], dtype=np.float32)
HAND_TARGETS = np.array([[1, 0, 0, 1], [0, 1, 0, 1]], dtype=np.float32)


def test_hand_computed_threshold():
    # Predicted (p >= 0.5): row 0 all four, row 1 class 1.
    # TP = [1, 1, 0, 1], FP = [0, 1, 1, 0], FN = [0, 0, 0, 1].
    got = ours(HAND_SCORES, HAND_TARGETS)
    assert got["OP"] == pytest.approx(100 * 3 / 5)
    assert got["OR"] == pytest.approx(100 * 3 / 4)
    assert got["OF1"] == pytest.approx(100 * 2 * 0.6 * 0.75 / 1.35)
    assert got["CP"] == pytest.approx(100 * (1 + 0.5 + 0 + 1) / 4)
    # Class 2 has no positive: recall 0, and it counts.
    assert got["CR"] == pytest.approx(100 * (1 + 1 + 0 + 0.5) / 4)
    assert got["CF1"] == pytest.approx(62.5)


def test_hand_computed_top3_breaks_ties_by_class_index():
    # Row 0: 0.7 ties classes 2 and 3 at the 3rd place; class 2 (lower index) is kept.
    # Row 1: top 3 is classes 1, 3, 0, of which only class 1 reaches 0.5.
    # TP = [1, 1, 0, 0], FP = [0, 1, 1, 0], FN = [0, 0, 0, 2]; nothing predicted for class 3.
    got = ours(HAND_SCORES, HAND_TARGETS)
    assert got["top3/OP"] == pytest.approx(50.0)
    assert got["top3/OR"] == pytest.approx(50.0)
    assert got["top3/OF1"] == pytest.approx(50.0)
    assert got["top3/CP"] == pytest.approx(100 * (1 + 0.5 + 0 + 0) / 4)  # class 3: precision 0
    assert got["top3/CR"] == pytest.approx(100 * (1 + 1 + 0 + 0) / 4)
    assert got["top3/CF1"] == pytest.approx(100 * 2 * 0.375 * 0.5 / 0.875)
    decisions = label_decisions(torch.from_numpy(HAND_SCORES), top_k=3)
    assert decisions.tolist() == [[True, True, True, False], [False, True, False, False]]


def test_the_threshold_is_inclusive():
    decisions = label_decisions(torch.tensor([[0.5, 0.49999997, 1.0, 0.0]]))
    assert decisions.tolist() == [[True, False, True, False]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_oracle_on_random_scores_with_ties(seed):
    rng = np.random.default_rng(seed)
    n, c = 60, 7
    scores = (rng.integers(0, 9, (n, c)) / 8).astype(np.float32)  # many ties, 0.5 included
    targets = (rng.random((n, c)) < 0.3).astype(np.float32)
    targets[:, 4] = 0  # a class without positives
    targets[:5] = 0  # images without positives
    got = ours(scores, targets)
    for name, value in oracle(scores, targets).items():
        assert got[name] == pytest.approx(value, abs=1e-4), name
    for name, value in oracle(scores, targets, top_k=3).items():
        assert got[f"top3/{name}"] == pytest.approx(value, abs=1e-4), name


def test_fewer_classes_than_three_make_top3_the_threshold():
    scores = np.array([[0.9, 0.4], [0.6, 0.7]], dtype=np.float32)
    targets = np.array([[1, 0], [0, 1]], dtype=np.float32)
    got = ours(scores, targets)
    assert got["OP"] == got["top3/OP"] == pytest.approx(100 * 2 / 3)


def test_observed_negatives_count_as_not_positive():
    predicted = torch.tensor([[True, True]])
    got = precision_recall_f1(predicted, torch.tensor([[1.0, -1.0]]))
    assert got["OP"].item() == pytest.approx(50.0) and got["OR"].item() == pytest.approx(100.0)


def test_nothing_to_evaluate_gives_zeros():
    got = operating_point_metrics(torch.zeros(0, 3), torch.zeros(0, 3))
    assert set(got) == {*METRIC_NAMES, *(f"top3/{n}" for n in METRIC_NAMES)}
    assert all(value.item() == 0.0 for value in got.values())
    none_predicted = precision_recall_f1(torch.zeros(2, 2, dtype=torch.bool), torch.eye(2))
    assert all(value.item() == 0.0 for value in none_predicted.values())


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="same shape"):
        precision_recall_f1(torch.zeros(2, 3, dtype=torch.bool), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="matrix"):
        label_decisions(torch.zeros(3))
    with pytest.raises(ValueError, match="top_k"):
        label_decisions(torch.zeros(2, 2), top_k=0)
