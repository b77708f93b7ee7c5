"""Giving a datamodule's training set its prior: scores, pseudo-positives, and their quality.

``SPMLDataModule.setup`` calls :func:`attach_prior` when ``data.init_args.prior`` is set:
the scores of the training images come from the file or the provider (cached), the
policy turns them into pseudo-positives, which the training set serves in every item
under :data:`BATCH_KEY` (by row, like the dataset ``index``), and the prior's quality
against the full labels is logged before any training.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from lightning.pytorch.utilities import rank_zero_info

from spml_lightning.features.shared import SharedExtraction
from spml_lightning.priors.diagnostics import PriorQuality, prior_quality
from spml_lightning.priors.provider import PriorProvider
from spml_lightning.priors.scores import PriorScores
from spml_lightning.priors.scores_file import read_scores_file

__all__ = ["BATCH_KEY", "attach_prior", "prior_scores"]

BATCH_KEY = "pseudo_positive"
"""The key of the pseudo-positives in a training item (the losses' ``batch_inputs``)."""


def prior_scores(
    datamodule: Any, dataset: Any, phase_rows: np.ndarray, phase_size: int
) -> tuple[PriorScores, str]:
    """The prior's scores of ``dataset``'s images (its training set), and where they come from."""
    prior = datamodule.prior
    if isinstance(prior, PriorProvider):
        # Under DDP every process scores a share of the images (Lightning sets ``trainer``).
        shared = SharedExtraction.of_trainer(getattr(datamodule, "trainer", None))
        return prior.scores(dataset.image_paths, datamodule.class_names, datamodule.root, shared)
    if isinstance(prior, (str, os.PathLike)):
        return read_scores_file(
            prior,
            class_names=datamodule.class_names,
            image_paths=dataset.image_paths,
            phase_rows=phase_rows,
            phase_size=phase_size,
            root=datamodule.root,
        )
    raise TypeError(
        f"data.init_args.prior must be a scores file (.csv, .npy) or a prior provider such as "
        f"spml_lightning.priors.OpenCLIPPrior, got {type(prior).__name__}."
    )


def attach_prior(
    datamodule: Any, dataset: Any, phase_rows: np.ndarray, phase_size: int
) -> PriorQuality:
    """Put the prior's pseudo-positives into ``dataset`` (the training set); log their quality.

    Args:
        datamodule: has ``prior``, ``prior_policy``, ``class_names``, ``root``.
        dataset: the training set (``image_paths``, ``observed``, ``targets``, ``extras``).
        phase_rows: each training image's row in the training phase.
        phase_size: the number of images of the training phase.

    Returns:
        The prior's quality against the training images' full labels.
    """
    scores, source = prior_scores(datamodule, dataset, phase_rows, phase_size)
    policy = datamodule.prior_policy
    observed = np.asarray(dataset.observed) > 0
    proposed = policy.proposals(scores, observed)
    dataset.extras[BATCH_KEY] = (proposed & ~observed).astype(np.uint8)
    quality = prior_quality(
        policy.ranked_scores(scores, observed),
        proposed,
        observed,
        dataset.targets,
        datamodule.class_names,
    )
    rank_zero_info(f"Prior {source}, policy {policy}: {quality.summary()}")
    return quality
