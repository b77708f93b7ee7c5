"""Kept so that ``from spml_lightning.diagnostics import ...`` still works.

The code is ``spml_lightning.analysis.diagnostics``.
"""

from spml_lightning.analysis.diagnostics import *  # noqa: F403
from spml_lightning.analysis.diagnostics import __all__  # noqa: F401
