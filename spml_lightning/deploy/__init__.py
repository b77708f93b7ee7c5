"""Deploying a trained model: the exported file's metadata and a predictor without torch.

``spml export`` (``spml_lightning.deploy.onnx_export``) writes a checkpoint's
model as one ONNX graph with its classes, preprocessing and thresholds;
:class:`Predictor` labels images with that file using onnxruntime, numpy and
Pillow only; ``spml serve`` (``spml_lightning.deploy.server``) answers HTTP
requests with it. Importing this package imports neither torch nor Lightning.
"""

from spml_lightning.deploy.images import ImageSource, UnreadableImage, model_input, read_image
from spml_lightning.deploy.metadata import ModelMetadata, Preprocessing
from spml_lightning.deploy.predictor import Prediction, Predictor

__all__ = [
    "ImageSource",
    "ModelMetadata",
    "Prediction",
    "Predictor",
    "Preprocessing",
    "UnreadableImage",
    "model_input",
    "read_image",
]
