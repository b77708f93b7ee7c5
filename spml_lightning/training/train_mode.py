"""What a fit trains on: images end to end, or cached features of the frozen backbone.

``end_to_end`` (the default) changes nothing: the training and validation
batches are images through the backbone and the head. ``linear_fixed_features``
is Cole et al.'s linear protocol (CVPR 2021): the backbone's features of every
training and validation image are extracted once (``spml_lightning.features``: the
cache is reused when nothing that determines it changed) and the fit trains the
head -- and the loss's own per-sample parameters -- on them. The backbone stays
in the model and in its checkpoints, so ``spml test``, ``predict`` and the
analysis run on images as before.
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
    datamodule_features,
    weights_digest,
)

__all__ = ["TRAIN_MODES", "FeatureDtype", "FixedFeatures", "TrainMode"]

TrainMode = Literal["end_to_end", "linear_fixed_features"]
FeatureDtype = Literal["float16", "float32"]

#: Cached rows per forward pass of the head when the training set is rescored.
_CHUNK = 8192

#: The values of ``SPMLModule(train_mode=...)``.
TRAIN_MODES: tuple[str, ...] = ("end_to_end", "linear_fixed_features")


class FixedFeatures:
    """The ``linear_fixed_features`` mode's work; nothing at all in ``end_to_end``.

    Args:
        mode: ``end_to_end`` or ``linear_fixed_features``.
        dtype: how the features are cached, ``float16`` or ``float32``.
        folder: the cache folder; None: the default (``default_cache_dir``).

    Raises:
        ValueError: For another mode or dtype, naming the valid ones.
    """

    def __init__(self, mode: str, dtype: str = "float16", folder: str | None = None) -> None:
        if mode not in TRAIN_MODES:
            raise ValueError(f"train_mode must be one of {', '.join(TRAIN_MODES)}; got {mode!r}.")
        if dtype not in FEATURE_DTYPES:
            raise ValueError(
                f"feature_dtype must be one of {', '.join(FEATURE_DTYPES)}; got {dtype!r}."
            )
        self.active = mode == "linear_fixed_features"
        self._options = FeatureOptions(dir=folder, dtype=dtype)  # type: ignore[arg-type]
        self._train_features: Any = None
        self._weights: str | None = None  # the digest of the backbone the cache was made with

    def setup_fit(self, model: Any, trainer: Any) -> None:
        """Serve the fit's training and validation rows from the feature cache.

        Extracts the cache of every split (or reuses it) with the backbone as it is now, then
        replaces the datamodule's ``train_dataset`` and ``val_dataset`` with
        ``CachedFeatureDataset`` views of the same rows.

        Args:
            model: the SPMLModule (``backbone``, ``head``).
            trainer: the fitting trainer (its ``datamodule``, set up for ``fit``).

        Under several processes, rank 0 extracts while the others wait, then they read
        its cache (a cache folder all ranks see, as the data set's root is).
        """
        if not self.active:
            return
        datamodule = trainer.datamodule
        for split in ("train", "val"):
            dataset = getattr(datamodule, f"{split}_dataset", None)
            if dataset is None:
                raise RuntimeError(
                    f"train_mode=linear_fixed_features needs the datamodule's {split}_dataset "
                    "after setup('fit'): fit with an SPMLDataModule."
                )
            if isinstance(dataset, CachedFeatureDataset):  # a second fit on this datamodule
                setattr(datamodule, f"{split}_dataset", dataset.dataset)  # extract from images
        # The test split too: one cache for every split, the one `spml features` makes.
        datamodule.setup("test")

        def cached() -> Any:
            return datamodule_features(
                model,
                datamodule,
                self._options,
                device=trainer.strategy.root_device,
                progress=trainer.progress_bar_callback is not None,
            )

        if trainer.world_size > 1:  # one rank extracts, the others reuse
            cache = cached() if trainer.global_rank == 0 else None
            trainer.strategy.barrier("linear_fixed_features extraction")
            cache = cache or cached()
        else:
            cache = cached()
        for split in ("train", "val"):
            dataset = getattr(datamodule, f"{split}_dataset")
            # Training flips as the datamodule augments images; evaluation never does.
            flip = split == "train" and bool(getattr(datamodule, "train_augment", False))
            flipped = cache.features(split, flipped=True) if flip else None
            served = CachedFeatureDataset(dataset, cache.features(split), flipped)
            setattr(datamodule, f"{split}_dataset", served)
        self._train_features = datamodule.train_dataset.features
        self._weights = cache.manifest["fingerprint"]["weights"]
        rank_zero_info(
            "train_mode=linear_fixed_features: training the head on the cached features of "
            f"{cache.path}."
        )

    def ddp_ignored(self, model: Any) -> list[str]:
        """The backbone's parameters and buffers, which DDP leaves alone when frozen.

        They get no gradient in this mode: DDP would wait for them at every step.
        """
        if not self.active:
            return []
        names = [name for name, _ in model.backbone.named_parameters()]
        names += [name for name, _ in model.backbone.named_buffers()]
        return [f"backbone.{name}" for name in names]

    def check_backbone(self, model: Any) -> None:
        """Refuse to train on features of other weights than the backbone's (after a restore).

        The cache is made in ``setup``, before a resumed fit restores its checkpoint: a
        checkpoint whose backbone differs (trained end to end, say) has other features.

        Raises:
            RuntimeError: If the backbone's weights are not those the cache was made with.
        """
        if self._weights is not None and weights_digest(model.backbone) != self._weights:
            raise RuntimeError(
                "train_mode=linear_fixed_features: the backbone's weights differ from those the "
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
    def score_train_set(self, head: nn.Module) -> tuple[Tensor, Tensor] | None:
        """``(index, logits)`` of every training row from its cached features; None end to end.

        What a loss that rescores the training set between epochs (EM+APL) is given.
        """
        if not self.active or self._train_features is None:
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
