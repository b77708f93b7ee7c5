"""SPMLModule: backbone + linear head + SPML loss + epoch schedule + exact mAP, OF1, CF1."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_helpers import _restricted_classmethod
from PIL import Image
from torch import Tensor, nn
from torch.utils.data.distributed import DistributedSampler

from spml_lightning.backbones import (
    backbone_config,
    backbone_preprocessing,
    build_backbone,
    check_backbone_output,
    check_input_size,
    initial_weights_skipped,
    pooled_features,
)
from spml_lightning.backbones.modules import same_class
from spml_lightning.inference import (
    ImageInput,
    evaluation_transform,
    predict_images,
    score_dataset,
    with_transform,
)
from spml_lightning.losses import GRLoss, SPMLLoss, get_loss_class, loss_from_config
from spml_lightning.losses.distributed import all_gather_rows
from spml_lightning.losses.distributed import first_occurrences as _first_occurrences
from spml_lightning.metrics import average_precision_per_class
from spml_lightning.precision_recall import operating_point_metrics
from spml_lightning.training.compatibility import (
    check_backbone,
    check_class_names,
    check_given_backbone,
    check_preprocessing,
    resume_plan,
)
from spml_lightning.training.finite_loss import FiniteLossGuard
from spml_lightning.training.lr_scaling import (
    LrScaling,
    check_lr_scaling,
    check_lr_warmup,
    effective_batch_size,
    scaled_adam,
    scaled_lr,
    warmup_factor,
    warmup_steps,
)


class SPMLModule(LightningModule):
    """Image classifier trained from single positive labels.

    A backbone (a torchvision or timm model without its classifier, or any
    ``nn.Module``; docs/guides/backbones.md), a linear head, and an SPML loss (GR
    Loss by default). The loss sees logits (cast to fp32) and the observed
    labels only; full labels are used for evaluation (exact macro mAP x 100,
    logged as ``val/mAP`` and ``test/mAP``, with the precision/recall/F1 of the
    multi-label tables, ``val/OF1``, ``test/top3/CF1``, ...; see
    ``spml_lightning.precision_recall``) -- except by a loss that declares
    ``trains_on_targets`` (the full-label upper bound).

    Args:
        num_classes: number of labels (linked from the datamodule by the CLI).
        class_names: label names, stored in the checkpoint for prediction.
        backbone: a torchvision model name (``resnet50``, ``resnet18``, ``convnext_tiny``,
            ...), a timm model as ``timm/<name>`` or ``timm:<name>`` (``pip install
            "spml_lightning[timm]"``), an ``nn.Module`` mapping images to (B, D) features
            or a (B, D, H, W) map (averaged over H and W), or such a module's config
            ``{"class_path": ..., "init_args": {...}}``. A module is recorded in the
            checkpoint as its class path and the constructor arguments found on it
            (``spml_lightning.backbones.backbone_config``), never pickled.
        weights: ``pretrained`` -- the weights the backbone comes with (torchvision:
            ``IMAGENET1K_V1``, the weights behind the published numbers; timm: its
            default pretrained weights from the Hugging Face hub; a module: its own);
            ``none`` (random initialisation; a module as given); a torchvision
            weights name (``IMAGENET1K_V2``, ``DEFAULT``); or a local state-dict file.
            Not used by ``load_from_checkpoint``, whose weights are the checkpoint's.
        loss: the SPML loss: a loss module, or its registry name (``"AN"``,
            ``"EM+APL"``, ... see ``spml_lightning.losses.LOSSES``) for that loss
            with its default settings; default ``GRLoss()`` with the reference settings.
        lr: Adam learning rate of the backbone (for a batch of ``lr_batch_size``
            images when ``lr_scaling`` is not ``none``).
        lr_mult: the head learns at ``lr_mult * lr``.
        lr_scaling: how ``lr`` follows the batch size of a step (loader batch x
            processes x gradient accumulation): ``none`` (as given: the published
            protocols), ``sqrt`` (``lr * sqrt(batch / lr_batch_size)``, the rule for
            Adam; the fast profile's), ``sqrt_betas`` (``sqrt`` with Adam's ``1 - beta``
            times ``batch / lr_batch_size`` and ``eps`` over its square root: the whole
            rule of its source) or ``linear``. Every group is scaled: backbone,
            head and a loss's own per-sample parameters (ROLE's label estimates,
            whose per-epoch movement under Adam also shrinks with fewer steps per
            epoch). ``spml_lightning.training.lr_scaling`` has the sources.
        lr_batch_size: the batch size ``lr`` was set for (the benchmark configs set
            their own); needed by every rule but ``none``.
        lr_warmup_epochs: raise every group's rate linearly from ``1/W`` of its value
            to its value over the first ``W`` optimiser steps, ``W`` being this many
            epochs of steps (fractions allowed; 0, the default: no warm-up, as the
            published protocols). Goyal et al.'s companion of the linear rule.
            Counted from the first step, ``linear_init`` epochs included.
        linear_init: epochs at the start during which only the head (and the
            loss's own parameters) are trained; the backbone stays frozen.
        schedule_epochs: epochs the loss schedule spans; default the trainer's ``max_epochs``.
        channels_last: run the backbone in channels-last memory format (faster
            convolutions with mixed precision on recent GPUs).
        fp32_head: under mixed precision, run the linear head in fp32 on the
            backbone's features. A bf16 head rounds the logits to 8 significant
            bits: the loss sees rounded logits, and three quarters of the demo's
            test scores tie (``bench/bf16_eval.py``). No effect in fp32.
        compile: compile the backbone with ``torch.compile`` when a trainer sets
            the model up (the first steps are slower while it compiles; parameter
            names and checkpoints are the same as without it; ``predict_images``
            stays eager).
        image_size: side of the square input images; with ``mean``/``std``
            taken from the datamodule at fit time when not given, and stored in
            the checkpoint so that ``predict_images`` works without a datamodule.
            Before that, a backbone's own (a timm model's ``pretrained_cfg``) applies.
        mean: per-channel normalisation mean. When given, an ``SPMLDataModule``
            without a ``mean`` of its own normalises with it; when not, with the
            backbone's own (a timm model's ``pretrained_cfg``), else ImageNet's.
        std: per-channel normalisation standard deviation (as ``mean``).
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
        lr_warmup_epochs: float = 0.0,
        linear_init: int = 0,
        schedule_epochs: int | None = None,
        channels_last: bool = False,
        fp32_head: bool = True,
        compile: bool = False,
        image_size: int | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}.")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} names but num_classes is {num_classes}."
            )
        if not (0 < lr < math.inf and 0 < lr_mult < math.inf):  # nan fails too
            raise ValueError(
                f"lr and lr_mult must be finite positive numbers, got lr={lr}, lr_mult={lr_mult}."
            )
        check_lr_scaling(lr_scaling, lr_batch_size)
        check_lr_warmup(lr_warmup_epochs)
        if linear_init < 0:
            raise ValueError(f"linear_init must be 0 or more epochs, got {linear_init}.")
        if isinstance(loss, Mapping):  # the loss config stored in a checkpoint
            loss = loss_from_config(loss)
        elif isinstance(loss, str):  # a registry name: `spml fit --model.loss AN`
            loss = get_loss_class(loss)()
        if loss is not None and not isinstance(loss, nn.Module):
            raise TypeError(
                f"loss must be an SPML loss module (e.g. spml_lightning.losses.GRLoss), got "
                f"{type(loss).__name__}."
            )
        backbone_module, feature_dim = build_backbone(backbone, weights, image_size)
        self._backbone_preprocessing = backbone_preprocessing(backbone_module)
        check_input_size(self._backbone_preprocessing, image_size, _backbone_name(backbone))
        # save_hyperparameters reads the arguments from this frame: a module is recorded
        # as its config (a pickled module would not load with weights_only, and
        # Lightning warns about it). Under LightningCLI the config as given is recorded.
        if isinstance(backbone, nn.Module):
            backbone = backbone_config(backbone)
        elif isinstance(backbone, Mapping):
            backbone = copy.deepcopy(dict(backbone))
        self.save_hyperparameters(ignore=["loss"])
        self.backbone = backbone_module
        self.head = nn.Linear(feature_dim, num_classes)
        self.loss = loss if loss is not None else GRLoss()
        if isinstance(self.loss, SPMLLoss):
            self.loss.set_num_classes(num_classes)
            # Stored as a config, not as an object: checkpoints stay loadable with
            # weights_only and rebuild the same loss (its state is in state_dict).
            self.hparams["loss"] = self.loss.config()
            # The loggers' hparams.yaml is written from this snapshot: include the
            # loss, so a sweep over its hyper-parameters can be read back from logs.
            self._hparams_initial = copy.deepcopy(self._hparams)
        if channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        self._outputs: dict[str, list[tuple[Tensor, Tensor, Tensor]]] = {"val": [], "test": []}
        self._finite_loss = FiniteLossGuard()
        self._scheduled_epoch: int | None = None
        self._train_loss_sum: Tensor | None = None  # this epoch's sum of batch-size-weighted losses
        self._train_loss_count = 0
        self._backbone_compiled = False
        self._group_rates: dict[str, float] = {}  # each group's rate after any warm-up
        self._warmup_steps = 0
        self.test_average_precision: Tensor | None = None
        #: ``{"epoch", "max_epochs", "linear_init"}`` the loss schedule was last set
        #: to (in training, or by the checkpoint this model was loaded from); None before.
        self.loss_schedule: dict[str, int] | None = None

    # -- model ------------------------------------------------------------------
    def forward(self, images: Tensor) -> Tensor:
        """Images (B, 3, H, W) -> logits (B, C)."""
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        features = pooled_features(self.backbone(images), self.head.in_features)
        if self.hparams.get("fp32_head", True) and torch.is_autocast_enabled(features.device.type):
            with torch.autocast(features.device.type, enabled=False):
                return self.head(features.float())
        return self.head(features)

    @property
    def class_names(self) -> list[str]:
        """The label names, in output column order (``class_<i>`` when none were given)."""
        names = self.hparams.class_names
        return (
            list(names)
            if names is not None
            else [f"class_{i}" for i in range(self.hparams.num_classes)]
        )

    # -- set-up -----------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Compile if asked; take the datamodule's classes and preprocessing; size loss state."""
        if self.hparams.compile and not self._backbone_compiled:
            self.backbone.compile()  # in place: the state_dict keeps its names
            self._backbone_compiled = True
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if datamodule is None:
            return
        num_classes = getattr(datamodule, "num_classes", None)
        if num_classes is not None and num_classes != self.hparams.num_classes:
            raise ValueError(
                f"The datamodule has {num_classes} classes but the model was built for "
                f"{self.hparams.num_classes}; pass --model.num_classes {num_classes} "
                "(the spml CLI links it automatically)."
            )
        # Preprocessing facts travel with the checkpoint (hparams), so a model
        # can predict on raw images without its datamodule.
        if hasattr(datamodule, "class_names"):
            if self.hparams.class_names is None:
                self.hparams.class_names = list(datamodule.class_names)
            else:  # e.g. a loaded model given another data set
                check_class_names(
                    self.hparams.class_names, datamodule.class_names, "hparams.class_names"
                )
        preprocessing = getattr(datamodule, "preprocessing", {})
        for key, value in preprocessing.items():
            if self.hparams.get(key) is None:
                self.hparams[key] = value
        check_input_size(
            self._backbone_preprocessing,
            preprocessing.get("image_size"),
            _backbone_name(self.hparams.backbone),
        )
        if not isinstance(self.hparams.backbone, str) and preprocessing.get("image_size"):
            check_backbone_output(  # a module of the user's: its output is checked once here
                self.backbone,
                preprocessing["image_size"],
                self.head.in_features,
                f"the backbone {_backbone_name(self.hparams.backbone)}",
            )
        train_dataset = getattr(datamodule, "train_dataset", None)
        if stage == "fit" and isinstance(self.loss, SPMLLoss) and train_dataset is not None:
            # Before the optimizer is built and a checkpoint restored: per-sample
            # state (ROLE, LL-Cp, APL) is sized here and overwritten on resume.
            self.loss.bind_train_set(torch.tensor(train_dataset.observed, device=self.device))
            # The loss keeps its buffers identical on all ranks itself (gathered
            # updates); DDP must neither broadcast nor check them.
            self._ddp_params_and_buffers_to_ignore = [
                f"loss.{name}" for name, _ in self.loss.named_buffers()
            ]

    def _parameter_groups(self) -> list[dict]:
        """The optimizer's parameter groups, each named, with its learning rate.

        The rates come from the hyper-parameters (``lr``, ``lr_mult`` for the head,
        the loss's own multipliers for its groups), all scaled to the batch size by
        ``lr_scaling`` (``spml_lightning.training.lr_scaling`` says why the loss's too).
        """
        lr = self.hparams.lr
        rule = self.hparams.get("lr_scaling", "none")
        if rule != "none":
            lr = scaled_lr(lr, rule, effective_batch_size(self.trainer), self.hparams.lr_batch_size)
        loss_groups = self.loss.optimizer_groups(lr) if isinstance(self.loss, SPMLLoss) else []
        groups = [
            {
                "params": [p for p in self.backbone.parameters() if p.requires_grad],
                "lr": lr,
                "name": "backbone",
            },
            {
                "params": list(self.head.parameters()),
                "lr": lr * self.hparams.lr_mult,
                "name": "head",
            },
        ]
        return groups + loss_groups

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over the named parameter groups (backbone, head, and any of the loss)."""
        groups = self._parameter_groups()
        adam = self._adam_settings()
        rule = self.hparams.get("lr_scaling", "none")
        if rule != "none":
            beta1, beta2 = adam["betas"]
            betas = f", Adam betas ({beta1:.4g}, {beta2:.4g})" if rule == "sqrt_betas" else ""
            rank_zero_info(
                f"lr_scaling {rule}: batch {effective_batch_size(self.trainer)} instead of "
                f"{self.hparams.lr_batch_size}, backbone lr {groups[0]['lr']:.3g} "
                f"(lr {self.hparams.lr:.3g}), head lr {groups[1]['lr']:.3g}{betas}."
            )
        return torch.optim.Adam(groups, lr=self.hparams.lr, **adam)

    def _adam_settings(self) -> dict[str, Any]:
        """Adam's betas and eps for this fit's batch (other than torch's under sqrt_betas)."""
        rule = self.hparams.get("lr_scaling", "none")
        batch = effective_batch_size(self.trainer) if rule == "sqrt_betas" else 0
        return scaled_adam(rule, batch, self.hparams.get("lr_batch_size"))

    def _schedule_epochs(self) -> int:
        epochs = self.hparams.schedule_epochs or self.trainer.max_epochs
        if epochs is None or epochs < 1:
            raise ValueError(
                f"The loss schedule spans a number of epochs >= 1, but the trainer's max_epochs is "
                f"{self.trainer.max_epochs} and schedule_epochs is {self.hparams.schedule_epochs}: "
                "set --trainer.max_epochs (or --model.schedule_epochs) to the number of epochs to "
                "train."
            )
        return int(epochs)

    def on_fit_start(self) -> None:
        """Drop a partial epoch loss sum and check that linear_init leaves epochs to train."""
        # An interrupted fit left a partial sum.
        self._train_loss_sum, self._train_loss_count = None, 0
        if self.hparams.linear_init >= self._schedule_epochs():
            raise ValueError(
                f"linear_init ({self.hparams.linear_init}) must be smaller than the number of "
                f"epochs ({self._schedule_epochs()})."
            )
        check_lr_warmup(self.hparams.get("lr_warmup_epochs", 0.0), self.trainer.max_epochs)

    def _apply_schedule(self, rescore: bool) -> None:
        values = {}
        if isinstance(self.loss, SPMLLoss):
            self.loss_schedule = {
                "epoch": int(self.current_epoch),
                "max_epochs": self._schedule_epochs(),
                "linear_init": int(self.hparams.linear_init),
            }
            values = self.loss.set_epoch(**self.loss_schedule)
        # Scoring the training set (EM+APL) belongs to the start of an epoch only: a
        # mid-epoch resume restores the per-sample state that scoring produced.
        if rescore and isinstance(self.loss, SPMLLoss) and self.loss.needs_train_scores():
            values = {**values, **self.loss.update_from_train_scores(*self._score_train_set())}
        self._scheduled_epoch = self.current_epoch
        for name, value in values.items():
            self.log(
                f"schedule/{name}", float(value), on_step=False, on_epoch=True, sync_dist=False
            )
        for group in self.trainer.optimizers[0].param_groups if self.trainer.optimizers else []:
            if "name" in group:
                self.log(f"lr/{group['name']}", float(group["lr"]), on_step=False, on_epoch=True)

    def on_train_epoch_start(self) -> None:
        """Set the loss schedule for the epoch and rescore the training set if the loss needs it."""
        self._apply_schedule(rescore=True)

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        """Apply the epoch's loss schedule if a mid-epoch resume skipped the epoch start."""
        # Lightning skips on_train_epoch_start when it resumes from a mid-epoch
        # checkpoint; the rest of that epoch must still use that epoch's schedule.
        if self._scheduled_epoch != self.current_epoch:
            self._apply_schedule(rescore=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Check the loss is finite, then store where the loss schedule stands."""
        # A loss that went NaN since the last check must stop the run before its
        # weights replace a good checkpoint.
        self._finite_loss.check()
        # Where the loss schedule stood, so that a loaded model's loss (and the
        # k̂ curve an analysis draws from it) is the one it was trained with last.
        if self.loss_schedule is not None:
            checkpoint["loss_schedule"] = dict(self.loss_schedule)

    @_restricted_classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:
        """Lightning's ``load_from_checkpoint``, without the backbone's initial weights.

        The checkpoint's weights replace them, so nothing is downloaded and no
        weights file is read: a run that started from pretrained weights reloads
        offline. A backbone given as a module whose constructor arguments were
        not all recorded is passed again: ``load_from_checkpoint(path,
        backbone=MyNet(...))`` (docs/guides/backbones.md).
        """
        if "backbone" in kwargs:  # Lightning overwrites the recorded one with it
            check_given_backbone(checkpoint_path, kwargs["backbone"])
        with initial_weights_skipped():
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint that does not fit the run; restore its loss schedule."""
        # A trainer restores it: a resumed fit, or test/validate/predict.
        if self._trainer is not None:
            self._check_checkpoint_fits(checkpoint.get("hyper_parameters", {}))
        # A config recorded from the command line is exact; a module rebuilt from it and
        # recorded again from its attributes may be less so: keep the checkpoint's.
        stored = checkpoint.get("hyper_parameters", {}).get("backbone")
        current = self.hparams.get("backbone")
        if isinstance(stored, Mapping) and isinstance(current, Mapping):
            if same_class(stored.get("class_path"), current.get("class_path")):
                self.hparams["backbone"] = copy.deepcopy(dict(stored))
        schedule = checkpoint.get("loss_schedule")
        if schedule is not None:
            self.loss_schedule = dict(schedule)
            if isinstance(self.loss, SPMLLoss):
                self.loss.set_epoch(
                    schedule["epoch"], schedule["max_epochs"], schedule["linear_init"]
                )

    def _check_checkpoint_fits(self, hparams: Mapping) -> None:
        """Refuse a checkpoint that does not fit this run; note what a resumed fit changes.

        Outside fit only the classes matter (see ``spml_lightning.training.compatibility``);
        a resumed fit may change the optimizer and schedule settings, not the
        network, its classes or the loss.
        """
        source = (
            f"checkpoint {self.trainer.ckpt_path}" if self.trainer.ckpt_path else "the checkpoint"
        )
        if self.trainer.state.fn != TrainerFn.FITTING:
            if self.hparams.class_names is None:  # no names from the data: the checkpoint's hold
                self.hparams.class_names = hparams.get("class_names")
            check_backbone(hparams.get("backbone"), self.hparams.get("backbone"), source)
            check_class_names(hparams.get("class_names"), self.hparams.class_names, source)
            datamodule = getattr(self.trainer, "datamodule", None)
            check_preprocessing(hparams, getattr(datamodule, "preprocessing", {}), source)
            return
        resume_plan(hparams, self.hparams).enforce(source)

    def on_train_start(self) -> None:
        """Set the groups' rates: a resumed fit's new ones, the warm-up's share of them."""
        # Adam's restored state carries the checkpoint's learning rates; a resumed
        # fit with a new lr or lr_mult (a restart with a lower lr) trains with the new ones,
        # as does one with another batch size under lr_scaling. The warm-up is a
        # function of the optimiser step alone, so a resumed fit continues it.
        self._group_rates = {group["name"]: group["lr"] for group in self._parameter_groups()}
        adam = self._adam_settings()
        for group in self._named_groups():  # a restored state's are the checkpoint's batch's
            group.update(adam)
        self._warmup_steps = warmup_steps(self.hparams.get("lr_warmup_epochs", 0.0), self.trainer)
        if self._warmup_steps:
            if not self._named_groups():
                raise ValueError(
                    "lr_warmup_epochs warms up the parameter groups of "
                    "SPMLModule.configure_optimizers (named backbone, head, ...), and this "
                    "fit's optimizer has none of them: warm up in your own "
                    "configure_optimizers (an lr scheduler) and use lr_warmup_epochs 0."
                )
            rank_zero_info(
                f"lr_warmup_epochs {self.hparams.lr_warmup_epochs}: the learning rates rise "
                f"linearly over the first {self._warmup_steps} optimiser steps."
            )
        self._set_group_rates()

    def _named_groups(self) -> list[dict]:
        """The optimizer's groups ``_parameter_groups`` named (none in one of your own)."""
        optimizers = self.trainer.optimizers
        if not optimizers:
            return []
        return [
            group for group in optimizers[0].param_groups if group.get("name") in self._group_rates
        ]

    def _set_group_rates(self) -> None:
        """Each group's rate times the warm-up's factor for the coming optimiser step."""
        factor = warmup_factor(self.global_step, self._warmup_steps)
        for group in self._named_groups():
            group["lr"] = self._group_rates[group["name"]] * factor

    def _score_train_set(self) -> tuple[Tensor, Tensor]:
        """(index, logits) of this rank's shard of the training set, without augmentation."""
        datamodule = getattr(self.trainer, "datamodule", None)
        dataset = getattr(datamodule, "train_dataset", None)
        if dataset is None:
            raise RuntimeError(
                f"{type(self.loss).__name__} scores the training set between epochs and needs "
                "trainer.datamodule.train_dataset; fit with an SPMLDataModule."
            )
        scoring = with_transform(dataset, self.inference_transform())
        sampler = None
        if self.trainer.world_size > 1:
            sampler = DistributedSampler(
                scoring,
                num_replicas=self.trainer.world_size,
                rank=self.trainer.global_rank,
                shuffle=False,
            )
        return score_dataset(
            self,
            scoring,
            batch_size=getattr(datamodule, "batch_size", 32),
            num_workers=getattr(datamodule, "num_workers", 0),
            sampler=sampler,
            forward_context=self.trainer.precision_plugin.forward_context,
        )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Drop the backbone's gradients during linear_init (head only); warm the rates up."""
        # Freezing by dropping the gradients (rather than toggling requires_grad)
        # keeps every parameter in DDP's reducer and in the optimizer, and Adam
        # skips a parameter without gradient exactly as the reference's frozen one.
        if self.current_epoch < self.hparams.linear_init:
            for param in self.backbone.parameters():
                param.grad = None
        if self.global_step < self._warmup_steps:
            self._set_group_rates()

    # -- steps ------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        """The batch's loss on its observed labels (targets, for a loss that trains on them)."""
        logits = self(batch["image"]).float()
        labels = (
            batch["target"] if getattr(self.loss, "trains_on_targets", False) else batch["observed"]
        )
        loss = self.loss(logits, labels, batch.get("index"))
        self._finite_loss.observe(
            loss, logits, batch.get("image"), self.global_step, self.current_epoch
        )
        self._log_train_loss(loss.detach(), len(logits))
        return loss

    def _log_train_loss(self, loss: Tensor, batch_size: int) -> None:
        """Log ``train/loss_step`` on the trainer's logging steps; sum the epoch mean on the device.

        Never reads the loss back per step: a progress-bar value would (one
        device synchronisation per refresh, i.e. per step), and each
        ``self.log`` call costs about 0.7 ms of Lightning's Python on a CPU
        (``bench/step_overhead.py``), so the step value is logged only when the
        logger writes it and the epoch mean is accumulated here.
        """
        if self._train_loss_sum is None:
            self._train_loss_sum, self._train_loss_count = torch.zeros((), device=loss.device), 0
        self._train_loss_sum += loss * batch_size
        self._train_loss_count += batch_size
        every = self.trainer.log_every_n_steps if self._trainer is not None else 0
        if every and (self.global_step + 1) % every == 0:
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=batch_size)

    def on_train_epoch_end(self) -> None:
        """Check the loss is finite and log the epoch's mean training loss."""
        self._finite_loss.check()
        # Same name and batch-size weighting as Lightning's on_epoch mean.
        if self._train_loss_count:
            mean = self._train_loss_sum / self._train_loss_count
            self.log("train/loss_epoch", mean, on_step=False, on_epoch=True, prog_bar=True)
        self._train_loss_sum, self._train_loss_count = None, 0

    def _eval_step(self, batch: dict, split: str) -> None:
        probs = torch.sigmoid(self(batch["image"]).float())
        index = torch.as_tensor(batch["index"], device=probs.device)
        self._outputs[split].append((index, probs.detach(), batch["target"].detach()))

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

    def _gathered(self, split: str) -> tuple[Tensor, Tensor]:
        outputs = self._outputs[split]
        self._outputs[split] = []
        if not outputs:
            empty = torch.zeros(0, self.hparams.num_classes, device=self.device)
            return empty, empty
        index, scores, targets = (torch.cat(parts) for parts in zip(*outputs, strict=True))
        # The same gather the per-sample loss state uses: rank order, any shard sizes.
        index, scores, targets = all_gather_rows(index, scores, targets)
        rows = _first_occurrences(index)
        return scores[rows], targets[rows]

    def _log_operating_points(self, split: str, scores: Tensor, targets: Tensor) -> None:
        """Log OP, OR, OF1, CP, CR, CF1 at 0.5 and for the top 3 (``<split>/top3/OF1``, ...)."""
        # From the same gathered, de-duplicated rows as the mAP: every rank logs the same values.
        for name, value in operating_point_metrics(scores, targets).items():
            self.log(f"{split}/{name}", value, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        """Log the mAP and the F1 metrics over the validation set, gathered from all ranks."""
        scores, targets = self._gathered("val")
        ap = average_precision_per_class(scores, targets)
        self.log("val/mAP", ap.mean() * 100.0, prog_bar=True, sync_dist=True)
        self._log_operating_points("val", scores, targets)

    def on_test_epoch_end(self) -> None:
        """Log the test mAP, every class's AP and the F1 metrics, gathered from all ranks.

        The APs are kept in ``test_average_precision``.
        """
        scores, targets = self._gathered("test")
        ap = average_precision_per_class(scores, targets)
        self.test_average_precision = ap.cpu()
        self.log("test/mAP", ap.mean() * 100.0, sync_dist=True)
        for name, value in zip(self.class_names, ap, strict=True):
            self.log(f"test/AP/{name}", value * 100.0, sync_dist=True)
        self._log_operating_points("test", scores, targets)

    # -- inference without a datamodule ------------------------------------------
    @property
    def normalization(self) -> dict[str, list[float] | None]:
        """The ``mean`` and ``std`` this model asks its data to be normalised with (None: any).

        Its ``mean``/``std`` hyper-parameters when set (given, or read from a checkpoint),
        else its backbone's own (a timm model's ``pretrained_cfg``). An ``SPMLDataModule``
        given no ``mean``/``std`` of its own normalises with these (ImageNet's when None).
        """
        return {
            key: self.hparams.get(key) or self._backbone_preprocessing.get(key)
            for key in ("mean", "std")
        }

    @property
    def preprocessing(self) -> dict[str, int | list[float] | None]:
        """``image_size``, ``mean``, ``std`` this model reads images with (None: not known yet).

        Its hyper-parameters (those it was trained with, recorded in its checkpoint);
        before it was fitted, the ones its backbone brings (a timm model's ``pretrained_cfg``).
        """
        image_size = self.hparams.image_size or self._backbone_preprocessing.get("image_size")
        return {"image_size": image_size, **self.normalization}

    def inference_transform(self) -> Callable[[Image.Image], Tensor]:
        """The evaluation transform with the preprocessing this model was trained with."""
        return evaluation_transform(**self.preprocessing)

    def predict_images(self, images: Sequence[ImageInput], batch_size: int = 32) -> Tensor:
        """Label probabilities (N, C) for PIL images, (C, H, W) tensors or image paths.

        Tensors are uint8 in [0, 255] or float in [0, 1]. Preprocessing (size,
        normalisation) is the one the model was trained with.
        """
        return predict_images(
            self, images, self.inference_transform(), self.hparams.num_classes, batch_size
        )


def _backbone_name(backbone: Any) -> str:
    """How messages name a backbone hyper-parameter (a name, or a config's class path)."""
    if isinstance(backbone, Mapping):
        return str(backbone.get("class_path", backbone))
    return repr(backbone) if isinstance(backbone, str) else type(backbone).__name__
