"""Whether a checkpoint fits the run that loads it: class names, and what a resumed fit may change.

A model scores the classes it was trained on, in their order: its output
column ``j`` is the checkpoint's class ``j``. Testing it on data whose classes
are named or ordered differently compares each score with another class's
labels, and the mAP is wrong without any error. :func:`check_class_names`
refuses that (a reorder is refused too, not remapped: the order of the data's
classes is a setting of its config, so the fix is one flag, and a remap would
have to be carried through every output -- metrics per class, prediction files).

A resumed ``fit`` continues the checkpoint's training, so :func:`resume_plan`
sorts what differs between the checkpoint's hyper-parameters and the new
run's (docs/guides/resume.md):

* :data:`REFUSED` -- the network, its classes and the loss: the restored
  weights, optimizer state and loss state were made with the checkpoint's.
* :data:`NO_EFFECT` -- the initial weights: a resumed run's weights are the checkpoint's.
* everything else (``lr``, ``lr_mult``, ``linear_init``, ``schedule_epochs``,
  preprocessing and speed settings) is applied from the first resumed step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from spml_lightning.backbones.modules import backbone_config, same_class
from spml_lightning.training.checkpoint_files import read_checkpoint

__all__ = [
    "NO_EFFECT",
    "REFUSED",
    "ResumePlan",
    "backbone_difference",
    "check_backbone",
    "check_class_names",
    "check_given_backbone",
    "check_preprocessing",
    "class_names_difference",
    "resume_plan",
]

#: Hyper-parameters a resumed fit must keep: they define what the checkpoint's state means.
REFUSED: tuple[str, ...] = ("backbone", "num_classes", "class_names", "loss")

#: Hyper-parameters that do nothing on a resumed fit.
NO_EFFECT: tuple[str, ...] = ("weights",)


def class_names_difference(checkpoint: Sequence[str], data: Sequence[str]) -> str | None:
    """How the data's class names differ from a checkpoint's.

    None when they are the same, in the same order.
    """
    checkpoint, data = list(checkpoint), list(data)
    if checkpoint == data:
        return None
    if sorted(checkpoint) == sorted(data):
        moved = [
            f"{i}: {c!r} in the checkpoint, {d!r} in the data"
            for i, (c, d) in enumerate(zip(checkpoint, data, strict=True))
            if c != d
        ]
        return (
            f"the same {len(data)} classes in another order (column {'; '.join(moved[:3])}"
            f"{f'; {len(moved) - 3} more' if len(moved) > 3 else ''})"
        )
    only_checkpoint = [name for name in checkpoint if name not in data]
    only_data = [name for name in data if name not in checkpoint]
    return (
        f"{len(checkpoint)} classes in the checkpoint, {len(data)} in the data; only in the "
        f"checkpoint: {only_checkpoint or 'none'}; only in the data: {only_data or 'none'}"
    )


def check_class_names(
    checkpoint: Sequence[str] | None, data: Sequence[str] | None, source: str
) -> None:
    """Refuse data whose classes are not the checkpoint's, in the checkpoint's order.

    Args:
        checkpoint: the class names the model was trained on (None: not recorded, nothing to check).
        data: the class names of the data it is given (None: unknown, nothing to check).
        source: what the model's names come from, for the message (e.g. a checkpoint path).

    Raises:
        ValueError: naming the differences and the order the data must have.
    """
    if checkpoint is None or data is None:
        return
    difference = class_names_difference(checkpoint, data)
    if difference is None:
        return
    raise ValueError(
        f"The classes of the data do not match those of the model ({source}): {difference}. "
        "The model's output columns are its classes in its order, so every score would be "
        "compared with another class's labels. Give the data the model's classes in the model's "
        f'order (e.g. --data.init_args.class_names "{list(checkpoint)}"), or use a model trained '
        "on these classes."
    )


def backbone_difference(checkpoint: Any, current: Any) -> str | None:
    """How a run's backbone differs from the one a checkpoint records, or None if it is that one.

    A name compares as a name; a module config (``class_path``, ``init_args``)
    by its class (one class re-exported under two paths is one class) and its
    recorded arguments (``unrecorded`` ones cannot be compared).
    """
    if checkpoint is None or current is None:
        return None  # not recorded: nothing to compare
    if isinstance(checkpoint, Mapping) and isinstance(current, Mapping):
        if not same_class(checkpoint.get("class_path"), current.get("class_path")):
            return (
                f"{checkpoint.get('class_path')} in the checkpoint, {current.get('class_path')} now"
            )
        old_args = _comparable(checkpoint.get("init_args") or {})
        new_args = _comparable(current.get("init_args") or {})
        changed = [
            f"{key} {old_args.get(key)!r} -> {new_args.get(key)!r}"
            for key in sorted(set(old_args) & set(new_args))
            if old_args[key] != new_args[key]
        ]
        if changed:
            return f"{checkpoint.get('class_path')}: {', '.join(changed)} (checkpoint -> now)"
        return None
    if _comparable(checkpoint) == _comparable(current):
        return None
    return f"{_describe(checkpoint)} in the checkpoint, {_describe(current)} now"


def _describe(backbone: Any) -> str:
    if isinstance(backbone, Mapping):
        return str(backbone.get("class_path", dict(backbone)))
    return repr(backbone)


def check_backbone(checkpoint: Any, current: Any, source: str) -> None:
    """Refuse to load a checkpoint's weights into another network than the one it records.

    Args:
        checkpoint: the checkpoint's ``backbone`` hyper-parameter (a name or a module config).
        current: the backbone the run builds (the same forms).
        source: what the checkpoint is, for the message.

    Raises:
        ValueError: naming both backbones and the fix.
    """
    difference = backbone_difference(checkpoint, current)
    if difference is None:
        return
    raise ValueError(
        f"The model ({source}) was trained with another backbone than this run builds: "
        f"{difference}. Its weights belong to its own network. Give the run the checkpoint's "
        "backbone (its run's config.yaml has the model section; e.g. --model.backbone "
        f"{_describe(checkpoint)}), or use a checkpoint of this backbone."
    )


def check_given_backbone(checkpoint_path: Any, backbone: Any) -> None:
    """:func:`check_backbone` for ``SPMLModule.load_from_checkpoint(path, backbone=...)``.

    Args:
        checkpoint_path: the checkpoint (a local path; anything else is not read here).
        backbone: the backbone given: a name, a module config or an ``nn.Module``.
    """
    if not isinstance(checkpoint_path, (str, os.PathLike)) or not os.path.isfile(checkpoint_path):
        return  # a stream or a remote file: Lightning reads it, torch compares the keys
    stored = read_checkpoint(checkpoint_path, weights_only=True).get("hyper_parameters", {})
    given = backbone_config(backbone) if isinstance(backbone, nn.Module) else backbone
    check_backbone(stored.get("backbone"), given, f"checkpoint {os.fspath(checkpoint_path)}")


def check_preprocessing(
    checkpoint: Mapping[str, Any], data: Mapping[str, Any], source: str
) -> None:
    """Refuse to evaluate a model on images prepared otherwise than for its training.

    Another image size or normalisation changes every score: a test mAP computed so
    would be reported as the model's, silently wrong.

    Args:
        checkpoint: the model's recorded hyper-parameters (``image_size``, ``mean``, ``std``;
            None: not recorded, nothing to check).
        data: the datamodule's ``preprocessing`` (the same keys).
        source: what the model comes from, for the message (e.g. a checkpoint path).

    Raises:
        ValueError: naming each difference and the flags that give the data the model's values.
    """
    differences, flags = [], []
    for key in ("image_size", "mean", "std"):
        trained, given = checkpoint.get(key), data.get(key)
        if trained is None or given is None:
            continue
        if _comparable(trained) != _comparable(given):
            differences.append(f"{key} {trained} (the data's: {given})")
            value = trained if key == "image_size" else list(trained)
            flags.append(f"--data.init_args.{key} {value}")
    if differences:
        raise ValueError(
            f"The model ({source}) was trained on images with {'; '.join(differences)}. "
            "Scored on images prepared otherwise, every score and the mAP would change. Give "
            f"the data the model's preprocessing ({' '.join(flags)}; the run's config.yaml has "
            "it), or use a model trained with this preprocessing."
        )


@dataclass
class ResumePlan:
    """What differs between a checkpoint's hyper-parameters and a resumed run's.

    Attributes:
        applied: ``{name: (checkpoint's value, new value)}`` of the changes the resumed run applies.
        no_effect: the same for changes that do nothing (see :data:`NO_EFFECT`).
        refused: one description per change a resume cannot make (see :data:`REFUSED`).
    """

    applied: dict[str, tuple[Any, Any]]
    no_effect: dict[str, tuple[Any, Any]]
    refused: list[str]

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


def _comparable(value: Any) -> Any:
    # A value read back from a checkpoint may hold tuples where the config gave lists.
    if isinstance(value, Mapping):
        return {key: _comparable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_comparable(item) for item in value]
    return value


def resume_plan(checkpoint: Mapping[str, Any], new: Mapping[str, Any]) -> ResumePlan:
    """Sort the hyper-parameters that differ between a checkpoint and the run resuming it.

    Names only one side has (checkpoints of older versions) and private ones
    (``_instantiator``, added by LightningCLI) are not compared.

    Args:
        checkpoint: the checkpoint's ``hyper_parameters``.
        new: the resumed model's hyper-parameters.
    """
    plan = ResumePlan(applied={}, no_effect={}, refused=[])
    for name in sorted(set(checkpoint) & set(new)):
        old_value, new_value = _comparable(checkpoint[name]), _comparable(new[name])
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
