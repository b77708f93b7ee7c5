r"""Per-image label probabilities and predicted labels, written to CSV or JSON.

``PredictionWriter`` is on in every ``spml`` run (``--prediction.*``) and acts
in ``spml predict`` only::

    spml predict --config configs/demo.yaml --ckpt_path best \
        --data spml_lightning.data.UnlabelledImageDataModule --data.init_args.root photos/ \
        --prediction.output_path photos.csv --prediction.top_k 3

CSV: one row per image -- ``image``, ``labels`` (the predicted labels,
``;``-separated, most probable first), then one probability column per class.
JSON: a list of ``{"image", "labels", "probabilities": {class: p}}``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from spml_lightning.inference import predicted_labels
from spml_lightning.training.atomic_io import atomic_write

__all__ = ["PredictionWriter"]

FORMATS: tuple[str, ...] = (".csv", ".json")


class PredictionWriter(BasePredictionWriter):
    """Write what ``predict`` computes as one CSV or JSON file.

    Args:
        output_path: ``.csv`` or ``.json`` file; default ``predictions.csv`` in
            the run's log folder (a new ``version_N`` per ``spml predict``).
        threshold: a label is predicted when its probability is at least this.
        top_k: predict the ``top_k`` most probable labels of each image instead
            of thresholding.
        overwrite: replace an existing ``output_path``; otherwise an existing
            file stops the run before any prediction is made.
    """

    def __init__(
        self,
        output_path: str | None = None,
        threshold: float = 0.5,
        top_k: int | None = None,
        overwrite: bool = False,
    ) -> None:
        super().__init__(write_interval="batch")
        if output_path is not None and Path(output_path).suffix.lower() not in FORMATS:
            raise ValueError(f"output_path must end in .csv or .json, got {output_path!r}.")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a probability in [0, 1], got {threshold}.")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}.")
        self.output_path = output_path
        self.threshold = threshold
        self.top_k = top_k
        self.overwrite = overwrite
        self.path: Path | None = None
        self._rows: list[tuple[int, Tensor, Tensor]] = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """For predict, choose the output file; refuse an existing one unless overwrite."""
        if stage != "predict":
            return
        folder = trainer.log_dir or trainer.default_root_dir
        self.path = (
            Path(self.output_path).expanduser()
            if self.output_path
            else Path(folder) / "predictions.csv"
        )
        if self.path.exists() and not self.overwrite:
            raise FileExistsError(
                f"{self.path} exists; pass --prediction.output_path with a new file, or "
                "--prediction.overwrite true to replace it."
            )

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start with no rows collected."""
        self._rows = []

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Collect the batch's image indices and probabilities on the host."""
        if isinstance(batch, dict) and "index" in batch:
            index = torch.as_tensor(batch["index"])
        elif batch_indices is not None:
            index = torch.as_tensor(list(batch_indices))
        else:
            raise ValueError(
                "Cannot tell which images a predict batch holds: give the batches an 'index'."
            )
        self._rows.append((dataloader_idx, index.cpu(), prediction.detach().float().cpu()))

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Gather every rank's rows and write them on rank 0, one record per image."""
        rows = self._rows
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            gathered: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        self._rows = []
        if trainer.is_global_zero:
            self._write(self._records(trainer, pl_module, rows))

    def _records(
        self, trainer: Trainer, pl_module: LightningModule, rows: list
    ) -> list[dict[str, Any]]:
        loaders = trainer.predict_dataloaders
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        by_image: dict[tuple[int, int], Tensor] = {}
        for loader_idx, index, probabilities in rows:
            for i, p in zip(index.tolist(), probabilities, strict=True):
                by_image.setdefault((loader_idx, i), p)  # a DistributedSampler repeats rows to pad
        keys = sorted(by_image)
        probabilities = torch.stack([by_image[k] for k in keys]) if keys else None
        num_classes = probabilities.shape[1] if probabilities is not None else 0
        class_names = list(
            getattr(pl_module, "class_names", None) or [f"class_{i}" for i in range(num_classes)]
        )
        if probabilities is None:
            probabilities = torch.zeros(0, len(class_names))
        labels = predicted_labels(probabilities, class_names, self.threshold, self.top_k)
        records = []
        for (loader_idx, i), p, chosen in zip(keys, probabilities, labels, strict=True):
            paths = getattr(loaders[loader_idx].dataset, "image_paths", None)
            records.append(
                {
                    "image": paths[i] if paths is not None else f"{loader_idx}:{i}",
                    "labels": chosen,
                    "probabilities": dict(zip(class_names, (float(v) for v in p), strict=True)),
                }
            )
        return records

    def _write(self, records: list[dict[str, Any]]) -> None:
        assert self.path is not None, "setup('predict') sets the output path"
        if self.path.suffix.lower() == ".json":
            text = json.dumps(records, indent=1)
        else:
            class_names = list(records[0]["probabilities"]) if records else []
            buffer = io.StringIO(newline="")
            writer = csv.writer(buffer)
            writer.writerow(["image", "labels", *class_names])
            for record in records:
                writer.writerow(
                    [
                        record["image"],
                        ";".join(record["labels"]),
                        *(f"{record['probabilities'][c]:.6g}" for c in class_names),
                    ]
                )
            text = buffer.getvalue()
        # Atomic (a kill leaves no half-written file), and without overwrite it never replaces
        # a file that another process wrote while this one predicted.
        try:
            atomic_write(self.path, lambda file: file.write(text.encode("utf-8")), self.overwrite)
        except FileExistsError:
            raise FileExistsError(
                f"{self.path} was written by another process while this one predicted; it is "
                "kept. Pass --prediction.output_path with a new file, or --prediction.overwrite "
                "true to replace it."
            ) from None
