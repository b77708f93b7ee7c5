"""Performance features: no host reads in the steps, loss logging without syncs, the fast
profile's config, torch.compile (decoding on the device: tests/data/test_device_decode.py; the
bench scripts: tests/bench/).

No test here times anything: speed is measured by bench/ and recorded in bench/results/.
"""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import CSVLogger

from spml_lightning.module import SPMLModule

from probes import make_trainer

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

#: Tensor methods that read a value back to the host (a device synchronisation on a GPU).
HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")


@contextlib.contextmanager
def no_host_reads():
    """Fail on any call of a HOST_READS method inside the block."""

    def forbidden(name):
        def method(self, *args, **kwargs):
            raise AssertionError(f"Tensor.{name}() read a tensor back to the host")

        return method

    with pytest.MonkeyPatch.context() as patch:
        for name in HOST_READS:
            patch.setattr(torch.Tensor, name, forbidden(name))
        yield


def tiny_module() -> SPMLModule:
    torch.manual_seed(0)
    return SPMLModule(num_classes=5, backbone="resnet18", weights="none")


def make_batch(device: torch.device | str = "cpu", rows: int = 3) -> dict:
    generator = torch.Generator().manual_seed(1)
    observed = torch.zeros(rows, 5)
    observed[torch.arange(rows), torch.arange(rows) % 5] = 1
    return {
        "image": torch.randn(rows, 3, 32, 32, generator=generator).to(device),
        "observed": observed.to(device),
        "target": (torch.rand(rows, 5, generator=generator) < 0.5).float().to(device),
        "index": torch.arange(rows).to(device),
    }


# -- goal 4: evaluation adds no per-batch host reads ------------------------------------


def test_host_read_guard_catches_reads():
    # The guard below must be able to fail, or the next test proves nothing.
    with pytest.raises(AssertionError, match="item"), no_host_reads():
        torch.ones(1).item()
    with pytest.raises(AssertionError, match="__bool__"), no_host_reads():
        bool(torch.ones(1))


def test_eval_steps_keep_outputs_on_the_device_and_read_nothing_back():
    module = tiny_module().eval()
    batch = make_batch()
    with torch.no_grad():
        expected = torch.sigmoid(module(batch["image"]))
        with no_host_reads():
            module.validation_step(batch, 0)
            module.test_step(batch, 0)
    for split in ("val", "test"):
        ((index, scores, targets),) = module._evaluators[split].batches
        assert {t.device for t in (index, scores, targets)} == {module.device}
        torch.testing.assert_close(scores, expected)
        torch.testing.assert_close(targets, batch["target"])
        assert index.tolist() == [0, 1, 2]


@CUDA
def test_steps_do_not_synchronise_cuda():
    module = tiny_module().cuda()
    batch = make_batch("cuda")
    module.training_step(batch, 0)  # first calls: cuDNN/cuBLAS set-up is not a step's cost
    module.eval()
    with torch.no_grad():
        module.validation_step(batch, 0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.no_grad():
            module.validation_step(batch, 1)
            module.test_step(batch, 1)
        module.train()
        module.training_step(batch, 1).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


# -- training-loss logging: no per-step sync, same numbers as Lightning's on_epoch mean ----


class LossRecorder(Callback):
    def __init__(self) -> None:
        self.losses: list[tuple[float, int]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append((float(outputs["loss"]), len(batch["observed"])))


def test_training_loss_is_logged_on_logging_steps_and_as_a_weighted_epoch_mean(tmp_path, tiny_demo):
    tiny_demo.batch_size = 24  # 64 training rows: batches of 24, 24 and 16
    recorder = LossRecorder()
    trainer = make_trainer(
        tmp_path,
        limit_val_batches=0,
        log_every_n_steps=2,
        logger=CSVLogger(tmp_path, name="run"),
        callbacks=[recorder],
    )
    module = SPMLModule(num_classes=tiny_demo.num_classes, backbone="resnet18", weights="none")
    trainer.fit(module, tiny_demo)
    assert [size for _, size in recorder.losses] == [24, 24, 16]
    weighted = sum(loss * size for loss, size in recorder.losses) / 64
    assert trainer.callback_metrics["train/loss_epoch"].item() == pytest.approx(weighted, rel=1e-6)
    # The progress bar shows the epoch mean only: a per-step value would be read back every step.
    assert "train/loss_step" not in trainer.progress_bar_metrics
    assert trainer.progress_bar_metrics["train/loss_epoch"] == pytest.approx(weighted, rel=1e-6)
    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    step_values = [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")]
    # log_every_n_steps=2: the second step's loss, and nothing stale from other steps.
    assert step_values == [pytest.approx(recorder.losses[1][0], rel=1e-6)]


# -- the fast profile ----------------------------------------------------------------------


def test_fast_profile_stacks_on_a_benchmark_config():
    from spml_lightning.cli import run_cli

    cli = run_cli(
        [
            "--config",
            str(REPO / "configs" / "demo.yaml"),
            "--config",
            str(REPO / "configs" / "fast.yaml"),
            "--data.num_workers",
            "0",
            "--data.root",
            "unused",
            "--trainer.logger",
            "false",
        ],
        run=False,
    )
    assert cli.trainer.precision == "bf16-mixed"
    assert cli.model.hparams.channels_last and not cli.model.hparams.compile
    data = cli.datamodule
    assert (data.batch_size, data.pin_memory, data.decode_on) == (64, True, "workers")
    assert type(data).__name__ == "DemoDataModule"  # the benchmark config's data set is kept


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_that_emulates_it_is_warned_against(monkeypatch, recwarn, native):
    from spml_lightning import cli as spml_cli

    monkeypatch.setattr(spml_cli, "_native_cpu_bf16", lambda: native)
    args = [
        "--config", str(REPO / "configs" / "demo.yaml"), "--data.root", "unused",
        "--trainer.logger", "false", "--trainer.accelerator", "cpu",
    ]  # fmt: skip
    warned = "no native bf16) is emulated and several times slower than fp32"
    spml_cli.run_cli([*args, "--trainer.precision", "bf16-mixed"], run=False)
    assert any(warned in str(w.message) for w in recwarn) == (not native)
    recwarn.clear()
    spml_cli.run_cli(args, run=False)  # fp32: nothing to say
    assert not any(warned in str(w.message) for w in recwarn)


def test_compile_option_compiles_the_backbone_in_place():
    module = SPMLModule(num_classes=5, backbone="resnet18", weights="none", compile=True)
    keys = list(module.state_dict())
    module.setup("fit")
    module.setup("test")  # a second set-up does not wrap it twice
    assert module.backbone._compiled_call_impl is not None
    assert list(module.state_dict()) == keys  # checkpoints are the same as without it


@pytest.mark.slow
def test_compiled_backbone_computes_the_same_logits():
    module = tiny_module().eval()
    images = make_batch()["image"]
    with torch.no_grad():
        eager = module(images)
        module.backbone.compile()
        torch.testing.assert_close(module(images), eager, rtol=1e-4, atol=1e-4)
