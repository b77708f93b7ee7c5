"""``SPMLTrainer``: Lightning's Trainer plus the entry points ``suggest``, ``features``, ``export``.

LightningCLI turns the Trainer's methods into subcommands, so this is what
makes ``spml suggest`` a subcommand like ``spml predict``: same config, same
``--ckpt_path best|last``, same devices and strategies (DDP included), plus
its own ``--suggestions.*`` options (``SuggestOptions``). ``spml features``
extracts the config's backbone features of every image of its datamodule into
the feature cache (``spml_lightning.features``; ``--cache.*`` options). ``spml export``
writes a checkpoint's model as an ONNX file (``spml_lightning.deploy``).

``suggest`` is Lightning's predict loop over the datamodule's *training* images,
read without augmentation and with the preprocessing recorded in the
checkpoint; ``SuggestionWriter`` ranks the labels nobody observed and writes
the likeliest missing positives for annotators.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from torch.utils.data import DataLoader

from spml_lightning.console import UsageError
from spml_lightning.data.predict_folder import UnlabelledImageDataModule
from spml_lightning.data.transforms import with_transform
from spml_lightning.deploy.options import Exporter, ExportFormat
from spml_lightning.features import CachedFeatures, FeatureOptions, datamodule_features
from spml_lightning.inference import evaluation_transform
from spml_lightning.training.checkpoint_files import checkpoint_facts, checkpoint_training_rows
from spml_lightning.training.prediction_writer import PredictionWriter
from spml_lightning.training.suggestion_writer import SuggestionWriter
from spml_lightning.training.suggestions import SuggestOptions, check_output

__all__ = ["SPMLTrainer"]

#: The default of ``--suggestions.*`` (frozen: one instance serves every call).
_DEFAULT_OPTIONS = SuggestOptions()

#: The default of ``--cache.*``.
_DEFAULT_FEATURES = FeatureOptions()


class SPMLTrainer(Trainer):
    """Lightning's ``Trainer`` plus :meth:`suggest` and :meth:`features`; otherwise the same."""

    def features(
        self,
        model: LightningModule,
        datamodule: LightningDataModule,
        cache: FeatureOptions = _DEFAULT_FEATURES,
    ) -> CachedFeatures:
        """Extract the backbone's features of every split's images into the cache, or reuse it.

        The model's backbone, with its initial weights (``model.weights``), in eval
        mode, on the images of the datamodule's train, val and test splits read with
        the evaluation transform and the preprocessing a fit would use. Runs in
        this process, on the trainer's first device.

        Args:
            model: an SPMLModule (its ``backbone``).
            datamodule: an SPMLDataModule (its splits and preprocessing).
            cache: where and how to cache (the ``--cache.*`` options).

        Returns:
            The verified cache (``path``, ``features(split)``).
        """
        if isinstance(datamodule, UnlabelledImageDataModule):
            raise UsageError(
                f"{type(datamodule).__name__} has no train/val/test splits: features are cached "
                "for a training datamodule (the --config of a fit)."
            )
        # The datamodule normalises as the trainer's model asks (SPMLDataModule.setup), as in fit.
        self.strategy.connect(model)
        datamodule.trainer = self
        try:
            datamodule.setup("fit")
            datamodule.setup("test")
        finally:
            datamodule.trainer = None
        return datamodule_features(
            model,
            datamodule,
            cache,
            device=self.strategy.root_device,
            progress=self.progress_bar_callback is not None,
        )

    def suggest(
        self,
        model: LightningModule,
        datamodule: LightningDataModule,
        ckpt_path: str | None = None,
        suggestions: SuggestOptions = _DEFAULT_OPTIONS,
    ) -> SuggestionWriter:
        """Rank the unobserved labels of the training images: the likeliest missing positives.

        Writes the CSV of ``suggestions.output`` (``image,class,probability,rank``)
        and, where the training images' full labels are known, logs precision@N
        against a random ranking of the same unknown labels.

        Args:
            model: an SPMLModule; its weights are the checkpoint's.
            datamodule: the SPMLDataModule the model was trained with (its
                training set, observed labels and full labels).
            ckpt_path: the trained model's checkpoint (required).
            suggestions: how many suggestions, which threshold, where to write them (the
                ``--suggestions.*`` options).

        Returns:
            The callback that wrote them: on rank 0, its ``suggestions``,
            ``precision`` and ``path``.
        """
        if ckpt_path is None:
            raise UsageError(
                "no --ckpt_path: the suggestions are a trained model's; pass --ckpt_path best (the "
                "newest run's best checkpoint), last, or a checkpoint file."
            )
        if isinstance(datamodule, UnlabelledImageDataModule):
            raise UsageError(
                f"{type(datamodule).__name__} has no training set, and the suggestions are the "
                "unobserved labels of training images: pass the datamodule the model was trained "
                "with (the --config of its fit)."
            )
        path = (
            Path(suggestions.output).expanduser()
            if suggestions.output
            else Path(self.log_dir or self.default_root_dir) / "suggestions.csv"
        )
        try:
            check_output(path, suggestions.overwrite)
        except FileExistsError as error:
            raise UsageError(str(error)) from None
        writer = SuggestionWriter(suggestions, path)
        loader = _training_images(datamodule, checkpoint_facts(ckpt_path))
        _check_same_training_rows(datamodule, ckpt_path)
        # The PredictionWriter would also write the training set's probabilities.
        callbacks = list(self.callbacks)
        self.callbacks[:] = [writer, *(c for c in callbacks if not isinstance(c, PredictionWriter))]
        try:
            self.predict(model, dataloaders=loader, ckpt_path=ckpt_path, return_predictions=False)
        finally:
            self.callbacks[:] = callbacks
        return writer

    def export(
        self,
        model: LightningModule,
        datamodule: LightningDataModule,
        ckpt_path: str | None = None,
        format: ExportFormat = "onnx",
        output: str | None = None,
        threshold: float | None = None,
        exporter: Exporter = "dynamo",
    ) -> Path:
        """Write the checkpoint's model as one file with its classes, preprocessing, thresholds.

        One graph from images to probabilities with a dynamic batch dimension; the
        per-class thresholds maximise F1 on the datamodule's validation split
        (``spml_lightning.deploy``; docs/guides/deploying.md).

        Args:
            model: an SPMLModule; its weights are the checkpoint's.
            datamodule: the SPMLDataModule the model was trained with (its validation split).
            ckpt_path: the trained model's checkpoint (required).
            format: ``onnx`` (read by ``spml_lightning.deploy.Predictor`` and ``spml serve``)
                or ``pt2`` (a ``torch.export`` archive, for deployments that keep torch).
            output: the file to write; default beside the checkpoint, with ``.onnx``/``.pt2``.
            threshold: one decision threshold for every class, instead of the validation F1 ones.
            exporter: the ONNX exporter: ``dynamo`` (PyTorch's current one) or ``legacy`` (the
                TorchScript-based one, for a backbone the current one cannot export).

        Returns:
            The written file.
        """
        # The export code is imported when the command runs: training/ is imported by the
        # export code itself (checkpoint files), and by every other command.
        from spml_lightning.deploy.checkpoint_export import export_checkpoint

        return export_checkpoint(
            model,
            datamodule,
            ckpt_path,
            output,
            threshold,
            exporter,
            self.strategy.root_device,
            format,
        )


def _check_same_training_rows(datamodule: Any, ckpt_path: str) -> None:
    """Refuse training rows other than the checkpoint's: "unknown" would mean other labels.

    Another ``observe``/``observe_seed``/``split_seed`` gives other observed
    positives, so the suggestions would include labels the model was trained on
    and precision@N would be measured against another set of unknowns.
    """
    if not hasattr(datamodule, "check_same_rows"):
        return  # another datamodule: nothing recorded to compare with
    datamodule.check_same_rows(
        checkpoint_training_rows(ckpt_path),
        f"checkpoint {ckpt_path}",
        ("train",),
        "Its unknown labels are not the model's: the suggestions would include labels it was "
        "trained on.",
    )


def _training_images(datamodule: Any, facts: dict[str, Any]) -> DataLoader:
    """The datamodule's training set, in order, read with the checkpoint's preprocessing.

    The checkpoint's ``image_size``/``mean``/``std`` (what the model was trained
    with); the datamodule's where the checkpoint records none. No augmentation.
    """
    datamodule.setup("fit")
    dataset = getattr(datamodule, "train_dataset", None)
    if dataset is None or not hasattr(dataset, "observed"):
        raise UsageError(
            f"{type(datamodule).__name__} has no training set with observed labels after "
            "setup('fit'): suggesting needs an SPMLDataModule, the one the model was trained with."
        )
    preprocessing = dict(datamodule.preprocessing)
    preprocessing.update({k: v for k, v in facts.items() if k in preprocessing and v is not None})
    return DataLoader(
        with_transform(dataset, evaluation_transform(**preprocessing)),
        batch_size=datamodule.batch_size,
        num_workers=datamodule.num_workers,
        shuffle=False,
    )
