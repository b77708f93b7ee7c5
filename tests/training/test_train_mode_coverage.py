"""The cached-features modes with every loss of the registry, and spml suggest."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from prior_files import write_scores_csv
from test_spml_suggest import check_ranking, read_rows

from spml_lightning import SPMLModule
from spml_lightning.cli import run_cli
from spml_lightning.losses import LOSSES

from probes import MODES, REPO_ROOT, demo_args, features_fit, mode_args


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_of_the_registry_trains_in_the_cached_features_modes(
    loss, mode, tiny_demo_root, tmp_path
):
    root = tmp_path / "demo"
    shutil.copytree(tiny_demo_root, root)
    loss_args = ["--model.loss", loss]
    if loss == "EM+APL":  # its preset, with a warm-up that leaves an epoch to pseudo-label
        preset = str(REPO_ROOT / "configs" / "losses" / "em_apl.yaml")
        loss_args = ["--config", preset, "--model.loss.init_args.warmup_epochs", "1"]
    if LOSSES[loss].batch_inputs:  # GPR, VLPL: pseudo-positives from a prior (a scores file)
        scores, _ = write_scores_csv(tmp_path / "scores.csv", root)
        loss_args += ["--data.init_args.prior", str(scores)]
    args = [*demo_args(tmp_path, root), *mode_args(mode), *loss_args]
    cli, phases = features_fit(args)
    assert cli.trainer.current_epoch == 2
    second = {"features"} if mode == "linear_fixed_features" else {"image"}
    assert phases.train == {0: {"features"}, 1: second}
    metrics = cli.trainer.callback_metrics
    assert math.isfinite(metrics["train/loss_epoch"].item())
    assert 0.0 <= metrics["val/mAP"].item() <= 100.0
    initial, trained = phases.initial, cli.model.state_dict()
    assert not torch.equal(initial["head.weight"], trained["head.weight"])
    backbone_trained = any(
        not torch.equal(value, trained[name])
        for name, value in initial.items()
        if name.startswith("backbone.")
    )
    assert backbone_trained == (mode == "linear_init")


@pytest.mark.parametrize("mode", MODES)
def test_spml_suggest_ranks_with_a_cached_features_checkpoint(mode, tiny_demo_root, tmp_path):
    root = tmp_path / "demo"
    shutil.copytree(tiny_demo_root, root)
    args = [*demo_args(tmp_path, root), *mode_args(mode)]
    fit = run_cli(["fit", *args])
    best = fit.trainer.checkpoint_callback.best_model_path
    out = tmp_path / "suggestions.csv"
    suggest = ["--ckpt_path", best, "--suggestions.top_n", "12", "--suggestions.output", str(out)]
    run_cli(["suggest", *args, *suggest])
    train = fit.datamodule.train_dataset
    images = getattr(train, "dataset", train)  # the image set behind the cached rows
    model = SPMLModule.load_from_checkpoint(best, map_location="cpu")
    scores = {
        "paths": images.image_paths,
        "observed": images.observed,
        "probabilities": model.predict_images(images.image_paths).numpy(),
        "classes": model.class_names,
    }
    rows = read_rows(out)
    assert len(rows) == 12
    check_ranking(rows, scores)
