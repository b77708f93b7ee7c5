"""Backbones: a torchvision name, a timm name, or any ``nn.Module`` -> (module, feature size).

A backbone maps images (B, 3, H, W) to features: (B, D) vectors, or a (B, D, H', W')
map that ``SPMLModule`` averages over H' and W' (global average pooling, what
every torchvision and timm classifier does before its last Linear layer). Three
kinds (README, "Backbones"):

* a torchvision classification model by name (``resnet50``), its classifier removed;
* a timm model as ``timm/<name>`` or ``timm:<name>`` (``timm/convnext_atto``; a
  pretrained tag such as ``timm/resnet18.a1_in1k`` too), built headless with
  ``num_classes=0`` -- needs the optional extra ``pip install "spml_lightning[timm]"``;
* any ``nn.Module``, or its config ``{"class_path": ..., "init_args": {...}}`` (what a
  YAML config gives, and what a checkpoint records).

``weights`` says what the backbone starts from: ``pretrained`` (default) -- the
weights the backbone comes with: torchvision's ``IMAGENET1K_V1`` (the legacy
``pretrained=True``, behind every published SPML number), timm's default
pretrained tag from the Hugging Face hub, a module's own as given; ``none`` --
random initialisation (a module: as given; spml never re-initialises one); a
torchvision weights-enum name (``IMAGENET1K_V2``, ``DEFAULT``); or a local
state-dict file (``.pth``/``.pt``/``.bin``/``.ckpt``, or ``.safetensors``), with or
without the classifier, which must hold every parameter and buffer of the
backbone.

The feature size D is the module's ``head_hidden_size`` (timm), ``num_features``
or ``out_features`` attribute, the first that is an int; otherwise one forward
pass of a zero batch (in eval mode, without gradients) measures it.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import importlib
import inspect
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision import models

__all__ = [
    "BACKBONES",
    "TIMM_PREFIXES",
    "SimpleConvNet",
    "backbone_config",
    "backbone_preprocessing",
    "build_backbone",
    "check_input_size",
    "initial_weights_skipped",
    "pooled_features",
]

#: torchvision backbones known to work with ``build_backbone``; any classification model
#: of torchvision whose head ends in a Linear layer also works.
BACKBONES: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "convnext_tiny",
    "convnext_small",
    "efficientnet_b0",
    "efficientnet_b3",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "vit_b_16",
)

#: How a backbone name asks for a timm model: ``timm/convnext_atto`` or ``timm:convnext_atto``.
TIMM_PREFIXES: tuple[str, ...] = ("timm/", "timm:")

#: ``weights`` values meaning "the weights the backbone comes with".
_PRETRAINED = "pretrained"
_NO_WEIGHTS = {"none", "null", "random", ""}
_WEIGHTS_SUFFIXES = {".pth", ".pt", ".ckpt", ".bin", ".safetensors"}
#: Input side of the one forward pass that measures a module's feature size, when
#: neither ``image_size`` nor the module's own ``pretrained_cfg`` gives one.
_PROBE_SIZE = 224

_TIMM_MISSING = (
    "The backbone {name!r} is a timm model, but timm is not installed. Install the optional "
    'extra: pip install "spml_lightning[timm]" (in a checkout: pip install -e ".[timm]").'
)

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


# -- weights ----------------------------------------------------------------------------------
def _weights_kind(weights: str | os.PathLike | None) -> tuple[str, Path | None]:
    """``("none" | "pretrained" | "name" | "file", path)`` for a ``weights`` value."""
    text = "none" if weights is None else os.fspath(weights)
    if text.lower() in _NO_WEIGHTS:
        return "none", None
    if text.lower() == _PRETRAINED:
        return "pretrained", None
    path = Path(text).expanduser()
    if path.suffix.lower() in _WEIGHTS_SUFFIXES or "/" in text or os.sep in text:
        return "file", path
    return "name", None


def _read_state_dict(path: Path) -> dict[str, Tensor]:
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


def _load_local_weights(model: nn.Module, path: Path, what: str) -> None:
    """Load a state-dict file into a headless backbone: its whole body must be in the file."""
    state = _read_state_dict(path)
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


# -- torchvision ------------------------------------------------------------------------------
def _strip_classifier(model: nn.Module) -> tuple[nn.Module, int]:
    """Replace the model's final Linear by Identity; return the feature size."""
    for attr in ("fc", "classifier", "heads", "head"):
        head = getattr(model, attr, None)
        if head is None:
            continue
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Identity())
            return model, head.in_features
        if isinstance(head, nn.Sequential):
            linear_positions = [i for i, m in enumerate(head) if isinstance(m, nn.Linear)]
            if linear_positions:
                last = linear_positions[-1]
                dim = head[last].in_features
                head[last] = nn.Identity()
                return model, dim
    raise ValueError(
        f"Cannot find the classification layer of {type(model).__name__}; "
        f"use one of {', '.join(BACKBONES)}."
    )


def _resolve_weights(name: str, weights: str) -> models.WeightsEnum:
    try:
        enum = models.get_model_weights(name)
    except (ValueError, KeyError) as err:  # pragma: no cover - name checked before
        raise ValueError(f"Backbone {name!r} has no pretrained weights.") from err
    choices = [w.name for w in enum]
    if weights.lower() == _PRETRAINED:  # what the legacy pretrained=True loaded
        return enum["IMAGENET1K_V1"] if "IMAGENET1K_V1" in choices else enum.DEFAULT
    if weights.upper() == "DEFAULT":
        return enum.DEFAULT
    try:
        return enum[weights]
    except KeyError:
        raise ValueError(
            f"Unknown weights {weights!r} for backbone {name!r}. Choose one of "
            f"{', '.join(choices + ['DEFAULT', _PRETRAINED])}, a path to a local .pth file, or "
            "'none'."
        ) from None


def _torchvision_backbone(name: str, weights: str | os.PathLike | None) -> tuple[nn.Module, int]:
    available = set(models.list_models(module=models))
    if name not in available:
        raise ValueError(
            f"Unknown backbone {name!r}. Choose one of {', '.join(BACKBONES)} "
            "(or another torchvision classification model), timm/<name> for a timm model, or "
            "give an nn.Module (a class_path in a config)."
        )
    kind, path = _weights_kind(weights)
    if kind in ("none", "file"):
        model = models.get_model(name, weights=None)
    else:
        enum = _resolve_weights(name, os.fspath(weights or ""))
        try:
            model = models.get_model(name, weights=enum)
        except Exception as err:  # download or file-cache failure
            raise RuntimeError(
                f"Could not load the pretrained weights {name}/{enum.name} from {enum.url} "
                f"({type(err).__name__}: {err}). Without internet access, pass "
                "--model.weights none (random initialisation) or --model.weights "
                "/path/to/weights.pth (a local state-dict file)."
            ) from err
    model, dim = _strip_classifier(model)
    if path is not None:
        _load_local_weights(model, path, repr(name))
    return model, dim


# -- timm -------------------------------------------------------------------------------------
def _timm_name(name: str) -> str | None:
    """The timm model name of a ``timm/<name>`` or ``timm:<name>`` backbone, else None."""
    for prefix in TIMM_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return None


def _import_timm(name: str) -> Any:
    try:
        import timm
    except ImportError as err:
        raise ImportError(_TIMM_MISSING.format(name=name)) from err
    return timm


def _timm_hub_id(timm: Any, model_name: str) -> str:
    """The Hugging Face hub repository of a timm model's default (or tagged) pretrained weights."""
    try:
        hub_id = timm.models.get_pretrained_cfg(model_name).hf_hub_id
    except Exception:  # noqa: BLE001 -- only for the message
        hub_id = None
    return hub_id or f"timm/{model_name}"


def _timm_backbone(spec: str, model_name: str, weights: str | os.PathLike | None) -> nn.Module:
    timm = _import_timm(spec)
    if not model_name or not timm.is_model(model_name):
        architecture = model_name.partition(".")[0]
        close = difflib.get_close_matches(architecture, timm.list_models(), n=5, cutoff=0.6)
        close += [m for m in timm.list_models(f"*{architecture}*")[:5] if m not in close]
        suggestion = f"Close matches: {', '.join(close)}." if close else ""
        raise ValueError(
            f"Unknown timm model {model_name!r} (backbone {spec!r}). {suggestion} "
            "timm.list_models('*pattern*') lists them all."
        )
    kind, path = _weights_kind(weights)
    if kind == "name":
        raise ValueError(
            f"weights={os.fspath(weights or '')!r} is not a weights option of the timm backbone "
            f"{spec!r}: pass 'pretrained' (timm's default pretrained weights, downloaded from the "
            "Hugging Face hub), 'none' (random initialisation), or a local weights file."
        )
    if kind != "pretrained":
        model = timm.create_model(model_name, pretrained=False, num_classes=0)
        if path is not None:
            _load_local_weights(model, path, repr(spec))
        return model
    try:
        return timm.create_model(model_name, pretrained=True, num_classes=0)
    except Exception as err:  # hub unreachable, not in the cache, no such tag, ...
        hub_id = _timm_hub_id(timm, model_name)
        raise RuntimeError(
            f"Could not load the pretrained weights of the timm backbone {spec!r} from the "
            f"Hugging Face hub ({hub_id}): {type(err).__name__}: {err}. Without internet access "
            f"either download them on another machine (e.g. `hf download {hub_id} "
            "model.safetensors`) and pass the file: --model.weights /path/to/model.safetensors; "
            "or copy the Hugging Face cache that holds them to this machine and set "
            "HF_HUB_OFFLINE=1 (and HF_HOME to that cache); or train from scratch with "
            "--model.weights none."
        ) from err


# -- any nn.Module ----------------------------------------------------------------------------
def _import_class(class_path: str) -> type:
    """The class named by a dotted path (``package.module.Class``, nested classes too)."""
    parts = class_path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                target = getattr(target, attribute)
        except AttributeError:
            break
        return target
    raise ImportError(f"cannot import {class_path!r}")


def _module_from_config(config: Mapping[str, Any], weights_hint: str) -> nn.Module:
    """Instantiate ``{"class_path", "init_args"}`` (a config's, or a checkpoint's record)."""
    class_path = config.get("class_path")
    if not isinstance(class_path, str) or not class_path:
        raise ValueError(
            f"A backbone given as a mapping needs a 'class_path' (and optional 'init_args'); got "
            f"{dict(config)!r}."
        )
    unrecorded = list(config.get("unrecorded") or [])
    if unrecorded:
        raise ValueError(
            f"The backbone {class_path} was given to SPMLModule as a module whose constructor "
            f"arguments {', '.join(unrecorded)} could not be recorded, so it cannot be rebuilt "
            "from the checkpoint alone. Pass the module, built as for training (its weights come "
            f"from the checkpoint): SPMLModule.load_from_checkpoint(path, backbone={class_path}"
            "(...)). To record it fully, keep each constructor argument as an attribute of the "
            "same name, or give the backbone as a config (class_path and init_args)."
        )
    try:
        cls = _import_class(class_path)
    except ImportError as err:
        raise ValueError(
            f"Cannot import the backbone class {class_path!r}: {err}. The class must be "
            "importable where the model is built (not defined in __main__ or inside a "
            f"function); or pass the module itself ({weights_hint})."
        ) from err
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"The backbone class_path {class_path!r} is not an nn.Module class.")
    init_args = dict(config.get("init_args") or {})
    try:
        return cls(**init_args)
    except TypeError as err:
        raise ValueError(
            f"Cannot build the backbone {class_path}(**{init_args!r}): {err}. Check its init_args."
        ) from err


def _plain(value: Any) -> bool:
    """Whether a value can be recorded as a hyper-parameter (YAML, ``weights_only`` loading)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _as_recorded(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_as_recorded(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_recorded(item) for key, item in value.items()}
    return value


def backbone_config(module: nn.Module) -> dict[str, Any]:
    """What a checkpoint records of a backbone given as a module (it never pickles the module).

    ``{"class_path": "<module>.<QualName>", "init_args": {...}}``, where ``init_args``
    holds, for each argument of the class's ``__init__``, the module's attribute of
    the same name when that is a plain value (None, bool, int, float, str, or
    lists/dicts of them) -- the ``self.width = width`` convention. The arguments
    not found this way (``*args``/``**kwargs`` included, also those with a default:
    the module may have been built with another value) are listed under
    ``"unrecorded"``; a model built from such a record raises an error naming them
    and the fix, ``SPMLModule.load_from_checkpoint(path, backbone=MyNet(...))``.

    Args:
        module: the backbone.
    """
    cls = type(module)
    init_args: dict[str, Any] = {}
    unrecorded: list[str] = []
    try:
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        parameters = []
        unrecorded.append("(signature unknown)")
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            unrecorded.append(f"*{parameter.name}")
        elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
            unrecorded.append(f"**{parameter.name}")
        elif parameter.name in vars(module) and _plain(vars(module)[parameter.name]):
            init_args[parameter.name] = _as_recorded(vars(module)[parameter.name])
        else:
            unrecorded.append(parameter.name)
    config: dict[str, Any] = {
        "class_path": f"{cls.__module__}.{cls.__qualname__}",
        "init_args": init_args,
    }
    if unrecorded:
        config["unrecorded"] = unrecorded
    return config


def backbone_preprocessing(module: nn.Module) -> dict[str, Any]:
    """The preprocessing a backbone brings: ``image_size``, ``mean``, ``std`` of its config.

    timm models carry it (the input size, normalisation and whether the input
    size is fixed, as the pretrained weights were trained). An empty dict for a
    module without one (torchvision models: ImageNet's normalisation applies).
    Also ``fixed_input_size: True`` for a model that takes only that size (ViTs).

    Args:
        module: the backbone.
    """
    cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None)
    if not isinstance(cfg, Mapping):
        return {}
    own: dict[str, Any] = {}
    input_size = cfg.get("input_size")
    if isinstance(input_size, Sequence) and len(input_size) == 3:
        own["image_size"] = int(input_size[-1])
    for key in ("mean", "std"):
        value = cfg.get(key)
        if isinstance(value, Sequence) and len(value) == 3:
            own[key] = [float(v) for v in value]
    if cfg.get("fixed_input_size") and "image_size" in own:
        own["fixed_input_size"] = True
    return own


def check_input_size(own: Mapping[str, Any], image_size: int | None, backbone: Any) -> None:
    """Refuse an input size that a backbone with a fixed one (timm's ViTs) cannot take.

    Args:
        own: the backbone's own preprocessing (``backbone_preprocessing``).
        image_size: the side the images are resized to (None: not known yet).
        backbone: how the message names the backbone.

    Raises:
        ValueError: naming the size the backbone takes and the flag that sets it.
    """
    size = own.get("image_size")
    if own.get("fixed_input_size") and image_size is not None and image_size != size:
        raise ValueError(
            f"The backbone {backbone} takes {size} x {size} images only (its pretrained_cfg has "
            f"fixed_input_size), but the images are resized to {image_size}: set the data's "
            f"image_size to {size} (spml: --data.init_args.image_size {size})."
        )


def pooled_features(
    features: Any, expected: int | None = None, backbone: str = "The backbone"
) -> Tensor:
    """(B, D) features of a backbone's output: (B, D) as it is, (B, D, H, W) averaged over H, W.

    Args:
        features: what the backbone returned.
        expected: the feature size D the head was built for (None: not checked).
        backbone: how error messages name the backbone.

    Raises:
        ValueError: for any other output, or another D than ``expected``, saying what is expected.
    """
    if isinstance(features, Tensor) and features.ndim in (2, 4):
        pooled = features if features.ndim == 2 else features.mean(dim=(2, 3))
        if expected is not None and pooled.shape[1] != expected:
            raise ValueError(
                f"{backbone} returned {pooled.shape[1]} features per image, but its feature size "
                f"was found to be {expected} (from its head_hidden_size, num_features or "
                "out_features attribute, or a first forward pass). A module that still ends in "
                "its classifier? Remove it (timm: num_classes=0), or correct the attribute."
            )
        return pooled
    shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
    raise ValueError(
        f"{backbone[:1].upper()}{backbone[1:]} returned {shape}; SPMLModule needs a tensor of "
        "(B, D) features or a (B, D, H, W) feature map (averaged over H and W). Make the module "
        "return one, e.g. pool a ViT's (B, tokens, D) output yourself (its class token: "
        "x[:, 0]), or select one output of a module that returns several."
    )


def _feature_size(module: nn.Module, probe_size: int, what: str) -> int:
    for attribute in ("head_hidden_size", "num_features", "out_features"):
        value = getattr(module, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    parameter = next(module.parameters(), None)
    images = torch.zeros(
        2,
        3,
        probe_size,
        probe_size,
        device=parameter.device if parameter is not None else "cpu",
        dtype=parameter.dtype if parameter is not None and parameter.is_floating_point() else None,
    )
    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            output = module(images)
    except Exception as err:
        raise ValueError(
            f"Could not measure the feature size of {what}: a forward pass of a (2, 3, "
            f"{probe_size}, {probe_size}) batch failed ({type(err).__name__}: {err}). Give the "
            "module a `num_features` attribute (its feature size), or pass SPMLModule the "
            "image_size it takes."
        ) from err
    finally:
        module.train(training)
    features = pooled_features(output, backbone=what)
    if features.shape[0] != 2:
        raise ValueError(
            f"{what[:1].upper()}{what[1:]} mapped a batch of 2 images to "
            f"{tuple(output.shape)}: the first dimension must be the batch."
        )
    return int(features.shape[1])


# -- the one entry point ----------------------------------------------------------------------
def build_backbone(
    backbone: str | nn.Module | Mapping[str, Any],
    weights: str | os.PathLike | None = _PRETRAINED,
    image_size: int | None = None,
) -> tuple[nn.Module, int]:
    """Build a backbone without classifier and find its feature size.

    Args:
        backbone: a torchvision model name (``resnet50``, see ``BACKBONES``), a timm
            model as ``timm/<name>`` or ``timm:<name>``, an ``nn.Module``, or a
            module's config ``{"class_path": ..., "init_args": {...}}``.
        weights: ``pretrained`` (the weights the backbone comes with), ``none``/None,
            a torchvision weights-enum name (torchvision backbones), or a local
            state-dict file (see the module docstring).
        image_size: input side of the forward pass that measures the feature size
            of a module without a feature-size attribute (default: the module's
            ``pretrained_cfg`` input size, else 224).

    Returns:
        (module mapping images to (B, D) features or a (B, D, H, W) map, D).
    """
    if _SKIP_INITIAL_WEIGHTS.get():
        weights = "none"
    if isinstance(backbone, str):
        timm_name = _timm_name(backbone)
        if timm_name is None:
            return _torchvision_backbone(backbone, weights)
        module = _timm_backbone(backbone, timm_name, weights)
        what = f"the timm backbone {backbone!r}"
    else:
        if isinstance(backbone, Mapping):
            module = _module_from_config(backbone, "SPMLModule(backbone=MyNet(...))")
        elif isinstance(backbone, nn.Module):
            module = backbone
        else:
            raise TypeError(
                "backbone must be a torchvision model name, 'timm/<name>', an nn.Module or its "
                f"config (class_path, init_args); got {type(backbone).__name__}."
            )
        what = f"the backbone {type(module).__name__}"
        kind, path = _weights_kind(weights)
        if kind == "name":
            raise ValueError(
                f"weights={os.fspath(weights or '')!r} is a torchvision weights name, but the "
                f"backbone is a module ({type(module).__name__}): pass 'pretrained' or 'none' "
                "(the module as given) or a local weights file to load into it."
            )
        if path is not None:
            _load_local_weights(module, path, type(module).__name__)
    probe_size = image_size or backbone_preprocessing(module).get("image_size") or _PROBE_SIZE
    return module, _feature_size(module, probe_size, what)


class SimpleConvNet(nn.Module):
    """A small plain CNN: conv-BN-ReLU blocks of stride 2, returning its last feature map.

    An example of a backbone given by ``class_path`` in a config (README,
    "Backbones"), small enough to train the demo in seconds. It returns a
    (B, widths[-1], H', W') map, which ``SPMLModule`` averages over H' and W'.

    Args:
        widths: output channels of each block (its number of blocks).
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be one or more positive channel counts, got {widths}.")
        self.widths = [int(w) for w in widths]
        layers: list[nn.Module] = []
        channels = 3
        for width in self.widths:
            layers += [
                nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.num_features = channels

    def forward(self, images: Tensor) -> Tensor:
        """Images (B, 3, H, W) -> feature map (B, widths[-1], H / 2^blocks, W / 2^blocks)."""
        return self.features(images)
