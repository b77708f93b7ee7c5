"""A study's search space: config path -> :class:`SearchRange`, built from the config.

Built from the spaces ``--tune.spaces`` names -- the loss's own (declared next to
the loss, ``SPMLLoss.search_space``), the optimiser's (around the config's own
learning rate), Cole et al.'s grid -- and the user's ``--tune.space`` entries,
which add keys or replace built-in ones. Every key must name an option of the
config; a categorical range always holds the config's own value, so that the
config itself can be the study's first trial.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.utilities import rank_zero_info

from spml_lightning.console import UsageError
from spml_lightning.losses.search_space import SearchRange
from spml_lightning.tuning.config_paths import config_leaves, get_path, loss_class
from spml_lightning.tuning.options import TuneOptions

__all__ = ["Space", "build_space", "config_values", "describe_difference", "serialized"]

Space = dict[str, SearchRange]

LOSS_ARGS = "model.loss.init_args"
BATCH_SIZE = "data.init_args.batch_size"


def _optimizer_space(config: dict[str, Any]) -> Space:
    """Lr a decade either side of the config's, the head's multiplier, a few batch sizes."""
    space: Space = {
        "model.lr_mult": SearchRange.log_uniform(1.0, 30.0),
        BATCH_SIZE: SearchRange.choice(8, 16, 32, 64),
    }
    lr = config.get("model", {}).get("lr")
    if isinstance(lr, int | float) and lr > 0:
        space["model.lr"] = SearchRange.log_uniform(lr / 10, lr * 10)
    return space


#: Cole et al.'s grid (CVPR 2021): batch {8, 16} x lr {1e-2, 1e-3, 1e-4, 1e-5}.
COLE_SPACE: Space = {
    "model.lr": SearchRange.choice(1e-2, 1e-3, 1e-4, 1e-5),
    BATCH_SIZE: SearchRange.choice(8, 16),
}


def _built_in(name: str, config: dict[str, Any]) -> Space:
    if name == "loss":
        cls = loss_class(config)
        declared: Mapping[str, SearchRange] = getattr(cls, "search_space", {})
        if not declared:
            rank_zero_info(
                f"spml tune: {getattr(cls, '__name__', cls)} declares no search space of its own."
            )
        return {f"{LOSS_ARGS}.{key}": value for key, value in declared.items()}
    if name == "optimizer":
        return _optimizer_space(config)
    return dict(COLE_SPACE)


def _unknown_key_error(key: str, leaves: Mapping[str, Any]) -> UsageError:
    section = key.split(".")[0]
    same_section = sorted(path for path in leaves if path.split(".")[0] == section)
    close = difflib.get_close_matches(key, list(leaves), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    listing = same_section or sorted({path.split(".")[0] for path in leaves})
    return UsageError(
        f"--tune.space key {key!r} names no option of this config.{hint} Valid keys"
        f"{f' under {section}.' if same_section else ' begin with'}: {', '.join(listing)}."
    )


def build_space(config: dict[str, Any], options: TuneOptions) -> Space:
    """The search space of ``options`` for ``config`` (whose loss has explicit arguments).

    Raises:
        UsageError: If a key names no option of the config, an entry is not a valid
            range, or the space is empty.
    """
    leaves = config_leaves(config)
    space: Space = {}
    for name in options.spaces:
        for key, value in _built_in(name, config).items():
            if key in leaves:
                space[key] = value
            else:
                rank_zero_info(f"spml tune: {key} is not an option of this config: not searched.")
    for key, entry in options.space.items():
        if key not in leaves:
            raise _unknown_key_error(key, leaves)
        try:
            space[key] = SearchRange.from_dict(entry, f"--tune.space {key}")
        except ValueError as error:
            raise UsageError(str(error)) from None
    if not space:
        raise UsageError(
            "the search space is empty: name built-in spaces (--tune.spaces [loss, optimizer]) "
            "or give entries (--tune.space)."
        )
    for key, value in space.items():
        current = leaves[key]
        if value.kind == "categorical" and current not in value.choices:
            rank_zero_info(f"spml tune: {key} also tries the config's own value {current!r}.")
            space[key] = value.with_choice(current)
    return dict(sorted(space.items()))


def config_values(config: dict[str, Any], space: Space) -> dict[str, Any]:
    """The config's own value of each key of ``space`` that a trial can take (its trial 0)."""
    values = {}
    for key, value in space.items():
        current = get_path(config, key)
        if value.kind == "categorical" or (
            isinstance(current, int | float) and not isinstance(current, bool)
        ):
            values[key] = current
    return values


def serialized(space: Space) -> str:
    """The space as JSON, as a study records it."""
    return json.dumps({key: value.as_dict() for key, value in space.items()}, sort_keys=True)


def describe_difference(recorded: str, space: Space) -> str | None:
    """What differs between a study's recorded space and ``space`` (None: nothing)."""
    before: dict[str, Any] = json.loads(recorded)
    now = json.loads(serialized(space))
    parts = []
    if added := sorted(now.keys() - before.keys()):
        parts.append(f"added {', '.join(added)}")
    if removed := sorted(before.keys() - now.keys()):
        parts.append(f"removed {', '.join(removed)}")
    for key in sorted(before.keys() & now.keys()):
        if before[key] != now[key]:
            parts.append(f"{key} was {before[key]}, now {now[key]}")
    return "; ".join(parts) or None
