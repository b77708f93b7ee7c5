"""`model.train_mode`: end_to_end by default; linear_fixed_features trains the head on the cache."""

from __future__ import annotations

import shutil

import pytest
import torch

from spml_lightning import SPMLModule
from spml_lightning.cli import run_cli

from probes import REPO_ROOT, demo_args


def test_end_to_end_is_the_default_and_other_modes_are_refused():
    assert SPMLModule(num_classes=3, backbone="resnet18", weights="none").hparams.train_mode == (
        "end_to_end"
    )
    with pytest.raises(ValueError, match="end_to_end, linear_fixed_features"):
        SPMLModule(num_classes=3, backbone="resnet18", weights="none", train_mode="linear")


def test_linear_fixed_features_trains_the_head_on_the_cache(tiny_demo_root, tmp_path, info_lines):
    root = tmp_path / "demo"
    shutil.copytree(tiny_demo_root, root)
    args = [*demo_args(tmp_path, root), "--model.train_mode", "linear_fixed_features"]
    initial = run_cli(args, run=False).model.state_dict()  # the same seed: the same weights
    fit = run_cli(["fit", *args])
    assert any("extracting the features: there is no cache yet" in line for line in info_lines)
    trained = fit.model.state_dict()
    for name, value in initial.items():
        same = torch.equal(value, trained[name])
        # the backbone is frozen (its batch-norm statistics too); the head trains
        assert same == (not name.startswith("head.")), name
    # training serves a flipped copy at random (the demo augments), evaluation never does
    assert type(fit.datamodule.train_dataset).__name__ == "CachedFeatureDataset"
    assert fit.datamodule.train_dataset.flipped is not None
    assert fit.datamodule.val_dataset.flipped is None
    # a second fit reuses the cache
    info_lines.clear()
    run_cli(["fit", *args])
    assert any("same fingerprint, reusing the cached features" in line for line in info_lines)
    # the checkpoint holds the backbone: testing runs on images
    test = run_cli(["test", *args, "--ckpt_path", "best"])
    assert 0.0 <= test.trainer.callback_metrics["test/mAP"].item() <= 100.0
    # scores of the training rows from the cache are the model's on the images
    model = fit.model.eval()
    scored_index, scored = model._fixed_features.score_train_set(model.head)
    images = torch.stack([fit.datamodule.train_dataset.dataset[i]["image"] for i in range(8)])
    with torch.no_grad():
        expected = model(images)
    assert scored_index[:8].tolist() == list(range(8))
    torch.testing.assert_close(scored[:8], expected, rtol=0, atol=2e-2)  # float16 cache


def test_a_resume_keeps_the_train_mode(tiny_run, tmp_path):
    args = [*tiny_run["args"], "--trainer.default_root_dir", str(tmp_path / "runs")]
    resume = ["--model.train_mode", "linear_fixed_features", "--trainer.max_epochs", "3"]
    with pytest.raises(ValueError, match="train_mode: 'end_to_end' in the checkpoint"):
        run_cli(["fit", *args, *resume, "--ckpt_path", str(tiny_run["final"])])


def test_features_of_other_weights_than_a_restored_backbone_are_refused(tiny_run, tmp_path):
    """A checkpoint that does not record its train_mode (older versions) is resumed with
    linear_fixed_features: the cache was made in setup with the initial weights, before the
    restore, so the run must stop rather than train the head on other weights' features."""
    checkpoint = torch.load(tiny_run["final"], map_location="cpu", weights_only=False)
    del checkpoint["hyper_parameters"]["train_mode"]
    older = tmp_path / "older.ckpt"
    torch.save(checkpoint, older)
    root = tmp_path / "demo"
    shutil.copytree(tiny_run["args"][tiny_run["args"].index("--data.init_args.root") + 1], root)
    args = [
        *tiny_run["args"],
        "--trainer.default_root_dir",
        str(tmp_path / "runs"),
        "--data.init_args.root",
        str(root),
    ]
    resume = ["--model.train_mode", "linear_fixed_features", "--trainer.max_epochs", "3"]
    with pytest.raises(RuntimeError, match="weights differ from those the cached features"):
        run_cli(["fit", *args, *resume, "--ckpt_path", str(older)])


def _features_fit(tiny_demo_root, tmp_path, *loss_flags):
    root = tmp_path / "demo"
    shutil.copytree(tiny_demo_root, root)
    args = [*demo_args(tmp_path, root), "--model.train_mode", "linear_fixed_features"]
    initial = run_cli([*args, *loss_flags], run=False).model.state_dict()
    fit = run_cli(["fit", *args, *loss_flags])
    backbone = [name for name in initial if name.startswith("backbone.")]
    assert all(torch.equal(initial[name], fit.model.state_dict()[name]) for name in backbone)
    return fit


def test_role_trains_its_label_estimates_on_the_cached_features(tiny_demo_root, tmp_path):
    fit = _features_fit(tiny_demo_root, tmp_path, "--model.loss", "ROLE")
    estimates = fit.model.loss.label_estimates.detach()
    observed = torch.as_tensor(fit.datamodule.train_dataset.observed) == 1
    # initialised at logit(0.995) on the observed positives, moved by their Adam
    initial = torch.logit(torch.tensor(0.995))
    assert not torch.allclose(estimates[observed], initial.expand(int(observed.sum())))


def test_em_apl_pseudo_labels_from_the_cached_features(tiny_demo_root, tmp_path):
    fit = _features_fit(
        tiny_demo_root,
        tmp_path,
        "--config",
        str(REPO_ROOT / "configs" / "losses" / "em_apl.yaml"),
        "--model.loss.init_args.warmup_epochs",
        "1",
    )
    pseudo = fit.model.loss.pseudo_labels
    assert int((pseudo >= 0).sum()) > 0  # the rescoring between epochs ran on cached rows
