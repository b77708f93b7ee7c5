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
from typing import Any

import torch
from torch import Tensor, nn

from spml_lightning.deploy.metadata import ModelMetadata
from spml_lightning.deploy.options import EXPORTERS, Exporter

__all__ = [
    "ExportError",
    "ProbabilityModel",
    "batch_dimension",
    "example_batch",
    "export_onnx",
    "exportable_copy",
    "failure",
]


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
    wrapped = ProbabilityModel(exportable_copy(model)).eval()
    example = example_batch(size)
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as scratch:
        graph = Path(scratch) / "model.onnx"
        try:
            _export(wrapped, example, graph, exporter)
        except Exception as err:  # the exporters raise many types; all mean "cannot export"
            how = f"the {exporter} ONNX exporter"
            raise ExportError(failure(err, how, name, fallback(exporter), onnx=True)) from err
        proto = onnx.load(str(graph))
        onnx.helper.set_model_props(proto, metadata.to_properties())
        onnx.save(proto, str(graph))
        os.replace(graph, target)
    return target


def exportable_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the CPU, in fp32, in eval mode (the caller's stays as it is)."""
    return copy.deepcopy(model).float().cpu().eval()


def example_batch(image_size: int) -> Tensor:
    """What the exporters trace: a batch of 2, so that no size-1 broadcasting is baked in."""
    return torch.zeros(2, 3, image_size, image_size)


def batch_dimension() -> dict[str, dict[int, Any]]:
    """``dynamic_shapes`` of ``torch.export`` for the input: a free batch size."""
    return {INPUT: {0: torch.export.Dim("batch", min=1)}}


def _export(model: nn.Module, example: Tensor, path: Path, exporter: Exporter) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        if exporter == "dynamo":
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                dynamic_shapes=batch_dimension(),
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


def fallback(exporter: Exporter) -> str:
    """What to try when ``exporter`` fails: the other one."""
    return f"--exporter {'legacy' if exporter == 'dynamo' else 'dynamo'}"


def failure(err: BaseException, exporter: str, name: str, fallback: str, onnx: bool) -> str:
    """What stopped an export, in one line: the operator (or the error), and what to try.

    Args:
        err: what the exporter raised.
        exporter: how the message names the exporter.
        name: how the message names the model's backbone.
        fallback: what to try instead.
        onnx: whether an ONNX exporter failed (its messages name the untranslated operator).
    """
    text = "\n".join(str(e) for e in _chain(err))
    match = _OPERATOR.search(text) if onnx else None
    if match:
        reason = f"no ONNX translation for the operator {next(g for g in match.groups() if g)}"
    else:
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
        reason = f"{type(err).__name__}: {first[:300]}"
    return (
        f"Cannot export {name} with {exporter}: {reason}. Try {fallback}, or replace that "
        "operation in the backbone."
    )


def _chain(err: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
