"""Label images with an exported model: onnxruntime, numpy and Pillow, no torch.

    from spml_lightning.deploy import Predictor

    predictor = Predictor("model.onnx")
    for prediction in predictor.predict(["photo.jpg", open("other.png", "rb").read()]):
        print(prediction.labels, prediction.scores)

The file's metadata (``spml_lightning.deploy.metadata``) gives the classes,
the preprocessing and the per-class thresholds; nothing else is needed. This
module and everything it imports leave torch and Lightning alone, so it runs
where they are not installed (``pip install onnxruntime numpy pillow`` and this
package without its dependencies, or the ``export`` extra).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spml_lightning.deploy.images import ImageSource, model_input, read_image
from spml_lightning.deploy.metadata import ModelMetadata

__all__ = ["Prediction", "Predictor"]


@dataclass(frozen=True)
class Prediction:
    """The labels of one image.

    Attributes:
        labels: the classes whose probability reaches their threshold, most probable first.
        scores: every class's probability, in the model's class order.
    """

    labels: list[str]
    scores: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        """``{"labels": [...], "scores": {class: probability}}`` (what ``spml serve`` answers)."""
        return {"labels": self.labels, "scores": self.scores}


class Predictor:
    """An exported model (``spml export``) with its preprocessing and thresholds.

    Args:
        path: the ONNX file.
        providers: onnxruntime execution providers, in order of preference (default: the CPU).
        threads: onnxruntime's intra-op threads (None: onnxruntime's default, all cores).

    Attributes:
        metadata: the file's facts (classes, preprocessing, thresholds).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int | None = None,
    ) -> None:
        try:
            import onnxruntime
        except ImportError as err:
            raise ImportError(
                "The predictor runs the model with onnxruntime: pip install onnxruntime (or "
                '"spml_lightning[export]").'
            ) from err
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Model file not found: {path}. Write one with `spml export --config ... "
                "--ckpt_path best --output model.onnx`."
            )
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self._session = onnxruntime.InferenceSession(path, options, providers=list(providers))
        properties = self._session.get_modelmeta().custom_metadata_map
        self.metadata = ModelMetadata.from_properties(properties, path)
        self._input = self._session.get_inputs()[0].name

    @property
    def class_names(self) -> list[str]:
        """The label names, in the order of the probabilities' columns."""
        return list(self.metadata.class_names)

    @property
    def thresholds(self) -> np.ndarray:
        """The per-class decision thresholds the file holds, (C,)."""
        return np.asarray(self.metadata.thresholds, dtype=np.float64)

    def probabilities(self, images: Sequence[ImageSource], batch_size: int = 32) -> np.ndarray:
        """The (N, C) float32 label probabilities of image paths, encoded bytes or PIL images.

        Raises:
            FileNotFoundError: for a path that is no file.
            UnreadableImage: for an input that is not a readable image (the message says why).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        rows = [
            self.run(
                model_input(
                    [read_image(i) for i in images[start : start + batch_size]],
                    self.metadata.preprocessing,
                )
            )
            for start in range(0, len(images), batch_size)
        ]
        if not rows:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return np.concatenate(rows)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The model on a preprocessed (N, 3, S, S) float32 batch: (N, C) probabilities."""
        (probabilities,) = self._session.run(None, {self._input: batch})
        return probabilities

    def predict(
        self,
        images: Sequence[ImageSource],
        threshold: float | None = None,
        batch_size: int = 32,
    ) -> list[Prediction]:
        """The labels and scores of each image.

        Args:
            images: image paths, encoded bytes or PIL images.
            threshold: one threshold for every class instead of the file's per-class ones.
            batch_size: images per run of the model.
        """
        return self.predictions(self.probabilities(images, batch_size), threshold)

    def predictions(
        self, probabilities: np.ndarray, threshold: float | None = None
    ) -> list[Prediction]:
        """:class:`Prediction` objects of (N, C) probabilities (the file's thresholds, or one)."""
        cut = self.thresholds if threshold is None else np.full(len(self.class_names), threshold)
        names = self.class_names
        result = []
        for row in np.asarray(probabilities, dtype=np.float64):
            order = np.argsort(-row, kind="stable")
            labels = [names[c] for c in order if row[c] >= cut[c]]
            result.append(
                Prediction(labels, {n: float(p) for n, p in zip(names, row, strict=True)})
            )
        return result
