"""What a resumed fit may change, and whether a checkpoint fits the run that restores it.

A resumed ``fit`` continues the checkpoint's training, so :func:`resume_plan`
sorts what differs between the checkpoint's hyper-parameters and the new
run's (docs/guides/resume.md):

* :data:`REFUSED` -- the network, its classes, the loss and the train mode: the
  restored weights, optimizer state and loss state were made with the checkpoint's.
* :data:`NO_EFFECT` -- the initial weights: a resumed run's weights are the checkpoint's.
* everything else (``lr``, ``lr_mult``, ``linear_init``, ``schedule_epochs``,
  preprocessing and speed settings) is applied from the first resumed step.

:func:`check_checkpoint_fits` applies it when Lightning restores a checkpoint into a
fit (and checks the network, classes and preprocessing outside fit);
:func:`refuse_resume_early` refuses, before any set-up work, the resumes it would refuse
for settings that set-up does not change.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from spml_lightning.training.checkpoint_files import read_checkpoint
from spml_lightning.training.compatibility import (
    REMOVED_OPTIONS,
    backbone_difference,
    check_backbone,
    check_class_names,
    check_preprocessing,
    class_names_difference,
    comparable,
)

__all__ = [
    "EARLY_REFUSED",
    "NO_EFFECT",
    "REFUSED",
    "ResumePlan",
    "check_checkpoint_fits",
    "refuse_resume_early",
    "resume_plan",
]

#: Hyper-parameters a resumed fit must keep: they define what the checkpoint's state means.
REFUSED: tuple[str, ...] = ("backbone", "num_classes", "class_names", "loss", "train_mode")

#: Hyper-parameters that do nothing on a resumed fit.
NO_EFFECT: tuple[str, ...] = ("weights",)


@dataclass
class ResumePlan:
    """What differs between a checkpoint's hyper-parameters and a resumed run's.

    Attributes:
        applied: ``{name: (checkpoint's value, new value)}`` of the changes the resumed run applies.
        no_effect: the same for changes that do nothing (see :data:`NO_EFFECT`).
        refused: one description per change a resume cannot make (see :data:`REFUSED`).
        removed: ``{name: checkpoint's value}`` of options since removed that the checkpoint
            set to something else than their do-nothing value (see :data:`REMOVED_OPTIONS`).
    """

    applied: dict[str, tuple[Any, Any]]
    no_effect: dict[str, tuple[Any, Any]]
    refused: list[str]
    removed: dict[str, Any] = field(default_factory=dict)

    def enforce(self, source: str) -> None:
        """Refuse the resume if anything is refused; else say what changes and what does nothing.

        Args:
            source: the checkpoint, as the messages name it.

        Raises:
            ValueError: naming every refused change and what to do instead.
        """
        if self.refused:
            raise ValueError(
                f"Cannot resume from {source} with other settings than it was trained with: "
                f"{'; '.join(self.refused)}. A resumed fit continues that training, whose "
                "weights, optimizer state and loss state belong to its network, classes and loss. "
                "Resume with the checkpoint's settings, or train with the new ones in a new run "
                "(without --ckpt_path)."
            )
        for name, old in self.removed.items():
            rank_zero_warn(
                f"{source} was trained with {name}={old!r}, an option since removed "
                "(docs/results/performance.md): the resumed fit trains without it."
            )
        for name, (old, new) in self.no_effect.items():
            rank_zero_warn(
                f"{name}={new!r} has no effect on a resumed fit: its weights are those of {source} "
                f"(which started from {name}={old!r})."
            )
        if self.applied:
            changes = ", ".join(
                f"{name} {new!r} (the checkpoint trained with {old!r})"
                for name, (old, new) in self.applied.items()
            )
            rank_zero_info(f"Resumed with {changes}.")


def _loss_difference(checkpoint: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    old_class, new_class = (
        str(c.get("class_path", "?")).rpartition(".")[2] for c in (checkpoint, new)
    )
    if old_class != new_class:
        return f"loss: {old_class} in the checkpoint, {new_class} now"
    old_args, new_args = checkpoint.get("init_args", {}), new.get("init_args", {})
    changed = [
        f"{key} {old_args.get(key)!r} -> {new_args.get(key)!r}"
        for key in sorted(set(old_args) | set(new_args))
        if old_args.get(key) != new_args.get(key)
    ]
    return f"loss {new_class}: {', '.join(changed)} (checkpoint -> now)"


def resume_plan(checkpoint: Mapping[str, Any], new: Mapping[str, Any]) -> ResumePlan:
    """Sort the hyper-parameters that differ between a checkpoint and the run resuming it.

    Names only one side has (checkpoints of older versions) and private ones
    (``_instantiator``, added by LightningCLI) are not compared.

    Args:
        checkpoint: the checkpoint's ``hyper_parameters``.
        new: the resumed model's hyper-parameters.
    """
    plan = ResumePlan(applied={}, no_effect={}, refused=[])
    plan.removed = {
        name: checkpoint[name]
        for name, unset in REMOVED_OPTIONS.items()
        if name in checkpoint and name not in new and checkpoint[name] != unset
    }
    for name in sorted(set(checkpoint) & set(new)):
        old_value, new_value = comparable(checkpoint[name]), comparable(new[name])
        if name.startswith("_") or old_value == new_value:
            continue
        if name == "loss" and isinstance(old_value, Mapping) and isinstance(new_value, Mapping):
            plan.refused.append(_loss_difference(old_value, new_value))
        elif name == "class_names":
            if (
                old_value is not None and new_value is not None
            ):  # None: not recorded, nothing to compare
                plan.refused.append(f"class_names: {class_names_difference(old_value, new_value)}")
        elif name == "backbone":  # one class under two import paths is no change
            difference = backbone_difference(old_value, new_value)
            if difference is not None:
                plan.refused.append(f"backbone: {difference}")
        elif name in REFUSED:
            plan.refused.append(f"{name}: {old_value!r} in the checkpoint, {new_value!r} now")
        elif name in NO_EFFECT:
            plan.no_effect[name] = (old_value, new_value)
        else:
            plan.applied[name] = (old_value, new_value)
    return plan


def check_checkpoint_fits(
    checkpoint: Mapping[str, Any], model: MutableMapping[str, Any], trainer: Any
) -> None:
    """Refuse a checkpoint that does not fit the run restoring it; note what a resumed fit changes.

    Outside fit only the backbone, the classes and the preprocessing matter: a model
    without class names takes the checkpoint's. A resumed fit may change the optimizer
    and schedule settings, not the network, its classes or the loss (:func:`resume_plan`).

    Args:
        checkpoint: the checkpoint's ``hyper_parameters``.
        model: the hyper-parameters of the model the trainer restores it into (changed in place).
        trainer: the trainer restoring it: its ``ckpt_path`` (named in the messages), its
            datamodule's ``preprocessing``, and whether it fits (else test, validate or predict).

    Raises:
        ValueError: naming what does not fit and what to do instead.
    """
    path = getattr(trainer, "ckpt_path", None)
    source = f"checkpoint {path}" if path else "the checkpoint"
    fitting = trainer.state.fn == "fit"
    preprocessing = getattr(getattr(trainer, "datamodule", None), "preprocessing", {})
    if fitting:
        resume_plan(checkpoint, model).enforce(source)
        return
    if model.get("class_names") is None:  # no names from the data: the checkpoint's hold
        model["class_names"] = checkpoint.get("class_names")
    check_backbone(checkpoint.get("backbone"), model.get("backbone"), source)
    check_class_names(checkpoint.get("class_names"), model["class_names"], source)
    check_preprocessing(checkpoint, preprocessing, source)


#: The :data:`REFUSED` settings the model's set-up leaves as they are (it takes the class
#: names and their count from the data): a resume that changes one is refused before the
#: set-up's own work (a feature extraction, a prior's scoring), which could take hours.
EARLY_REFUSED: tuple[str, ...] = ("backbone", "loss", "train_mode")


def refuse_resume_early(ckpt_path: str | Path, model: Mapping[str, Any]) -> None:
    """Refuse a resume from ``ckpt_path`` that changes one of :data:`EARLY_REFUSED`.

    The same refusal, with the same message, as the restore's (:func:`check_checkpoint_fits`),
    made before the datamodule and the model are set up; the rest is checked then.

    Args:
        ckpt_path: the checkpoint the fit resumes (a local file).
        model: the resumed model's hyper-parameters.
    """
    if not Path(ckpt_path).expanduser().is_file():
        return  # a remote checkpoint: Lightning reads it, the restore checks it
    try:
        checkpoint = read_checkpoint(ckpt_path, weights_only=True)
    except pickle.UnpicklingError:
        return  # hyper-parameters holding objects (a backbone module): the restore checks them
    recorded = checkpoint.get("hyper_parameters", {})
    plan = resume_plan(
        {k: v for k, v in recorded.items() if k in EARLY_REFUSED},
        {k: v for k, v in model.items() if k in EARLY_REFUSED},
    )
    if plan.refused:
        plan.enforce(f"checkpoint {ckpt_path}")
