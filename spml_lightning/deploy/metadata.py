"""What an exported model file says about itself: classes, preprocessing, thresholds.

``spml export`` writes these facts into the ONNX file's ``metadata_props`` (one
JSON value per key, readable in any ONNX viewer), and the predictor reads them
back: the file alone is enough to label an image as the trained model would.
Plain Python (no numpy, no torch), so that both sides share it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["FORMAT_VERSION", "KEYS", "ModelMetadata", "Preprocessing"]

#: The version of this metadata layout; a predictor refuses a file of a later one.
FORMAT_VERSION = 1

#: The ``metadata_props`` keys of this layout (each value is JSON text).
KEYS: tuple[str, ...] = tuple(
    f"spml_lightning.{name}"
    for name in (
        "format_version",
        "class_names",
        "preprocessing",
        "thresholds",
        "threshold_rule",
        "output",
    )
)

#: How the evaluation transform resizes (``spml_lightning.data.transforms.reference_transform``).
SQUARE_BILINEAR = "square-bilinear-antialias"


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input, exactly as the evaluation transform does it.

    The image, decoded to 8-bit RGB (``spml_lightning.image_modes.to_rgb``: 16-bit
    grey scaled to 8 bits, EXIF orientation not applied, as in training), is resized
    to ``image_size`` x ``image_size`` by Pillow's bilinear filter with its
    antialiasing (aspect ratio not kept), scaled to [0, 1] by / 255 and normalised
    per channel by ``(x - mean) / std``; the input is (N, 3, S, S) float32.

    Attributes:
        image_size: side of the square input.
        mean: per-channel (R, G, B) mean.
        std: per-channel (R, G, B) standard deviation.
        resize: the resize rule's name (only ``square-bilinear-antialias`` exists).
    """

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = SQUARE_BILINEAR


@dataclass(frozen=True)
class ModelMetadata:
    """The facts of an exported model.

    Attributes:
        class_names: the label names, in output column order.
        preprocessing: how images become the input.
        thresholds: a decision threshold per class (probability >= threshold: the label).
        threshold_rule: how they were chosen (``f1-on-validation`` or ``global``).
        output: what the graph returns (``probabilities``: sigmoid of the logits, (N, C)).
    """

    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    thresholds: tuple[float, ...]
    threshold_rule: str
    output: str = "probabilities"

    def __post_init__(self) -> None:
        if len(self.thresholds) != len(self.class_names):
            raise ValueError(
                f"{len(self.thresholds)} thresholds for {len(self.class_names)} classes."
            )

    def to_properties(self) -> dict[str, str]:
        """The ONNX ``metadata_props``: key -> JSON text."""
        values = (
            FORMAT_VERSION,
            list(self.class_names),
            {
                "image_size": self.preprocessing.image_size,
                "resize": self.preprocessing.resize,
                "mean": list(self.preprocessing.mean),
                "std": list(self.preprocessing.std),
            },
            list(self.thresholds),
            self.threshold_rule,
            self.output,
        )
        return {key: json.dumps(value) for key, value in zip(KEYS, values, strict=True)}

    @classmethod
    def from_properties(
        cls, properties: Mapping[str, str], source: str = "the model"
    ) -> ModelMetadata:
        """Read the facts back from ``metadata_props``.

        Args:
            properties: key -> JSON text, as :meth:`to_properties` wrote them.
            source: how error messages name the file.

        Raises:
            ValueError: if a key is missing (a file not written by ``spml export``) or the
                layout is of a later version.
        """
        missing = [key for key in KEYS if key not in properties]
        if missing:
            raise ValueError(
                f"{source} has no {', '.join(missing)} metadata: it was not written by `spml "
                "export`. Export the checkpoint with `spml export --config ... --ckpt_path ...`."
            )
        value = {key.removeprefix("spml_lightning."): json.loads(properties[key]) for key in KEYS}
        if value["format_version"] > FORMAT_VERSION:
            raise ValueError(
                f"{source} has metadata format {value['format_version']}; this spml_lightning "
                f"reads up to {FORMAT_VERSION}: upgrade spml_lightning."
            )
        pre = value["preprocessing"]
        if pre["resize"] != SQUARE_BILINEAR:
            raise ValueError(f"{source} asks for the resize rule {pre['resize']!r}, unknown here.")
        return cls(
            class_names=tuple(value["class_names"]),
            preprocessing=Preprocessing(
                int(pre["image_size"]), _triple(pre["mean"]), _triple(pre["std"]), pre["resize"]
            ),
            thresholds=tuple(float(t) for t in value["thresholds"]),
            threshold_rule=value["threshold_rule"],
            output=value["output"],
        )


def _triple(values: Sequence[float]) -> tuple[float, float, float]:
    first, second, third = (float(v) for v in values)
    return first, second, third
