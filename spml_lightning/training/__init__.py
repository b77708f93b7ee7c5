"""The parts SPMLModule calls, and what a training run needs around the model.

* ``optimizer`` -- Adam over named parameter groups at batch-scaled rates (``lr_scaling``);
* ``evaluation`` -- a split's rows collected, gathered across ranks, de-duplicated, its metrics;
* ``loss_schedule`` -- the loss's epoch schedule, stored in checkpoints;
* ``epoch_loss`` -- the epoch's mean training loss, summed on the device;
* ``atomic_io`` -- checkpoint files written to a temporary file and renamed into place;
* ``resumable_checkpoint`` -- ``last.ckpt`` every epoch (and every n steps), top-k kept on resume;
* ``checkpoint_files`` -- ``best``/``last`` of a run, checking and reading a checkpoint file;
* ``compatibility`` -- whether a checkpoint's classes, network, preprocessing fit; old options;
* ``resuming`` -- what a resumed fit may change (refused before set-up where it can be);
* ``callbacks`` -- the reference's stopping rule, one checkpoint for every DDP rank;
* ``prediction_writer`` -- what ``spml predict`` writes;
* ``trainer`` -- ``SPMLTrainer``: Lightning's Trainer plus ``suggest`` (``spml suggest``);
* ``suggestions``, ``suggestion_writer`` -- ranking the training images' unobserved labels;
* ``finite_loss`` -- stop at the first non-finite loss;
* ``log_versions`` -- a ``version_N`` folder per run.
"""

from spml_lightning.training.atomic_io import AtomicCheckpointIO, atomic_torch_save, atomic_write
from spml_lightning.training.callbacks import (
    DropFromBestStopping,
    SameCheckpointOnEveryRank,
    check_same_checkpoint,
)
from spml_lightning.training.checkpoint_files import (
    check_checkpoint_file,
    checkpoint_callback_states,
    checkpoint_facts,
    continue_in_checkpoint_folder,
    describe_resume,
    find_checkpoint,
    read_checkpoint,
    resolve_checkpoint,
)
from spml_lightning.training.compatibility import check_class_names
from spml_lightning.training.finite_loss import FiniteLossGuard, NonFiniteLossError
from spml_lightning.training.log_versions import release_empty_log_versions, reserve_log_version
from spml_lightning.training.prediction_writer import PredictionWriter
from spml_lightning.training.resumable_checkpoint import ResumableCheckpoint
from spml_lightning.training.resuming import refuse_resume_early, resume_plan
from spml_lightning.training.suggestion_writer import SuggestionWriter
from spml_lightning.training.suggestions import (
    SuggestionPrecision,
    Suggestions,
    SuggestOptions,
    rank_unknown_labels,
    suggestion_precision,
    write_suggestions_csv,
)
from spml_lightning.training.trainer import SPMLTrainer

__all__ = [
    "AtomicCheckpointIO",
    "DropFromBestStopping",
    "FiniteLossGuard",
    "NonFiniteLossError",
    "PredictionWriter",
    "ResumableCheckpoint",
    "SPMLTrainer",
    "SameCheckpointOnEveryRank",
    "SuggestOptions",
    "SuggestionPrecision",
    "SuggestionWriter",
    "Suggestions",
    "atomic_torch_save",
    "atomic_write",
    "check_checkpoint_file",
    "check_class_names",
    "check_same_checkpoint",
    "checkpoint_callback_states",
    "checkpoint_facts",
    "continue_in_checkpoint_folder",
    "describe_resume",
    "find_checkpoint",
    "rank_unknown_labels",
    "read_checkpoint",
    "release_empty_log_versions",
    "reserve_log_version",
    "resolve_checkpoint",
    "refuse_resume_early",
    "resume_plan",
    "suggestion_precision",
    "write_suggestions_csv",
]
