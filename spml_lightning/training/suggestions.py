"""Likely missing positives of the training images, ranked for annotators (``spml suggest``).

A model trained from single positives scores every label of every training
image. The labels nobody observed -- ``observed == 0``: neither an observed
positive nor an observed negative -- that it finds most probable are the
likeliest missing positives: the list to send to annotators first.
:func:`rank_unknown_labels` ranks them, :func:`write_suggestions_csv` writes
the list (``image,class,probability,rank``, atomically), and, where the full
labels of the training images are known (the benchmarks, the demo),
:func:`suggestion_precision` says how many of the suggestions are true
positives, against the precision a random ranking of the same unknown labels
would have on average.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spml_lightning.training.atomic_io import atomic_write

__all__ = [
    "COLUMNS",
    "DEFAULT_TOP_N",
    "SuggestOptions",
    "SuggestionPrecision",
    "Suggestions",
    "check_output",
    "rank_unknown_labels",
    "suggestion_precision",
    "write_suggestions_csv",
]

#: The columns of the suggestions CSV.
COLUMNS: tuple[str, ...] = ("image", "class", "probability", "rank")

#: How many suggestions ``spml suggest`` writes when given neither ``top_n`` nor ``threshold``.
DEFAULT_TOP_N = 100


@dataclass(frozen=True)
class SuggestOptions:
    """What ``spml suggest`` writes (``--suggestions.*``).

    Attributes:
        top_n: at most this many suggestions, the most probable first. Default:
            every unknown label at or above ``threshold`` when one is given, else
            the ``DEFAULT_TOP_N`` (100) most probable.
        threshold: only unknown labels whose probability is at least this, in (0, 1).
        output: the CSV file; default ``suggestions.csv`` in the run's log folder
            (a new ``version_N`` per run).
        overwrite: replace an existing ``output``; otherwise an existing file
            stops the command before anything is scored.
    """

    top_n: int | None = None
    threshold: float | None = None
    output: str | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.top_n is not None and (isinstance(self.top_n, bool) or self.top_n < 1):
            raise ValueError(
                f"--suggestions.top_n {self.top_n}: the number of suggestions must be at least 1 "
                "(or null with a --suggestions.threshold: every label above it)."
            )
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError(
                f"--suggestions.threshold {self.threshold}: a probability strictly between 0 and 1 "
                "is expected, e.g. 0.5."
            )
        if self.output is not None and Path(self.output).suffix.lower() != ".csv":
            raise ValueError(
                f"--suggestions.output {self.output}: the suggestions are a CSV file; give a name "
                "ending in .csv."
            )

    @property
    def limit(self) -> int | None:
        """The most suggestions to write (None: every unknown label above ``threshold``)."""
        if self.top_n is None and self.threshold is None:
            return DEFAULT_TOP_N
        return self.top_n


def check_output(path: str | os.PathLike, overwrite: bool) -> None:
    """Refuse an existing output file unless ``overwrite``, naming both ways out."""
    if Path(path).exists() and not overwrite:
        raise FileExistsError(
            f"{path} exists; pass --suggestions.output with a new file, or "
            "--suggestions.overwrite true to replace it."
        )


@dataclass(frozen=True)
class Suggestions:
    """Unknown labels of a set of images, most probable first.

    Attributes:
        images: (N,) the image (row) of each suggestion.
        classes: (N,) its class (column).
        probabilities: (N,) the model's probability of that label.
        unknown: how many unknown labels there were to choose from.
    """

    images: np.ndarray
    classes: np.ndarray
    probabilities: np.ndarray
    unknown: int

    def __len__(self) -> int:
        return len(self.images)


def rank_unknown_labels(
    probabilities: np.ndarray,
    observed: np.ndarray,
    top_n: int | None = None,
    threshold: float | None = None,
) -> Suggestions:
    """The unknown labels (``observed == 0``) by probability: the likeliest missing positives.

    Observed positives (1) and observed negatives (-1) are never suggested.
    Equal probabilities keep the order of the images, then of the classes.

    Args:
        probabilities: (num_images, num_classes) the model's label probabilities.
        observed: (num_images, num_classes) the observed labels (1, 0 or -1).
        top_n: at most this many suggestions (None: no limit).
        threshold: only labels with probability >= threshold (None: all).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    observed = np.asarray(observed)
    if probabilities.ndim != 2 or probabilities.shape != observed.shape:
        raise ValueError(
            f"probabilities {probabilities.shape} and observed labels {observed.shape} must be "
            "(num_images, num_classes) matrices of the same shape."
        )
    images, classes = np.nonzero(observed == 0)  # row-major: the tie order
    scores = probabilities[images, classes]
    unknown = len(scores)
    if threshold is not None:
        keep = scores >= threshold
        images, classes, scores = images[keep], classes[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")[:top_n]
    return Suggestions(images[order], classes[order], scores[order], unknown)


@dataclass(frozen=True)
class SuggestionPrecision:
    """How many suggestions are true positives, against a random ranking.

    Attributes:
        suggested: N, the number of suggestions.
        hits: how many of them are positives of the full labels.
        random: the expected precision of N labels drawn at random from the same
            unknown labels: the fraction of positives among them all.
    """

    suggested: int
    hits: int
    random: float

    @property
    def precision(self) -> float:
        """precision@N: the fraction of the suggestions that are true positives."""
        return self.hits / self.suggested

    @property
    def ratio(self) -> float:
        """How many times better than a random ranking (inf when the random one finds none)."""
        return self.precision / self.random if self.random > 0 else math.inf

    def __str__(self) -> str:
        return (
            f"precision@{self.suggested} {self.precision:.3f} "
            f"(random ranking {self.random:.3f}, {self.ratio:.1f}x)"
        )


def suggestion_precision(
    suggestions: Suggestions, observed: np.ndarray, targets: np.ndarray
) -> SuggestionPrecision | None:
    """precision@N of ``suggestions`` against the full labels ``targets``, and a random ranking's.

    None when it cannot be measured: no suggestion, or ``targets`` hold no
    positive among the unknown labels -- the full labels are not known (e.g. a
    user's own CSV whose ``labels`` are the observed single positives).

    Args:
        suggestions: from :func:`rank_unknown_labels` on ``observed``.
        observed: (num_images, num_classes) the observed labels (1, 0 or -1).
        targets: (num_images, num_classes) the full labels (1 positive, 0 negative).
    """
    targets = np.asarray(targets)
    missing = int((targets[np.asarray(observed) == 0] == 1).sum())
    if not len(suggestions) or missing == 0:
        return None
    hits = int((targets[suggestions.images, suggestions.classes] == 1).sum())
    return SuggestionPrecision(len(suggestions), hits, missing / suggestions.unknown)


def write_suggestions_csv(
    path: str | os.PathLike,
    suggestions: Suggestions,
    image_paths: Sequence[str],
    class_names: Sequence[str],
    replace: bool = True,
) -> None:
    """Write ``image,class,probability,rank`` rows, rank 1 first, atomically.

    Args:
        path: the CSV file (its folder is created).
        replace: replace an existing file; False: ``FileExistsError`` instead (see
            ``atomic_write``), also for one written since the caller checked.
        suggestions: the ranked labels.
        image_paths: the image of each row index of ``suggestions.images``.
        class_names: the name of each class index of ``suggestions.classes``.
    """
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(COLUMNS)
    ranked = zip(suggestions.images, suggestions.classes, suggestions.probabilities, strict=True)
    for rank, (image, cls, probability) in enumerate(ranked, start=1):
        writer.writerow([image_paths[image], class_names[cls], f"{probability:.6g}", rank])
    atomic_write(path, lambda file: file.write(text.getvalue().encode("utf-8")), replace)
