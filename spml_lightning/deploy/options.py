"""The choices of ``spml export``: file formats and ONNX exporters.

A leaf module (no torch): the trainer's ``export`` subcommand declares its options with
these types when the ``spml`` command starts, and imports the export code itself only
when the command runs.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["EXPORTERS", "EXPORT_FORMATS", "ExportFormat", "Exporter"]

ExportFormat = Literal["onnx", "pt2"]

#: The formats of ``spml export --format``.
EXPORT_FORMATS: tuple[str, ...] = ("onnx", "pt2")

Exporter = Literal["dynamo", "legacy"]

#: The exporters of ``spml export --exporter``.
EXPORTERS: tuple[str, ...] = ("dynamo", "legacy")
