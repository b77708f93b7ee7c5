"""Matplotlib figures of the SPML diagnostics.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot,
so nothing opens a window, no global figure state leaks (a report can draw
hundreds), and ``figure.savefig("x.png")`` renders with Agg anywhere. In a
notebook, ``display(figure)`` (or the figure as a cell's last value) shows it.
matplotlib comes with the ``notebooks`` extra: ``pip install "spml_lightning[notebooks]"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from spml_lightning.analysis.diagnostics import DistinguishingAbility, FalseNegativeRate

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL import Image

    from spml_lightning.analysis.sweep import SweepPoint

__all__ = [
    "plot_distinguishing_ability",
    "plot_false_negative_rate",
    "plot_loss_gradients",
    "plot_predictions",
    "plot_sweep",
]


def _figure(**kwargs) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            'Plots need matplotlib: pip install "spml_lightning[notebooks]" '
            "(or pip install matplotlib)."
        ) from None
    return Figure(**kwargs)


def plot_false_negative_rate(
    curve: FalseNegativeRate, pseudo_labels: Mapping[str, np.ndarray] | None = None
) -> Figure:
    """FN/(FN+TN) per confidence bin, with pseudo-label curves drawn over it.

    Bins without any unknown entry (NaN rate) are not drawn.

    Args:
        curve: from ``diagnostics.false_negative_rate``.
        pseudo_labels: curves over ``curve.centers`` by legend label, e.g.
            ``{"k̂ (epoch 7)": pseudo_label_curve(loss, curve.centers)}``; a 2-D
            value (one row per class) is drawn as thin lines with its mean.
    """
    figure = _figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
    present = ~np.isnan(curve.rate)
    width = np.diff(curve.edges)
    axes.bar(
        curve.centers[present],
        curve.rate[present],
        width=width[present],
        color="tab:blue",
        alpha=0.6,
        label="FN / (FN + TN) of unknown labels",
    )
    for index, (label, values) in enumerate((pseudo_labels or {}).items()):
        values = np.asarray(values)
        color = f"C{index + 1}"
        if values.ndim == 2:
            for row in values:
                axes.plot(curve.centers, row, color=color, linewidth=0.5, alpha=0.4)
            values = values.mean(axis=0)
            label = f"{label} (mean of classes)"
        axes.plot(curve.centers, values, color=color, linewidth=2, label=label)
    axes.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="predicted probability p",
        ylabel="P(positive | unknown, p)",
        title="False negatives among unknown labels",
    )
    axes.legend(loc="upper left", fontsize="small")
    return figure


def plot_distinguishing_ability(result: DistinguishingAbility, bins: int = 50) -> Figure:
    """Histograms of p for unknown labels that are truly positive vs truly negative.

    Densities (not counts) are drawn, since negatives far outnumber positives;
    the Wasserstein distance between the two is in the title.
    """
    figure = _figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
    edges = np.linspace(0.0, 1.0, bins + 1)
    for values, label, color in (
        (result.negative, "unknown, truly negative (TN)", "tab:blue"),
        (result.positive, "unknown, truly positive (FN)", "tab:red"),
    ):
        if values.size:
            axes.hist(
                values,
                bins=edges,
                density=True,
                alpha=0.55,
                color=color,
                label=f"{label}, n = {values.size}",
            )
    distance = (
        "n/a (a group is empty)" if np.isnan(result.wasserstein) else f"{result.wasserstein:.4f}"
    )
    axes.set(
        xlim=(0, 1),
        xlabel="predicted probability p",
        ylabel="density",
        title=f"Distinguishing ability: Wasserstein distance {distance}",
    )
    axes.legend(fontsize="small")
    return figure


def plot_loss_gradients(
    probabilities: np.ndarray, gradients: Mapping[str, np.ndarray], side_by_side: bool = True
) -> Figure:
    """∂ℓ/∂z of an unknown entry over p for several losses (the paper's Fig. 1).

    Args:
        probabilities: the p grid.
        gradients: gradient curves by legend label (``loss_curves.unknown_logit_gradient``).
        side_by_side: one panel per loss; otherwise all curves on one panel.
    """
    if not gradients:
        raise ValueError("No gradient curves to plot.")
    panels = len(gradients) if side_by_side else 1
    figure = _figure(figsize=(3.2 * panels + 0.8, 3.4), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, panels, sharey=True))
    for index, (label, values) in enumerate(gradients.items()):
        ax = axes[index if side_by_side else 0]
        ax.plot(probabilities, values, color=f"C{index}", linewidth=2, label=label)
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set(xlim=(0, 1), xlabel="p of the unknown label")
        if side_by_side:
            ax.set_title(label)
    axes[0].set_ylabel("∂ℓ / ∂z  (< 0 pushes towards positive)")
    if not side_by_side:
        axes[0].legend(fontsize="small")
    return figure


def plot_sweep(
    points: Sequence[SweepPoint], hyper_parameter: str, metric: str = "test/mAP"
) -> Figure:
    """A metric over one hyper-parameter: every run a dot, the mean per value a line."""
    if not points:
        raise ValueError("No runs to plot.")
    figure = _figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
    numeric = all(
        isinstance(p.value, (int, float)) and not isinstance(p.value, bool) for p in points
    )
    values = sorted({p.value for p in points}, key=lambda v: v if numeric else str(v))
    position = {v: (v if numeric else i) for i, v in enumerate(values)}
    xs = [position[p.value] for p in points]
    axes.scatter(xs, [p.metric for p in points], color="tab:blue", alpha=0.6, label="runs")
    means = [np.mean([p.metric for p in points if p.value == v]) for v in values]
    axes.plot([position[v] for v in values], means, color="tab:orange", marker="o", label="mean")
    if not numeric:
        axes.set_xticks(range(len(values)), [str(v) for v in values])
    axes.set(xlabel=hyper_parameter, ylabel=metric, title=f"{metric} over {hyper_parameter}")
    axes.legend(fontsize="small")
    return figure


def plot_predictions(
    images: Sequence[Image.Image],
    predicted: Sequence[Sequence[str]],
    truth: Sequence[Sequence[str]] | None = None,
    columns: int = 4,
) -> Figure:
    """Images in a grid, titled with their predicted (and, if given, true) labels."""
    if not images:
        raise ValueError("No images to show.")
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    figure = _figure(figsize=(3 * columns, 3.3 * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i >= len(images):
            continue
        ax.imshow(images[i])
        title = "pred: " + (", ".join(predicted[i]) or "-")
        if truth is not None:
            title += "\ntrue: " + (", ".join(truth[i]) or "-")
        ax.set_title(title, fontsize="small")
    return figure
