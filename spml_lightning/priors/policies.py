"""Pseudo-labelling policies: from a prior's scores to pseudo-positives, kept apart from the scores.

A policy reads the cached scores (``PriorScores``) and the observed labels and says, for
each training image and class, whether the class is a pseudo-positive. Policies are cheap:
changing one never recomputes the scores. Kinds (``PseudoLabelPolicy.kind``):

- ``threshold``: the whole image's score ``s_c >= threshold``.
- ``top_k``: the ``k`` classes of highest ``s_c`` whose score is ``>= threshold``.
- ``vlpl`` (Xing et al., CVPR-W 2024, arXiv:2310.15985): ``s = softmax(scores / T)`` over
  the classes, pseudo-positive where ``s_c > threshold`` (0.3 in the paper).
- ``aevlp`` (DAMP of Tran et al., ICCV 2025, arXiv:2508.20381): with ``s`` the softmax of
  the whole image and ``s^t`` of each tile ``t`` of the grid, per class
  ``α_c = max_t s^t_c``, ``β_c = min_t s^t_c``; the adaptive threshold
  ``η = min(s_{observed positive}, eta)``; the aggregated score
  ``a_c = ½ (s_c + (α_c if α_c > η else β_c))``; pseudo-positives: the ``k`` classes of
  highest ``a_c`` whose ``a_c >= threshold``. The observed positive may be one of the
  ``k`` (it stays an observed positive; the loss counts it once).

``temperature`` (T): with a number, every view's scores become ``softmax(scores / T)`` over
the classes first (CLIP: cosine similarities and T = 0.01, its logit scale of 100); None
uses the scores as given (a file of probabilities, say); ``vlpl`` needs a number.
With the mirror images' scores, each copy is softened alone and the two averaged (the
papers' code scores whichever copy a training step draws; a cached prior serves both).
An observed positive is never a pseudo-positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from spml_lightning.priors.scores import PriorScores

__all__ = ["POLICY_KINDS", "PseudoLabelPolicy", "aggregated_scores", "class_scores"]

POLICY_KINDS: tuple[str, ...] = ("threshold", "top_k", "vlpl", "aevlp")
"""Valid values of ``PseudoLabelPolicy.kind``."""

PolicyKind = Literal["threshold", "top_k", "vlpl", "aevlp"]


@dataclass(frozen=True)
class PseudoLabelPolicy:
    """How a prior's scores become pseudo-positives (``data.init_args.prior_policy.*``).

    Attributes:
        kind: ``threshold``, ``top_k``, ``vlpl`` or ``aevlp`` (the module docstring).
        threshold: the score a pseudo-positive needs (``vlpl``: must exceed).
        k: at most this many pseudo-positives per image (``top_k``, ``aevlp``).
        temperature: T of ``softmax(scores / T)`` over the classes; None: scores as given
            (probabilities). CLIP's cosine similarities need one: 0.01, its logit scale of 100.

    The default, ``top_k`` with threshold 0.5 on the scores as given, suits a file of
    probabilities; the papers' rules are in ``configs/losses/gpr*.yaml`` and ``vlpl*.yaml``.
        eta: ``aevlp``'s cap of the adaptive threshold ``min(s_observed, eta)``.
    """

    kind: PolicyKind = "top_k"
    threshold: float = 0.5
    k: int = 3
    temperature: float | None = None
    eta: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise ValueError(
                f"prior_policy.kind must be one of {list(POLICY_KINDS)}, got {self.kind!r}."
            )
        if not np.isfinite(self.threshold):
            raise ValueError(f"prior_policy.threshold must be a number, got {self.threshold}.")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"prior_policy.k must be a whole number >= 1, got {self.k!r}.")
        if self.temperature is not None and not (
            np.isfinite(self.temperature) and self.temperature > 0
        ):
            raise ValueError(
                f"prior_policy.temperature must be > 0 (or null: scores as given), got "
                f"{self.temperature}."
            )
        if self.kind == "vlpl" and self.temperature is None:
            raise ValueError(
                "prior_policy.kind='vlpl' thresholds softmax(scores / T) over the "
                "classes: set prior_policy.temperature (0.01 for CLIP's cosine similarities)."
            )

    def ranked_scores(self, scores: PriorScores, observed: np.ndarray) -> np.ndarray:
        """``(N, C)`` the scores the policy thresholds and ranks (``aevlp``: aggregated).

        Raises:
            ValueError: If the scores do not describe these images and classes, or
                ``aevlp`` is asked of scores without crops.
        """
        observed = np.asarray(observed) > 0
        if (scores.num_images, scores.num_classes) != observed.shape:
            raise ValueError(
                f"The prior scores {scores.num_images} images x {scores.num_classes} classes, the "
                f"training set has {observed.shape[0]} x {observed.shape[1]}."
            )
        if self.kind == "aevlp":
            return aggregated_scores(scores, observed, self.temperature, self.eta)
        return class_scores(scores, self.temperature)[:, 0]

    def proposals(self, scores: PriorScores, observed: np.ndarray) -> np.ndarray:
        """``(N, C)`` boolean: the classes the policy proposes, observed positives included."""
        ranked = self.ranked_scores(scores, observed)
        chosen = ranked > self.threshold if self.kind == "vlpl" else ranked >= self.threshold
        if self.kind in ("top_k", "aevlp") and self.k < ranked.shape[1]:
            # The k highest per row (ties: the lower class index, as a stable sort).
            order = np.argsort(-ranked, axis=1, kind="stable")[:, : self.k]
            top = np.zeros_like(chosen)
            np.put_along_axis(top, order, True, axis=1)
            chosen &= top
        return chosen

    def pseudo_positives(self, scores: PriorScores, observed: np.ndarray) -> np.ndarray:
        """``(N, C)`` boolean pseudo-positives: the proposals that are not observed positives.

        Args:
            scores: the prior's scores of the training images, in row order.
            observed: ``(N, C)`` observed labels (1: observed positive).
        """
        return self.proposals(scores, observed) & ~(np.asarray(observed) > 0)


def class_scores(scores: PriorScores, temperature: float | None) -> np.ndarray:
    """``(N, V, C)`` scores per view, softened by ``softmax(· / T)``, the mirror's averaged in."""
    copies = [scores.views] if scores.flipped is None else [scores.views, scores.flipped]
    softened = [_softmax(np.asarray(c, np.float64), temperature) for c in copies]
    return np.mean(softened, axis=0)


def _softmax(views: np.ndarray, temperature: float | None) -> np.ndarray:
    if temperature is None:
        return views
    shifted = views / temperature
    shifted -= shifted.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def aggregated_scores(
    scores: PriorScores, observed: np.ndarray, temperature: float | None, eta: float
) -> np.ndarray:
    """AEVLP's ``a_c = ½ (s_c + (α_c if α_c > η else β_c))`` per image (module docstring).

    ``η = min(eta, the lowest whole-image score of the image's observed positives)``;
    ``eta`` alone for an image without an observed positive.

    Raises:
        ValueError: If the scores have no crops.
    """
    if scores.grid == 0:
        raise ValueError(
            "prior_policy.kind='aevlp' aggregates the whole image's scores with its crops', "
            "but the prior holds the whole image only: score a grid of crops too (open_clip: "
            "grid >= 2; a .npy file of shape (images, 1 + n², classes))."
        )
    softened = class_scores(scores, temperature)
    whole, tiles = softened[:, 0], softened[:, 1:]
    highest, lowest = tiles.max(axis=1), tiles.min(axis=1)
    observed_score = np.where(np.asarray(observed) > 0, whole, np.inf).min(axis=1)
    eta_image = np.minimum(observed_score, eta)[:, None]
    return 0.5 * (whole + np.where(highest > eta_image, highest, lowest))
