"""A trained SPMLModule as a PyTorch 2 exported program (``.pt2``), for deployments that keep torch.

``torch.export`` captures the graph the ONNX export writes (images in,
probabilities out, a dynamic batch dimension); ``torch.export.save`` stores it
with the same metadata as an extra file of the archive (``spml_lightning.json``:
the ONNX file's ``metadata_props``, key -> JSON text). :func:`load_pt2` reads
both back; AOTInductor (``torch._inductor.aoti_compile_and_package``) can
compile the program ahead of time.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from spml_lightning.deploy.metadata import ModelMetadata
from spml_lightning.deploy.onnx_export import (
    ExportError,
    ProbabilityModel,
    batch_dimension,
    example_batch,
    exportable_copy,
    failure,
)

__all__ = ["METADATA_FILE", "export_pt2", "load_pt2"]

#: The archive's extra file holding the metadata.
METADATA_FILE = "spml_lightning.json"


def export_pt2(
    model: nn.Module, path: str | os.PathLike, metadata: ModelMetadata, name: str = "the model"
) -> Path:
    """Write ``model``'s probabilities as a ``torch.export`` archive with ``metadata``.

    Args:
        model: maps (B, 3, S, S) images to (B, C) logits; exported in eval mode, on the CPU,
            in fp32 (it is left as it was).
        path: the ``.pt2`` file to write (whole or not at all).
        metadata: the classes, preprocessing and thresholds to attach.
        name: how the error message names the model's backbone.

    Raises:
        ExportError: one line saying what stops ``torch.export`` and what to try instead.
    """
    wrapped = ProbabilityModel(exportable_copy(model)).eval()
    example = example_batch(metadata.preprocessing.image_size)
    try:
        with torch.no_grad():
            program = torch.export.export(wrapped, (example,), dynamic_shapes=batch_dimension())
    except Exception as err:  # torch.export raises many types; all mean "cannot export"
        raise ExportError(
            failure(err, "torch.export", name, "--format onnx --exporter legacy", onnx=False)
        ) from err
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as scratch:
        archive = Path(scratch) / "model.pt2"
        extra = {METADATA_FILE: json.dumps(metadata.to_properties())}
        torch.export.save(program, str(archive), extra_files=extra)
        os.replace(archive, target)
    return target


def load_pt2(path: str | os.PathLike) -> tuple[nn.Module, ModelMetadata]:
    """The module (preprocessed images -> probabilities) and the metadata of a ``.pt2`` export."""
    extra = {METADATA_FILE: ""}
    program = torch.export.load(os.fspath(path), extra_files=extra)
    properties = json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else {}
    return program.module(), ModelMetadata.from_properties(properties, os.fspath(path))
