"""`model.train_mode: linear_init`: a linear phase on cached features, then fine-tuning."""

from __future__ import annotations

import shutil

import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy

from spml_lightning import SPMLModule
from spml_lightning.cli import run_cli
from spml_lightning.training.linear_init import check_linear_init_strategy

from probes import PhaseRecorder, ScriptedMetric, demo_args, run_ddp_driver


def _demo(tiny_demo_root, tmp_path) -> list[str]:
    root = tmp_path / "demo"
    shutil.copytree(tiny_demo_root, root)
    return [*demo_args(tmp_path, root), "--model.train_mode", "linear_init"]


def test_linear_init_needs_linear_epochs_and_a_positive_linear_lr():
    with pytest.raises(ValueError, match="set --model.linear_init to the epochs of the linear"):
        SPMLModule(num_classes=3, backbone="resnet18", weights="none", train_mode="linear_init")
    with pytest.raises(ValueError, match="finite positive"):
        SPMLModule(num_classes=3, backbone="resnet18", weights="none", linear_lr=0.0)


def test_the_linear_phase_trains_on_the_cache_then_the_network_fine_tunes_on_images(
    tiny_demo_root, tmp_path
):
    args = [
        *_demo(tiny_demo_root, tmp_path),
        *("--model.linear_init", "1", "--model.linear_lr", "0.02", "--model.loss", "ROLE"),
    ]
    cli = run_cli(args, run=False)
    phases = PhaseRecorder()
    cli.trainer.callbacks.append(phases)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    # epoch 0 trains and validates on the cached features, epoch 1 on images
    assert phases.train == {0: {"features"}, 1: {"image"}}
    assert phases.val == {0: {"features"}, 1: {"image"}}
    # the linear phase trains the head and ROLE's estimates; the backbone stays as it was
    linear, tuned, initial = phases.at_end[0], phases.at_end[1], phases.initial
    backbone = [name for name in initial if name.startswith("backbone.")]
    assert all(torch.equal(linear[name], initial[name]) for name in backbone)
    assert not torch.equal(linear["head.weight"], initial["head.weight"])
    assert not torch.equal(linear["loss.label_estimates"], initial["loss.label_estimates"])
    # fine-tuning trains the backbone, from the linear head, with a new Adam
    assert any(not torch.equal(tuned[name], linear[name]) for name in backbone)
    assert phases.adam_states[1] == 0
    # the linear phase at linear_lr (ROLE's estimates at their multiple of it), then lr x lr_mult
    hparams = cli.model.hparams
    lr_mult = cli.model.loss.lr_mult
    assert phases.rates[0]["head"] == pytest.approx(0.02)
    assert phases.rates[0]["label_estimates"] == pytest.approx(0.02 * lr_mult)
    assert phases.rates[1]["head"] == pytest.approx(hparams.lr * hparams.lr_mult)
    assert phases.rates[1]["label_estimates"] == pytest.approx(hparams.lr * lr_mult)
    # the loss schedule spans both phases, the linear epochs as GR's linear_init
    assert cli.model.loss_schedule == {"epoch": 1, "max_epochs": 2, "linear_init": 1}
    # a loss that rescores the training set reads the cache in the linear phase only
    fixed = cli.model._fixed_features
    assert fixed.score_train_set(cli.model.head, 0) is not None
    assert fixed.score_train_set(cli.model.head, 1) is None


@pytest.mark.parametrize(("linear_init", "stop"), [(1, 2), (2, 1)])
def test_a_resumed_linear_init_fit_ends_as_the_uninterrupted_one(
    linear_init, stop, tiny_demo_root, tmp_path
):
    """Interrupted after a fine-tuning epoch, or inside the linear phase, then resumed from
    last.ckpt: each epoch reads its phase's data and the weights end where they end without
    the interruption."""
    args = [
        *_demo(tiny_demo_root, tmp_path),
        *("--model.linear_init", str(linear_init), "--model.schedule_epochs", "3"),
        *("--model.loss", "ROLE", "--data.init_args.train_augment", "false"),
    ]
    uninterrupted = run_cli(["fit", *args, "--trainer.max_epochs", "3"])
    resumed_args = [*args, "--trainer.default_root_dir", str(tmp_path / "resumed")]
    run_cli(["fit", *resumed_args, "--trainer.max_epochs", str(stop)])
    cli = run_cli([*resumed_args, "--trainer.max_epochs", "3"], run=False)
    phases = PhaseRecorder()
    cli.trainer.callbacks.append(phases)
    (last,) = (tmp_path / "resumed").rglob("last.ckpt")
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=last)
    expected = {epoch: {"features" if epoch < linear_init else "image"} for epoch in (1, 2)}
    assert phases.train == {epoch: kinds for epoch, kinds in expected.items() if epoch >= stop}
    for name, value in uninterrupted.model.state_dict().items():
        torch.testing.assert_close(cli.model.state_dict()[name], value, msg=name)


def test_linear_init_under_ddp_needs_unused_parameters_found():
    with pytest.raises(ValueError, match="ddp_find_unused_parameters_true"):
        check_linear_init_strategy(DDPStrategy(), world_size=2)
    check_linear_init_strategy(DDPStrategy(find_unused_parameters=True), world_size=2)
    check_linear_init_strategy(DDPStrategy(), world_size=1)


@pytest.mark.parametrize("mode", ["end_to_end", "linear_fixed_features"])
def test_linear_lr_is_the_head_s_rate_whenever_the_backbone_is_frozen(
    mode, tiny_demo_root, tmp_path
):
    """GR's head-only linear_init epochs through the backbone, and every epoch of
    linear_fixed_features; neither starts a new Adam (only linear_init's phases are two runs)."""
    root = tmp_path / "demo"
    shutil.copytree(tiny_demo_root, root)
    args = [
        *demo_args(tmp_path, root),
        *("--model.train_mode", mode, "--model.linear_init", "1", "--model.linear_lr", "0.02"),
    ]
    cli = run_cli(args, run=False)
    phases = PhaseRecorder()
    cli.trainer.callbacks.append(phases)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fine_tuning = cli.model.hparams.lr * cli.model.hparams.lr_mult
    head_rates = [phases.rates[epoch]["head"] for epoch in (0, 1)]
    frozen = mode == "linear_fixed_features"
    assert head_rates == pytest.approx([0.02, 0.02 if frozen else fine_tuning])
    assert phases.adam_states[1] > 0


@pytest.mark.parametrize("stop", [None, 2])
@pytest.mark.parametrize("best_epoch", [0, 1])
def test_fine_tuning_starts_from_the_best_validated_linear_epoch(
    best_epoch, stop, tiny_demo_root, tmp_path
):
    """A scripted metric makes one of two linear epochs the best: fine-tuning starts from its
    head and ROLE estimates (Cole's code reverts to them), also when the fit is resumed after
    the linear phase (the choice made at the last linear validation is in that checkpoint)."""
    args = [
        *_demo(tiny_demo_root, tmp_path),
        *("--model.linear_init", "2", "--model.loss", "ROLE", "--checkpoint.monitor", "scripted"),
        *("--data.init_args.train_augment", "false", "--model.schedule_epochs", "3"),
    ]
    scripted = [0.9, 0.1, 0.5] if best_epoch == 0 else [0.1, 0.9, 0.5]

    def fit(max_epochs: int, ckpt_path=None) -> PhaseRecorder:
        cli = run_cli([*args, "--trainer.max_epochs", str(max_epochs)], run=False)
        phases = PhaseRecorder()
        cli.trainer.callbacks += [phases, ScriptedMetric("scripted", scripted)]
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
        return phases

    if stop is None:
        phases = fit(3)
        best = phases.at_end[best_epoch]
        assert not torch.equal(best["head.weight"], phases.at_end[1 - best_epoch]["head.weight"])
    else:
        best = fit(stop).at_end[best_epoch]
        (last,) = (tmp_path / "runs").rglob("last.ckpt")
        phases = fit(3, ckpt_path=last)
    for name in ("head.weight", "head.bias", "loss.label_estimates"):
        torch.testing.assert_close(phases.at_start[2][name], best[name], rtol=0, atol=0, msg=name)


def test_two_process_ddp_runs_both_phases(tiny_demo_root, tmp_path):
    """With DDP told to find unused parameters, two processes share the extraction, train the
    linear phase on the cache, fine-tune on images, then validate and test (exit 0)."""
    root = tmp_path / "demo"
    shutil.copytree(tiny_demo_root, root)
    args = [
        *demo_args(tmp_path, root),
        *("--model.train_mode", "linear_init", "--model.linear_init", "1"),
        *("--trainer.accelerator", "cpu", "--trainer.devices", "2"),
        *("--trainer.strategy", "ddp_find_unused_parameters_true"),
    ]
    result = run_ddp_driver(tmp_path, args)
    output = result.stdout + result.stderr
    assert "2 processes share the extraction" in output
    assert "fine-tuning starts from the linear phase's best epoch, 0" in output
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    assert (
        checkpoint["epoch"] == 1 and checkpoint["hyper_parameters"]["train_mode"] == "linear_init"
    )


def test_a_later_fit_in_another_mode_on_the_same_datamodule_reads_its_own_data(
    tiny_demo_root, tmp_path
):
    """Even when the linear_init fit stopped inside its linear phase."""
    args = [*_demo(tiny_demo_root, tmp_path), "--model.linear_init", "2"]
    cli = run_cli(["fit", *args, "--model.schedule_epochs", "3", "--trainer.max_epochs", "1"])
    again = run_cli(
        [*args, "--model.train_mode", "end_to_end", "--model.linear_init", "0"], run=False
    )
    phases = PhaseRecorder()
    again.trainer.callbacks.append(phases)
    again.trainer.fit(again.model, datamodule=cli.datamodule)  # the linear_init fit's datamodule
    assert phases.train == {0: {"image"}, 1: {"image"}}
    assert phases.val == {0: {"image"}, 1: {"image"}}
