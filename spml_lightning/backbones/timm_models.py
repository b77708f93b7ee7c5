"""timm models as backbones (``timm/<name>``): headless, pretrained from the hub or a file."""

from __future__ import annotations

import difflib
import os
from typing import Any

from torch import nn

from spml_lightning.backbones.weights import load_local_weights, weights_kind

TIMM_PREFIXES: tuple[str, ...] = ("timm/", "timm:")
"""How a backbone name asks for a timm model: ``timm/convnext_atto`` or ``timm:convnext_atto``."""

TIMM_MISSING = (
    "The backbone {name!r} is a timm model, but timm is not installed. Install the optional "
    'extra: pip install "spml_lightning[timm]" (in a checkout: pip install -e ".[timm]").'
)


def timm_name(name: str) -> str | None:
    """The timm model name of a ``timm/<name>`` or ``timm:<name>`` backbone, else None."""
    for prefix in TIMM_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return None


def import_timm(name: str) -> Any:
    """The timm package; without it, an error naming the optional extra."""
    try:
        import timm
    except ImportError as err:
        raise ImportError(TIMM_MISSING.format(name=name)) from err
    return timm


def timm_hub_id(timm: Any, model_name: str) -> str:
    """The Hugging Face hub repository of a timm model's default (or tagged) pretrained weights."""
    try:
        hub_id = timm.models.get_pretrained_cfg(model_name).hf_hub_id
    except Exception:  # noqa: BLE001 -- only for the message
        hub_id = None
    return hub_id or f"timm/{model_name}"


def timm_head_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Key prefixes of the classifier that ``num_classes=0`` removed (``pretrained_cfg``)."""
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return tuple(f"{name}." for name in names)


def timm_backbone(spec: str, model_name: str, weights: str | os.PathLike | None) -> nn.Module:
    """The timm model ``model_name`` (asked for as ``spec``), headless, with its ``weights``."""
    timm = import_timm(spec)
    if not model_name or not timm.is_model(model_name):
        architecture = model_name.partition(".")[0]
        close = difflib.get_close_matches(architecture, timm.list_models(), n=5, cutoff=0.6)
        close += [m for m in timm.list_models(f"*{architecture}*")[:5] if m not in close]
        suggestion = f"Close matches: {', '.join(close)}." if close else ""
        raise ValueError(
            f"Unknown timm model {model_name!r} (backbone {spec!r}). {suggestion} "
            "timm.list_models('*pattern*') lists them all."
        )
    kind, path = weights_kind(weights)
    if kind == "name":
        raise ValueError(
            f"weights={os.fspath(weights or '')!r} is not a weights option of the timm backbone "
            f"{spec!r}: pass 'pretrained' (timm's default pretrained weights, downloaded from the "
            "Hugging Face hub), 'none' (random initialisation), or a local weights file."
        )
    if kind != "pretrained":
        model = timm.create_model(model_name, pretrained=False, num_classes=0)
        if path is not None:
            load_local_weights(model, path, repr(spec), timm_head_prefixes(model))
        return model
    try:
        return timm.create_model(model_name, pretrained=True, num_classes=0)
    except Exception as err:  # hub unreachable, not in the cache, no such tag, ...
        hub_id = timm_hub_id(timm, model_name)
        raise RuntimeError(
            f"Could not load the pretrained weights of the timm backbone {spec!r} from the "
            f"Hugging Face hub ({hub_id}): {type(err).__name__}: {err}. Without internet access "
            f"either download them on another machine (e.g. `hf download {hub_id} "
            "model.safetensors`) and pass the file: --model.weights /path/to/model.safetensors; "
            "or copy the Hugging Face cache that holds them to this machine and set "
            "HF_HUB_OFFLINE=1 (and HF_HOME to that cache); or train from scratch with "
            "--model.weights none."
        ) from err
