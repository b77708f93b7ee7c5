"""Kept so that ``python -m spml_lightning.report`` still works.

The code is ``spml_lightning.analysis.report``.
"""

from spml_lightning.analysis.report import *  # noqa: F403
from spml_lightning.analysis.report import __all__, command  # noqa: F401

if __name__ == "__main__":
    raise SystemExit(command())
