"""The ``weights`` of a backbone: what a value means, local state-dict files, skipping them."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

#: ``weights`` values meaning "the weights the backbone comes with".
PRETRAINED = "pretrained"
NO_WEIGHTS = {"none", "null", "random", ""}
WEIGHTS_SUFFIXES = {".pth", ".pt", ".ckpt", ".bin", ".safetensors"}

# Set while a model is rebuilt from a checkpoint, whose state dict replaces the initial weights.
_SKIP_INITIAL_WEIGHTS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "spml_skip_initial_weights", default=False
)


@contextlib.contextmanager
def initial_weights_skipped() -> Iterator[None]:
    """Build backbones without their initial weights inside this block.

    Nothing is downloaded and no weights file is read: for a model whose
    weights a checkpoint replaces right after (``SPMLModule.load_from_checkpoint``,
    ``spml test/validate/predict --ckpt_path``), so that a checkpoint of a run
    that started from pretrained weights loads on a machine without internet
    access, or without the weights file it started from.
    """
    token = _SKIP_INITIAL_WEIGHTS.set(True)
    try:
        yield
    finally:
        _SKIP_INITIAL_WEIGHTS.reset(token)


def initial_weights_wanted() -> bool:
    """False inside ``initial_weights_skipped``: build backbones as if ``weights`` were none."""
    return not _SKIP_INITIAL_WEIGHTS.get()


def weights_kind(weights: str | os.PathLike | None) -> tuple[str, Path | None]:
    """``("none" | "pretrained" | "name" | "file", path)`` for a ``weights`` value."""
    text = "none" if weights is None else os.fspath(weights)
    if text.lower() in NO_WEIGHTS:
        return "none", None
    if text.lower() == PRETRAINED:
        return "pretrained", None
    path = Path(text).expanduser()
    if path.suffix.lower() in WEIGHTS_SUFFIXES or "/" in text or os.sep in text:
        return "file", path
    return "name", None


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The state dict in a weights file (a Lightning or timm training checkpoint's too)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"Weights file {path} does not exist. Pass an existing state-dict file (.pth, .pt, "
            ".bin, .ckpt or .safetensors), 'pretrained', or 'none'."
        )
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise ImportError(
                f"Reading {path} needs the safetensors package: pip install safetensors "
                '(timm brings it: pip install "spml_lightning[timm]").'
            ) from err
        return load_file(str(path), device="cpu")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):  # Lightning checkpoints; timm's training checkpoints
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"Weights file {path} does not contain a state dict.")
    return state


def load_local_weights(model: nn.Module, path: Path, what: str) -> None:
    """Load a state-dict file into a headless backbone: its whole body must be in the file."""
    state = read_state_dict(path)
    own = model.state_dict()
    # Files saved from a full classifier carry its head: drop whatever the headless
    # backbone does not have, but insist that the body matches.
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable]
    if missing:
        raise ValueError(
            f"Weights file {path} does not fit this backbone ({what}): {len(missing)} of its "
            f"{len(own)} parameters and buffers are missing from the file or of another shape "
            f"(first: {missing[:3]}). Check --model.backbone and the file."
        )
    model.load_state_dict(usable)
