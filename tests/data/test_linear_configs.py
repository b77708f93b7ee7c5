"""configs/linear/*.yaml: Cole et al.'s linear protocol, stacked on each benchmark's config."""

from __future__ import annotations

import math

import pytest
from test_datamodules_cli import TINY, config_args

from spml_lightning.cli import run_cli

from community_reference import copy_fixture
from conftest import REPO_ROOT

LINEAR = REPO_ROOT / "configs" / "linear"
AN_LS = str(REPO_ROOT / "configs" / "losses" / "an_ls.yaml")

#: The batch size of Cole's code's published choice for AN-LS (train.py, linear_init_params).
AN_LS_BATCH = {"voc": 8, "coco": 8, "nuswide": 16, "cub": 8}


def test_there_is_a_linear_config_for_every_benchmark():
    assert sorted(path.stem for path in LINEAR.glob("*.yaml")) == sorted(AN_LS_BATCH)


@pytest.mark.parametrize("name", sorted(AN_LS_BATCH))
def test_each_linear_config_stacks_on_its_benchmark_config(name, tmp_path):
    args = [
        *config_args(name, tmp_path / name, tmp_path),
        *("--config", AN_LS, "--config", str(LINEAR / f"{name}.yaml")),
        *("--model.backbone", "resnet18", "--model.weights", "none"),  # nothing to download
    ]
    cli = run_cli(args, run=False)
    hparams = cli.model.hparams
    assert hparams.train_mode == "linear_fixed_features"
    assert hparams.linear_lr == 1e-4
    assert cli.trainer.max_epochs == 25
    assert cli.datamodule.batch_size == AN_LS_BATCH[name] == hparams.lr_batch_size
    assert cli.datamodule.train_augment is False
    assert type(cli.model.loss).__name__ == "LabelSmoothedAssumeNegativeLoss"
    stopping = [c for c in cli.trainer.callbacks if type(c).__name__ == "DropFromBestStopping"]
    assert [c.max_drop for c in stopping] == [math.inf]


def test_the_voc_linear_config_fits_and_tests_on_the_fixture(tmp_path, info_lines):
    root = copy_fixture("voc", tmp_path)
    args = [
        *config_args("voc", root, tmp_path),
        *("--config", str(LINEAR / "voc.yaml"), *TINY),
        *("--trainer.default_root_dir", str(tmp_path / "runs")),
    ]
    fit = run_cli(["fit", *args])
    assert type(fit.datamodule.train_dataset).__name__ == "CachedFeatureDataset"
    assert any("extracting the features" in line for line in info_lines)
    test = run_cli(["test", *args, "--ckpt_path", "best"])
    assert 0.0 <= test.trainer.callback_metrics["test/mAP"].item() <= 100.0
