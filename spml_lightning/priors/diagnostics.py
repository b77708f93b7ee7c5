"""How good a prior is, measured against the full labels where they are known.

The first questions a user asks of a prior, answered before any training: how well its
scores alone rank the labels (mAP), how precise its pseudo-positives are and how many of
the missing positives they find (per class), and how many observed positives the policy
would not have proposed (a policy that misses the one label a person gave is suspect).
The full labels are read for this report only; training never sees them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from spml_lightning.metrics import average_precision_per_class

__all__ = ["PriorQuality", "prior_quality"]


@dataclass(frozen=True)
class PriorQuality:
    """A prior's quality on the training images (``prior_quality``).

    Attributes:
        class_names: the classes, in column order.
        average_precision: per class, the AP x 100 of the whole-image scores.
        pseudo_positives: per class, how many pseudo-positives the policy made.
        true_pseudo_positives: per class, how many of them are positives of the full labels.
        missing_positives: per class, the positives of the full labels that are not observed.
        observed_positives: the number of observed positives.
        missed_observed: how many of them the policy would not have proposed.
    """

    class_names: list[str]
    average_precision: np.ndarray
    pseudo_positives: np.ndarray
    true_pseudo_positives: np.ndarray
    missing_positives: np.ndarray
    observed_positives: int
    missed_observed: int

    @property
    def mean_average_precision(self) -> float:
        """MAP x 100 of the whole-image scores over all classes."""
        return float(self.average_precision.mean())

    @property
    def precision(self) -> float:
        """Share (%) of all pseudo-positives that are positives (nan without any)."""
        made = self.pseudo_positives.sum()
        return float(100 * self.true_pseudo_positives.sum() / made) if made else float("nan")

    @property
    def recall(self) -> float:
        """Share (%) of the missing positives that are pseudo-positives (nan without any)."""
        missing = self.missing_positives.sum()
        return float(100 * self.true_pseudo_positives.sum() / missing) if missing else float("nan")

    def per_class(self) -> list[dict[str, float | str | int]]:
        """One row per class: AP, pseudo-positives, their precision and recall (%)."""
        rows: list[dict[str, float | str | int]] = []
        for c, name in enumerate(self.class_names):
            made, true = int(self.pseudo_positives[c]), int(self.true_pseudo_positives[c])
            missing = int(self.missing_positives[c])
            rows.append(
                {
                    "class": name,
                    "AP": float(self.average_precision[c]),
                    "pseudo_positives": made,
                    "precision": 100 * true / made if made else float("nan"),
                    "recall": 100 * true / missing if missing else float("nan"),
                }
            )
        return rows

    def summary(self) -> str:
        """One line for the log."""
        made = int(self.pseudo_positives.sum())
        return (
            f"mAP of its scores {self.mean_average_precision:.2f} against the training images' "
            f"full labels; {made} pseudo-positives, precision {self.precision:.1f}%, recall of "
            f"the missing positives {self.recall:.1f}%; the policy would have missed "
            f"{self.missed_observed} of the {self.observed_positives} observed positives."
        )


def prior_quality(
    whole_image_scores: np.ndarray,
    proposed: np.ndarray,
    observed: np.ndarray,
    targets: np.ndarray,
    class_names: Sequence[str],
) -> PriorQuality:
    """Measure a prior against the full labels of the training images.

    Args:
        whole_image_scores: ``(N, C)`` the prior's scores of the whole images (as the
            policy ranks them).
        proposed: ``(N, C)`` what the policy proposes, observed positives included.
        observed: ``(N, C)`` observed labels (1: observed positive).
        targets: ``(N, C)`` full labels.
        class_names: the classes.
    """
    observed, targets, proposed = (np.asarray(a) > 0 for a in (observed, targets, proposed))
    pseudo = proposed & ~observed
    ap = average_precision_per_class(
        torch.from_numpy(np.asarray(whole_image_scores, dtype=np.float64)),
        torch.from_numpy(targets),
    )
    return PriorQuality(
        class_names=list(class_names),
        average_precision=100 * ap.numpy(),
        pseudo_positives=pseudo.sum(axis=0),
        true_pseudo_positives=(pseudo & targets).sum(axis=0),
        missing_positives=(targets & ~observed).sum(axis=0),
        observed_positives=int(observed.sum()),
        missed_observed=int((observed & ~proposed).sum()),
    )
