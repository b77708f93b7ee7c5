"""Griffe extension: the package's Sphinx-style roles as links in the API reference.

The docstrings are Google style, but many name another object the Sphinx way,
``:func:`resume_plan``` or ``:class:`~spml_lightning.losses.GRLoss```, which Markdown would
print as is. Before mkdocstrings renders a docstring, every such role becomes the name in code
font, linked to that object's entry when the reference documents it (an optional cross-reference
of mkdocs-autorefs: plain code font otherwise, e.g. for a private helper). The name is resolved
where the docstring stands, as Python would resolve it there.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`(?P<tilde>~?)(?P<target>[\w.]+)`")


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite the docstrings of ``pkg`` and of everything it contains."""
        for obj in walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj, obj.docstring.value)


def walk(obj: griffe.Object) -> list[griffe.Object]:
    """``obj`` and every object defined in it (aliases are rewritten where they are defined)."""
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found += walk(member)
    return found


def resolve(obj: griffe.Object, target: str) -> str | None:
    """The full path of ``target`` as seen from ``obj``; None where it does not resolve."""
    if target.startswith("spml_lightning."):
        return target
    head, _, rest = target.partition(".")
    scope = obj if obj.is_module or obj.is_class else obj.parent
    while scope is not None:
        if head in scope.members:
            path = scope.members[head].path
            return f"{path}.{rest}" if rest else path
        scope = scope.parent
    try:
        path = obj.resolve(head)
    except (griffe.NameResolutionError, ValueError):
        return None
    return f"{path}.{rest}" if rest else path


def rewrite(obj: griffe.Object, text: str) -> str:
    """``text``, a docstring of ``obj``, with its roles rewritten."""
    return ROLE.sub(lambda match: link(obj, match), text)


def link(obj: griffe.Object, match: re.Match) -> str:
    """The Markdown/HTML for one role: code font, linked when the target is documented."""
    target = match["target"]
    shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
    path = resolve(obj, target)
    if path is None:
        return f"`{shown}`"
    return f'<autoref optional identifier="{path}"><code>{shown}</code></autoref>'
