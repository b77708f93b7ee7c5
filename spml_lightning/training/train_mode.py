"""What a fit trains on: images end to end, cached features of the frozen backbone, or both.

``end_to_end`` (the default) changes nothing: the training and validation
batches are images through the backbone and the head. ``linear_fixed_features``
is Cole et al.'s linear protocol (CVPR 2021): the backbone's features of every
training and validation image are extracted once (``spml_lightning.features``: the
cache is reused when nothing that determines it changed) and the fit trains the
head -- and the loss's own per-sample parameters -- on them. The backbone stays
in the model and in its checkpoints, so ``spml test``, ``predict`` and the
analysis run on images as before. ``linear_init`` is Cole et al.'s third mode: the
first ``linear_init`` epochs are that linear phase on the cache, the following ones
fine-tune the whole network on images from its head (``training.linear_init``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from spml_lightning.features import (
    FEATURE_DTYPES,
    CachedFeatureDataset,
    FeatureOptions,
    SharedExtraction,
    datamodule_features,
    weights_digest,
)
from spml_lightning.training.linear_init import (
    BestLinearEpoch,
    check_linear_init_strategy,
    restart_optimizer,
    serve_by_phase,
    stop_serving_by_phase,
)
from spml_lightning.training.optimizer import OptimizerSettings

__all__ = ["TRAIN_MODES", "FeatureDtype", "FixedFeatures", "TrainMode"]

TrainMode = Literal["end_to_end", "linear_fixed_features", "linear_init"]
FeatureDtype = Literal["float16", "float32"]

#: Cached rows per forward pass of the head when the training set is rescored.
_CHUNK = 8192

#: The values of ``SPMLModule(train_mode=...)``.
TRAIN_MODES: tuple[str, ...] = ("end_to_end", "linear_fixed_features", "linear_init")


class FixedFeatures:
    """The work of the cached-features modes; nothing at all in ``end_to_end``.

    Args:
        mode: ``end_to_end``, ``linear_fixed_features`` or ``linear_init``.
        dtype: how the features are cached, ``float16`` or ``float32``.
        folder: the cache folder; None: the default (``default_cache_dir``).
        linear_init: the head-only epochs at the start; in ``linear_init`` mode, the epochs
            of the linear phase on the cache (at least 1).
        linear_lr: the rate of the head (the loss's own groups at their multiples of it)
            while the backbone is frozen; None: the fine-tuning rates.

    Raises:
        ValueError: For another mode or dtype, naming the valid ones; for a negative
            ``linear_init``, a ``linear_init`` mode without linear epochs, or a ``linear_lr``
            that is not a positive number.
    """

    def __init__(
        self,
        mode: str,
        dtype: str = "float16",
        folder: str | None = None,
        linear_init: int = 0,
        linear_lr: float | None = None,
    ) -> None:
        if mode not in TRAIN_MODES:
            raise ValueError(f"train_mode must be one of {', '.join(TRAIN_MODES)}; got {mode!r}.")
        if dtype not in FEATURE_DTYPES:
            raise ValueError(
                f"feature_dtype must be one of {', '.join(FEATURE_DTYPES)}; got {dtype!r}."
            )
        if linear_init < 0:
            raise ValueError(f"linear_init must be 0 or more epochs, got {linear_init}.")
        if mode == "linear_init" and linear_init < 1:
            raise ValueError(
                "train_mode=linear_init trains the head on cached features for the first "
                f"linear_init epochs, but linear_init is {linear_init}: set --model.linear_init "
                "to the epochs of the linear phase (Cole et al.: 25), and --trainer.max_epochs "
                "to those plus the fine-tuning epochs."
            )
        if linear_lr is not None:
            OptimizerSettings(linear_lr)  # refuses a rate that is not a positive number
        self.mode = mode
        self.active = mode != "end_to_end"
        self._linear_epochs = linear_init if mode == "linear_init" else None  # None: every one
        self._linear_init = linear_init
        self._linear_lr = linear_lr
        self._options = FeatureOptions(dir=folder, dtype=dtype)  # type: ignore[arg-type]
        self._train_features: Any = None
        self._weights: str | None = None  # the digest of the backbone the cache was made with

    def setup_fit(self, model: Any, trainer: Any) -> None:
        """Serve the fit's training and validation rows from the feature cache.

        Extracts the cache of every split (or reuses it) with the backbone as it is now, then
        replaces the datamodule's ``train_dataset`` and ``val_dataset`` with
        ``CachedFeatureDataset`` views of the same rows (in ``linear_init`` mode, for the
        epochs of the linear phase only: ``linear_init.serve_by_phase``). In every mode, a
        datamodule that an earlier cached-features fit served first gets its images back.

        Args:
            model: the SPMLModule (``backbone``, ``head``).
            trainer: the fitting trainer (its ``datamodule``, set up for ``fit``).

        Under several processes, each extracts a share of the images and rank 0 writes the
        cache, which all read (a cache folder all ranks see, as the data set's root is).
        """
        # A datamodule an earlier cached-features fit served: its own loaders and images again.
        datamodule = trainer.datamodule
        stop_serving_by_phase(datamodule)
        for split in ("train", "val"):
            dataset = getattr(datamodule, f"{split}_dataset", None)
            if isinstance(dataset, CachedFeatureDataset):
                setattr(datamodule, f"{split}_dataset", dataset.dataset)
        if not self.active:
            return
        if self._linear_epochs is not None:
            check_linear_init_strategy(trainer.strategy, trainer.world_size)
        for split in ("train", "val"):
            if getattr(datamodule, f"{split}_dataset", None) is None:
                raise RuntimeError(
                    f"train_mode={self.mode} needs the datamodule's {split}_dataset "
                    "after setup('fit'): fit with an SPMLDataModule."
                )
        # The test split too: one cache for every split, the one `spml features` makes.
        datamodule.setup("test")

        shared = SharedExtraction.of_trainer(trainer)  # every rank a share, rank 0 writes
        cache = datamodule_features(
            model,
            datamodule,
            self._options,
            device=trainer.strategy.root_device,
            progress=trainer.progress_bar_callback is not None,
            shared=shared,
        )
        served = {}
        for split in ("train", "val"):
            dataset = getattr(datamodule, f"{split}_dataset")
            # Training flips as the datamodule augments images; evaluation never does.
            flip = split == "train" and bool(getattr(datamodule, "train_augment", False))
            flipped = cache.features(split, flipped=True) if flip else None
            served[split] = CachedFeatureDataset(dataset, cache.features(split), flipped)
        if self._linear_epochs is None:
            for split, dataset in served.items():
                setattr(datamodule, f"{split}_dataset", dataset)
        else:
            serve_by_phase(datamodule, trainer, served, self._linear_epochs)
            # Added before a resumed fit restores the callbacks' states (it gets its own), and
            # first: the checkpoints saved at a validation's end hold its choice of that epoch.
            if not any(isinstance(c, BestLinearEpoch) for c in trainer.callbacks):
                trainer.callbacks.insert(0, BestLinearEpoch(self._linear_epochs))
        self._train_features = served["train"].features
        self._weights = cache.manifest["fingerprint"]["weights"]
        rank_zero_info(
            f"train_mode={self.mode}: training the head on the cached features of {cache.path}"
            + ("." if self._linear_epochs is None else f" for {self._linear_epochs} epoch(s).")
        )

    def ddp_ignored(self, model: Any) -> list[str]:
        """The backbone's parameters and buffers, which DDP leaves alone when frozen.

        They get no gradient in this mode: DDP would wait for them at every step.
        """
        if self.mode != "linear_fixed_features":  # linear_init fine-tunes the backbone later
            return []
        names = [name for name, _ in model.backbone.named_parameters()]
        names += [name for name, _ in model.backbone.named_buffers()]
        return [f"backbone.{name}" for name in names]

    def on_cache(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) trains on the cached features."""
        return self.active and (self._linear_epochs is None or epoch < self._linear_epochs)

    def settings(self, settings: OptimizerSettings, epoch: int) -> OptimizerSettings:
        """The optimizer's settings for ``epoch``: the head at ``linear_lr`` while frozen.

        The epochs that train the head only (the ``linear_init`` ones, and every one of
        ``linear_fixed_features``) put the head at ``linear_lr`` and the loss's own groups at
        their multiples of it (Cole's linear phase: the head at its rate, ROLE's estimates
        at 10 times it); ``settings`` otherwise, and when ``linear_lr`` is None.
        """
        frozen = self.mode == "linear_fixed_features" or epoch < self._linear_init
        if not frozen or self._linear_lr is None:
            return settings
        return OptimizerSettings(self._linear_lr, 1.0, settings.lr_scaling, settings.lr_batch_size)

    def start_epoch(self, trainer: Any, epoch: int) -> None:
        """At the first fine-tuning epoch of ``linear_init``, start a new Adam."""
        if trainer.optimizers and epoch == self._linear_epochs:
            restart_optimizer(trainer.optimizers[0])

    def check_backbone(self, model: Any, epoch: int) -> None:
        """Refuse to train on features of other weights than the backbone's (after a restore).

        The cache is made in ``setup``, before a resumed fit restores its checkpoint: a
        checkpoint whose backbone differs (trained end to end, say) has other features.
        Only a fit that resumes at an ``epoch`` on the cache is checked: ``linear_init``'s
        fine-tuning trains the backbone away from them.

        Raises:
            RuntimeError: If the backbone's weights are not those the cache was made with.
        """
        if not self.on_cache(epoch):
            return
        if self._weights is not None and weights_digest(model.backbone) != self._weights:
            raise RuntimeError(
                f"train_mode={self.mode}: the backbone's weights differ from those the "
                "cached features were extracted with (a resumed checkpoint whose backbone was "
                "trained end to end?). Resume with the train_mode the checkpoint was trained "
                "with, or start a new linear run from its weights (model.weights <file>)."
            )

    @staticmethod
    def logits(model: Any, batch: dict) -> Tensor:
        """The batch's logits: the head on its ``features``, else the model on its ``image``."""
        if "features" in batch:
            return model.head_logits(batch["features"])
        return model(batch["image"])

    @torch.no_grad()
    def score_train_set(self, head: nn.Module, epoch: int) -> tuple[Tensor, Tensor] | None:
        """``(index, logits)`` of every training row from its cached features; None on images.

        What a loss that rescores the training set between epochs (EM+APL) is given, for an
        ``epoch`` on the cache; None for one on images (end to end, ``linear_init``'s
        fine-tuning: the backbone trains).
        """
        if not self.on_cache(epoch) or self._train_features is None:
            return None
        device = head.weight.device
        rows = len(self._train_features)
        logits = [  # in chunks: the whole cache in float32 may not fit in memory
            head(
                torch.from_numpy(self._train_features[start : start + _CHUNK].astype("float32")).to(
                    device
                )
            ).float()
            for start in range(0, rows, _CHUNK)
        ]
        return torch.arange(rows, device=device), torch.cat(logits)
