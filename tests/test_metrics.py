"""Exact mAP: sklearn's average precision, classes without positives count as 0."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from spml_lightning.metrics import average_precision_per_class, mean_average_precision


def test_matches_sklearn_with_ties():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 15, (400, 9), generator=g).float() / 15  # many ties
    targets = (torch.rand(400, 9, generator=g) < 0.2).float()
    ours = average_precision_per_class(scores, targets)
    ref = [average_precision_score(targets[:, c].numpy(), scores[:, c].numpy()) for c in range(9)]
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-12)


def test_hand_computed_case():
    # Ranking: pos, neg, pos, neg -> AP = (1/1 + 2/3) / 2.
    scores = torch.tensor([[0.9], [0.8], [0.7], [0.1]])
    targets = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    assert average_precision_per_class(scores, targets).item() == pytest.approx((1 + 2 / 3) / 2)
    # A tie between a positive and a negative counts as one threshold: precision 1/2.
    scores = torch.tensor([[0.5], [0.5]])
    targets = torch.tensor([[1.0], [0.0]])
    assert average_precision_per_class(scores, targets).item() == pytest.approx(0.5)


def test_class_without_positives_counts_as_zero():
    scores = torch.tensor([[0.9, 0.2], [0.1, 0.8]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    ap = average_precision_per_class(scores, targets)
    assert ap.tolist() == [1.0, 0.0]
    assert mean_average_precision(scores, targets).item() == pytest.approx(50.0)


def test_perfect_and_reversed_ranking():
    targets = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    assert mean_average_precision(
        torch.tensor([[4.0], [3.0], [2.0], [1.0]]), targets
    ) == pytest.approx(100)
    # Reversed: positives at ranks 3 and 4 -> (1/3 + 2/4) / 2.
    reversed_ap = average_precision_per_class(torch.tensor([[1.0], [2.0], [3.0], [4.0]]), targets)
    assert reversed_ap.item() == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        average_precision_per_class(torch.zeros(3, 2), torch.zeros(3, 3))


def test_matches_torchmetrics_exact_average_precision():
    # torchmetrics' exact (thresholds=None) macro AP is a second oracle where every class has a
    # positive (it gives NaN for a class without one, which counts 0 here).
    from torchmetrics.functional.classification import multilabel_average_precision

    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 12, (300, 6), generator=g).float() / 12  # many ties
    targets = (torch.rand(300, 6, generator=g) < 0.25).long()
    assert (targets.sum(0) > 0).all()
    reference = multilabel_average_precision(
        scores, targets, num_labels=6, average="macro", thresholds=None
    )
    ours = mean_average_precision(scores, targets.float())
    assert ours.item() == pytest.approx(reference.item() * 100, abs=1e-4)
