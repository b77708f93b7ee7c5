"""A metric over one hyper-parameter, read back from a folder of runs' logs.

The paper shows GR Loss's test mAP over a grid of one hyper-parameter at a
time (q2, q3, the β and α end points). Runs made with ``spml`` (or any
Lightning Trainer) leave, per run folder (``lightning_logs/version_N``), the
logged metrics -- TensorBoard event files, or ``metrics.csv`` when the
CSVLogger was used -- and the configuration: ``config.yaml`` written by the
``spml`` command and ``hparams.yaml`` written by the logger. This module turns
such a folder into (hyper-parameter value, metric) points; ``plots.plot_sweep``
draws them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = ["SweepPoint", "collect_sweep", "find_run_dirs", "read_hyper_parameter", "read_metric"]

CONFIG_FILES: tuple[str, ...] = ("config.yaml", "hparams.yaml")
"""Files of a run folder searched for hyper-parameters, in this order."""

_MISSING = object()


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: its hyper-parameter value and metric."""

    value: Any
    metric: float
    run_dir: Path


def find_run_dirs(root: str | Path) -> list[Path]:
    """Every folder below ``root`` (itself included) holding TensorBoard events or a metrics.csv."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"No folder {root}: pass the folder your runs were logged to.")
    found = {p.parent for p in root.rglob("events.out.tfevents.*")}
    found |= {p.parent for p in root.rglob("metrics.csv")}
    return sorted(found)


def _tensorboard_values(run_dir: Path, metric: str) -> list[float] | None:
    if not any(run_dir.glob("events.out.tfevents.*")):
        return None
    try:
        from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator
    except ImportError:
        raise ImportError(
            f"{run_dir} holds TensorBoard logs; reading them needs tensorboard "
            "(pip install tensorboard)."
        ) from None
    events = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})
    events.Reload()
    if metric not in events.Tags().get("scalars", []):
        return None
    return [
        event.value for event in sorted(events.Scalars(metric), key=lambda e: (e.step, e.wall_time))
    ]


def _csv_values(run_dir: Path, metric: str) -> list[float] | None:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    values = [float(row[metric]) for row in rows if row.get(metric) not in (None, "")]
    return values or None


def read_metric(
    run_dir: str | Path, metric: str = "test/mAP", reduce: Literal["last", "max", "min"] = "last"
) -> float | None:
    """The metric a run logged (its last, largest or smallest value); ``None`` if it logged none."""
    if reduce not in ("last", "max", "min"):
        raise ValueError(f"reduce must be 'last', 'max' or 'min', got {reduce!r}.")
    run_dir = Path(run_dir)
    values = _tensorboard_values(run_dir, metric) or _csv_values(run_dir, metric)
    if not values:
        return None
    return {"last": values[-1], "max": max(values), "min": min(values)}[reduce]


def _leaves(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every scalar of a nested YAML tree; list items by index."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, f"{prefix}{key}.")
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from _leaves(value, f"{prefix}{index}.")
    else:
        yield prefix[:-1], tree


def _lookup(tree: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if isinstance(tree, dict) and key in tree:
            tree = tree[key]
        elif isinstance(tree, list) and key.isdigit() and int(key) < len(tree):
            tree = tree[int(key)]
        else:
            return _MISSING
    return tree


def read_hyper_parameter(run_dir: str | Path, name: str) -> Any:
    """The value of a hyper-parameter recorded in a run folder.

    ``name`` is a dotted path as in the ``spml`` config (``model.loss.init_args.q2``,
    list items by index: ``model.loss.init_args.beta.1``), the same without
    the ``model.`` prefix (as ``hparams.yaml`` stores it), or any unambiguous
    tail of one (``q2``, ``beta.1``).

    Raises:
        FileNotFoundError: if the folder has neither config.yaml nor hparams.yaml.
        KeyError: if no file records ``name``, or a tail matches several different values.
        ValueError: if the value is a list or mapping rather than one number or string.
    """
    run_dir = Path(run_dir)
    files = [run_dir / f for f in CONFIG_FILES if (run_dir / f).is_file()]
    if not files:
        raise FileNotFoundError(
            f"{run_dir} has none of {list(CONFIG_FILES)}; cannot tell its hyper-parameters."
        )
    bare = name[len("model.") :] if name.startswith("model.") else name
    for path in files:
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"Cannot read {path} as YAML: {err}") from err
        value = next(
            (
                v
                for v in (_lookup(tree, c) for c in (name, bare, f"model.{bare}"))
                if v is not _MISSING
            ),
            _MISSING,
        )
        if value is _MISSING:
            leaves = list(_leaves(tree))
            matches = {p: v for p, v in leaves if p == bare or p.endswith(f".{bare}")}
            if len({repr(v) for v in matches.values()}) > 1:
                raise KeyError(
                    f"{name!r} is ambiguous in {path}: {matches}; pass the full dotted path."
                )
            value = next(iter(matches.values()), _MISSING)
            if value is _MISSING and any(
                p.startswith(f"{bare}.") or f".{bare}." in p for p, _ in leaves
            ):
                value = []  # a container: reported below
        if isinstance(value, (list, dict)):
            raise ValueError(
                f"{name!r} in {path} is a list or mapping; name one item, e.g. {name}.0."
            )
        if value is not _MISSING:
            return value
    raise KeyError(f"No hyper-parameter {name!r} in {', '.join(map(str, files))}.")


def collect_sweep(
    root: str | Path,
    hyper_parameter: str,
    metric: str = "test/mAP",
    reduce: Literal["last", "max", "min"] = "last",
) -> list[SweepPoint]:
    """(hyper-parameter value, metric) of every run below ``root`` that logged ``metric``.

    Run folders that logged no ``metric`` are not points: with ``spml fit``
    and ``spml test`` run as two commands, the fit's folder holds only
    validation metrics and the test's folder the test metrics.

    Args:
        root: folder holding the runs (searched recursively).
        hyper_parameter: see :func:`read_hyper_parameter`.
        metric: the logged metric, e.g. ``test/mAP`` or ``val/mAP``.
        reduce: which of the run's values of the metric: ``last``, ``max`` or ``min``.

    Returns:
        The points sorted by value.

    Raises:
        ValueError: if no run below ``root`` logged ``metric``.
    """
    points = []
    for run_dir in find_run_dirs(root):
        value = read_metric(run_dir, metric, reduce)
        if value is None:
            continue
        points.append(
            SweepPoint(read_hyper_parameter(run_dir, hyper_parameter), float(value), run_dir)
        )
    if not points:
        raise ValueError(
            f"No run below {root} logged {metric!r}; test the runs first "
            "(spml test ... --ckpt_path best)."
        )
    return sorted(points, key=_value_order)


def _value_order(point: SweepPoint) -> tuple[int, float, str]:
    """Numbers (int and float alike) in numeric order, then anything else by text."""
    value = point.value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))
