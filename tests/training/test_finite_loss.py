"""Numerical safety: a non-finite loss stops training with an explanation.

Mixed precision stays finite.
"""

from __future__ import annotations

import pytest
import torch

from spml_lightning import GRLoss
from spml_lightning.training import ResumableCheckpoint
from spml_lightning.training.finite_loss import FiniteLossGuard, NonFiniteLossError

from probes import make_trainer, tiny_model


class NaNFromStep(GRLoss):
    """GR Loss that returns NaN from its ``start``-th training call on."""

    def __init__(self, start: int) -> None:
        super().__init__()
        self.start, self.calls = start, 0

    def forward(self, logits, observed, index=None):
        loss = super().forward(logits, observed, index)
        if self.training:
            self.calls += 1
            if self.calls > self.start:
                return loss * torch.nan
        return loss


def test_nan_logits_stop_training_at_that_step_with_statistics(tmp_path, tiny_demo):
    model = tiny_model()
    with torch.no_grad():
        model.head.bias[3] = torch.nan  # one class of 14 goes NaN: 16 of the 16 x 14 logits
    trainer = make_trainer(tmp_path, limit_train_batches=2, limit_val_batches=0)
    with pytest.raises(NonFiniteLossError) as error:
        trainer.fit(model, tiny_demo)
    message = str(error.value)
    assert "loss is nan at global step 0 (epoch 0)" in message
    assert "16 NaN, 0 +inf, 0 -inf of 224" in message
    assert "input images: 0 non-finite values" in message
    assert trainer.global_step == 0  # stopped before the optimizer step


def test_non_finite_input_is_reported(tmp_path, tiny_demo):
    class PoisonedInput(type(tiny_model())):
        def on_after_batch_transfer(self, batch, dataloader_idx):
            if self.training and self.global_step == 1:
                batch["image"][0, 0, 0, :3] = torch.inf
            return batch

    model = PoisonedInput(num_classes=14, backbone="resnet18", weights="none", lr=1e-3, lr_mult=1.0)
    trainer = make_trainer(tmp_path, limit_train_batches=3, limit_val_batches=0)
    with pytest.raises(
        NonFiniteLossError, match=r"global step 1 .*input images: 3 non-finite values"
    ):
        trainer.fit(model, tiny_demo)


def test_deferred_check_still_protects_the_last_good_checkpoint(tmp_path, tiny_demo):
    """The accelerator path (no host read per step): the NaN of step 3 stops the
    run before the end-of-epoch save could overwrite last.ckpt."""
    model = tiny_model(loss=NaNFromStep(start=3))
    model._finite_loss = FiniteLossGuard(check_every_n_steps=100, check_cpu_every_step=False)
    checkpoint = ResumableCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    trainer = make_trainer(
        tmp_path,
        max_epochs=3,
        limit_train_batches=2,
        limit_val_batches=1,
        enable_checkpointing=True,
        callbacks=[checkpoint],
    )
    with pytest.raises(NonFiniteLossError, match=r"global step 3 \(epoch 1\).*check after step 3"):
        trainer.fit(model, tiny_demo)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["epoch"] == 0
    assert all(
        torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point()
    )


def test_guard_reports_the_first_bad_step_of_a_deferred_window():
    guard = FiniteLossGuard(check_every_n_steps=3, check_cpu_every_step=False)
    logits = torch.zeros(2, 3)
    guard.observe(torch.tensor(0.5), logits, None, step=10, epoch=2)
    guard.observe(torch.tensor(float("inf")), logits.fill_(7.0), None, step=11, epoch=2)  # reported
    bad_logits = torch.full((2, 3), float("nan"))
    with pytest.raises(NonFiniteLossError) as error:
        guard.observe(torch.tensor(float("nan")), bad_logits, None, step=12, epoch=2)
    assert "loss is inf at global step 11 (epoch 2)" in str(error.value)
    assert "0 NaN" in str(error.value) and "[7, 7]" in str(error.value)
    # The window was consumed: finite losses pass again.
    for step in range(13, 19):
        guard.observe(torch.tensor(0.1), logits, None, step=step, epoch=2)


def test_finite_losses_never_raise():
    guard = FiniteLossGuard(check_every_n_steps=2, check_cpu_every_step=False)
    for step in range(10):
        guard.observe(torch.tensor(1.0 + step), torch.randn(4, 5), torch.randn(4, 3, 8, 8), step, 0)
    guard.check()


def test_bf16_mixed_training_on_cpu_keeps_losses_finite(tmp_path, tiny_demo):
    from spml_lightning.backbones import SimpleConvNet

    # A small CNN: bf16 convolutions are emulated on most CPUs (a ResNet-18 took 38 s here).
    model = tiny_model(backbone=SimpleConvNet([8, 16]))
    dtypes: dict[str, list] = {"backbone": [], "head": []}
    for name in dtypes:
        getattr(model, name).register_forward_hook(
            lambda module, inputs, output, name=name: dtypes[name].append(output.dtype)
        )
    trainer = make_trainer(
        tmp_path, precision="bf16-mixed", max_epochs=2, limit_train_batches=2, limit_val_batches=1
    )
    trainer.fit(model, tiny_demo)
    assert torch.bfloat16 in dtypes["backbone"]  # autocast did run the network in bf16
    assert set(dtypes["head"]) == {torch.float32}  # and the head in fp32 (fp32_head)
    assert torch.isfinite(trainer.callback_metrics["train/loss_epoch"])
    assert torch.isfinite(trainer.callback_metrics["val/mAP"])
    assert all(torch.isfinite(p).all() for p in model.parameters())


needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="16-mixed trains with a CUDA grad scaler; Lightning has no fp16 autocast + scaler on "
    "CPU (the CPU checks are bf16-mixed above and the fp16/bf16 loss-level tests)",
)


@needs_cuda
def test_16_mixed_keeps_losses_finite_and_the_grad_scaler_healthy(tmp_path, tiny_demo):
    model = tiny_model()
    trainer = make_trainer(
        tmp_path,
        accelerator="gpu",
        precision="16-mixed",
        max_epochs=2,
        limit_train_batches=4,
        limit_val_batches=1,
    )
    trainer.fit(model, tiny_demo)
    assert torch.isfinite(trainer.callback_metrics["train/loss_epoch"])
    # Starts at 2**16 and halves at every overflow; a collapse would take it below 1.
    assert trainer.precision_plugin.scaler.get_scale() >= 2.0**10
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="checks for CUDA host synchronisations; no CUDA device"
)
def test_guard_adds_no_host_synchronisation_on_cuda():
    guard = FiniteLossGuard(check_every_n_steps=50)
    logits = torch.randn(8, 20, device="cuda")
    images = torch.randn(8, 3, 16, 16, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(49):
            guard.observe(logits.sum() * 0 + 1, logits, images, step, 0)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    guard.check()
