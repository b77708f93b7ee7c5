"""``--tune.*``: what ``spml tune`` searches, how, and where the study lives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["BUILT_IN_SPACES", "TuneOptions"]

Sampler = Literal["tpe", "random", "grid"]
Pruner = Literal["median", "hyperband", "none"]

#: The built-in spaces ``--tune.spaces`` may name (``spml_lightning.tuning.space``).
BUILT_IN_SPACES: tuple[str, ...] = ("loss", "optimizer", "cole")


@dataclass(frozen=True)
class TuneOptions:
    """The options of ``spml tune`` (``--tune.*`` flags, or a ``tune:`` section of the config).

    Attributes:
        n_trials: the study's number of trials, counted over every run of the command and
            every worker (finished, failed, pruned or running; a trial run again after Ctrl-C
            or a crash counts once): running the command again continues the study up to
            this number.
        timeout: stop starting trials after this many seconds (None: no limit).
        storage: where the study lives: an SQLAlchemy URL (``sqlite:///...``,
            ``postgresql://user:password@host/db``) or ``journal:<file>`` (a journal file, e.g.
            on a shared disk). Default: ``sqlite:///<study folder>/study.db``.
        study_name: the study's name, and its folder's
            (``<trainer.default_root_dir>/tune/<study_name>/``). Default: the loss's class name.
        sampler: ``tpe`` (Optuna's default), ``random`` or ``grid`` (every combination of a
            discrete space).
        pruner: ``median`` (stop a trial whose val mAP is below the median of the earlier
            trials' at the same epoch), ``hyperband`` or ``none``.
        seed: the sampler's seed (each trial trains with the config's own ``seed_everything``).
        spaces: the built-in spaces to search: ``loss`` (the loss's own, declared next to it),
            ``optimizer`` (lr, lr_mult, batch size around the config's values), ``cole`` (Cole
            et al.'s grid: batch {8, 16} x lr {1e-2, 1e-3, 1e-4, 1e-5}). ``[]``: only ``space``.
        space: more entries, keyed by the config path they set (``model.loss.init_args.q2``,
            ``model.loss.init_args.beta.1`` for an entry of a list), each
            ``{type: float|int, low, high, log, step}`` or ``{type: categorical, choices}``;
            an entry replaces a built-in one of the same key.
        heartbeat_interval: seconds between a running trial's heartbeats in an SQL storage; a
            trial whose heartbeat stopped (its worker died) for ``grace_period`` is marked
            failed and its parameters tried again.
        grace_period: seconds without a heartbeat after which a running trial counts as dead.
    """

    n_trials: int = 20
    timeout: float | None = None
    storage: str | None = None
    study_name: str | None = None
    sampler: Sampler = "tpe"
    pruner: Pruner = "median"
    seed: int = 0
    spaces: list[str] = field(default_factory=lambda: ["loss", "optimizer"])
    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    heartbeat_interval: int = 60
    grace_period: int = 180

    def __post_init__(self) -> None:
        if isinstance(self.n_trials, bool) or self.n_trials < 1:
            raise ValueError(f"--tune.n_trials {self.n_trials}: give at least 1 trial.")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"--tune.timeout {self.timeout}: give a number of seconds > 0.")
        unknown = [name for name in self.spaces if name not in BUILT_IN_SPACES]
        if unknown:
            raise ValueError(
                f"--tune.spaces {unknown}: the built-in spaces are {list(BUILT_IN_SPACES)}."
            )
        if self.heartbeat_interval < 1 or self.grace_period <= self.heartbeat_interval:
            raise ValueError(
                f"--tune.heartbeat_interval {self.heartbeat_interval} / --tune.grace_period "
                f"{self.grace_period}: the interval is at least 1 s and the grace period longer."
            )
        if self.study_name is not None and not _safe_folder_name(self.study_name):
            raise ValueError(
                f"--tune.study_name {self.study_name!r}: the name is also a folder's; use "
                "letters, digits, '-', '_' and '.'."
            )


def _safe_folder_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and all(c.isalnum() or c in "-_." for c in name)
