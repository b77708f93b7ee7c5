"""From label matrices to SPML datasets and loaders.

Every benchmark reader only has to say which images and which full labels make
up the official training and test phases (``load_phase``) and what the classes
are called (``class_names``). Everything the protocol prescribes -- the
train/val split of the training phase, the observed single positives, the
reference transform -- happens here, once, for all data sets.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from spml_lightning.data.device_decode import collate_encoded, decode_and_transform, read_encoded
from spml_lightning.data.io import load_rgb, missing_files, unreadable_reasons
from spml_lightning.data.observation import OBSERVE_STRATEGIES, ObjectBoxes, observed_labels
from spml_lightning.data.protocol import (
    check_counts,
    check_seed,
    observe_single_positive,
    split_train_val,
)
from spml_lightning.data.sampling import ResumableDataLoader
from spml_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD, reference_transform
from spml_lightning.priors.attach import attach_prior
from spml_lightning.priors.diagnostics import PriorQuality
from spml_lightning.priors.policies import PseudoLabelPolicy
from spml_lightning.priors.provider import PriorProvider

__all__ = ["PhaseData", "SPMLDataModule", "SPMLImageDataset"]

Phase = Literal["train", "test"]
Observe = Literal["uniform", "frequency", "size", "center", "given"]

#: How many paths an error or warning about missing/unreadable images lists.
_SHOWN_PATHS = 5


@dataclass(frozen=True)
class PhaseData:
    """One official phase of a data set: image files, full labels, maybe observed labels.

    Observed labels are given only where they come with the data; otherwise the
    protocol generates them.
    """

    image_paths: Sequence[str]
    labels: np.ndarray
    observed: np.ndarray | None = None

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.ndim != 2 or labels.shape[0] != len(self.image_paths):
            raise ValueError(
                f"Expected a ({len(self.image_paths)}, num_classes) label matrix for "
                f"{len(self.image_paths)} images, got shape {labels.shape}."
            )
        if self.observed is not None and np.shape(self.observed) != labels.shape:
            raise ValueError(
                f"The observed labels have shape {np.shape(self.observed)} but the full labels "
                f"{labels.shape}: they must describe the same rows and classes."
            )


class SPMLImageDataset(Dataset):
    """Images with full and observed labels, in row order.

    Items are ``{"image", "observed", "target", "index"}``: ``index`` is the row
    of the item in this dataset, which per-sample loss state is keyed by. Each array
    of ``extras`` (name -> ``(N, ...)``) adds its row under its name: a prior's
    ``pseudo_positive`` for the losses that take it (``spml_lightning.priors``).
    ``target`` is what the item is evaluated against: the full labels, except
    for a validation set built with ``val_labels="observed"``.

    Storage is a handful of numpy arrays (no per-row Python objects), so that
    loader workers forked from the main process share it instead of copying it.

    Without a ``transform`` (``None``), ``image`` is the encoded file
    (``read_encoded``), decoded later on the model's device.

    An image that cannot be read raises the reader's ``OSError`` (which names
    the file), followed by ``unreadable_hint`` when one is given: how the run
    can go on without the file.
    """

    def __init__(
        self,
        image_paths: Sequence[str],
        targets: np.ndarray,
        observed: np.ndarray,
        transform,
        evaluate_on: Literal["targets", "observed"] = "targets",
        unreadable_hint: str = "",
    ) -> None:
        if len(image_paths) != len(targets) or targets.shape != observed.shape:
            raise ValueError(
                f"image_paths ({len(image_paths)}), targets {targets.shape} and observed "
                f"{observed.shape} must describe the same rows."
            )
        self._paths = np.asarray([os.fspath(p) for p in image_paths], dtype=np.str_)
        self.targets = np.ascontiguousarray(targets, dtype=np.uint8)
        # Observed labels keep their sign: -1 marks an observed negative (num_neg > 0).
        self.observed = np.ascontiguousarray(observed, dtype=np.int8)
        self.transform = transform
        self.evaluate_on = evaluate_on
        self.unreadable_hint = unreadable_hint
        self.extras: dict[str, np.ndarray] = {}

    @property
    def image_paths(self) -> list[str]:
        """Absolute image paths in row order."""
        return self._paths.tolist()

    @property
    def num_classes(self) -> int:
        """The number of label columns."""
        return self.targets.shape[1]

    def __len__(self) -> int:
        return len(self._paths)

    def subset(self, rows: np.ndarray) -> SPMLImageDataset:
        """The chosen ``rows`` (indices or a boolean mask), renumbered from 0; same settings."""
        return SPMLImageDataset(
            self._paths[rows],
            self.targets[rows],
            self.observed[rows],
            self.transform,
            self.evaluate_on,
            self.unreadable_hint,
        )

    def label_less_rows(self) -> np.ndarray:
        """Boolean mask of the rows without any positive in their full labels."""
        return ~self.targets.any(axis=1)

    def __getitem__(self, index: int) -> dict:
        path = str(self._paths[index])
        try:
            image = read_encoded(path) if self.transform is None else self.transform(load_rgb(path))
        except OSError as err:
            if not self.unreadable_hint:
                raise
            raise type(err)(f"{str(err).rstrip('.')}. {self.unreadable_hint}") from err
        observed = torch.from_numpy(self.observed[index].astype(np.float32))
        evaluated = self.observed if self.evaluate_on == "observed" else self.targets
        target = torch.from_numpy(evaluated[index].astype(np.float32))
        item = {"image": image, "observed": observed, "target": target, "index": index}
        for name, rows in self.extras.items():
            item[name] = torch.from_numpy(np.asarray(rows[index], dtype=np.float32))
        return item


class SPMLDataModule(LightningDataModule, ABC):
    """Base class of every SPML data set.

    Subclasses implement ``class_names`` (available right after construction)
    and ``load_phase("train" | "test")``. This class applies the benchmark
    protocol of Cole et al. (CVPR 2021, Sec. 4, and their released code; see
    ``protocol.py``): the official training phase is split into train/val
    with ``split_train_val``, single positives are observed with
    ``observe_single_positive`` on the whole official training phase (then
    split, as the community files are), and the official test phase is the
    test set with full labels. Observed labels that come with the data
    (``PhaseData.observed``) are used as given instead. ``observe`` picks
    another strategy for the training phase (``observation.py``). Before any training,
    ``setup`` checks that every image exists (or, with ``skip_unreadable``,
    decodes each one and drops the bad ones).

    Args:
        root: folder holding the data set as downloaded.
        batch_size: images per batch and per device.
        num_workers: loader worker processes.
        image_size: side of the square the images are resized to.
        val_fraction: share of the official training phase held out for validation.
        split_seed: seed of the train/val split (1200 in every published protocol).
        observe_seed: seed of the single-positive observation (1200 likewise).
        num_pos: observed positives per training image (-1: all).
        num_neg: observed negatives per training image (-1: all). The three
            observation settings apply where the data brings no observed labels.
        observe: which positives of a training image are observed: ``uniform``
            (the protocol: observed labels that come with the data, else drawn
            uniformly at random), ``frequency`` (drawn with probability
            proportional to the class's training frequency), ``size`` (the
            class of the largest object), ``center`` (of the most central
            object), or ``given`` (the data's own observed labels, required).
            ``size`` and ``center`` need object boxes (COCO, VOC, a CSV
            ``boxes`` column; not NUS-WIDE, CUB or the demo set). The test
            phase's observed labels, never trained on nor evaluated, always
            follow ``uniform``.
        val_labels: validate (and select models) on the ``full`` labels of the
            validation images, or on their ``observed`` labels only.
        eval_label_less: what evaluation (the val and test sets) does with the
            images without any positive in their full labels: ``keep`` them (the
            published protocol) or ``exclude`` them. Training keeps them either
            way (their observed labels have no positive), and ``predict`` runs on
            every test image. Their counts are in ``label_less_images`` (and
            logged by ``setup``). Not part of what a resumed fit must repeat.
        train_augment: random horizontal flip on training images.
        mean: per-channel normalisation mean; default (None) the model's: in a
            trainer, the ``normalization`` the LightningModule asks for (SPMLModule:
            its ``mean``, else its backbone's own, e.g. a timm model's
            ``pretrained_cfg``), else ImageNet's. Resolved in the first ``setup``.
        std: per-channel normalisation standard deviation (as ``mean``).
        pin_memory: pin batches in page-locked memory (faster host-to-GPU copies).
        persistent_workers: keep loader workers alive between epochs.
        skip_unreadable: drop images that are missing or cannot be decoded (all
            are scanned in ``setup``; the dropped ones are counted in a warning)
            instead of stopping with an error. The split and the single
            positives are made on the complete phase first, so the remaining
            rows keep the community's values.
        decode_on: where images are decoded and transformed: ``workers`` (PIL in
            the loader workers, the reference pipeline) or ``device`` (the
            workers only read the files; JPEGs are decoded, resized, flipped and
            normalised in batches on the model's device -- nvJPEG on a GPU --
            for machines with few CPU cores per GPU; see ``data/device_decode.py``).
        prior: a file of a vision-language prior's scores of the training images, whose
            pseudo-positives the losses GPR and VLPL learn from: ``.csv`` keyed by image or
            ``.npy`` in data-set order (``priors/scores_file.py``). None: no prior, or
            ``prior_provider``'s.
        prior_provider: a model that computes the prior's scores once and caches them
            (``spml_lightning.priors.OpenCLIPPrior``; in a config, its ``class_path`` and
            ``init_args``). Not with ``prior``.
        prior_policy: how the prior's scores become pseudo-positives
            (``spml_lightning.priors.PseudoLabelPolicy``; default: the 3 best classes of
            probability >= 0.5; the papers' rules: ``configs/losses/gpr*.yaml``, ``vlpl*.yaml``).
    """

    def __init__(
        self,
        root: str,
        batch_size: int = 8,
        num_workers: int = 4,
        image_size: int = 448,
        val_fraction: float = 0.2,
        split_seed: int = 1200,
        observe_seed: int = 1200,
        num_pos: int = 1,
        num_neg: int = 0,
        observe: Observe = "uniform",
        val_labels: Literal["full", "observed"] = "full",
        eval_label_less: Literal["keep", "exclude"] = "keep",
        train_augment: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pin_memory: bool = True,
        persistent_workers: bool = False,
        skip_unreadable: bool = False,
        decode_on: Literal["workers", "device"] = "workers",
        prior: str | None = None,
        prior_provider: PriorProvider | None = None,
        prior_policy: PseudoLabelPolicy | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        if num_workers < 0:
            raise ValueError(f"num_workers must be 0 or more, got {num_workers}.")
        if image_size < 1:
            raise ValueError(f"image_size must be a positive number of pixels, got {image_size}.")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(
                f"val_fraction must be strictly between 0 and 1, got {val_fraction} "
                "(model selection needs a validation set)."
            )
        check_seed("split_seed", split_seed)
        check_seed("observe_seed", observe_seed)
        check_counts(num_pos, num_neg)
        if observe not in OBSERVE_STRATEGIES:
            raise ValueError(
                f"observe must be one of {', '.join(OBSERVE_STRATEGIES)}; got {observe!r}."
            )
        if val_labels not in ("full", "observed"):
            raise ValueError(f"val_labels must be 'full' or 'observed', got {val_labels!r}.")
        if eval_label_less not in ("keep", "exclude"):
            raise ValueError(
                f"eval_label_less must be 'keep' or 'exclude', got {eval_label_less!r}."
            )
        if decode_on not in ("workers", "device"):
            raise ValueError(f"decode_on must be 'workers' or 'device', got {decode_on!r}.")
        self._given_normalization = {"mean": mean, "std": std}
        self._set_normalization({})  # refuses bad values now; the model's may replace ImageNet's
        self.root = Path(root).expanduser()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.image_size = image_size
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.observe_seed = observe_seed
        self.num_pos = num_pos
        self.num_neg = num_neg
        self.observe = observe
        #: How the training phase's observed labels were made (``given`` or a strategy); set up
        #: with the training set.
        self.observed_by: str | None = None
        self.val_labels = val_labels
        self.eval_label_less = eval_label_less
        self.train_augment = train_augment
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.skip_unreadable = skip_unreadable
        self.decode_on = decode_on
        if prior is not None and prior_provider is not None:
            raise ValueError(
                "Pass prior (a scores file) or prior_provider (a model that computes them), "
                "not both."
            )
        self.prior: str | PriorProvider | None = prior if prior is not None else prior_provider
        self.prior_policy = prior_policy if prior_policy is not None else PseudoLabelPolicy()
        #: The prior's quality on the training images (set up with them when there is a prior).
        self.prior_quality: PriorQuality | None = None
        self.train_dataset: SPMLImageDataset | None = None
        self.val_dataset: SPMLImageDataset | None = None
        self.test_dataset: SPMLImageDataset | None = None
        # The val and test sets as the protocol made them, label-less rows included: the
        # evaluated ones above may exclude those (eval_label_less).
        self._protocol_sets: dict[str, SPMLImageDataset] = {}
        self._label_less: dict[str, int] = {}
        self._fingerprints: dict[int, tuple[SPMLImageDataset, str]] = {}

    # -- what a data set has to provide ---------------------------------------
    @property
    @abstractmethod
    def class_names(self) -> list[str]:
        """Names of the label columns, in order."""

    @abstractmethod
    def load_phase(self, phase: Phase) -> PhaseData:
        """Image paths (absolute) and full labels of an official phase."""

    #: Whether ``load_boxes`` can give the objects' boxes (``observe`` ``size`` and ``center``).
    has_boxes: ClassVar[bool] = False

    def load_boxes(self, phase: Phase, data: PhaseData) -> ObjectBoxes:
        """The annotated objects of an official phase (only data sets with ``has_boxes``).

        Args:
            phase: the official phase.
            data: that phase as ``load_phase`` gave it (its rows are the boxes' rows).
        """
        raise NotImplementedError(f"{type(self).__name__} has no object boxes.")

    def obtain_hint(self) -> str:
        """How to get (or restore) the data set's files; appended to file errors."""
        return ""

    #: What ``skip_unreadable`` lets a run do when some images cannot be read (ends the hint of
    #: ``skip_hint``).
    skip_purpose = "train without them"

    def describe_phase(self, phase: Phase) -> str:
        """How messages about the images of ``phase`` name them."""
        return f"the {phase} phase of {type(self).__name__}"

    def skip_hint(self) -> str:
        """The advice to go on without the images that cannot be read, as errors give it."""
        return (
            "Or pass skip_unreadable=True (spml: --data.init_args.skip_unreadable true) to "
            f"{self.skip_purpose}."
        )

    # -- derived ----------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """The number of classes (label columns)."""
        return len(self.class_names)

    @property
    def label_less_images(self) -> dict[str, int]:
        """How many images of each set have no positive label, e.g. ``{"train": 2, "val": 0}``.

        The sets set up so far (``train`` and ``val`` by ``setup("fit")``, ``test``
        by ``setup("test")``), counted on the full labels before
        ``eval_label_less="exclude"`` removes them from the val and test sets.
        """
        return dict(self._label_less)

    @property
    def preprocessing(self) -> dict:
        """What a model needs to preprocess raw images as this datamodule does."""
        return {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std)}

    def _set_normalization(self, wanted: Mapping[str, Sequence[float] | None]) -> None:
        """Set ``mean``/``std``: the given ones, else ``wanted`` (the model's), else ImageNet's."""
        resolved = {}
        for key, default in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
            given = self._given_normalization[key]
            resolved[key] = next((v for v in (given, wanted.get(key)) if v is not None), default)
        mean, std = resolved["mean"], resolved["std"]
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values each, std > 0; got {mean}, {std}.")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def _resolve_normalization(self) -> None:
        """Normalise as the trainer's model asks (class doc) where no mean/std were given."""
        trainer = self.trainer
        model = trainer.lightning_module if trainer is not None else None
        self._set_normalization(getattr(model, "normalization", None) or {})

    def _checked_phase(self, phase: Phase) -> PhaseData:
        data = self.load_phase(phase)
        labels = np.asarray(data.labels)
        name = type(self).__name__
        if labels.shape[1] != self.num_classes:
            raise ValueError(
                f"The {phase} labels of {name} have {labels.shape[1]} columns "
                f"but there are {self.num_classes} class names."
            )
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"The {phase} labels of {name} are not all 0 or 1.")
        if data.observed is not None:
            observed = np.asarray(data.observed)
            if not np.isin(observed, (-1, 0, 1)).all():
                raise ValueError(
                    f"The given {phase} observed labels of {name} are not all -1, 0 or 1."
                )
            wrong = np.argwhere((observed == 1) & (labels != 1))
            if len(wrong):
                row, col = wrong[0]
                raise ValueError(
                    f"{len(wrong)} given observed positives of the {phase} phase of {name} are "
                    f"not positive in the full labels, e.g. row {row} ({data.image_paths[row]}), "
                    f"class {self.class_names[col]!r}. Observed labels must be a subset of the "
                    "full labels."
                )
        return data

    def protocol_observed(self, labels: np.ndarray) -> np.ndarray:
        """Observed labels of one official phase, by the protocol (uniform draws)."""
        return observe_single_positive(labels, self.observe_seed, self.num_pos, self.num_neg)

    def _observed(self, data: PhaseData, phase: Phase) -> tuple[np.ndarray, str]:
        """A phase's observed labels by the ``observe`` strategy (``observation.observed_labels``).

        The strategy is the training phase's; the test phase keeps the protocol's.
        """
        return observed_labels(
            self.observe if phase == "train" else "uniform",
            phase,
            data.labels,
            data.observed,
            seed=self.observe_seed,
            num_pos=self.num_pos,
            num_neg=self.num_neg,
            has_boxes=self.has_boxes,
            load_boxes=lambda: self.load_boxes(phase, data),
            name=type(self).__name__,
            warn=rank_zero_warn,
        )

    def _usable_rows(self, paths: np.ndarray, phase: Phase) -> np.ndarray:
        """Boolean mask of the rows whose image can be used, checked before any training.

        Missing files are an error naming their count and the first few paths;
        with ``skip_unreadable`` every image is decoded once and missing or
        undecodable ones are dropped, with a warning that counts them.
        """
        where = self.describe_phase(phase)
        hint = self.obtain_hint()
        if not self.skip_unreadable:
            missing = missing_files(paths.tolist())
            if missing:
                shown = "\n  ".join(missing[:_SHOWN_PATHS])
                raise FileNotFoundError(
                    f"{len(missing)} of {len(paths)} images of {where} are "
                    f"missing, e.g.:\n  {shown}\nRestore them{' (' + hint + ')' if hint else ''}. "
                    f"{self.skip_hint()}"
                )
            return np.ones(len(paths), dtype=bool)
        reasons = unreadable_reasons(paths.tolist())
        bad = [i for i, reason in enumerate(reasons) if reason is not None]
        if bad and len(bad) == len(paths):
            raise FileNotFoundError(
                f"None of the {len(paths)} images of {where} can be read, e.g. "
                f"{paths[0]} ({reasons[0]}). Check the root{' (' + hint + ')' if hint else ''}."
            )
        if bad:
            shown = "\n  ".join(f"{paths[i]} ({reasons[i]})" for i in bad[:_SHOWN_PATHS])
            rank_zero_warn(
                f"skip_unreadable: dropped {len(bad)} of {len(paths)} images of {where} "
                f"({sum(reasons[i] == 'missing' for i in bad)} missing, the others "
                f"undecodable), e.g.:\n  {shown}"
            )
        keep = np.ones(len(paths), dtype=bool)
        keep[bad] = False
        return keep

    # -- resuming: the same training set ------------------------------------------
    def _fingerprint(self, dataset: SPMLImageDataset) -> str:
        """SHA-256 of a set's rows: image paths and observed labels, in row order.

        Paths count relative to the root, so that moving the data set is no change.
        Computed once per set (every checkpoint save asks for it).
        """
        cached = self._fingerprints.get(id(dataset))
        if cached is not None and cached[0] is dataset:
            return cached[1]
        digest = hashlib.sha256()
        root = os.path.abspath(self.root) + os.sep
        for path in dataset.image_paths:
            absolute = os.path.abspath(path)
            digest.update(absolute.removeprefix(root).encode() + b"\0")
        digest.update(np.ascontiguousarray(dataset.observed).tobytes())
        self._fingerprints[id(dataset)] = (dataset, digest.hexdigest())
        return digest.hexdigest()

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint records of the data: a fingerprint of the train and val rows."""
        if self.train_dataset is None or self.val_dataset is None:
            return {}
        # The protocol's val rows: excluding label-less images from evaluation
        # (eval_label_less) is no other experiment, and a resumed fit may change it.
        val = self._protocol_sets.get("val", self.val_dataset)
        return {
            "train_rows": len(self.train_dataset),
            "train_fingerprint": self._fingerprint(self.train_dataset),
            "val_fingerprint": self._fingerprint(val),
            # Not a row setting: recorded so that a resumed fit can say it changed.
            "eval_label_less": self.eval_label_less,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Refuse a checkpoint trained on other rows than this data gives (:meth:`check_same_rows`).

        A resumed fit continues where the run stopped: the per-sample loss state
        (ROLE, LL-Cp, EM+APL), the position within the epoch and the best val mAP
        so far all refer to rows by their index, so the train and val rows must be
        the checkpoint's. ``validate`` measures the val mAP: on other val rows it
        could include images the model was trained on. ``test`` and ``predict``
        read the test phase, which the training rows do not change.
        """
        trainer = self.trainer
        if trainer is None or not state_dict or self.train_dataset is None:
            return
        path = getattr(trainer, "ckpt_path", None)
        source = f"checkpoint {path}" if path else "checkpoint"
        if trainer.state.fn == "fit":
            self.check_same_rows(
                state_dict,
                source,
                ("train", "val"),
                "A resumed fit continues its training: the per-sample loss state, the position "
                "within the epoch and the best val mAP so far refer to the checkpoint's rows.",
                " -- or start a new run without --ckpt_path",
            )
            before = state_dict.get("eval_label_less")
            if before is not None and before != self.eval_label_less:
                rank_zero_info(
                    f"Resumed with eval_label_less {self.eval_label_less!r} (the checkpoint "
                    f"evaluated with {before!r}): the best val mAP so far was measured the old way."
                )
        elif trainer.state.fn == "validate":
            self.check_same_rows(
                state_dict,
                source,
                ("val",),
                "The val mAP would be measured on other images (some the model trained on) or "
                "other labels.",
            )

    def check_same_rows(
        self,
        recorded: Mapping[str, Any] | None,
        source: str,
        sets: Sequence[str],
        why: str,
        alternative: str = "",
    ) -> None:
        """Refuse train or val rows other than those a checkpoint was trained on.

        The one check wherever a checkpoint meets this data and the result depends
        on its training rows (a resumed fit, ``validate``, ``spml suggest``,
        ``load_run``/``analyze``). The checkpoint records fingerprints of its rows
        (:meth:`state_dict`): image paths relative to the root, and observed
        labels -- so another ``split_seed``, ``observe_seed``, ``observe``,
        ``val_fraction``, ``num_pos``, ``num_neg``, ``skip_unreadable`` or other
        files are refused, and a data set moved to another root is not.

        Args:
            recorded: the checkpoint's record (``checkpoint_training_rows``); None or empty for
                checkpoints without one (nothing to check).
            source: the checkpoint, as the message names it.
            sets: which rows must be the checkpoint's: ``train`` and/or ``val``.
            why: what would be wrong otherwise, for the message.
            alternative: appended to the fix in the message.

        Raises:
            ValueError: naming the sets that differ, the row counts, and the settings to pass.
        """
        if not recorded:
            return
        if self.train_dataset is None or self.val_dataset is None:
            self.setup("fit")
        current = self.state_dict()
        differ = [
            name
            for name in sets
            if recorded.get(f"{name}_fingerprint") is not None
            and recorded.get(f"{name}_fingerprint") != current.get(f"{name}_fingerprint")
        ]
        if not differ:
            return
        then, now = recorded.get("train_rows"), current.get("train_rows")
        detail = (
            f"{then} training rows then, {now} now"
            if "train" in differ and then != now
            else "the same number of rows, with other images, observed labels or train/val split"
        )
        raise ValueError(
            f"The {' and '.join(differ)} rows of {type(self).__name__} differ from those the "
            f"{source} was trained on ({detail}). {why} Pass the data settings of its fit (its "
            "config.yaml: root, val_fraction, split_seed, observe, observe_seed, num_pos, "
            f"num_neg, skip_unreadable){alternative}."
        )

    def setup(self, stage: str | None = None) -> None:
        """Build the stage's datasets: train/val from the train phase, test from the test phase."""
        if self.train_dataset is None and self.test_dataset is None:
            # Once: every dataset of this datamodule normalises alike.
            self._resolve_normalization()
        if stage in (None, "fit", "validate") and self.train_dataset is None:
            data = self._checked_phase("train")
            labels = np.asarray(data.labels)
            observed, self.observed_by = self._observed(data, "train")
            train_idx, val_idx = split_train_val(len(labels), self.val_fraction, self.split_seed)
            paths = np.asarray(data.image_paths, dtype=np.str_)
            # Rows are dropped only after the protocol ran on the complete phase,
            # so that every remaining row keeps the community's split and labels.
            usable = self._usable_rows(paths, "train")
            train_idx, val_idx = train_idx[usable[train_idx]], val_idx[usable[val_idx]]
            if not len(val_idx) or not len(train_idx):
                # An empty set: nothing to select the model on, or nothing to train on.
                raise ValueError(
                    f"val_fraction={self.val_fraction} of the {len(labels)} training-phase images "
                    f"of {self.describe_phase('train')} leaves {len(train_idx)} to train on and "
                    f"{len(val_idx)} to validate on (after unusable images are dropped); both "
                    "need at least one. Choose another val_fraction, or add images."
                )
            self.train_dataset = self._dataset(
                train_idx, paths, labels, observed, self._train_transform()
            )
            if self.prior is not None:
                self.prior_quality = attach_prior(self, self.train_dataset, train_idx, len(labels))
            val = self._dataset(
                val_idx,
                paths,
                labels,
                observed,
                self._eval_transform(),
                evaluate_on="observed" if self.val_labels == "observed" else "targets",
            )
            self._report_label_less({"train": self.train_dataset, "val": val})
            self.val_dataset = self._evaluated("val", val, evaluating=True)
        if stage in (None, "test", "predict") and self.test_dataset is None:
            data = self._checked_phase("test")
            labels = np.asarray(data.labels)
            observed, _ = self._observed(data, "test")
            paths = np.asarray(data.image_paths, dtype=np.str_)
            keep = self._usable_rows(paths, "test")
            test = self._dataset(keep, paths, labels, observed, self._eval_transform())
            self._report_label_less({"test": test})
            self.test_dataset = self._evaluated("test", test, evaluating=stage != "predict")

    def _evaluated(
        self, name: str, dataset: SPMLImageDataset, evaluating: bool
    ) -> SPMLImageDataset:
        """The set evaluation uses: ``dataset``, without its label-less rows if asked.

        Refuses to leave nothing to evaluate when the stage evaluates (``predict`` does not).
        """
        self._protocol_sets[name] = dataset
        if self.eval_label_less == "keep":
            return dataset
        evaluated = dataset.subset(~dataset.label_less_rows())
        if evaluating and len(dataset) and not len(evaluated):
            raise ValueError(
                f"eval_label_less='exclude' leaves no {name} image to evaluate: none of the "
                f"{len(dataset)} {name} images of {type(self).__name__} has a positive label. "
                "Check the labels, or pass eval_label_less='keep'."
            )
        return evaluated

    def _report_label_less(self, sets: Mapping[str, SPMLImageDataset]) -> None:
        """Count the images without a positive label; log the counts when there are any."""
        counts = {name: int(dataset.label_less_rows().sum()) for name, dataset in sets.items()}
        self._label_less.update(counts)
        if not any(counts.values()):
            return
        listed = " and ".join(f"{counts[n]} of {len(d)} {n}" for n, d in sets.items())
        evaluated = " and ".join(name for name in sets if name != "train")
        verb = "keeps" if self.eval_label_less == "keep" else "excludes"
        rank_zero_info(
            f"{type(self).__name__}: {listed} images have no positive label; "
            + ("training keeps them (no observed positive); " if "train" in sets else "")
            + f"{evaluated} evaluation {verb} them (eval_label_less={self.eval_label_less})."
        )

    def _dataset(
        self,
        rows: np.ndarray,
        paths: np.ndarray,
        labels: np.ndarray,
        observed: np.ndarray,
        transform,
        **kwargs,
    ) -> SPMLImageDataset:
        """The dataset of the chosen ``rows`` (indices or a mask) of a phase."""
        # With skip_unreadable, setup decoded every image: one that fails later changed since, and
        # skipping is no advice for it.
        hint = "" if self.skip_unreadable else self.skip_hint()
        return SPMLImageDataset(
            paths[rows], labels[rows], observed[rows], transform, unreadable_hint=hint, **kwargs
        )

    def _train_transform(self):
        if self.decode_on == "device":
            return None  # the workers read the files; on_before_batch_transfer transforms
        return reference_transform(self.image_size, self.train_augment, self.mean, self.std)

    def _eval_transform(self):
        if self.decode_on == "device":
            return None
        return reference_transform(self.image_size, False, self.mean, self.std)

    def _loader(self, dataset: SPMLImageDataset | None, shuffle: bool, name: str) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"The {name} set is not set up; call setup() first.")
        encoded = dataset.transform is None
        options = dict(
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            # Encoded files are read by the decoder from wherever they are; pinning them would be
            # wasted work.
            pin_memory=self.pin_memory and torch.cuda.is_available() and not encoded,
            persistent_workers=self.persistent_workers,
            drop_last=False,
            collate_fn=collate_encoded if encoded else None,
        )
        if shuffle:
            # Order and augmentation depend on (seed, epoch, index) only, and the
            # position within the epoch is checkpointed (see sampling.py).
            trainer = self.trainer
            return ResumableDataLoader(
                dataset,
                num_replicas=trainer.world_size if trainer is not None else 1,
                rank=trainer.global_rank if trainer is not None else 0,
                **options,
            )
        return DataLoader(dataset, shuffle=False, **options)

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """With ``decode_on="device"``: decode and transform the batch's images on the device."""
        if isinstance(batch, dict) and isinstance(batch.get("image"), list):
            batch["image"] = decode_and_transform(
                batch["image"],
                self.image_size,
                self.mean,
                self.std,
                flip=self.train_augment and self.trainer.training,
                device=self.trainer.lightning_module.device,
            )
        return batch

    def train_dataloader(self) -> DataLoader:
        """The training set, shuffled by a resumable, seeded sampler."""
        return self._loader(self.train_dataset, True, "train")

    def val_dataloader(self) -> DataLoader:
        """The validation set, in order."""
        return self._loader(self.val_dataset, False, "val")

    def test_dataloader(self) -> DataLoader:
        """The test set, in order."""
        return self._loader(self.test_dataset, False, "test")

    def predict_dataloader(self) -> DataLoader:
        """The test phase's images, in order (label-less ones too, whatever ``eval_label_less``)."""
        return self._loader(self._protocol_sets.get("test", self.test_dataset), False, "test")
