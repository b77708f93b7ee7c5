"""The evaluator: rows collected per batch, gathered, de-duplicated, metrics by name."""

from __future__ import annotations

import pytest
import torch

from spml_lightning.metrics import average_precision_per_class, operating_point_metrics
from spml_lightning.training.evaluation import Evaluator


def _split(rows: int = 6, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(rows, classes, generator=generator)
    targets = (torch.rand(rows, classes, generator=generator) > 0.5).float()
    targets[0] = 1.0  # every class has a positive
    return scores, targets


def test_the_metrics_are_those_of_every_row_once_by_name():
    scores, targets = _split()
    evaluator = Evaluator(num_classes=3)
    # Two batches out of order, and row 0 again (a DistributedSampler's padding).
    evaluator.add(torch.tensor([3, 4, 5]), scores[3:], targets[3:])
    evaluator.add(torch.tensor([0, 1, 2, 0]), scores[[0, 1, 2, 0]], targets[[0, 1, 2, 0]])
    metrics = evaluator.compute(["a", "b", "c"])
    ap = average_precision_per_class(scores, targets)
    assert metrics["mAP"].item() == pytest.approx(ap.mean().item() * 100)
    assert [metrics[f"AP/{name}"].item() for name in "abc"] == pytest.approx((ap * 100).tolist())
    for name, value in operating_point_metrics(scores, targets).items():
        assert metrics[name].item() == pytest.approx(value.item()), name
    torch.testing.assert_close(evaluator.average_precision, ap)


def test_compute_empties_the_evaluator_and_per_class_values_need_names():
    scores, targets = _split()
    evaluator = Evaluator(num_classes=3)
    evaluator.add(torch.arange(6), scores, targets)
    assert not any(name.startswith("AP/") for name in evaluator.compute())
    gathered_scores, gathered_targets = evaluator.gathered()
    assert gathered_scores.shape == gathered_targets.shape == (0, 3)


def test_rows_come_back_ordered_by_index_each_once():
    scores, targets = _split()
    evaluator = Evaluator(num_classes=3)
    evaluator.add(
        torch.tensor([5, 2, 2, 0, 1, 4, 3]),
        scores[[5, 2, 2, 0, 1, 4, 3]],
        targets[[5, 2, 2, 0, 1, 4, 3]],
    )
    got_scores, got_targets = evaluator.gathered()
    torch.testing.assert_close(got_scores, scores)
    torch.testing.assert_close(got_targets, targets)
