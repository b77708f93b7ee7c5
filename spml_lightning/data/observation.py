"""Biased observation strategies: which positive of a training image is observed.

The benchmark protocol (``protocol.py``) observes a positive drawn uniformly at
random. Real annotators are not uniform: they name common objects, large ones,
the one in the middle of the picture. The strategies here model that; every
one is deterministic (numpy only, no global random state):

* ``frequency``: a positive drawn with probability proportional to its class's
  number of positives in the training phase -- an annotator who names what the
  data set shows most often (a class twice as common is named twice as often
  when both are present), the label bias Arroyo et al. study ("Understanding
  Label Bias in Single Positive Multi-Label Learning", ICLR 2023 Tiny Papers);
* ``size``: the class of the largest annotated object;
* ``center``: the class of the object whose box centre is nearest the image
  centre, in coordinates normalised by the image's width and height.

Boxes are pixels of their image: one that reaches outside it (beyond
``BORDER_TOLERANCE``), or an image whose boxes all lie within [0, 1] (normalised
coordinates), is refused, naming where the box was read -- a "central" or
"largest" object chosen from such boxes would be a wrong label without a word.

Ties (equal areas or distances) go to the lower class index. With ``num_pos``
> 1 the ``num_pos`` best classes are observed (largest, most central, or drawn
one after another without replacement); ``num_neg`` negatives are drawn
uniformly with ``RandomState(seed)``, row by row, as the protocol draws them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from spml_lightning.data.protocol import check_counts, observe_single_positive

__all__ = [
    "BORDER_TOLERANCE",
    "BOX_STRATEGIES",
    "OBSERVE_STRATEGIES",
    "ObjectBoxes",
    "observe_by_boxes",
    "observe_by_frequency",
    "observed_labels",
]

#: The values of ``SPMLDataModule(observe=...)``.
OBSERVE_STRATEGIES: tuple[str, ...] = ("uniform", "frequency", "size", "center", "given")
#: The strategies that need the objects' boxes.
BOX_STRATEGIES: tuple[str, ...] = ("size", "center")
#: How far a box may reach past its image's border, as a fraction of the image's side (at
#: least one pixel): annotation tools round, and COCO's boxes overshoot by fractions of a pixel.
BORDER_TOLERANCE = 0.02
#: How many faulty boxes an error shows.
_SHOWN_BOXES = 3


@dataclass(frozen=True)
class ObjectBoxes:
    """The annotated objects of one phase, one entry per object (an image may have several).

    Attributes:
        rows: (K,) row of each object's image in the phase.
        columns: (K,) class column of each object.
        boxes: (K, 4) float boxes ``x, y, width, height`` in pixels, ``x, y`` the top-left
            corner (COCO's ``bbox``).
        areas: (K,) the objects' areas (COCO: the annotation's ``area``, the segmentation's;
            elsewhere width x height of the box).
        image_sizes: (N, 2) ``width, height`` of every row's image, which ``center``
            normalises by and every box is checked against; None: unknown (``size``
            then ranks the boxes unchecked).
        describe: where object ``k`` was read, with its class (``"train.csv, line 4,
            'dog'"``), for the messages of refused boxes; None: its row and column.
    """

    rows: np.ndarray
    columns: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray
    image_sizes: np.ndarray | None = None
    describe: Callable[[int], str] | None = None

    @classmethod
    def from_boxes(
        cls,
        rows: np.ndarray,
        columns: np.ndarray,
        boxes: np.ndarray,
        image_sizes: np.ndarray | None = None,
        describe: Callable[[int], str] | None = None,
    ) -> ObjectBoxes:
        """Objects whose area is their box's, width x height (VOC's, a CSV's ``boxes``)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return cls(rows, columns, boxes, boxes[:, 2] * boxes[:, 3], image_sizes, describe)

    def __post_init__(self) -> None:
        count = len(self.rows)
        if not (len(self.columns) == len(self.areas) == count) or np.shape(self.boxes) != (
            count,
            4,
        ):
            raise ValueError(
                f"ObjectBoxes: rows ({count}), columns ({len(self.columns)}), boxes "
                f"{np.shape(self.boxes)} and areas ({len(self.areas)}) must describe the same "
                "objects."
            )

    def where(self, k: int) -> str:
        """Where object ``k`` was read and its box, for a message."""
        place = (
            self.describe(k)
            if self.describe is not None
            else f"row {int(self.rows[k])}, class column {int(self.columns[k])}"
        )
        x, y, w, h = (f"{v:g}" for v in np.asarray(self.boxes[k], dtype=np.float64))
        line = f"{place}: box x {x} y {y} w {w} h {h}"
        if self.image_sizes is not None:
            width, height = np.asarray(self.image_sizes, dtype=np.float64)[int(self.rows[k])]
            line += f" in an image of {width:g} x {height:g} px"
        return line

    def check_inside_images(self, strategy: str) -> None:
        """Refuse boxes outside their image, and images whose boxes all look normalised.

        Nothing to check without ``image_sizes``.

        Args:
            strategy: the ``observe`` strategy, for the messages.

        Raises:
            ValueError: naming the count, the first few boxes with where they were read, and
                the fix.
        """
        if self.image_sizes is None or not len(self.rows):
            return
        rows = np.asarray(self.rows, dtype=np.int64)
        xywh = np.asarray(self.boxes, dtype=np.float64)
        sizes = np.asarray(self.image_sizes, dtype=np.float64)[rows]
        low, high = xywh[:, :2], xywh[:, :2] + xywh[:, 2:]
        slack = np.maximum(BORDER_TOLERANCE * sizes, 1.0)
        # A negative width or height is no box (COCO's JSON is read as it is written).
        outside = np.flatnonzero(
            ((low < -slack) | (high > sizes + slack) | (xywh[:, 2:] < 0)).any(axis=1)
        )
        # An image whose boxes all lie within [0, 1] although it is larger: YOLO-style
        # coordinates, which inside the image's top-left pixel would choose at random.
        unit = ((low >= 0) & (high <= 1)).all(axis=1)
        per_image = np.ones(int(rows.max()) + 1, dtype=bool)
        np.logical_and.at(per_image, rows, unit)
        large = (sizes > 2).any(axis=1)
        normalised = np.flatnonzero(per_image[rows] & large)
        help_text = (
            "Boxes are pixels of their image: '<x> <y> <w> <h>', x and y the top-left corner "
            "(COCO's bbox)"
        )
        if len(normalised):
            images = len(np.unique(rows[normalised]))
            shown = "\n  ".join(self.where(k) for k in normalised[:_SHOWN_BOXES])
            raise ValueError(
                f"observe={strategy!r}: every box of {images} images lies within [0, 1] -- "
                f"normalised coordinates? e.g.:\n  {shown}\n{help_text}; multiply normalised "
                "coordinates by the image's width and height."
            )
        if len(outside):
            shown = "\n  ".join(self.where(k) for k in outside[:_SHOWN_BOXES])
            raise ValueError(
                f"observe={strategy!r}: {len(outside)} of {len(rows)} boxes reach outside their "
                f"image (by more than {BORDER_TOLERANCE:.0%} of its side) or have a negative "
                f"width or height, e.g.:\n  {shown}\n"
                f"{help_text}. Fix or remove these boxes; the largest or most central object "
                "cannot be chosen from them."
            )


def _negatives(observed: np.ndarray, labels: np.ndarray, row: int, rng, count: int) -> None:
    """Observe ``count`` (-1: all) of row ``row``'s negatives, shuffled by ``rng`` as the protocol.

    The shuffle happens even for ``count == 0``: it consumes random state that later rows'
    draws depend on, as in the protocol's generator.
    """
    idx = np.nonzero(labels[row] == 0)[0]
    rng.shuffle(idx)
    observed[row, idx if count == -1 else idx[:count]] = -1.0


def observe_by_frequency(
    labels: np.ndarray, seed: int = 1200, num_pos: int = 1, num_neg: int = 0
) -> np.ndarray:
    """Observe positives drawn with probability proportional to their class's frequency.

    A class's frequency is its number of positives in ``labels`` (the whole
    training phase). One ``RandomState(seed)`` serves the whole matrix: per row
    in order, ``num_pos`` positives are drawn without replacement
    (``RandomState.choice`` with ``p`` proportional to the frequencies), then
    the negatives are shuffled as in ``observe_single_positive``.

    Args:
        labels: (N, C) full labels in {0, 1}.
        seed: seed of the generator.
        num_pos: positives to observe per row (-1: all).
        num_neg: negatives to observe per row (-1: all).

    Returns:
        (N, C) float64: 1 observed positive, -1 observed negative, 0 unknown.
    """
    frequencies = labels.sum(axis=0).astype(np.float64)
    observed = np.zeros(labels.shape, dtype=np.float64)
    rng = np.random.RandomState(seed)
    for row in range(labels.shape[0]):
        idx = np.nonzero(labels[row] == 1)[0]
        if len(idx):
            weights = frequencies[idx]
            size = len(idx) if num_pos == -1 else min(num_pos, len(idx))
            observed[row, rng.choice(idx, size=size, replace=False, p=weights / weights.sum())] = 1
        _negatives(observed, labels, row, rng, num_neg)
    return observed


def _scores(
    labels: np.ndarray, boxes: ObjectBoxes, strategy: Literal["size", "center"]
) -> np.ndarray:
    """(N, C) score of every positive class with a box (lower is better), +inf elsewhere.

    ``size``: minus the area of the class's largest object; ``center``: the
    squared distance of the class's nearest box centre from the image centre.
    Boxes of classes that are not positive in ``labels`` (VOC's "difficult"
    objects) are no candidates.
    """
    rows = np.asarray(boxes.rows, dtype=np.int64)
    columns = np.asarray(boxes.columns, dtype=np.int64)
    xywh = np.asarray(boxes.boxes, dtype=np.float64).reshape(-1, 4)
    if strategy == "size":
        key = -np.asarray(boxes.areas, dtype=np.float64)
    else:
        if boxes.image_sizes is None:
            raise ValueError("observe='center' needs the image sizes of the boxes.")
        sizes = np.asarray(boxes.image_sizes, dtype=np.float64)[rows]
        centre = (xywh[:, :2] + xywh[:, 2:] / 2) / sizes - 0.5
        key = (centre**2).sum(axis=1)
    scores = np.full(labels.shape, np.inf)
    positive = labels[rows, columns] == 1
    np.minimum.at(scores, (rows[positive], columns[positive]), key[positive])
    return scores


def observe_by_boxes(
    labels: np.ndarray,
    boxes: ObjectBoxes,
    strategy: Literal["size", "center"],
    seed: int = 1200,
    num_pos: int = 1,
    num_neg: int = 0,
) -> np.ndarray:
    """Observe the class of the largest (``size``) or most central (``center``) object.

    Per row, the positive classes with at least one box are ranked -- by the
    area of their largest object, or by how near their nearest box centre lies
    to the image centre (``(cx / width - 0.5)^2 + (cy / height - 0.5)^2``) --
    ties by the lower class index, and the first ``num_pos`` (-1: all) are
    observed. The choice of positives draws nothing: ``seed`` only serves the
    ``num_neg`` negatives (shuffled row by row as the protocol does).

    Args:
        labels: (N, C) full labels in {0, 1}.
        boxes: the phase's objects.
        strategy: ``size`` or ``center``.
        seed: seed of the negatives' generator.
        num_pos: positives to observe per row (-1: all).
        num_neg: negatives to observe per row (-1: all).

    Returns:
        (N, C) float64: 1 observed positive, -1 observed negative, 0 unknown.

    Raises:
        ValueError: when a row has positives but none of them has a box, or a box does not
            fit its image (``ObjectBoxes.check_inside_images``).
    """
    if strategy not in BOX_STRATEGIES:
        raise ValueError(f"strategy must be one of {BOX_STRATEGIES}, got {strategy!r}.")
    boxes.check_inside_images(strategy)
    scores = _scores(labels, boxes, strategy)
    boxed = np.isfinite(scores)
    unboxed = np.flatnonzero(labels.any(axis=1) & ~boxed.any(axis=1))
    if len(unboxed):
        raise ValueError(
            f"observe={strategy!r}: {len(unboxed)} images have positive labels but no box of "
            f"any of them (first rows {unboxed[:5].tolist()}); every positive image needs the "
            "box of at least one of its positive classes."
        )
    # A stable sort ranks equal scores by column: ties go to the lower class index.
    ranked = np.argsort(scores, axis=1, kind="stable")
    keep = ranked if num_pos == -1 else ranked[:, :num_pos]
    chosen = np.take_along_axis(boxed, keep, axis=1)
    observed = np.zeros(labels.shape, dtype=np.float64)
    row_of = np.broadcast_to(np.arange(labels.shape[0])[:, None], keep.shape)
    observed[row_of[chosen], keep[chosen]] = 1.0
    if num_neg != 0:
        rng = np.random.RandomState(seed)
        for row in range(labels.shape[0]):
            _negatives(observed, labels, row, rng, num_neg)
    return observed


def observed_labels(
    strategy: str,
    phase: str,
    labels: np.ndarray,
    given: np.ndarray | None,
    *,
    seed: int,
    num_pos: int,
    num_neg: int,
    has_boxes: bool,
    load_boxes: Callable[[], ObjectBoxes],
    name: str,
    warn: Callable[[str], None],
) -> tuple[np.ndarray, str]:
    """A phase's observed labels by ``strategy``, and what made them (``given`` or the strategy).

    The dispatch over the strategies: ``uniform`` (the protocol's draws) keeps given
    observed labels, ``given`` needs them, ``frequency`` and the box strategies make
    their own (given ones are ignored, with a warning).

    Args:
        strategy: one of :data:`OBSERVE_STRATEGIES`.
        phase: the official phase, for the messages.
        labels: the phase's (N, C) full labels.
        given: the observed labels that came with the data, or None.
        seed: the observation seed.
        num_pos: observed positives per image.
        num_neg: observed negatives per image.
        has_boxes: whether the data set has object boxes.
        load_boxes: the phase's boxes (called only by a box strategy).
        name: the data set, for the messages.
        warn: how a warning is given (once per run under DDP).

    Raises:
        ValueError: naming the strategies the data set supports when it cannot serve ``strategy``.
    """
    if strategy == "given" and given is None:
        # Only the strategies this data supports: the box ones need boxes.
        others = ["uniform", "frequency"] + (list(BOX_STRATEGIES) if has_boxes else [])
        raise ValueError(
            f"observe='given' but the {phase} phase of {name} comes without observed labels "
            "(a CSV 'observed' column, formatted_*_labels_obs.npy). Choose another strategy "
            f"(observe: {', '.join(others)})."
        )
    if given is not None and strategy in ("uniform", "given"):
        return np.asarray(given, dtype=np.float64), "given"
    labels = np.asarray(labels)
    if strategy == "uniform":
        return observe_single_positive(labels, seed, num_pos, num_neg), strategy
    if strategy not in BOX_STRATEGIES + ("frequency",):
        raise ValueError(f"observe must be one of {OBSERVE_STRATEGIES}, got {strategy!r}.")
    if strategy != "frequency" and not has_boxes:
        supported = ["uniform", "frequency"] + (["given"] if given is not None else [])
        raise ValueError(
            f"observe={strategy!r} needs the boxes of the annotated objects, which {name} "
            f"does not have. It supports observe: {', '.join(supported)}."
        )
    if given is not None:
        warn(
            f"observe={strategy!r}: the observed labels that come with the {phase} phase of "
            f"{name} are ignored; the {strategy!r} strategy makes them (observe='given' uses "
            "them)."
        )
    check_counts(num_pos, num_neg)
    if strategy == "frequency":
        return observe_by_frequency(labels, seed, num_pos, num_neg), strategy
    boxes = load_boxes()
    if len(boxes.rows) and (boxes.rows.min() < 0 or boxes.rows.max() >= len(labels)):
        raise ValueError(f"{name}.load_boxes gave rows outside 0..{len(labels) - 1}.")
    by: Literal["size", "center"] = "size" if strategy == "size" else "center"
    return observe_by_boxes(labels, boxes, by, seed, num_pos, num_neg), strategy
