"""SPMLModule: backbone + linear head + SPML loss + epoch schedule + exact mAP, OF1, CF1."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities.model_helpers import _restricted_classmethod
from PIL import Image
from torch import Tensor, nn

from spml_lightning.backbones import (
    backbone_hparam,
    backbone_preprocessing,
    build_backbone,
    check_backbone_output,
    check_input_size,
    initial_weights_skipped,
    pooled_features,
)
from spml_lightning.inference import (
    ImageInput,
    evaluation_transform,
    predict_images,
    score_train_set,
)
from spml_lightning.losses import SPMLLoss, as_spml_loss
from spml_lightning.training.compatibility import (
    load_arguments,
    recorded_backbone,
    take_data_facts,
    upgraded_checkpoint,
    upgraded_lr_scaling,
)
from spml_lightning.training.epoch_loss import EpochLossMean
from spml_lightning.training.evaluation import Evaluator
from spml_lightning.training.finite_loss import FiniteLossGuard
from spml_lightning.training.loss_inputs import check_loss_inputs, loss_inputs
from spml_lightning.training.loss_schedule import LossSchedule, schedule_epochs
from spml_lightning.training.lr_scaling import LrScaling, effective_batch_size
from spml_lightning.training.optimizer import (
    OptimizerSettings,
    adam_optimizer,
    apply_group_rates,
    parameter_groups,
)
from spml_lightning.training.resuming import check_checkpoint_fits
from spml_lightning.training.train_mode import FeatureDtype, FixedFeatures, TrainMode


class SPMLModule(LightningModule):
    """Image classifier trained from single positive labels.

    A backbone (a torchvision or timm model without its classifier, or any
    ``nn.Module``; docs/guides/backbones.md), a linear head, and an SPML loss (GR
    Loss by default). The loss sees logits (cast to fp32) and the observed labels
    only (the full labels for a loss that ``trains_on_targets``, the upper bound);
    full labels are used for evaluation: exact macro mAP x 100 (``val/mAP``,
    ``test/mAP``) and the precision/recall/F1 of the multi-label tables (``val/OF1``,
    ``test/top3/CF1``, ...; ``spml_lightning.metrics``).

    Args:
        num_classes: number of labels (linked from the datamodule by the CLI).
        class_names: label names, stored in the checkpoint for prediction.
        backbone: a torchvision model name (``resnet50``, ``convnext_tiny``, ...), a timm
            model as ``timm/<name>`` (``pip install "spml_lightning[timm]"``), an
            ``nn.Module`` mapping images to (B, D) features or a (B, D, H, W) map, or such
            a module's config ``{"class_path": ..., "init_args": {...}}`` (recorded in the
            checkpoint as its config, never pickled; ``spml_lightning.backbones``).
        weights: ``pretrained`` (the backbone's own: torchvision's ``IMAGENET1K_V1``, the
            weights behind the published numbers; timm's default), ``none`` (random), a
            torchvision weights name, or a local state-dict file. Not used by
            ``load_from_checkpoint``, whose weights are the checkpoint's.
        loss: an SPML loss, its registry name (``"AN"``, ``"EM+APL"``, ...:
            ``spml_lightning.losses.LOSSES``), or a plain ``nn.Module`` computing
            ``loss(logits, observed)`` (wrapped in ``losses.ModuleLoss``); default ``GRLoss()``.
        lr: Adam learning rate of the backbone (for ``lr_batch_size`` images under a rule).
        lr_mult: the head learns at ``lr_mult * lr``.
        lr_scaling: how every group's rate follows the batch of a step (loader batch x
            processes x accumulation): ``none`` (as given: the published protocols),
            ``sqrt`` (``lr * sqrt(batch / lr_batch_size)``, the rule for Adam) or
            ``linear`` (``spml_lightning.training.lr_scaling``).
        lr_batch_size: the batch size ``lr`` was set for; needed by every rule but ``none``.
        linear_init: first epochs that train the head (and the loss's parameters) only.
        schedule_epochs: epochs the loss schedule spans; default the trainer's ``max_epochs``.
        channels_last: run the backbone in channels-last memory format (faster with AMP).
        fp32_head: under mixed precision, run the linear head in fp32: a bf16 head rounds
            the logits the loss sees, and ties test scores (``bench/experiments/bf16_eval.py``).
        compile: compile the backbone with ``torch.compile`` when a trainer sets the model
            up (same parameter names and checkpoints; ``predict_images`` stays eager).
        image_size: side of the square input images. With ``mean``/``std``: taken from
            the datamodule at fit time when not given, and stored in the checkpoint so that
            ``predict_images`` works without a datamodule; before that, the backbone's own.
        mean: per-channel normalisation mean; a datamodule without its own normalises
            with it (when None: with the backbone's own, else ImageNet's).
        std: per-channel normalisation standard deviation (as ``mean``).
        train_mode: ``end_to_end`` (default); ``linear_fixed_features``: the head and the loss's
            parameters train on cached features of the frozen backbone; ``linear_init``: so for
            ``linear_init`` epochs, then end to end (Cole et al.'s modes; ``training.train_mode``).
        linear_lr: the head's rate while the backbone is frozen (the loss's groups at their
            multiples of it, as in Cole's linear phase); None: ``lr * lr_mult`` throughout.
        feature_dtype: the cache's dtype: ``float16`` or ``float32`` (the features exactly).
        feature_dir: the cache's folder; default ``<data root>/.spml_cache/features/<backbone>``.
    """

    def __init__(
        self,
        num_classes: int,
        class_names: list[str] | None = None,
        backbone: str | nn.Module | dict[str, Any] = "resnet50",
        weights: str | None = "pretrained",
        loss: SPMLLoss | str | None = None,
        lr: float = 1e-5,
        lr_mult: float = 10.0,
        lr_scaling: LrScaling = "none",
        lr_batch_size: int | None = None,
        linear_init: int = 0,
        schedule_epochs: int | None = None,
        channels_last: bool = False,
        fp32_head: bool = True,
        compile: bool = False,
        image_size: int | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        train_mode: TrainMode = "end_to_end",
        feature_dtype: FeatureDtype = "float16",
        feature_dir: str | None = None,
        linear_lr: float | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}.")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} names but num_classes is {num_classes}."
            )
        lr_scaling = upgraded_lr_scaling(lr_scaling)  # type: ignore[assignment]
        OptimizerSettings(lr, lr_mult, lr_scaling, lr_batch_size)  # refuses bad values now
        modes = (train_mode, feature_dtype, feature_dir, linear_init, linear_lr)
        self._fixed_features = FixedFeatures(*modes)  # refuses bad modes and epochs
        spml_loss = as_spml_loss(loss)  # a checkpoint's config, a registry name, a module
        backbone_module, feature_dim = build_backbone(backbone, weights, image_size)
        self._backbone_preprocessing = backbone_preprocessing(backbone_module)
        check_input_size(self._backbone_preprocessing, image_size, backbone)
        # save_hyperparameters reads the arguments from this frame: a module as its config.
        backbone = backbone_hparam(backbone)
        self.save_hyperparameters(ignore=["loss"])
        self.backbone = backbone_module
        self.head = nn.Linear(feature_dim, num_classes)
        self.loss = spml_loss
        self.loss.set_num_classes(num_classes)
        # Stored as a config, not an object: checkpoints load with weights_only and rebuild
        # the same loss (its state is in state_dict). The loggers' hparams.yaml is written
        # from the initial snapshot: with the loss, a sweep over it reads back from logs.
        if (loss_config := self.loss.config()) is not None:
            self.hparams["loss"] = loss_config
            self._hparams_initial = copy.deepcopy(self._hparams)
        if channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        self._evaluators = {split: Evaluator(num_classes) for split in ("val", "test")}
        self._finite_loss = FiniteLossGuard()
        self._train_loss = EpochLossMean()
        self._schedule = LossSchedule()
        self._backbone_compiled = False
        self.test_average_precision: Tensor | None = None

    # -- model ------------------------------------------------------------------
    def forward(self, images: Tensor) -> Tensor:
        """Images (B, 3, H, W) -> logits (B, C)."""
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.head_logits(pooled_features(self.backbone(images), self.head.in_features))

    def head_logits(self, features: Tensor) -> Tensor:
        """Pooled features (B, D) -> logits (B, C): the head, in fp32 if ``fp32_head``."""
        if self.hparams.get("fp32_head", True) and torch.is_autocast_enabled(features.device.type):
            with torch.autocast(features.device.type, enabled=False):
                return self.head(features.float())
        return self.head(features)

    @property
    def class_names(self) -> list[str]:
        """The label names, in output column order (``class_<i>`` when none were given)."""
        names = self.hparams.class_names
        if names is None:
            return [f"class_{i}" for i in range(self.hparams.num_classes)]
        return list(names)

    # -- set-up -----------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Compile if asked; take the datamodule's classes and preprocessing; size loss state."""
        if self.hparams.compile and not self._backbone_compiled:
            self.backbone.compile()  # in place: the state_dict keeps its names
            self._backbone_compiled = True
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if datamodule is None:
            return
        take_data_facts(self.hparams, datamodule)
        image_size = getattr(datamodule, "preprocessing", {}).get("image_size")
        check_input_size(self._backbone_preprocessing, image_size, self.hparams.backbone)
        check_backbone_output(
            self.backbone, image_size, self.head.in_features, self.hparams.backbone
        )
        train_dataset = getattr(datamodule, "train_dataset", None)
        if stage == "fit" and train_dataset is not None:
            self._fixed_features.setup_fit(self, self.trainer)
            check_loss_inputs(self.loss, train_dataset)  # GPR, VLPL: a prior's pseudo-positives
            # Before the optimizer and a restore: per-sample state (ROLE, LL-Cp, APL) is sized.
            self.loss.bind_train_set(torch.tensor(train_dataset.observed, device=self.device))
            # The loss keeps its buffers equal on all ranks (gathered updates), and a frozen
            # backbone (linear_fixed_features) gets no gradient: DDP leaves them.
            self._ddp_params_and_buffers_to_ignore = [
                f"loss.{n}" for n, _ in self.loss.named_buffers()
            ] + self._fixed_features.ddp_ignored(self)

    # -- optimizer and schedule ---------------------------------------------------
    def _optimizer_settings(self, epoch: int = 0) -> tuple[OptimizerSettings, int | None]:
        """The settings at ``epoch`` and, under an ``lr_scaling`` rule, the batch of a step."""
        keys = ("lr", "lr_mult", "lr_scaling", "lr_batch_size")
        settings = OptimizerSettings(**{key: self.hparams[key] for key in keys})
        batch = None if settings.lr_scaling == "none" else effective_batch_size(self.trainer)
        return self._fixed_features.settings(settings, epoch), batch

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over the named parameter groups (backbone, head, and any of the loss)."""
        return adam_optimizer(self.backbone, self.head, self.loss, *self._optimizer_settings())

    def on_train_start(self) -> None:
        """Check a cached-features backbone; train at this fit's rates (not a restored Adam's)."""
        self._fixed_features.check_backbone(self, self.current_epoch)  # the cache's weights?
        self._apply_group_rates()

    def _apply_group_rates(self) -> None:
        if optimizers := self.trainer.optimizers:
            settings = self._optimizer_settings(self.current_epoch)
            groups = parameter_groups(self.backbone, self.head, self.loss, *settings)
            apply_group_rates(optimizers[0], groups)

    def _schedule_epochs(self) -> int:
        epochs = self.hparams.schedule_epochs
        return schedule_epochs(epochs, self.trainer.max_epochs, self.hparams.linear_init)

    def on_fit_start(self) -> None:
        """Drop a partial epoch loss sum and check that linear_init leaves epochs to train."""
        self._train_loss.reset()  # an interrupted fit left a partial sum
        self._schedule_epochs()

    def on_train_epoch_start(self) -> None:
        """Set the epoch's rates and loss schedule; rescore the training set if the loss asks."""
        self._fixed_features.start_epoch(self.trainer, self.current_epoch)  # linear_init's Adam
        self._apply_group_rates()
        self._apply_schedule(rescore=True)

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        """Apply the epoch's loss schedule if a mid-epoch resume skipped the epoch start."""
        if not self._schedule.is_set_for(self.current_epoch):
            self._apply_schedule(rescore=False)

    def _apply_schedule(self, rescore: bool) -> None:
        def score() -> tuple[Tensor, Tensor]:
            if (cached := self._fixed_features.score_train_set(self.head, epoch)) is not None:
                return cached
            reader = type(self.loss).__name__
            return score_train_set(self, self.trainer, self.inference_transform(), reader)

        epoch, linear = int(self.current_epoch), int(self.hparams.linear_init)
        scorer = score if rescore else None
        values = self._schedule.apply(self.loss, epoch, self._schedule_epochs(), linear, scorer)
        for name, value in values.items():
            self.log(f"schedule/{name}", float(value), on_step=False, on_epoch=True)
        for group in self.trainer.optimizers[0].param_groups if self.trainer.optimizers else []:
            if "name" in group:
                self.log(f"lr/{group['name']}", float(group["lr"]), on_step=False, on_epoch=True)

    @property
    def loss_schedule(self) -> dict[str, int] | None:
        """``{"epoch", "max_epochs", "linear_init"}`` the loss schedule was last set to.

        In training, or by the checkpoint this model was loaded from; None before.
        """
        return self._schedule.state

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Check the loss is finite, then store where the loss schedule stands."""
        self._finite_loss.check()  # NaN weights must not replace a good checkpoint
        # A loaded model's loss (and an analysis's k̂ curve) is the one it trained with last.
        if self._schedule.state is not None:
            checkpoint["loss_schedule"] = dict(self._schedule.state)

    @_restricted_classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:
        """Lightning's ``load_from_checkpoint``, without the backbone's initial weights.

        Nothing is downloaded or read for them: the checkpoint's replace them. A backbone
        module whose arguments were not all recorded is given again: ``backbone=MyNet(...)``.
        """
        kwargs = load_arguments(checkpoint_path, kwargs)  # removed options; a backbone given
        with initial_weights_skipped():
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint that does not fit the run; restore its loss schedule."""
        recorded = upgraded_checkpoint(checkpoint)  # renamed datamodules' states too
        if self._trainer is not None:  # a resumed fit, or test/validate/predict
            check_checkpoint_fits(recorded, self.hparams, self.trainer)
        self.hparams["backbone"] = recorded_backbone(recorded, self.hparams.get("backbone"))
        if (schedule := checkpoint.get("loss_schedule")) is not None:
            self._schedule.restore(self.loss, schedule)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Drop the backbone's gradients during linear_init (the head alone trains)."""
        # Dropping gradients (not toggling requires_grad) keeps every parameter in DDP's
        # reducer and the optimizer; Adam skips a gradient-less one as the reference's frozen.
        if self.current_epoch < self.hparams.linear_init:
            for param in self.backbone.parameters():
                param.grad = None

    # -- steps ------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        """The batch's loss on its observed labels (targets, for a loss that trains on them)."""
        logits = self._fixed_features.logits(self, batch).float()
        labels = batch["target"] if self.loss.trains_on_targets else batch["observed"]
        loss = self.loss(logits, labels, batch.get("index"), **loss_inputs(self.loss, batch))
        inputs = batch.get("image", batch.get("features"))
        self._finite_loss.observe(loss, logits, inputs, self.global_step, self.current_epoch)
        self._train_loss.log_step(self, loss.detach(), len(logits))
        return loss

    def on_train_epoch_end(self) -> None:
        """Check the loss is finite and log the epoch's mean training loss."""
        self._finite_loss.check()
        self._train_loss.log_epoch(self)

    # -- evaluation ---------------------------------------------------------------
    def _eval_step(self, batch: dict, split: str) -> None:
        probs = torch.sigmoid(self._fixed_features.logits(self, batch).float())
        index = torch.as_tensor(batch["index"], device=probs.device)
        self._evaluators[split].add(index, probs, batch["target"])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Keep the batch's probabilities and targets for the epoch's mAP."""
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        """Keep the batch's probabilities and targets for the test AP per class."""
        self._eval_step(batch, "test")

    def predict_step(self, batch: dict | Tensor, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """The label probabilities of a batch of images (a dict with ``image``, or a tensor)."""
        images = batch["image"] if isinstance(batch, dict) else batch
        return torch.sigmoid(self(images).float())

    def on_validation_epoch_end(self) -> None:
        """Log the mAP and the F1 metrics over the validation set, gathered from all ranks."""
        # Every rank computes the same values from the gathered rows.
        for name, value in self._evaluators["val"].compute(device=self.device).items():
            self.log(f"val/{name}", value, prog_bar=name == "mAP", sync_dist=True)

    def on_test_epoch_end(self) -> None:
        """Log the test mAP, each class's AP (kept in ``test_average_precision``) and the F1s."""
        evaluator = self._evaluators["test"]
        for name, value in evaluator.compute(self.class_names, self.device).items():
            self.log(f"test/{name}", value, sync_dist=True)
        self.test_average_precision = evaluator.average_precision

    # -- inference without a datamodule ------------------------------------------
    @property
    def normalization(self) -> dict[str, list[float] | None]:
        """The ``mean``/``std`` this model asks its data to be normalised with (None: any).

        Its hyper-parameters when set, else its backbone's own (a timm ``pretrained_cfg``);
        an ``SPMLDataModule`` without its own normalises with these (ImageNet's when None).
        """
        own = self._backbone_preprocessing
        return {key: self.hparams.get(key) or own.get(key) for key in ("mean", "std")}

    @property
    def preprocessing(self) -> dict[str, int | list[float] | None]:
        """``image_size``, ``mean``, ``std`` this model reads images with (None: not known yet).

        Those it was trained with (its checkpoint's); before a fit, its backbone's own.
        """
        image_size = self.hparams.image_size or self._backbone_preprocessing.get("image_size")
        return {"image_size": image_size, **self.normalization}

    def inference_transform(self) -> Callable[[Image.Image], Tensor]:
        """The evaluation transform with the preprocessing this model was trained with."""
        return evaluation_transform(**self.preprocessing)

    def predict_images(self, images: Sequence[ImageInput], batch_size: int = 32) -> Tensor:
        """Label probabilities (N, C) for PIL images, (C, H, W) tensors or image paths.

        Tensors are uint8 in [0, 255] or float in [0, 1]; preprocessed as in training.
        """
        transform = self.inference_transform()
        return predict_images(self, images, transform, self.hparams.num_classes, batch_size)
