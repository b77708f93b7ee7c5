"""The ranges a hyper-parameter search draws a loss's arguments from (``spml tune``).

Each loss declares its default search space next to itself, as the class
attribute ``search_space``: argument name -> :class:`SearchRange`. A name may
end in ``.<index>`` for one entry of a sequence argument (``beta.1`` is GR's
``wT``). The ranges contain the published settings of the loss, so the search
can find them again; ``spml_lightning.tuning`` turns them into Optuna
distributions keyed by config path (``model.loss.init_args.q2``). This module is
plain data: no Optuna, no Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["RangeKind", "SearchRange"]

RangeKind = Literal["float", "int", "categorical"]

#: The fields a range may have in a user's YAML entry, by kind.
_FIELDS: dict[str, set[str]] = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}


@dataclass(frozen=True)
class SearchRange:
    """One hyper-parameter's range: a float or int interval, or a list of choices.

    Args:
        kind: ``float``, ``int`` or ``categorical``.
        low: the smallest value (float and int).
        high: the largest value, included (float and int).
        log: draw uniformly in log space (``low`` > 0).
        step: draw from ``low, low + step, ...`` only (and make the range a grid).
        choices: the values of a ``categorical`` range.
    """

    kind: RangeKind
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "categorical":
            if not self.choices:
                raise ValueError("a categorical range needs at least one value in 'choices'.")
            return
        if self.kind not in ("float", "int"):
            raise ValueError(f"range type must be float, int or categorical, got {self.kind!r}.")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.kind} range needs 'low' and 'high'.")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ValueError(f"range low {self.low} must be finite and <= high {self.high}.")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}.")
        if self.log and self.step is not None:
            raise ValueError("a range is either log or stepped, not both.")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"range step must be > 0, got {self.step}.")

    @classmethod
    def uniform(cls, low: float, high: float, step: float | None = None) -> SearchRange:
        """Floats uniformly in ``[low, high]`` (on a grid of ``step`` if given)."""
        return cls("float", float(low), float(high), step=step)

    @classmethod
    def log_uniform(cls, low: float, high: float) -> SearchRange:
        """Floats uniformly in log space in ``[low, high]``, ``low > 0``."""
        return cls("float", float(low), float(high), log=True)

    @classmethod
    def integers(cls, low: int, high: int, step: int = 1) -> SearchRange:
        """The integers ``low, low + step, ..., high``."""
        return cls("int", low, high, step=step)

    @classmethod
    def choice(cls, *choices: Any) -> SearchRange:
        """One of ``choices``."""
        return cls("categorical", choices=tuple(choices))

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any], name: str = "range") -> SearchRange:
        """A range from a YAML entry: ``{type: float, low: 0.001, high: 1, log: true}``, ...

        Raises:
            ValueError: naming ``name``, when the entry has no valid ``type``, a field
                that type does not take, or values that make no range.
        """
        if not isinstance(entry, Mapping) or entry.get("type") not in _FIELDS:
            raise ValueError(
                f"{name}: expected a mapping with 'type' float, int or categorical, e.g. "
                f"{{type: float, low: 0.001, high: 1.0, log: true}} or "
                f"{{type: categorical, choices: [8, 16]}}; got {entry!r}."
            )
        kind = entry["type"]
        unknown = set(entry) - _FIELDS[kind]
        if unknown:
            raise ValueError(
                f"{name}: a {kind} range takes {sorted(_FIELDS[kind])}, not {sorted(unknown)}."
            )
        try:
            if kind == "categorical":
                choices = entry.get("choices")
                if not isinstance(choices, Sequence) or isinstance(choices, str):
                    raise ValueError(f"'choices' must be a list, got {choices!r}.")
                return cls("categorical", choices=tuple(choices))
            number = int if kind == "int" else float
            step = entry.get("step")
            return cls(
                kind,
                number(entry["low"]) if "low" in entry else None,
                number(entry["high"]) if "high" in entry else None,
                log=bool(entry.get("log", False)),
                step=number(step) if step is not None else None,
            )
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name}: {error}") from None

    def as_dict(self) -> dict[str, Any]:
        """The YAML form :meth:`from_dict` reads (what a study records of its space)."""
        if self.kind == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        entry: dict[str, Any] = {"type": self.kind, "low": self.low, "high": self.high}
        if self.log:
            entry["log"] = True
        if self.step is not None:
            entry["step"] = self.step
        return entry

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this range can draw (a number within bounds, a choice)."""
        if self.kind == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        assert self.low is not None and self.high is not None
        return self.low <= value <= self.high

    def grid(self) -> list[Any]:
        """Every value of a discrete range (categorical, int, or stepped float).

        Raises:
            ValueError: For a continuous float range, which has no grid.
        """
        if self.kind == "categorical":
            return list(self.choices)
        if self.step is None and self.kind == "float":
            raise ValueError("a continuous float range has no grid: give it a 'step'.")
        assert self.low is not None and self.high is not None
        step = self.step or 1
        count = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        values = [self.low + i * step for i in range(count)]
        return [int(v) for v in values] if self.kind == "int" else values

    def with_choice(self, value: Any) -> SearchRange:
        """A categorical range with ``value`` added to its choices (itself when already there)."""
        if self.kind != "categorical" or value in self.choices:
            return self
        return SearchRange("categorical", choices=(*self.choices, value))

    def scaled(self, value: float) -> SearchRange:
        """This range's bounds (or numeric choices) multiplied by ``value``."""
        if self.kind == "categorical":
            return SearchRange("categorical", choices=tuple(c * value for c in self.choices))
        assert self.low is not None and self.high is not None
        step = self.step * value if self.step is not None else None
        return SearchRange(self.kind, self.low * value, self.high * value, self.log, step)
