"""Vision-language priors: per-image class scores, and the pseudo-positives made from them.

A prior scores every class on every training image: a user's file (``scores_file.py``)
or a provider run once and cached (``provider.py``; ``OpenCLIPPrior`` in ``openclip.py``).
A policy (``policies.py``) turns the scores into pseudo-positives, kept apart from the
scores so that it can be tuned without computing them again; ``diagnostics.py`` measures
both against the full labels. ``SPMLDataModule`` attaches them to its training set
(``attach.py``; ``data.init_args.prior`` or ``prior_provider``, and ``prior_policy``),
whose items then carry ``pseudo_positive`` for the losses that learn from it (GPR, VLPL).
This package knows nothing of losses.
"""

# The datamodules take a prior (data.init_args.prior), so data/base.py imports this
# package, and this package reads images with data/io.py: importing it first would reach
# data/base.py while the prior modules are half-imported. Importing the data package
# first makes every entry go data -> priors (tests/test_import_graph.py imports each
# module first).
import spml_lightning.data  # noqa: F401  (isort: skip)
from spml_lightning.priors.attach import BATCH_KEY, attach_prior, prior_scores
from spml_lightning.priors.diagnostics import PriorQuality, prior_quality
from spml_lightning.priors.openclip import DEFAULT_TEMPLATES, OpenCLIPPrior
from spml_lightning.priors.policies import POLICY_KINDS, PseudoLabelPolicy
from spml_lightning.priors.provider import PRIOR_CACHE_FOLDER, ClassScorer, PriorProvider
from spml_lightning.priors.scores import PriorScores
from spml_lightning.priors.scores_file import IMAGE_COLUMN, read_scores_file

__all__ = [
    "BATCH_KEY",
    "DEFAULT_TEMPLATES",
    "IMAGE_COLUMN",
    "POLICY_KINDS",
    "PRIOR_CACHE_FOLDER",
    "ClassScorer",
    "OpenCLIPPrior",
    "PriorProvider",
    "PriorQuality",
    "PriorScores",
    "PseudoLabelPolicy",
    "attach_prior",
    "prior_quality",
    "prior_scores",
    "read_scores_file",
]
