"""What a run logs: TensorBoard by default (CSV without it); schedule, lr, mAP per epoch."""

import csv

import pytest
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.trainer.connectors.logger_connector import logger_connector

from spml_lightning import SPMLModule

from probes import make_trainer

EPOCH_KEYS = (
    "val/mAP",
    "schedule/w",
    "schedule/b",
    "schedule/mu",
    "schedule/sigma",
    "lr/backbone",
    "lr/head",
)


def test_tensorboard_is_the_default_logger(tmp_path):
    assert isinstance(Trainer(default_root_dir=tmp_path).logger, TensorBoardLogger)


def test_csv_logging_without_tensorboard(tmp_path, tiny_demo, monkeypatch):
    # What Lightning does when neither tensorboard nor tensorboardX is installed.
    monkeypatch.setattr(logger_connector, "_TENSORBOARD_AVAILABLE", False)
    monkeypatch.setattr(logger_connector, "_TENSORBOARDX_AVAILABLE", False)
    trainer = make_trainer(
        tmp_path, logger=True, max_epochs=2, limit_train_batches=1, limit_val_batches=1
    )
    assert isinstance(trainer.logger, CSVLogger)
    model = SPMLModule(num_classes=14, backbone="resnet18", weights="none", lr=1e-3, lr_mult=1.0)
    trainer.fit(model, tiny_demo)
    with open(trainer.logger.log_dir + "/metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for key in EPOCH_KEYS:
        assert sum(1 for row in rows if row.get(key)) == 2, key  # one value per epoch


def test_tensorboard_run_logs_every_epoch(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fit_dir = tiny_run["best"].parent.parent
    events = EventAccumulator(str(fit_dir))
    events.Reload()
    for key in EPOCH_KEYS:
        assert len(events.Scalars(key)) == 2, key  # the tiny run has 2 epochs
    # The reference schedule's w at the second epoch (e = 2 of T = 2): 0 + 2 * (2 - 1) / 2.
    assert events.Scalars("schedule/w")[-1].value == pytest.approx(1.0)
    assert "train/loss_epoch" in events.Tags()["scalars"]


def test_hparams_yaml_records_the_loss(tiny_run):
    # So that a sweep over a loss hyper-parameter can be read back from any run's logs.
    hparams = yaml.safe_load((tiny_run["best"].parent.parent / "hparams.yaml").read_text())
    assert hparams["loss"]["class_path"].endswith("GRLoss")
    assert hparams["loss"]["init_args"]["q2"] == 0.01
