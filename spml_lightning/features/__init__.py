"""Cached per-image features: compute once per image, reuse in every run.

The extraction pass (``extraction.py``) runs a frozen backbone over every image
of every split once and writes the features to memory-mapped arrays on disk
(``store.py``), with a fingerprint of everything that determines them
(``fingerprint.py``): the same fingerprint reuses the cache, any difference
recomputes it and says which part differed. ``spml features --config ...``
runs it for a config's datamodule and backbone (``SPMLTrainer.features``).
This package knows nothing of losses.
"""

from spml_lightning.features.datasets import CachedFeatureDataset
from spml_lightning.features.extraction import (
    CACHE_FOLDER,
    FEATURE_DTYPES,
    FeatureOptions,
    cached_features,
    datamodule_features,
    default_cache_dir,
)
from spml_lightning.features.fingerprint import (
    FINGERPRINT_PARTS,
    differing_parts,
    feature_fingerprint,
    weights_digest,
)
from spml_lightning.features.shared import SharedExtraction
from spml_lightning.features.store import MANIFEST, CachedFeatures, build_or_reuse, read_cache

__all__ = [
    "CACHE_FOLDER",
    "FEATURE_DTYPES",
    "FINGERPRINT_PARTS",
    "MANIFEST",
    "CachedFeatureDataset",
    "CachedFeatures",
    "FeatureOptions",
    "SharedExtraction",
    "build_or_reuse",
    "cached_features",
    "datamodule_features",
    "default_cache_dir",
    "differing_parts",
    "feature_fingerprint",
    "read_cache",
    "weights_digest",
]
