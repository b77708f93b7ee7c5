"""Kept so that ``from spml_lightning.loss_curves import ...`` still works.

The code is ``spml_lightning.analysis.loss_curves``.
"""

from spml_lightning.analysis.loss_curves import *  # noqa: F403
from spml_lightning.analysis.loss_curves import __all__  # noqa: F401
