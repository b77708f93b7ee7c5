"""One Lightning fit on 2 CPU processes (gloo): per-sample loss state stays identical across ranks.

The ranks are forked (``strategy="ddp_fork"``), so no interpreter is re-started.
After each epoch every rank writes its loss state to a file; the state must be
the same on both ranks, also after resuming from the checkpoint of the first run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from spml_lightning.losses import AsymmetricPseudoLabelLoss

from probes import make_trainer, tiny_model


class DumpLossState(Callback):
    """Writes ``pl_module.loss.state_dict()`` of every rank at train start and each epoch end."""

    def __init__(self, folder: Path, tag: str) -> None:
        self.folder, self.tag = folder, tag

    def _dump(self, trainer, pl_module, when: str) -> None:
        state = {k: v.detach().cpu().clone() for k, v in pl_module.loss.state_dict().items()}
        torch.save(state, self.folder / f"{self.tag}-{when}-rank{trainer.global_rank}.pt")

    def on_train_start(self, trainer, pl_module) -> None:
        self._dump(trainer, pl_module, "start")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._dump(trainer, pl_module, f"epoch{trainer.current_epoch}")


def ddp_trainer(tmp_path: Path, max_epochs: int, tag: str) -> Trainer:
    return make_trainer(
        tmp_path,
        devices=2,
        strategy="ddp_fork",
        max_epochs=max_epochs,
        limit_train_batches=2,
        limit_val_batches=0,
        enable_checkpointing=True,
        callbacks=[
            ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True),
            DumpLossState(tmp_path, tag),
        ],
    )


def load_pair(tmp_path: Path, name: str) -> tuple[dict, dict]:
    rank0, rank1 = (torch.load(tmp_path / f"{name}-rank{r}.pt") for r in range(2))
    return rank0, rank1


def assert_same(states: tuple[dict, dict]) -> None:
    assert states[0].keys() == states[1].keys() and states[0]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


LOSSES = [
    # EM+APL exercises the most: buffers outside DDP's broadcast, the un-augmented
    # scoring pass on each rank's shard, gathered assignments.
    pytest.param(lambda: AsymmetricPseudoLabelLoss(warmup_epochs=1), id="EM+APL"),
    pytest.param(lambda: "LL-Cp", id="LL-Cp", marks=pytest.mark.slow),
    pytest.param(lambda: "ROLE", id="ROLE", marks=pytest.mark.slow),
]


def changed(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[key], after[key]) for key in before)


@pytest.mark.parametrize("make_loss", LOSSES)
def test_state_is_identical_on_both_ranks_after_an_epoch_and_after_resuming(
    tmp_path, tiny_demo, make_loss
):
    ddp_trainer(tmp_path, 2, "first").fit(tiny_model(loss=make_loss()), tiny_demo)
    for when in ("start", "epoch0", "epoch1"):
        assert_same(load_pair(tmp_path, f"first-{when}"))
    after_first = load_pair(tmp_path, "first-epoch1")[0]
    assert changed(load_pair(tmp_path, "first-start")[0], after_first)

    last = str(tmp_path / "ckpt" / "last.ckpt")
    ddp_trainer(tmp_path, 3, "resumed").fit(tiny_model(loss=make_loss()), tiny_demo, ckpt_path=last)
    restored = load_pair(tmp_path, "resumed-start")
    assert_same(restored)
    assert not changed(after_first, restored[0])
    final = load_pair(tmp_path, "resumed-epoch2")
    assert_same(final)
    assert changed(after_first, final[0])
