"""The learning-rate rule for batch size (model.lr_scaling); the fp32 head under mixed precision."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from spml_lightning.cli import run_cli
from spml_lightning.training.lr_scaling import check_lr_scaling, effective_batch_size, scaled_lr

from conftest import REPO_ROOT
from probes import demo_args, tiny_model


def test_the_rules_scale_lr_with_the_batch():
    assert scaled_lr(1e-3, "sqrt", 64, 32) == pytest.approx(1e-3 * math.sqrt(2))
    assert scaled_lr(1e-5, "sqrt", 64, 8) == pytest.approx(1e-5 * math.sqrt(8))
    assert scaled_lr(1e-3, "linear", 64, 32) == pytest.approx(2e-3)
    assert scaled_lr(1e-3, "sqrt", 8, 32) == pytest.approx(5e-4)  # smaller batches too
    assert scaled_lr(1e-3, "none", 64, 32) == 1e-3
    assert scaled_lr(1e-3, "none", 64, None) == 1e-3


@pytest.mark.parametrize(
    ("rule", "lr_batch_size", "message"),
    [
        ("cube", 32, "lr_scaling must be one of none, sqrt, linear, got 'cube'"),
        ("sqrt", None, "give model.lr_batch_size"),
        ("linear", 0, "lr_batch_size must be a positive integer, got 0"),
        ("sqrt", 2.5, "lr_batch_size must be a positive integer, got 2.5"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(rule, lr_batch_size, message):
    with pytest.raises(ValueError, match=message):
        check_lr_scaling(rule, lr_batch_size)
    with pytest.raises(ValueError, match=message):  # at construction, before any training
        tiny_model(lr_scaling=rule, lr_batch_size=lr_batch_size)


def test_the_batch_of_a_step_counts_processes_and_accumulation():
    trainer = SimpleNamespace(
        datamodule=SimpleNamespace(batch_size=16), world_size=4, accumulate_grad_batches=2
    )
    assert effective_batch_size(trainer) == 128
    with pytest.raises(RuntimeError, match="reads it from the trainer's datamodule"):
        effective_batch_size(SimpleNamespace(datamodule=None, world_size=1))


def _rates(cli) -> dict[str, float]:
    return {group["name"]: group["lr"] for group in cli.trainer.optimizers[0].param_groups}


def _fit_batch_16_for_4(tmp_path, tiny_demo_root, rule: str):
    """One epoch of the demo at batch 16 for an lr set for batch 4 (lr 1e-3, lr_mult 1)."""
    return run_cli([
        "fit", *demo_args(tmp_path, tiny_demo_root), "--trainer.max_epochs", "1",
        "--data.init_args.batch_size", "16", "--model.lr_batch_size", "4",
        "--model.lr_scaling", rule, "--model.lr", "1e-3",
    ])  # fmt: skip


def test_a_fit_trains_backbone_and_head_at_the_scaled_rate(tmp_path, tiny_demo_root, info_lines):
    cli = _fit_batch_16_for_4(tmp_path, tiny_demo_root, "sqrt")
    assert _rates(cli) == pytest.approx({"backbone": 2e-3, "head": 2e-3})
    assert cli.trainer.callback_metrics["lr/backbone"].item() == pytest.approx(2e-3)
    assert any(
        line.startswith("lr_scaling sqrt: batch 16 instead of 4, backbone lr 0.002")
        for line in info_lines
    )


@pytest.mark.parametrize(("rule", "factor"), [("linear", 8.0), ("none", 1.0)])
def test_every_rule_sets_the_groups_from_the_step_s_batch(rule, factor):
    model = tiny_model(lr=1e-4, lr_mult=10.0, lr_scaling=rule, lr_batch_size=8)
    # 16 per process x 2 processes x 2 accumulated batches = 64 images per step.
    model.trainer = SimpleNamespace(
        datamodule=SimpleNamespace(batch_size=16), world_size=2, accumulate_grad_batches=2
    )
    rates = {group["name"]: group["lr"] for group in model.configure_optimizers().param_groups}
    assert rates == pytest.approx({"backbone": 1e-4 * factor, "head": 1e-3 * factor})


def test_a_loss_s_per_sample_parameters_are_scaled_too(tmp_path, tiny_demo_root):
    # ROLE's label estimates: lr_mult x the scaled rate (the next test says why).
    cli = run_cli([
        "fit", *demo_args(tmp_path, tiny_demo_root), "--trainer.max_epochs", "1",
        "--config", str(REPO_ROOT / "configs" / "losses" / "role.yaml"),
        "--data.init_args.batch_size", "16", "--model.lr_batch_size", "4",
        "--model.lr_scaling", "sqrt", "--model.lr", "1e-3",
    ])  # fmt: skip
    assert _rates(cli) == pytest.approx(
        {"backbone": 2e-3, "head": 2e-3, "label_estimates": 2e-3 * 10.0}
    )


@pytest.mark.parametrize("steps_per_epoch", [63, 250])
def test_sqrt_keeps_the_epoch_movement_of_a_row_seen_once_per_epoch(steps_per_epoch):
    # A per-sample parameter (a ROLE row) gets a gradient once per epoch and zero on every
    # other step. Adam's second moment then decays once per *step*: with half the steps
    # per epoch (twice the batch) it keeps twice the history, each visit moves the row
    # 1/sqrt(2) as far, and the row learns slower per epoch -- unless its rate is scaled
    # by the same square-root rule as the weights'.
    def movement(steps: int, lr: float, epochs: int = 8) -> float:
        row = torch.zeros(1, requires_grad=True)
        adam = torch.optim.Adam([row], lr=lr)
        for _ in range(epochs):
            for step in range(steps):
                row.grad = torch.full((1,), 1e-3 if step == steps // 2 else 0.0)
                adam.step()
        return -row.item()

    paper = movement(steps_per_epoch, 1e-2)
    fewer_steps = steps_per_epoch // 2  # batch 2x
    unscaled = movement(fewer_steps, 1e-2)
    scaled = movement(fewer_steps, scaled_lr(1e-2, "sqrt", 2 * 32, 32))
    assert unscaled / paper == pytest.approx(2**-0.5, abs=0.03)
    assert scaled / paper == pytest.approx(1.0, abs=0.03)


def test_a_resumed_fit_with_another_batch_trains_at_its_rate(tmp_path, tiny_demo_root):
    args = [
        *demo_args(tmp_path, tiny_demo_root), "--model.lr_batch_size", "4",
        "--model.lr_scaling", "sqrt", "--model.lr", "1e-3",
    ]  # fmt: skip
    run_cli(["fit", *args, "--trainer.max_epochs", "1", "--data.init_args.batch_size", "16"])
    resumed = run_cli([
        "fit", *args, "--trainer.max_epochs", "2", "--data.init_args.batch_size", "36",
        "--ckpt_path", "last",
    ])  # fmt: skip
    assert resumed.trainer.current_epoch == 2
    assert _rates(resumed) == pytest.approx({"backbone": 3e-3, "head": 3e-3})


def test_the_fast_config_scales_lr_from_each_benchmark_s_batch():
    fast = (REPO_ROOT / "configs" / "fast.yaml").read_text()
    assert "lr_scaling: sqrt" in fast
    for name, batch in [("voc", 8), ("coco", 16), ("nuswide", 16), ("cub", 8), ("demo", 32)]:
        config = (REPO_ROOT / "configs" / f"{name}.yaml").read_text()
        assert f"lr_batch_size: {batch} " in config
        assert f"batch_size: {batch}\n" in config


@pytest.mark.parametrize("fp32_head", [True, False])
def test_under_bf16_the_head_runs_in_fp32_unless_told_otherwise(fp32_head):
    torch.manual_seed(0)
    model = tiny_model(fp32_head=fp32_head).eval()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(images)
        features = model.backbone(images)
    assert logits.dtype == (torch.float32 if fp32_head else torch.bfloat16)
    exact = torch.nn.functional.linear(features.float(), model.head.weight, model.head.bias)
    if fp32_head:
        torch.testing.assert_close(logits, exact, rtol=0, atol=0)
    else:  # rounded to bf16: no longer the fp32 product
        assert not torch.equal(logits.float(), exact)
    with torch.no_grad():  # without autocast both are the plain fp32 model
        assert model(images).dtype == torch.float32
