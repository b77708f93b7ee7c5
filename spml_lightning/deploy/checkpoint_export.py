"""``spml export``: a checkpoint's model, its classes, preprocessing and thresholds, as one file.

ONNX (``onnx_export``; read by the torch-free predictor and ``spml serve``) or a
``torch.export`` archive (``pt2_export``).

The classes and the preprocessing are the checkpoint's (what the model was
trained with). The per-class thresholds are chosen on the validation split of
the config's datamodule (F1-maximising, ``deploy.thresholds``), scored with
the checkpoint's preprocessing; ``--threshold`` gives one for every class
instead (needed for a datamodule without a validation split).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from spml_lightning.console import UsageError
from spml_lightning.data.predict_folder import UnlabelledImageDataModule
from spml_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD, with_transform
from spml_lightning.deploy.metadata import ModelMetadata, Preprocessing
from spml_lightning.deploy.onnx_export import export_onnx
from spml_lightning.deploy.options import EXPORT_FORMATS, Exporter, ExportFormat
from spml_lightning.deploy.pt2_export import export_pt2
from spml_lightning.deploy.thresholds import f1_thresholds
from spml_lightning.inference import score_dataset
from spml_lightning.training.checkpoint_files import (
    CHECKPOINT_FACTS,
    checkpoint_training_rows,
    read_checkpoint,
)

__all__ = ["export_checkpoint", "load_weights", "model_metadata"]


def load_weights(model: Any, ckpt_path: str | Path) -> None:
    """Load an SPMLModule checkpoint's weights, classes and preprocessing into ``model``.

    The classes and preprocessing (``CHECKPOINT_FACTS``) are what the model was
    trained with: recorded by its fit, they replace the config's.
    """
    checkpoint = read_checkpoint(ckpt_path, weights_only=True)
    model.on_load_checkpoint(checkpoint)  # upgrades of older checkpoints, the loss schedule
    model.load_state_dict(checkpoint["state_dict"])
    recorded = checkpoint.get("hyper_parameters", {})
    for key in CHECKPOINT_FACTS:
        if recorded.get(key) is not None:
            model.hparams[key] = recorded[key]


def model_metadata(model: Any, thresholds: np.ndarray, threshold_rule: str) -> ModelMetadata:
    """The metadata of an SPMLModule: its classes and the preprocessing it was trained with."""
    facts = model.preprocessing
    if facts["image_size"] is None:
        raise UsageError(
            "The checkpoint records no image_size (a model never fitted with a datamodule): pass "
            "--model.image_size with the size it was trained at."
        )
    mean = facts["mean"] or IMAGENET_MEAN
    std = facts["std"] or IMAGENET_STD
    return ModelMetadata(
        class_names=tuple(model.class_names),
        preprocessing=Preprocessing(
            int(facts["image_size"]),
            (float(mean[0]), float(mean[1]), float(mean[2])),
            (float(std[0]), float(std[1]), float(std[2])),
        ),
        thresholds=tuple(float(t) for t in thresholds),
        threshold_rule=threshold_rule,
    )


def validation_thresholds(
    model: Any, datamodule: Any, device: torch.device, ckpt_path: str | Path
) -> np.ndarray:
    """The F1-maximising threshold per class on the datamodule's validation split.

    The split must be the checkpoint's own: with another split (``split_seed``, ...)
    it could hold images the model was trained on.
    """
    if not isinstance(datamodule, UnlabelledImageDataModule):  # it has no fit phase
        datamodule.setup("fit")
    dataset = getattr(datamodule, "val_dataset", None)
    if dataset is None or not len(dataset) or not hasattr(dataset, "targets"):
        raise UsageError(
            f"{type(datamodule).__name__} has no validation split to choose the thresholds on: "
            "pass the config the model was trained with, or one threshold for every class with "
            "--threshold 0.5."
        )
    if hasattr(datamodule, "check_same_rows"):
        datamodule.check_same_rows(
            checkpoint_training_rows(ckpt_path),
            f"checkpoint {ckpt_path}",
            ("train", "val"),
            "The thresholds would be chosen on other images than the model's validation split, "
            "possibly on images it was trained on.",
            " Or give one threshold for every class with --threshold.",
        )
    model.to(device)
    index, logits = score_dataset(
        model,
        with_transform(dataset, model.inference_transform()),
        batch_size=getattr(datamodule, "batch_size", 32),
        num_workers=getattr(datamodule, "num_workers", 0),
        progress="validation split (thresholds)",
    )
    # What model selection is evaluated on: the full labels, or the observed ones.
    labels = dataset.targets if dataset.evaluate_on == "targets" else dataset.observed > 0
    probabilities = torch.sigmoid(logits).cpu().numpy()
    thresholds, without_positive = f1_thresholds(probabilities, labels[index.cpu().numpy()])
    if without_positive:
        names = [model.class_names[c] for c in without_positive]
        rank_zero_warn(
            f"{len(names)} class(es) have no positive in the validation split and keep the "
            f"threshold 0.5: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}."
        )
    return thresholds


def export_checkpoint(
    model: Any,
    datamodule: Any,
    ckpt_path: str | None,
    output: str | None,
    threshold: float | None,
    exporter: Exporter,
    device: torch.device,
    format: ExportFormat = "onnx",
) -> Path:
    """Export a checkpoint's model with its metadata (``spml export``).

    Args:
        model: the SPMLModule built from the checkpoint's hyper-parameters.
        datamodule: the config's datamodule (its validation split picks the thresholds).
        ckpt_path: the checkpoint (resolved from ``best``/``last``).
        output: the file; default beside the checkpoint, with its name and the format's suffix.
        threshold: one threshold for every class instead of the validation F1 ones.
        exporter: ``dynamo`` or ``legacy`` (ONNX only).
        device: where the validation images are scored.
        format: ``onnx`` (the torch-free predictor and ``spml serve`` read it) or ``pt2``
            (a ``torch.export`` archive, ``deploy.pt2_export``).

    Returns:
        The written file.
    """
    if ckpt_path is None:
        raise UsageError(
            "no --ckpt_path: export writes a trained model; pass --ckpt_path best (the newest "
            "run's best checkpoint), last, or a checkpoint file."
        )
    if format not in EXPORT_FORMATS:
        raise UsageError(f"--format is one of {', '.join(EXPORT_FORMATS)}, got {format!r}.")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold is a probability in [0, 1], got {threshold}.")
    load_weights(model, ckpt_path)
    if threshold is None:
        thresholds = validation_thresholds(model, datamodule, device, ckpt_path)
        rule = "f1-on-validation"
    else:
        thresholds, rule = np.full(model.hparams.num_classes, threshold), "global"
    target = Path(output).expanduser() if output else Path(ckpt_path).with_suffix(f".{format}")
    backbone = model.hparams.backbone
    name = f"backbone {backbone.get('class_path') if isinstance(backbone, dict) else backbone}"
    metadata = model_metadata(model, thresholds, rule)
    if format == "pt2":
        written = export_pt2(model.cpu(), target, metadata, name)
    else:
        written = export_onnx(model.cpu(), target, metadata, exporter, name)
    rank_zero_info(
        f"Exported {ckpt_path} to {written} ({len(thresholds)} classes, thresholds: {rule})."
    )
    return written
