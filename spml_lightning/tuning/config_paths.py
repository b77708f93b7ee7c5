"""Reading and setting a config's options by path (``model.loss.init_args.beta.1``).

A config here is the plain nested ``dict`` of an ``spml`` config (what
``Namespace.as_dict()`` gives and what a YAML file holds). A path names a key at
each level; a number names an entry of a list.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import os
from collections.abc import Iterator
from typing import Any

from spml_lightning.console import UsageError
from spml_lightning.losses import SPMLLoss, get_loss_class

__all__ = [
    "config_leaves",
    "plain_config",
    "get_path",
    "loss_class",
    "set_path",
    "with_explicit_loss",
]


def _children(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        yield from ((str(key), value) for key, value in node.items())
    elif isinstance(node, list):
        yield from ((str(index), value) for index, value in enumerate(node))


def plain_config(value: Any, path: str = "") -> Any:
    """``value`` (a parsed config, ``Namespace.as_dict()``) as YAML's plain types.

    Tuples become lists and paths strings, so that a trial's config and best.yaml
    can be written with ``yaml.safe_dump`` and read back by ``spml fit``.

    Raises:
        UsageError: naming the option whose value has no YAML form.
    """
    if isinstance(value, dict):
        return {str(k): plain_config(v, f"{path}{k}.") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_config(v, f"{path}{i}.") for i, v in enumerate(value)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise UsageError(
        f"{path.rstrip('.')}: a {type(value).__name__} has no YAML form, so the trials' configs "
        "cannot hold it; give this option in the config file as a value or a class_path."
    )


def config_leaves(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every settable option of ``config``: path -> value (lists also entry by entry)."""
    leaves: dict[str, Any] = {}
    for key, value in _children(config):
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            leaves.update(config_leaves(value, f"{path}."))
        else:
            leaves[path] = value
            if isinstance(value, list):
                leaves.update(config_leaves({str(i): v for i, v in enumerate(value)}, f"{path}."))
    return leaves


def get_path(config: dict[str, Any], path: str) -> Any:
    """The value at ``path``.

    Raises:
        KeyError: If ``path`` names no option of ``config``.
    """
    node: Any = config
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(path)
    return node


def set_path(config: dict[str, Any], path: str, value: Any) -> None:
    """Set the value at ``path`` (which must exist) in place."""
    *parents, last = path.split(".")
    node = get_path(config, ".".join(parents)) if parents else config
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def loss_class(config: dict[str, Any]) -> type | None:
    """The class of ``model.loss`` (a class path or a registry name; None: GR Loss's default)."""
    loss = config.get("model", {}).get("loss")
    if loss is None:
        return get_loss_class("GR")
    if isinstance(loss, str):
        return get_loss_class(loss)
    module_name, _, name = str(loss.get("class_path", "")).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        raise UsageError(
            f"model.loss.class_path {loss.get('class_path')!r} cannot be imported."
        ) from None


def with_explicit_loss(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` whose ``model.loss`` is a class path with every argument written out.

    A loss given by name (``loss: AN``), left to its default, or with some arguments
    left out gets its defaults written, so that each of them has a path a search can set.
    """
    config = copy.deepcopy(config)
    cls = loss_class(config)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, SPMLLoss)):
        return config
    loss = config.setdefault("model", {}).get("loss")
    init_args = dict(loss.get("init_args") or {}) if isinstance(loss, dict) else {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name not in init_args and parameter.default is not parameter.empty:
            default = parameter.default
            init_args[name] = list(default) if isinstance(default, tuple) else default
    class_path = loss.get("class_path") if isinstance(loss, dict) else None
    config["model"]["loss"] = {
        "class_path": class_path or f"{cls.__module__}.{cls.__qualname__}",
        "init_args": init_args,
    }
    return config
