"""`model.train_mode`: end_to_end by default; linear_fixed_features trains the head on the cache."""

from __future__ import annotations

import copy
import csv
import shutil

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, Trainer

from spml_lightning import SPMLModule
from spml_lightning.cli import run_cli
from spml_lightning.features import FeatureOptions, datamodule_features
from spml_lightning.training.optimizer import OptimizerSettings, adam_optimizer

from probes import REPO_ROOT, demo_args, run_ddp_driver


def test_end_to_end_is_the_default_and_other_modes_are_refused():
    assert SPMLModule(num_classes=3, backbone="resnet18", weights="none").hparams.train_mode == (
        "end_to_end"
    )
    with pytest.raises(ValueError, match="end_to_end, linear_fixed_features"):
        SPMLModule(num_classes=3, backbone="resnet18", weights="none", train_mode="linear")
    with pytest.raises(ValueError, match="feature_dtype must be one of float16, float32"):
        SPMLModule(num_classes=3, backbone="resnet18", weights="none", feature_dtype="float64")


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
    scored_index, scored = model._fixed_features.score_train_set(model.head, 0)
    images = torch.stack([fit.datamodule.train_dataset.dataset[i]["image"] for i in range(8)])
    with torch.no_grad():
        expected = model(images)
    assert scored_index[:8].tolist() == list(range(8))
    torch.testing.assert_close(scored[:8], expected, rtol=0, atol=2e-2)  # float16 cache


def test_a_resume_keeps_the_train_mode(tiny_run, tmp_path):
    # A copy of the data: the refused fit has extracted its features by then (setup comes
    # before the checkpoint is read), and the session's demo set must stay without a cache.
    root = tmp_path / "demo"
    shutil.copytree(tiny_run["args"][tiny_run["args"].index("--data.init_args.root") + 1], root)
    args = [*tiny_run["args"], "--trainer.default_root_dir", str(tmp_path / "runs")]
    args += ["--data.init_args.root", str(root)]
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


class _FirstSteps(Callback):
    """Keep the model's state when training starts and each step's batch indices."""

    def __init__(self) -> None:
        self.initial: dict[str, torch.Tensor] = {}
        self.steps: list[list[int]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.initial = copy.deepcopy(pl_module.state_dict())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.steps.append([int(i) for i in batch["index"]])


@pytest.mark.parametrize("loss", ["GR", "ROLE"])
def test_the_head_trained_on_cached_features_is_the_head_trained_on_images(
    loss, tiny_demo_root, tmp_path
):
    """With a float32 cache and no flip, N steps on the cache train the head (and ROLE's
    estimates) as N steps on the images through the same frozen backbone in eval mode do."""
    root = tmp_path / "demo"
    shutil.copytree(tiny_demo_root, root)
    args = [
        *demo_args(tmp_path, root),
        *("--model.loss", loss, "--model.train_mode", "linear_fixed_features"),
        *("--model.feature_dtype", "float32", "--data.init_args.train_augment", "false"),
        *("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3"),
        *("--data.init_args.batch_size", "16"),
    ]
    cli = run_cli(args, run=False)
    recorder = _FirstSteps()
    cli.trainer.callbacks.append(recorder)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert len(recorder.steps) == 3
    # The same N steps by hand, on images through the frozen backbone in eval mode.
    reference = run_cli(args, run=False).model
    images = cli.datamodule.train_dataset.dataset  # the image dataset the cache was made from
    reference.loss.bind_train_set(torch.as_tensor(images.observed))
    reference.load_state_dict(recorder.initial)
    hparams = reference.hparams
    settings = OptimizerSettings(
        hparams.lr, hparams.lr_mult, hparams.lr_scaling, hparams.lr_batch_size
    )
    optimizer = adam_optimizer(reference.backbone, reference.head, reference.loss, settings)
    reference.loss.set_epoch(0, 1, 0)
    reference.backbone.eval()
    for rows in recorder.steps:
        items = [images[i] for i in rows]
        with torch.no_grad():
            maps = reference.backbone(torch.stack([item["image"] for item in items]))
        logits = reference.head(maps.mean(dim=(2, 3))).float()
        observed = torch.stack([item["observed"] for item in items])
        value = reference.loss(logits, observed, torch.tensor(rows))
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    trained = cli.model.state_dict()
    assert not torch.equal(trained["head.weight"], recorder.initial["head.weight"])
    if loss == "ROLE":  # its estimates trained too
        name = "loss.label_estimates"
        assert not torch.equal(trained[name], recorder.initial[name])
    for name, expected in reference.state_dict().items():
        if name.startswith(("head.", "loss.")):
            torch.testing.assert_close(trained[name], expected, rtol=0, atol=1e-5, msg=name)


def test_spml_predict_scores_images_as_the_cached_path_does(tiny_demo_root, tmp_path):
    root = tmp_path / "demo"
    shutil.copytree(tiny_demo_root, root)
    args = [
        *demo_args(tmp_path, root),
        *("--model.train_mode", "linear_fixed_features", "--model.feature_dtype", "float32"),
        *("--model.feature_dir", str(tmp_path / "features")),
    ]
    fit = run_cli(["fit", *args])
    assert (tmp_path / "features" / "manifest.json").is_file()  # model.feature_dir
    output = tmp_path / "predictions.csv"
    predict = ["--ckpt_path", "best", "--prediction.output_path", str(output)]
    run_cli(["predict", *args, *predict])
    with output.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    model = SPMLModule.load_from_checkpoint(fit.trainer.checkpoint_callback.best_model_path)
    options = FeatureOptions(dir=str(tmp_path / "features"), dtype="float32")
    cache = datamodule_features(model, fit.datamodule, options)
    assert cache.reused  # the fit's cache, test split included
    test = fit.datamodule.test_dataset
    assert [row["image"] for row in rows] == test.image_paths
    with torch.no_grad():
        cached = torch.sigmoid(model.head(torch.from_numpy(np.array(cache.features("test")))))
    predicted = torch.tensor([[float(row[name]) for name in model.class_names] for row in rows])
    torch.testing.assert_close(predicted, cached, rtol=0, atol=1e-5)


def test_a_linear_fixed_features_fit_resumes_on_its_cache(tiny_demo_root, tmp_path, info_lines):
    root = tmp_path / "demo"
    shutil.copytree(tiny_demo_root, root)
    args = [*demo_args(tmp_path, root), "--model.train_mode", "linear_fixed_features"]
    run_cli(["fit", *args])
    info_lines.clear()
    resumed = run_cli(["fit", *args, "--ckpt_path", "last", "--trainer.max_epochs", "3"])
    assert resumed.trainer.current_epoch == 3  # one more epoch, on the same cache
    assert any("same fingerprint, reusing the cached features" in line for line in info_lines)


def test_a_second_fit_on_the_same_datamodule_extracts_from_its_images(
    tiny_demo_root, tmp_path, info_lines
):
    root = tmp_path / "demo"
    shutil.copytree(tiny_demo_root, root)
    args = [*demo_args(tmp_path, root), "--model.train_mode", "linear_fixed_features"]
    fit = run_cli(["fit", *args])
    with torch.no_grad():  # other weights: the cache is stale, the images are read again
        fit.model.backbone.features[0].weight.mul_(2)
    info_lines.clear()
    trainer = Trainer(
        max_epochs=1,
        limit_train_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path / "again",
    )
    trainer.fit(fit.model, datamodule=fit.datamodule)
    assert any("extracting the features: the weights differ" in line for line in info_lines)


def test_two_process_ddp_shares_one_extraction_and_trains_the_head_of_one_process(
    tiny_demo_root, tmp_path
):
    root = tmp_path / "demo"
    shutil.copytree(tiny_demo_root, root)
    args = [
        *demo_args(tmp_path, root),
        *("--model.train_mode", "linear_fixed_features", "--model.feature_dtype", "float32"),
        *("--data.init_args.train_augment", "false", "--trainer.num_sanity_val_steps", "0"),
        *("--trainer.max_epochs", "1", "--trainer.accelerator", "cpu"),
    ]
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2"]
    result = run_ddp_driver(tmp_path, [*args, *ddp, "--data.init_args.batch_size", "8"])
    said = [
        line for line in (result.stdout + result.stderr).splitlines() if "Feature cache" in line
    ]
    # rank 0 says it once: both processes extract a share, rank 0 writes the cache
    assert len(said) == 2 and "2 processes share the extraction" in said[0], said
    assert "extracting the features" in said[1], said
    caches = root / ".spml_cache" / "features"
    assert not list(caches.glob("*.shards-*"))  # removed
    # the shards are interleaved into each image's row: one process extracts the same features
    alone = run_cli([*args, "--trainer.devices", "1"], run=False)  # the same seed and weights
    alone.datamodule.setup("fit")
    alone.datamodule.setup("test")
    options = FeatureOptions(dir=str(tmp_path / "alone"), dtype="float32")
    expected = datamodule_features(alone.model, alone.datamodule, options)
    (shared,) = [folder for folder in caches.iterdir() if folder.is_dir()]
    for split in ("train", "val", "test"):
        np.testing.assert_allclose(
            np.load(shared / f"{split}.npy"), expected.features(split), rtol=0, atol=1e-5
        )
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    ddp_head = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    # one process, twice the batch: the same steps on the same images
    single = run_cli(
        ["fit", *args, "--data.init_args.batch_size", "16", "--trainer.devices", "1"]
        + ["--trainer.default_root_dir", str(tmp_path / "single")]
    )
    for name in ("head.weight", "head.bias"):
        torch.testing.assert_close(
            single.model.state_dict()[name], ddp_head[name], rtol=0, atol=1e-5
        )
