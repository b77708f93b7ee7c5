"""Evaluation of a split: collect each batch's scores, gather across ranks, compute the metrics.

``SPMLModule`` keeps one :class:`Evaluator` per split (``val``, ``test``); its
``*_step`` adds a batch, its ``on_*_epoch_end`` logs what :meth:`Evaluator.compute`
returns. The metrics are exact: computed once on every row of the split, not
averaged over batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from spml_lightning.losses.distributed import all_gather_rows, first_occurrences
from spml_lightning.metrics import average_precision_per_class, operating_point_metrics

__all__ = ["Evaluator"]


class Evaluator:
    """The rows of one split seen so far, and their metrics.

    Under DDP each rank adds its shard; :meth:`compute` gathers every rank's rows
    (all ranks must call it together), and a sample that a padded sampler
    handed to two ranks counts once (rows are identified by their dataset index).

    Args:
        num_classes: columns of the scores (the shape of an empty split's result).
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self._batches: list[tuple[Tensor, Tensor, Tensor]] = []
        #: The per-class AP (fractions, on the CPU) of the last :meth:`compute`; None before.
        self.average_precision: Tensor | None = None

    @property
    def batches(self) -> list[tuple[Tensor, Tensor, Tensor]]:
        """This rank's batches kept since the last :meth:`gathered`, on the device they came on."""
        return list(self._batches)

    def add(self, index: Tensor, scores: Tensor, targets: Tensor) -> None:
        """Keep a batch: dataset indices (B,), probabilities (B, C), full labels (B, C)."""
        self._batches.append((index, scores.detach(), targets.detach()))

    def gathered(self, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """(scores, targets) of every rank's rows, each sample once, ordered by index; then reset.

        Args:
            device: where an empty split's (0, C) tensors are made.
        """
        batches, self._batches = self._batches, []
        if not batches:
            empty = torch.zeros(0, self.num_classes, device=device)
            return empty, empty
        index, scores, targets = (torch.cat(parts) for parts in zip(*batches, strict=True))
        # The same gather the per-sample loss state uses: rank order, any shard sizes.
        index, scores, targets = all_gather_rows(index, scores, targets)
        rows = first_occurrences(index)
        return scores[rows], targets[rows]

    def compute(
        self, class_names: Sequence[str] | None = None, device: torch.device | str = "cpu"
    ) -> dict[str, Tensor]:
        """The split's metrics by name, from :meth:`gathered` (which resets the evaluator).

        ``mAP`` (macro, x 100), ``AP/<class>`` (x 100) when ``class_names`` are given,
        and the operating points of ``operating_point_metrics`` (``OF1``,
        ``top3/CF1``, ...). Every rank returns the same values.
        """
        scores, targets = self.gathered(device)
        average_precision = average_precision_per_class(scores, targets)
        self.average_precision = average_precision.cpu()
        metrics = {"mAP": average_precision.mean() * 100.0}
        if class_names is not None:
            for name, value in zip(class_names, average_precision, strict=True):
                metrics[f"AP/{name}"] = value * 100.0
        return {**metrics, **operating_point_metrics(scores, targets)}
