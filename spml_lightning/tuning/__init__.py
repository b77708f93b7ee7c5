"""``spml tune``: hyper-parameter search on Optuna, from one laptop to many machines.

Layout: ``options.py`` (``--tune.*``), ``config_paths.py`` (options by config path),
``space.py`` (the search space: the loss's own, the optimiser's, the user's),
``storage.py`` (where the study lives; trials of dead workers), ``trial.py`` (one
trial: a ``spml fit``), ``study.py`` (the study), ``outputs.py`` (best.yaml,
trials.csv, plots, summary). Only ``options`` is imported here: the rest needs
the ``tune`` extra (``pip install "spml_lightning[tune]"``: Optuna).
"""

from spml_lightning.tuning.options import TuneOptions

__all__ = ["TuneOptions"]
