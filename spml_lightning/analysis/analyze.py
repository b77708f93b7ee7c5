"""Look inside a trained model: from a checkpoint to the GR Loss paper's diagnostics.

What ``notebooks/inspect_checkpoint.ipynb`` and ``spml report``
call; usable without either::

    from spml_lightning.analysis import analyze, load_run

    run = load_run("configs/demo.yaml", ckpt_path="best")  # model + datamodule of a spml config
    result = analyze(run)  # test AP table, FN/(FN+TN), W-distance, ...
    print(result.table.to_markdown())
    for name, figure in result.figures().items():
        figure.savefig(f"{name}.png")

The diagnostics themselves are pure functions in ``diagnostics.py`` and
``loss_curves.py`` (this package); the figures are drawn by ``plots.py``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from spml_lightning.analysis.diagnostics import (
    ClassStatistics,
    DistinguishingAbility,
    FalseNegativeRate,
    class_statistics,
    distinguishing_ability,
    false_negative_rate,
)
from spml_lightning.analysis.loss_curves import (
    default_losses,
    probability_grid,
    pseudo_label_curve,
    unknown_logit_gradient,
    unknown_logit_gradients,
)
from spml_lightning.analysis.run import LoadedRun, check_same_rows
from spml_lightning.data.base import SPMLDataModule
from spml_lightning.data.transforms import with_transform
from spml_lightning.inference import evaluation_transform, score_dataset
from spml_lightning.losses.functional import bayes_pseudo_label
from spml_lightning.metrics import average_precision_per_class, operating_point_metrics
from spml_lightning.module import SPMLModule
from spml_lightning.priors.diagnostics import PriorQuality

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "CheckpointAnalysis",
    "PerClassTable",
    "SplitPredictions",
    "analyze",
    "per_class_table",
    "predict_split",
]

Split = Literal["train", "val", "test"]


@dataclass
class SplitPredictions:
    """A model's probabilities on one split, with that split's labels, in row order."""

    split: str
    probabilities: np.ndarray
    targets: np.ndarray
    observed: np.ndarray
    image_paths: list[str]


def predict_split(
    model: SPMLModule,
    datamodule: SPMLDataModule,
    split: Split = "test",
    batch_size: int | None = None,
    progress: bool = True,
) -> SplitPredictions:
    """Run the model over a split of the datamodule, without augmentation.

    The training split is read with the evaluation transform (no random flip),
    so the scores are the model's view of its training images.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}.")
    datamodule.setup("test" if split == "test" else "fit")
    dataset = getattr(datamodule, f"{split}_dataset", None)
    if dataset is None:
        raise RuntimeError(f"{type(datamodule).__name__} has no {split} set after setup().")
    # The model's preprocessing (what its training used, from its checkpoint); the
    # datamodule's only where the model records none.
    preprocessing = {**datamodule.preprocessing}
    preprocessing.update({k: v for k, v in model.preprocessing.items() if v is not None})
    dataset = with_transform(dataset, evaluation_transform(**preprocessing))
    index, logits = score_dataset(
        model,
        dataset,
        batch_size=batch_size or datamodule.batch_size,
        num_workers=datamodule.num_workers,
        progress=f"Predicting the {split} set" if progress else None,
    )
    probabilities = np.zeros(dataset.targets.shape, dtype=np.float32)
    probabilities[index.cpu().numpy()] = torch.sigmoid(logits).cpu().numpy()
    return SplitPredictions(
        split,
        probabilities,
        np.asarray(dataset.targets),
        np.asarray(dataset.observed),
        list(dataset.image_paths),
    )


@dataclass
class PerClassTable:
    """AP of every class on an evaluated split, with the training labels' class statistics.

    Attributes:
        class_names: the classes.
        average_precision: (C,) AP x 100 on the evaluated split.
        statistics: positives, missing positives and images of the training split.
        split: the evaluated split.
    """

    class_names: list[str]
    average_precision: np.ndarray
    statistics: ClassStatistics
    split: str

    COLUMNS = ("class", "AP", "positives", "missing_positives", "images")

    @property
    def mean_average_precision(self) -> float:
        """MAP x 100 over all classes."""
        return float(self.average_precision.mean())

    def rows(self) -> list[dict[str, object]]:
        """One dict per class, keyed by ``COLUMNS``."""
        s = self.statistics
        return [
            {
                "class": name,
                "AP": float(ap),
                "positives": int(pos),
                "missing_positives": int(miss),
                "images": s.images,
            }
            for name, ap, pos, miss in zip(
                self.class_names,
                self.average_precision,
                s.positives,
                s.missing_positives,
                strict=True,
            )
        ]

    def to_markdown(self) -> str:
        """The table in markdown, AP with two decimals and a mAP row."""
        lines = [
            f"| class | AP ({self.split}) | positives (train) | missing positives (train) "
            "| images (train) |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in self.rows():
            lines.append(
                f"| {row['class']} | {row['AP']:.2f} | {row['positives']} "
                f"| {row['missing_positives']} | {row['images']} |"
            )
        s = self.statistics
        lines.append(
            f"| **mean / total** | **{self.mean_average_precision:.2f}** "
            f"| {int(s.positives.sum())} | {int(s.missing_positives.sum())} | {s.images} |"
        )
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def to_csv(self, path: str | Path) -> None:
        """Write the rows (AP with full precision) to a CSV file."""
        with Path(path).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows())


def per_class_table(
    evaluated: SplitPredictions, statistics: ClassStatistics, class_names: Sequence[str]
) -> PerClassTable:
    """Per-class AP of ``evaluated``, with ``statistics``, as a table.

    The AP is exact (``metrics.average_precision_per_class``).
    """
    ap = average_precision_per_class(
        torch.from_numpy(evaluated.probabilities), torch.from_numpy(evaluated.targets)
    )
    if len(class_names) != ap.numel():
        raise ValueError(f"{len(class_names)} class names for {ap.numel()} classes.")
    return PerClassTable(list(class_names), ap.numpy() * 100.0, statistics, evaluated.split)


def _schedule_label(model: SPMLModule) -> str:
    schedule = model.loss_schedule
    return (
        f"epoch {schedule['epoch'] + 1} of {schedule['max_epochs']}"
        if schedule
        else "current state"
    )


@dataclass
class CheckpointAnalysis:
    """Every diagnostic of the GR Loss paper for one checkpoint (see :func:`analyze`).

    Attributes:
        table: per-class AP on the evaluated split with training-label counts.
        evaluated: predictions on the evaluated split.
        train: predictions on the training split (where the unknown labels are).
        false_negative_rate: FN/(FN+TN) of the training set's unknown labels per bin.
        pseudo_labels: curves over ``false_negative_rate.centers`` to compare
            with it: the checkpoint loss's k̂ (GR Loss) and the Bayes form with
            a = 1 / (mean positives per training image).
        distinguishing: p of the unknown positives vs negatives, W-distance.
        probabilities: the p grid of ``gradients``.
        gradients: ∂ℓ/∂z of an unknown entry: the checkpoint's loss at its
            epoch, then every registered loss with default hyper-parameters
            at the same epoch.
        gradient_failures: registered losses that could not be built with
            defaults, with the reason.
        schedule: where the loss schedule stood (``epoch N of T``).
        operating_points: OP, OR, OF1, CP, CR, CF1 (x 100) on the evaluated split
            at 0.5 and for the top 3 (``top3/OF1``, ...), the values ``spml test``
            logs as ``test/OF1``, ... (``spml_lightning.metrics``).
        observed_by: how the training set's observed labels were made: the
            datamodule's ``observe`` strategy, or ``given`` (they came with the data).
        prior_quality: the datamodule's vision-language prior measured against the
            training set's full labels (``spml_lightning.priors``); None without a prior.
    """

    table: PerClassTable
    evaluated: SplitPredictions
    train: SplitPredictions
    false_negative_rate: FalseNegativeRate
    pseudo_labels: dict[str, np.ndarray]
    distinguishing: DistinguishingAbility
    probabilities: np.ndarray
    gradients: dict[str, np.ndarray]
    gradient_failures: dict[str, str] = field(default_factory=dict)
    schedule: str = ""
    operating_points: dict[str, float] = field(default_factory=dict)
    observed_by: str = ""
    prior_quality: PriorQuality | None = None

    def figures(self) -> dict[str, Figure]:
        """The diagnostics as figures, by file stem."""
        from spml_lightning.analysis.plots import (
            plot_distinguishing_ability,
            plot_false_negative_rate,
            plot_loss_gradients,
        )

        return {
            "false_negative_rate": plot_false_negative_rate(
                self.false_negative_rate, self.pseudo_labels
            ),
            "distinguishing_ability": plot_distinguishing_ability(self.distinguishing),
            "loss_gradients": plot_loss_gradients(self.probabilities, self.gradients),
        }


def analyze(
    run: LoadedRun,
    split: Split = "test",
    bins: int = 100,
    grid_points: int = 99,
    progress: bool = True,
) -> CheckpointAnalysis:
    """Evaluate a checkpoint on ``split`` and compute the paper's diagnostics on its training set.

    Args:
        run: from :func:`load_run` (or ``LoadedRun(model, datamodule, path)``).
        split: the split of the per-class AP table.
        bins: bins of the FN/(FN+TN) curve on [0, 1].
        grid_points: points of the gradient curves over (0, 1).
        progress: show progress bars while predicting.
    """
    check_same_rows(run)  # a LoadedRun built by hand too
    model, datamodule = run.model, run.datamodule
    evaluated = predict_split(model, datamodule, split, progress=progress)
    train = (
        evaluated
        if split == "train"
        else predict_split(model, datamodule, "train", progress=progress)
    )
    statistics = class_statistics(train.targets, train.observed)
    table = per_class_table(evaluated, statistics, model.class_names)
    operating_points = operating_point_metrics(
        torch.from_numpy(evaluated.probabilities), torch.from_numpy(evaluated.targets)
    )
    fn_rate = false_negative_rate(train.probabilities, train.observed, train.targets, bins)

    schedule = _schedule_label(model)
    loss_name = type(model.loss).__name__
    pseudo_labels: dict[str, np.ndarray] = {}
    k_hat = pseudo_label_curve(model.loss, fn_rate.centers)
    if k_hat is not None:
        pseudo_labels[f"k̂ of the checkpoint's {loss_name} ({schedule})"] = k_hat
    positives_per_image = float(train.targets.sum(axis=1).mean())
    if positives_per_image > 1:  # a = 1 / E[#positives] must lie in (0, 1)
        a = 1.0 / positives_per_image
        curve = bayes_pseudo_label(torch.from_numpy(fn_rate.centers), a).numpy()
        pseudo_labels[f"Bayes form, a = 1/{positives_per_image:.2f} (train labels)"] = curve

    p = probability_grid(grid_points)
    gradients = {f"checkpoint: {loss_name} ({schedule})": unknown_logit_gradient(model.loss, p)}
    losses, failures = default_losses()
    # At the checkpoint's epoch too, so scheduled losses compare like with like.
    curves, unplaced = unknown_logit_gradients(losses, p, **(model.loss_schedule or {}))
    gradients.update({f"{name} (defaults, {schedule})": curve for name, curve in curves.items()})
    failures.update(unplaced)
    return CheckpointAnalysis(
        table=table,
        evaluated=evaluated,
        train=train,
        false_negative_rate=fn_rate,
        pseudo_labels=pseudo_labels,
        distinguishing=distinguishing_ability(train.probabilities, train.observed, train.targets),
        probabilities=p,
        gradients=gradients,
        gradient_failures=failures,
        schedule=schedule,
        operating_points={name: value.item() for name, value in operating_points.items()},
        observed_by=datamodule.observed_by or "",
        prior_quality=getattr(datamodule, "prior_quality", None),
    )
