"""Exact ranking metrics for multi-label evaluation.

The SPML literature reports mAP = 100 x the mean over ALL classes of the
per-class average precision, sklearn's definition (step-wise, no
interpolation, ties grouped), and counts a class without any positive in the
split as 0 (the convention of the SPML benchmarks, Cole et al., CVPR 2021).
torchmetrics' binned variants differ, and its exact one returns NaN for such
classes, so the definition is implemented here, vectorised over classes so
that 40k x 80 scores take well under a second on a CPU.

Precision, recall and F1 of multi-label decisions (OP, OR, OF1, CP, CR, CF1):

The operating-point metrics of the multi-label classification tables (ML-GCN,
Chen et al., CVPR 2019; ASL, Ridnik et al., ICCV 2021; Query2Label, Liu et al.,
2021), defined as ML-GCN's released code (``util.py``, ``AveragePrecisionMeter``)
computes them, which the later tables reuse:

- a label is *predicted* when its probability is at least 0.5 (ML-GCN:
  logit >= 0); for the ``top3`` operating point, when it is also among the 3
  highest scores of its image (ML-GCN's ``overall_topk``: the top 3 *and*
  above the threshold, so an image may have fewer than 3 predicted labels).
  Ties at the 3rd place go to the lower class index (a stable sort), so the
  result never depends on the device; with fewer than 3 classes every class
  is a candidate;
- overall (micro): OP = sum_c TP_c / sum_c (TP_c + FP_c),
  OR = sum_c TP_c / sum_c (TP_c + FN_c), OF1 = 2 OP OR / (OP + OR);
- per class (macro): CP = mean_c TP_c / (TP_c + FP_c),
  CR = mean_c TP_c / (TP_c + FN_c), and CF1 = 2 CP CR / (CP + CR) -- the
  harmonic mean of the two averages, not the average of the per-class F1
  scores (torchmetrics' macro F1 is the latter);
- a class for which nothing is predicted has precision 0 (ML-GCN sets its
  count of predictions to 1), and a class without any positive in the split
  has recall 0 and still counts in CR (ML-GCN divides by zero there; 0 is the
  convention of the mAP above); every other 0 / 0 (nothing predicted
  or nothing positive at all, an F1 of two zeros) is 0 too;
- all values x 100, like mAP.

The counting and the micro/macro averages are torchmetrics'
(``multilabel_precision``/``multilabel_recall`` on the 0/1 decisions, whose
0 / 0 is 0); the decisions are made here because torchmetrics thresholds with
``>`` where ML-GCN uses ``>=``, and has no top-k for multi-label inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.classification import multilabel_precision, multilabel_recall

__all__ = [
    "METRIC_NAMES",
    "THRESHOLD",
    "TOP_K",
    "average_precision_per_class",
    "label_decisions",
    "mean_average_precision",
    "operating_point_metrics",
    "precision_recall_f1",
]


def _check_pair(scores: Tensor, targets: Tensor) -> None:
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(
            "scores and targets must both be (num_images, num_classes) matrices of the same "
            f"shape, got {tuple(scores.shape)} and {tuple(targets.shape)}."
        )


def average_precision_per_class(scores: Tensor, targets: Tensor) -> Tensor:
    """Exact average precision of every column (sklearn's definition).

    AP = sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds in
    decreasing order; entries with equal scores enter together.

    Computed on the scores' device with no host synchronisation, one class per
    row of a transposed copy: sorting and scanning along contiguous memory is
    several times faster than along the columns of an (N, C) matrix. Ranks and
    counts are integers (exact); only the final sum is floating point.

    Args:
        scores: (N, C) real-valued scores (probabilities or logits).
        targets: (N, C) binary ground truth (anything > 0.5 is positive).

    Returns:
        (C,) float64 tensor in [0, 1]; 0 for a class without positives.
    """
    _check_pair(scores, targets)
    n, num_classes = scores.shape
    if n == 0:
        return torch.zeros(num_classes, dtype=torch.float64, device=scores.device)
    scores = scores.detach()
    if scores.dtype == torch.bool:
        scores = scores.to(torch.uint8)
    by_class = scores.t().contiguous()
    positive = (targets.detach() > 0.5).t()
    order = torch.argsort(by_class, dim=1, descending=True, stable=True)
    sorted_scores = torch.gather(by_class, 1, order)
    true_pos = torch.cumsum(torch.gather(positive, 1, order), dim=1)
    # A threshold ends where the next score differs (or at the last row): only
    # these positions are points of the precision-recall curve.
    threshold_end = torch.ones_like(sorted_scores, dtype=torch.bool)
    threshold_end[:, :-1] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    # Positives gained at each threshold = true_pos there minus at the previous end.
    tp_at_end = torch.where(threshold_end, true_pos, 0)
    prev_end_tp = torch.cummax(tp_at_end, dim=1).values
    prev_end_tp = torch.cat([torch.zeros_like(prev_end_tp[:, :1]), prev_end_tp[:, :-1]], dim=1)
    gained = tp_at_end - torch.where(threshold_end, prev_end_tp, 0)
    ranks = torch.arange(1, n + 1, dtype=torch.float64, device=scores.device)
    num_pos = true_pos[:, -1].to(torch.float64)
    ap = (gained * (true_pos / ranks)).sum(dim=1) / num_pos.clamp(min=1)
    return torch.where(num_pos > 0, ap, torch.zeros_like(ap))


def mean_average_precision(scores: Tensor, targets: Tensor) -> Tensor:
    """MAP x 100 over all classes, classes without positives counted as 0."""
    return average_precision_per_class(scores, targets).mean() * 100.0


#: A label is predicted when its probability is at least this.
THRESHOLD = 0.5
#: The ranked operating point: at most this many predicted labels per image.
TOP_K = 3
#: The six metrics of one operating point, in the order of the published tables.
METRIC_NAMES = ("OP", "OR", "OF1", "CP", "CR", "CF1")


def label_decisions(
    scores: Tensor, threshold: float = THRESHOLD, top_k: int | None = None
) -> Tensor:
    """The (N, C) boolean decisions: score >= ``threshold`` (and among the image's ``top_k``).

    Args:
        scores: (N, C) probabilities.
        threshold: the smallest probability that is a predicted label.
        top_k: if given, only the ``top_k`` highest scores of each row can be
            predicted; ties go to the lower column index.
    """
    if scores.ndim != 2:
        raise ValueError(
            f"scores must be a (num_images, num_classes) matrix, got shape {tuple(scores.shape)}."
        )
    predicted = scores >= threshold
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}.")
        # Stable: equal scores keep their column order, so the lower index wins a tie.
        order = torch.argsort(scores, dim=1, descending=True, stable=True)
        ranked = torch.zeros_like(predicted)
        ranked.scatter_(1, order[:, :top_k], True)
        predicted &= ranked
    return predicted


def _f1(precision: Tensor, recall: Tensor) -> Tensor:
    total = precision + recall
    return torch.where(total > 0, 2 * precision * recall / total.clamp(min=1e-12), 0.0)


def precision_recall_f1(predicted: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """OP, OR, OF1, CP, CR, CF1 (x 100) of 0/1 decisions against binary targets.

    Args:
        predicted: (N, C) decisions (bool or 0/1), e.g. from :func:`label_decisions`.
        targets: (N, C) ground truth; anything > 0.5 is positive (as for mAP,
            so observed labels with -1 negatives work too).

    Returns:
        ``{name: 0-dim float tensor}`` for the names of ``METRIC_NAMES``.
    """
    if predicted.ndim != 2 or predicted.shape != targets.shape:
        raise ValueError(
            "predicted and targets must both be (num_images, num_classes) matrices of the same "
            f"shape, got {tuple(predicted.shape)} and {tuple(targets.shape)}."
        )
    num_classes = predicted.shape[1]
    if predicted.shape[0] == 0:  # nothing evaluated: every ratio is 0 / 0
        zero = torch.zeros((), device=predicted.device)
        return {name: zero.clone() for name in METRIC_NAMES}
    preds = predicted.detach().long()
    target = (targets.detach() > 0.5).long()
    # The decisions are already 0/1 integers: torchmetrics takes them as labels (no threshold).
    args = (preds, target, num_classes)
    metrics = {
        "OP": multilabel_precision(*args, average="micro", validate_args=False),
        "OR": multilabel_recall(*args, average="micro", validate_args=False),
        "CP": multilabel_precision(*args, average="macro", validate_args=False),
        "CR": multilabel_recall(*args, average="macro", validate_args=False),
    }
    metrics["OF1"] = _f1(metrics["OP"], metrics["OR"])
    metrics["CF1"] = _f1(metrics["CP"], metrics["CR"])
    return {name: metrics[name].float() * 100.0 for name in METRIC_NAMES}


def operating_point_metrics(scores: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """The six metrics at the 0.5 threshold (``OF1``, ...) and for the top 3 (``top3/OF1``, ...).

    Args:
        scores: (N, C) probabilities.
        targets: (N, C) ground truth (anything > 0.5 is positive).
    """
    metrics = precision_recall_f1(label_decisions(scores), targets)
    ranked = precision_recall_f1(label_decisions(scores, top_k=TOP_K), targets)
    metrics.update({f"top{TOP_K}/{name}": value for name, value in ranked.items()})
    return metrics
