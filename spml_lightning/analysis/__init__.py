"""Look inside trained runs: the GR Loss paper's diagnostics from any checkpoint.

* ``run`` -- :func:`load_run`: a checkpoint and the datamodule of its config;
* ``analyze`` -- :func:`analyze`: per-class AP, FN/(FN+TN) per confidence bin,
  distinguishing ability, gradient curves; :func:`predict_split`;
* ``diagnostics`` -- those statistics as pure numpy functions;
* ``loss_curves`` -- any loss's gradient w.r.t. an unknown logit (autograd);
* ``plots`` -- matplotlib figures of them;
* ``sweep`` -- a metric over one hyper-parameter, from runs' logs;
* ``report`` -- ``spml report``: all of it as files.

Example::

    from spml_lightning.analysis import analyze, load_run

    run = load_run("configs/demo.yaml", ckpt_path="best")
    result = analyze(run)
    print(result.table.to_markdown())
"""

from spml_lightning.analysis.analyze import (
    CheckpointAnalysis,
    PerClassTable,
    SplitPredictions,
    analyze,
    per_class_table,
    predict_split,
)
from spml_lightning.analysis.run import LoadedRun, load_checkpoint, load_run

__all__ = [
    "CheckpointAnalysis",
    "LoadedRun",
    "PerClassTable",
    "SplitPredictions",
    "analyze",
    "load_checkpoint",
    "load_run",
    "per_class_table",
    "predict_split",
]
