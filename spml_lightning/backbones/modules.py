"""Any ``nn.Module`` as a backbone: built from its config, recorded as a config, never pickled."""

from __future__ import annotations

import copy
import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn


def import_class(class_path: str) -> type:
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


def same_class(first: Any, second: Any) -> bool:
    """Whether two class paths name one class (``pkg.Class`` re-exported from ``pkg.mod.Class``)."""
    if first == second:
        return True
    try:
        return isinstance(first, str) and import_class(first) is import_class(str(second))
    except ImportError:
        return False


def module_from_config(config: Mapping[str, Any], weights_hint: str) -> nn.Module:
    """Instantiate ``{"class_path", "init_args"}`` (a config's, or a checkpoint's record)."""
    class_path = config.get("class_path")
    if not isinstance(class_path, str) or not class_path:
        # The command line's parser drops the class_path of a module whose init_args do not
        # fit its class, and passes on the bare arguments: a misspelt argument looks so.
        hint = (
            f" If a class_path was given (--model.backbone <class> with "
            f"--model.backbone.init_args.* flags), one of {sorted(config)} is not an argument "
            "of that class: check the spelling against its __init__."
            if config and "init_args" not in config
            else ""
        )
        raise ValueError(
            f"A backbone given as a mapping needs a 'class_path' (and optional 'init_args'); got "
            f"{dict(config)!r}.{hint}"
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
        cls = import_class(class_path)
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


def backbone_hparam(backbone: Any) -> Any:
    """How ``SPMLModule`` records its ``backbone``: a module as its :func:`backbone_config`.

    A pickled module would not load with ``weights_only`` (and Lightning warns about
    it); a config is copied, a name kept as it is.
    """
    if isinstance(backbone, nn.Module):
        return backbone_config(backbone)
    if isinstance(backbone, Mapping):
        return copy.deepcopy(dict(backbone))
    return backbone


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
