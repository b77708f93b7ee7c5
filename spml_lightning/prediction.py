"""Kept so that ``from spml_lightning.prediction import ...`` still works.

``PredictionWriter`` lives in ``spml_lightning.training.prediction_writer``,
``predicted_labels`` in ``spml_lightning.inference``.
"""

from spml_lightning.inference import predicted_labels
from spml_lightning.training.prediction_writer import PredictionWriter

__all__ = ["PredictionWriter", "predicted_labels"]
