"""The ``weights`` of a backbone: what a value means, local weights files, skipping them."""

from __future__ import annotations

import contextlib
import contextvars
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

#: ``weights`` values meaning "the weights the backbone comes with".
PRETRAINED = "pretrained"
NO_WEIGHTS = {"none", "null", "random", ""}
WEIGHTS_SUFFIXES = {".pth", ".pt", ".ckpt", ".bin", ".safetensors"}
#: Where an spml checkpoint's state dict keeps the backbone's weights (``SPMLModule.backbone``).
SPML_BACKBONE_PREFIX = "backbone."

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


_SHOWN_KEYS = 3


@dataclass(frozen=True)
class WeightsFile:
    """What a weights file holds.

    Attributes:
        state: its state dict (unwrapped from a Lightning or timm training checkpoint).
        architecture: the network it was saved from, where the file says (an spml
            checkpoint records its backbone); None where unknown.
    """

    state: dict[str, Tensor]
    architecture: str | None = None


def _not_a_state_dict(path: Path, what: str) -> ValueError:
    return ValueError(
        f"Weights file {path} is not a state dict: {what}. Pass a file of tensors by name, "
        "as torch.save(model.state_dict(), path) or safetensors' save_file write it (or a "
        "Lightning/spml checkpoint), 'pretrained', or 'none'."
    )


def _load(path: Path) -> object:
    """The object in a weights file, or an error naming the file and what it is not."""
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors import SafetensorError
            from safetensors.torch import load_file
        except ImportError as err:
            raise ImportError(
                f"Reading {path} needs the safetensors package: pip install safetensors "
                '(timm brings it: pip install "spml_lightning[timm]").'
            ) from err
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise _not_a_state_dict(path, f"not a readable safetensors file ({err})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):
            # A pickled module or other object: unpickling it would run its code.
            raise _not_a_state_dict(
                path,
                "it holds pickled Python objects (a whole model saved with torch.save(model)?), "
                "which spml does not unpickle; save model.state_dict() instead",
            ) from None
        raise _not_a_state_dict(path, f"not a file torch.save wrote ({err})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise _not_a_state_dict(
            path, f"not a file torch.save wrote, or a truncated one ({type(err).__name__}: {err})"
        ) from None


def _architecture(backbone: object) -> str | None:
    """The name of an spml checkpoint's recorded backbone (a name or a module config)."""
    if isinstance(backbone, str):
        return backbone
    if isinstance(backbone, dict) and isinstance(backbone.get("class_path"), str):
        return backbone["class_path"]
    return None


def read_weights(path: Path) -> WeightsFile:
    """The state dict in a weights file, and the architecture it names where it does.

    A Lightning checkpoint's ``state_dict`` and a timm training checkpoint's
    ``model`` are unwrapped. An spml checkpoint's weights sit under
    ``backbone.`` (its head and loss state beside them): only the backbone's
    are kept, without the prefix.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file, when it is not a state dict (random bytes, a
            truncated file, a pickled model, a checkpoint without weights).
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"Weights file {path} does not exist. Pass an existing state-dict file (.pth, .pt, "
            ".bin, .ckpt or .safetensors), 'pretrained', or 'none'."
        )
    loaded = _load(path)
    architecture = None
    if isinstance(loaded, dict) and isinstance(loaded.get("hyper_parameters"), dict):
        architecture = _architecture(loaded["hyper_parameters"].get("backbone"))
    state = loaded
    for key in ("state_dict", "model"):  # Lightning checkpoints; timm's training checkpoints
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise _not_a_state_dict(
            path, f"it holds {'an empty ' if state == {} else 'a '}{type(state).__name__}"
        )
    others = [k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, Tensor))]
    if others:
        raise _not_a_state_dict(
            path,
            f"{len(others)} of its {len(state)} entries are not tensors by name (first: "
            f"{[str(k) for k in others[:_SHOWN_KEYS]]})",
        )
    if architecture is not None and any(k.startswith(SPML_BACKBONE_PREFIX) for k in state):
        # An spml checkpoint: its backbone's weights; its head and loss state are its own.
        state = {
            k.removeprefix(SPML_BACKBONE_PREFIX): v
            for k, v in state.items()
            if k.startswith(SPML_BACKBONE_PREFIX)
        }
    return WeightsFile(state, architecture)


def _first(keys: list[str]) -> str:
    return f"{len(keys)} (first: {', '.join(keys[:_SHOWN_KEYS])})"


def load_local_weights(
    model: nn.Module, path: Path, what: str, head_prefixes: tuple[str, ...] = ()
) -> None:
    """Load a weights file into a headless backbone: exactly its keys, or its classifier's too.

    Files saved from a full classifier carry its head: the keys under
    ``head_prefixes`` (the classifier the backbone removed) are dropped. Any other
    difference -- a key of the backbone missing from the file, a key of the file
    the backbone does not have, a tensor of another shape -- means the file is
    another network's, and is an error naming the keys, their counts and the two
    architectures where known.

    Args:
        model: the backbone, without its classifier.
        path: the weights file (see :func:`read_weights`).
        what: the backbone, as the message names it (``'resnet18'``).
        head_prefixes: key prefixes of the classifier removed from the backbone
            (``("fc.",)``); a module's own backbone has none.

    Raises:
        ValueError: when the file does not fit the backbone.
    """
    found = read_weights(path)
    own = model.state_dict()
    missing = [k for k in own if k not in found.state]
    unexpected = [k for k in found.state if k not in own and not k.startswith(tuple(head_prefixes))]
    reshaped = [
        f"{k} {tuple(found.state[k].shape)} in the file, {tuple(own[k].shape)} in the backbone"
        for k in own
        if k in found.state and found.state[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"backbone keys missing from the file: {_first(missing)}")
    if unexpected:
        dropped = (
            f" (only the removed classifier's, {', '.join(head_prefixes)}, may be)"
            if (head_prefixes)
            else ""
        )
        problems.append(
            f"keys of the file that are not the backbone's{dropped}: {_first(unexpected)}"
        )
    if reshaped:
        problems.append(f"tensors of another shape: {_first(reshaped)}")
    if problems:
        source = f" (saved from {found.architecture})" if found.architecture else ""
        raise ValueError(
            f"Weights file {path}{source} does not fit this backbone ({what}): "
            f"{'; '.join(problems)} (of the backbone's {len(own)} parameters and buffers). "
            "Check --model.backbone and the file: it must hold the weights of this network, "
            "with or without its classifier."
        )
    model.load_state_dict({k: found.state[k] for k in own})
