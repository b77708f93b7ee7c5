"""The callback behind ``spml suggest``: ranks what the predict loop scored, on rank 0.

``SPMLTrainer.suggest`` runs Lightning's predict loop over the training images
with this callback in place of the ``PredictionWriter``. Each rank keeps its
batches' probabilities with their observed and full labels; at the end they
are gathered (rank order, the DistributedSampler's padding dropped, as the
module's metrics do) and rank 0 ranks, writes and reports
(``spml_lightning.training.suggestions``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from spml_lightning.losses.distributed import all_gather_rows, first_occurrences
from spml_lightning.training.suggestions import (
    SuggestionPrecision,
    Suggestions,
    SuggestOptions,
    check_output,
    rank_unknown_labels,
    suggestion_precision,
    write_suggestions_csv,
)

__all__ = ["SuggestionWriter"]


class SuggestionWriter(Callback):
    """Rank the unknown labels of the predicted images and write them (on rank 0).

    The predict batches must carry ``index``, ``observed`` and ``target`` (an
    ``SPMLImageDataset``'s items), and the loader's dataset ``image_paths``.

    Args:
        options: how many suggestions, which threshold, whether to overwrite.
        path: the CSV file to write.

    Attributes:
        suggestions: after the run, on rank 0: what was written.
        precision: after the run, on rank 0: precision@N against the full
            labels (None when these are not known).
    """

    def __init__(self, options: SuggestOptions, path: Path) -> None:
        self.options = options
        self.path = path
        self.suggestions: Suggestions | None = None
        self.precision: SuggestionPrecision | None = None
        self._parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start with no rows collected."""
        self._parts = []

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the batch's index, probabilities, observed and full labels on the device."""
        index = torch.as_tensor(batch["index"], device=outputs.device)
        self._parts.append(
            (index, outputs.detach().float(), batch["observed"].float(), batch["target"].float())
        )

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Gather every rank's rows; rank 0 ranks, writes the CSV and reports."""
        parts, self._parts = self._parts, []
        if parts:
            tensors = [torch.cat(column) for column in zip(*parts, strict=True)]
        else:  # a rank without a batch still joins the gather
            device = pl_module.device
            empty = torch.zeros(0, pl_module.hparams.num_classes, device=device)
            tensors = [torch.zeros(0, dtype=torch.long, device=device), empty, empty, empty]
        index, probabilities, observed, targets = all_gather_rows(*tensors)
        rows = first_occurrences(index)  # a DistributedSampler repeats rows to pad its shards
        if not trainer.is_global_zero:
            return
        index, probabilities, observed, targets = (
            t[rows].cpu().numpy() for t in (index, probabilities, observed, targets)
        )
        self._report(trainer, pl_module, index, probabilities, observed, targets)

    def _report(self, trainer, pl_module, index, probabilities, observed, targets) -> None:
        loaders = trainer.predict_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        paths = loader.dataset.image_paths
        options = self.options
        self.suggestions = rank_unknown_labels(
            probabilities, observed, options.limit, options.threshold
        )
        check_output(self.path, options.overwrite)  # a file that appeared while scoring
        try:
            write_suggestions_csv(
                self.path,
                self.suggestions,
                [paths[i] for i in index],
                pl_module.class_names,
                replace=options.overwrite,
            )
        except FileExistsError:  # written by another process since the check above
            check_output(self.path, options.overwrite)
            raise
        chosen = (
            f"the {len(self.suggestions)} most probable"
            if options.threshold is None
            else f"the {len(self.suggestions)} with probability >= {options.threshold:g}"
            + (f" (at most {options.limit})" if options.limit is not None else "")
        )
        rank_zero_info(
            f"spml suggest: {chosen} of {self.suggestions.unknown} unknown labels of "
            f"{len(index)} training images, written to {self.path}"
        )
        self.precision = suggestion_precision(self.suggestions, observed, targets)
        if self.precision is not None:
            rank_zero_info(
                f"{self.precision}: {self.precision.hits} of the {len(self.suggestions)} "
                "suggestions are positives of the training images' full labels."
            )
        elif len(self.suggestions):
            rank_zero_info(
                "No precision@N: the training labels hold no positive beyond the observed ones, "
                "so the full labels are not known here. The annotators' answers are the check."
            )
