"""Cached-features modes on the benchmark fixtures: observation strategies, label-less images."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from test_datamodules_cli import TINY, config_args

from spml_lightning.cli import run_cli

from community_reference import copy_fixture
from probes import MODES, demo_args, features_fit, mode_args


def _observed_of(cli) -> np.ndarray:
    """The observed labels of the training rows (of the image set behind cached rows)."""
    dataset = cli.datamodule.train_dataset
    return getattr(dataset, "dataset", dataset).observed


@pytest.mark.parametrize(
    ("fixture", "observe"), [("demo", "frequency"), ("coco", "size"), ("coco", "center"),
                             ("nuswide", "given")]
)  # fmt: skip
@pytest.mark.parametrize("mode", MODES)
def test_every_observation_strategy_in_the_cached_features_modes(
    fixture, observe, mode, tiny_demo_root, tmp_path
):
    if fixture == "demo":
        root = tmp_path / "demo"
        shutil.copytree(tiny_demo_root, root)
        args = demo_args(tmp_path, root)
        flag = "--data.init_args.observe"
    else:
        root = copy_fixture(fixture, tmp_path)
        args = [*config_args(fixture, root, tmp_path), *TINY, "--trainer.max_epochs", "2"]
        args += ["--trainer.default_root_dir", str(tmp_path / "runs")]
        flag = "--data.observe"
    cli, phases = features_fit([*args, *mode_args(mode), flag, observe])
    assert cli.datamodule.observe == observe
    assert phases.train[0] == {"features"}
    # the loss saw the strategy's observed labels of each row it trained on
    observed = _observed_of(cli)
    assert phases.observed
    for index, row in phases.observed.items():
        np.testing.assert_array_equal(row, observed[index])
    if observe == "frequency":  # another draw than the default uniform one
        uniform = run_cli(args, run=False)
        uniform.datamodule.setup("fit")
        assert not np.array_equal(_observed_of(uniform), observed)


@pytest.mark.parametrize("mode", MODES)
def test_eval_label_less_exclude_in_the_cached_features_modes(mode, tmp_path):
    """The folder fixture has label-less val and test images: excluded, cached or not."""
    root = copy_fixture("folder", tmp_path)
    args = [*config_args("folder", root, tmp_path), *TINY, *mode_args(mode)]
    args += ["--trainer.max_epochs", "2", "--trainer.default_root_dir", str(tmp_path / "runs")]
    kept = run_cli(args, run=False)
    kept.datamodule.setup("fit")
    labelled = int((kept.datamodule.val_dataset.targets.sum(axis=1) > 0).sum())
    assert 0 < labelled < len(kept.datamodule.val_dataset)  # the fixture has some to exclude
    excluded = [*args, "--data.eval_label_less", "exclude"]
    cli, phases = features_fit(excluded)
    assert phases.val[0] == {"features"}
    assert phases.val_rows[0] == labelled  # the cached val rows are the labelled ones
    assert 0.0 <= cli.trainer.callback_metrics["val/mAP"].item() <= 100.0
    test = run_cli(["test", *excluded, "--ckpt_path", "best"])
    assert 0.0 <= test.trainer.callback_metrics["test/mAP"].item() <= 100.0
