"""Whether a checkpoint fits the run that loads it: its classes, network and preprocessing.

A model scores the classes it was trained on, in their order: its output
column ``j`` is the checkpoint's class ``j``. Testing it on data whose classes
are named or ordered differently compares each score with another class's
labels, and the mAP is wrong without any error. :func:`check_class_names`
refuses that (a reorder is refused too, not remapped: the order of the data's
classes is a setting of its config, so the fix is one flag, and a remap would
have to be carried through every output -- metrics per class, prediction files).

What a resumed fit may change: ``resuming.py``.

Checkpoints of earlier versions may name options that were removed since
(:data:`REMOVED_OPTIONS`, :data:`REMOVED_LR_SCALING`): they load, test, predict
and resume, with the option's nearest current setting and a warning.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from spml_lightning.backbones.modules import backbone_config, same_class
from spml_lightning.training.checkpoint_files import read_checkpoint

__all__ = [
    "REMOVED_LR_SCALING",
    "REMOVED_OPTIONS",
    "RENAMED_DATAMODULES",
    "load_arguments",
    "backbone_difference",
    "check_backbone",
    "check_class_names",
    "check_preprocessing",
    "class_names_difference",
    "comparable",
    "recorded_backbone",
    "replaced_hparams",
    "take_data_facts",
    "upgraded_checkpoint",
    "upgraded_hparams",
    "upgraded_lr_scaling",
]

#: Options of earlier versions that were removed, with the value that did nothing; a checkpoint
#: naming one loads without it (Lightning passes a model only its current arguments).
#: Why each went: docs/results/performance.md.
REMOVED_OPTIONS: dict[str, Any] = {"lr_warmup_epochs": 0.0}

#: ``lr_scaling`` rules that were removed -> the rule that replaces them (same page).
REMOVED_LR_SCALING: dict[str, str] = {"sqrt_betas": "sqrt"}


#: Datamodules that were renamed: former class name -> current one. Lightning stores a
#: datamodule's state under its class name, so a checkpoint's is found under the former.
RENAMED_DATAMODULES: dict[str, str] = {
    "FolderDataModule": "CSVDataModule",
    "ImageFolderDataModule": "UnlabelledImageDataModule",
}


def upgraded_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's hyper-parameters, its datamodule state also filed under renamed names.

    Changes ``checkpoint`` in place (before Lightning restores the datamodule from it).
    """
    for old, new in RENAMED_DATAMODULES.items():
        if old in checkpoint and new not in checkpoint:
            checkpoint[new] = checkpoint[old]
    return checkpoint.get("hyper_parameters", {})


def upgraded_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's hyper-parameters as today's ``SPMLModule`` takes them.

    Removed options are dropped, removed ``lr_scaling`` rules replaced (with a warning).
    """
    upgraded = {key: value for key, value in hparams.items() if key not in REMOVED_OPTIONS}
    if "lr_scaling" in upgraded:
        upgraded["lr_scaling"] = upgraded_lr_scaling(upgraded["lr_scaling"])
    return upgraded


def replaced_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The hyper-parameters :func:`upgraded_hparams` changes (not those it drops), new values."""
    upgraded = upgraded_hparams(hparams)
    return {key: value for key, value in upgraded.items() if hparams[key] != value}


def load_arguments(checkpoint_path: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``SPMLModule.load_from_checkpoint`` builds the model with.

    Options since removed get their replacements (:func:`replaced_hparams`), unless
    given; a backbone given is checked against the checkpoint's, which Lightning
    would otherwise replace unchecked. Only a local file is read here (a stream or a
    remote file is Lightning's to read).
    """
    if not isinstance(checkpoint_path, (str, os.PathLike)) or not os.path.isfile(checkpoint_path):
        return dict(given)
    hparams = read_checkpoint(checkpoint_path, weights_only=True).get("hyper_parameters", {})
    if "backbone" in given:
        backbone = given["backbone"]
        config = backbone_config(backbone) if isinstance(backbone, nn.Module) else backbone
        check_backbone(hparams.get("backbone"), config, f"checkpoint {os.fspath(checkpoint_path)}")
    return {**replaced_hparams(hparams), **given}


def upgraded_lr_scaling(rule: str) -> str:
    """``rule``, or the rule that replaced it if it was removed (with a warning saying so)."""
    if rule not in REMOVED_LR_SCALING:
        return rule
    replacement = REMOVED_LR_SCALING[rule]
    rank_zero_warn(
        f"lr_scaling {rule!r} was removed (it did not pay in its experiment: "
        f"docs/results/performance.md); using {replacement!r}, the same learning rates with "
        f"Adam's default betas. Set model.lr_scaling {replacement} to silence this."
    )
    return replacement


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


def comparable(value: Any) -> Any:
    """``value`` with its tuples as lists: a checkpoint may hold tuples where a config had lists."""
    if isinstance(value, Mapping):
        return {key: comparable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [comparable(item) for item in value]
    return value


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
        old_args = comparable(checkpoint.get("init_args") or {})
        new_args = comparable(current.get("init_args") or {})
        changed = [
            f"{key} {old_args.get(key)!r} -> {new_args.get(key)!r}"
            for key in sorted(set(old_args) & set(new_args))
            if old_args[key] != new_args[key]
        ]
        if changed:
            return f"{checkpoint.get('class_path')}: {', '.join(changed)} (checkpoint -> now)"
        return None
    if comparable(checkpoint) == comparable(current):
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
        if comparable(trained) != comparable(given):
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


def take_data_facts(model: MutableMapping[str, Any], datamodule: Any) -> None:
    """Record a datamodule's classes and preprocessing in a model's hyper-parameters.

    They travel with the checkpoint, so that the model predicts on raw images
    without its datamodule. Values the model has already (given, or from its
    checkpoint) are kept; class names must then be the datamodule's.

    Args:
        model: the model's hyper-parameters (changed in place).
        datamodule: any datamodule; its ``num_classes``, ``class_names`` and
            ``preprocessing`` are read when it has them.

    Raises:
        ValueError: If the number or the names of the classes differ.
    """
    num_classes = getattr(datamodule, "num_classes", None)
    if num_classes is not None and num_classes != model["num_classes"]:
        raise ValueError(
            f"The datamodule has {num_classes} classes but the model was built for "
            f"{model['num_classes']}; pass --model.num_classes {num_classes} "
            "(the spml CLI links it automatically)."
        )
    if hasattr(datamodule, "class_names"):
        if model.get("class_names") is None:
            model["class_names"] = list(datamodule.class_names)
        else:  # e.g. a loaded model given another data set
            check_class_names(model["class_names"], datamodule.class_names, "hparams.class_names")
    for key, value in getattr(datamodule, "preprocessing", {}).items():
        if model.get(key) is None:
            model[key] = value


def recorded_backbone(checkpoint: Mapping[str, Any], current: Any) -> Any:
    """The backbone hyper-parameter a model restored from ``checkpoint`` keeps.

    A config recorded from the command line is exact; a module rebuilt from it and
    recorded again from its attributes may be less so: the checkpoint's config
    stays when both name the same class, else ``current``.

    Args:
        checkpoint: the checkpoint's ``hyper_parameters``.
        current: the model's ``backbone`` hyper-parameter.
    """
    stored = checkpoint.get("backbone")
    if isinstance(stored, Mapping) and isinstance(current, Mapping):
        if same_class(stored.get("class_path"), current.get("class_path")):
            return copy.deepcopy(dict(stored))
    return current
