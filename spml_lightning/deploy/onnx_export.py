"""A trained SPMLModule as one ONNX graph: images in, label probabilities out, facts attached.

The graph is the backbone, the pooling and the linear head followed by a
sigmoid, with a dynamic batch dimension (traced with a batch of 2, so that
no size-1 special case is baked in). ``exporter="dynamo"`` is PyTorch's
current exporter (``torch.export`` then ONNX, its default opset);
``exporter="legacy"`` is the TorchScript-based one, for a backbone the
current one cannot capture. A backbone neither can export fails with one
line naming the operator (or the error) and the other exporter.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from spml_lightning.deploy.metadata import ModelMetadata

__all__ = ["EXPORTERS", "ExportError", "Exporter", "ProbabilityModel", "export_onnx"]

Exporter = Literal["dynamo", "legacy"]

#: The exporters of ``spml export --exporter``.
EXPORTERS: tuple[str, ...] = ("dynamo", "legacy")

#: The graph's input, (N, 3, S, S) float32 images, and output, (N, C) float32 probabilities.
INPUT, OUTPUT = "images", "probabilities"

#: The legacy exporter's opset: the newest it supports fully.
LEGACY_OPSET = 17

#: Where an exporter's message names the operator it has no ONNX translation for.
_OPERATOR = re.compile(
    r"OpOverload\(op='(?P<a>[\w.]+)'|target=torch\.ops\.(?P<b>[\w.]+)|operator '(?P<c>[\w:.]+)'"
)


class ExportError(RuntimeError):
    """A model that an exporter cannot write to ONNX (the message names why and the fallback)."""


class ProbabilityModel(nn.Module):
    """A model's (B, C) logits turned into probabilities: what the exported graph computes.

    Args:
        model: maps (B, 3, S, S) images to (B, C) logits (an SPMLModule).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) float32 images -> (B, C) float32 probabilities."""
        return torch.sigmoid(self.model(images).float())


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    metadata: ModelMetadata,
    exporter: Exporter = "dynamo",
    name: str = "the model",
) -> Path:
    """Write ``model``'s probabilities as an ONNX file with ``metadata`` in its properties.

    The file appears whole or not at all (written beside it, then renamed).

    Args:
        model: maps (B, 3, S, S) images to (B, C) logits; exported in eval mode, on the CPU,
            in fp32 (it is left as it was).
        path: the ONNX file to write.
        metadata: the classes, preprocessing and thresholds to attach.
        exporter: ``dynamo`` (the current exporter) or ``legacy`` (TorchScript-based).
        name: how the error message names the model's backbone.

    Raises:
        ExportError: one line naming the operator (or the error) that stops the export and
            what to try instead.
    """
    try:  # the export extra: imported here, so that the package imports without it
        import onnx
        import onnxscript  # noqa: F401  (the dynamo exporter's translation library)
    except ImportError as err:
        raise ImportError(
            f"Exporting to ONNX needs onnx and onnxscript ({err}): pip install "
            '"spml_lightning[export]".'
        ) from err

    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}.")
    size = metadata.preprocessing.image_size
    wrapped = ProbabilityModel(_cpu_copy(model)).eval()
    example = torch.zeros(2, 3, size, size)  # batch 2: no size-1 broadcasting baked in
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as scratch:
        graph = Path(scratch) / "model.onnx"
        try:
            _export(wrapped, example, graph, exporter)
        except Exception as err:  # the exporters raise many types; all mean "cannot export"
            raise ExportError(_one_line(err, exporter, name)) from err
        proto = onnx.load(str(graph))
        onnx.helper.set_model_props(proto, metadata.to_properties())
        onnx.save(proto, str(graph))
        os.replace(graph, target)
    return target


def _cpu_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).float().cpu().eval()


def _export(model: nn.Module, example: Tensor, path: Path, exporter: Exporter) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        if exporter == "dynamo":
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                dynamic_shapes={INPUT: {0: torch.export.Dim("batch", min=1)}},
                verbose=False,
                input_names=[INPUT],
                output_names=[OUTPUT],
            )
            assert program is not None  # dynamo=True without a file returns the program
            program.save(str(path))
        else:
            # The legacy exporter warns that it is legacy: choosing it is the point here. Its
            # tracer warns of every Python check on a shape (the feature size check): those
            # shapes are the fixed ones (channels), the batch stays dynamic by dynamic_axes.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                opset_version=LEGACY_OPSET,
                dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                input_names=[INPUT],
                output_names=[OUTPUT],
            )


def _one_line(err: BaseException, exporter: Exporter, name: str) -> str:
    """What stopped the export, named in one line, and the fallback."""
    text = "\n".join(str(e) for e in _chain(err))
    match = _OPERATOR.search(text)
    if match:
        reason = f"no ONNX translation for the operator {next(g for g in match.groups() if g)}"
    else:
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
        reason = f"{type(err).__name__}: {first[:300]}"
    other = "legacy" if exporter == "dynamo" else "dynamo"
    return (
        f"Cannot export {name} to ONNX with the {exporter} exporter: {reason}. Try "
        f"--exporter {other}, or replace that operation in the backbone."
    )


def _chain(err: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
