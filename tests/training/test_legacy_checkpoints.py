"""Checkpoints written by spml_lightning 0.1.0 still load, test and resume.

See legacy/make_legacy_checkpoints.py.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from spml_lightning import SPMLModule
from spml_lightning.cli import run_cli

from probes import demo_args

LEGACY = Path(__file__).resolve().parent / "legacy"

#: file stem -> the loss class path that version recorded (the per-loss files must not move).
RECORDED_LOSSES = {
    "gr": "spml_lightning.losses.gr.GRLoss",
    "ll_cp": "spml_lightning.losses.ll.LargeLossPermanentCorrectionLoss",
    "role": "spml_lightning.losses.role.OnlineLabelEstimationLoss",
}


def unpacked(stem: str, folder: Path) -> Path:
    path = folder / f"{stem}.ckpt"
    with gzip.open(LEGACY / f"{stem}.ckpt.gz", "rb") as source, open(path, "wb") as target:
        shutil.copyfileobj(source, target)
    return path


@pytest.mark.parametrize("stem", sorted(RECORDED_LOSSES))
def test_legacy_checkpoint_loads_and_predicts(stem, tmp_path):
    path = unpacked(stem, tmp_path)
    recorded = torch.load(path, map_location="cpu", weights_only=False)
    assert recorded["hyper_parameters"]["loss"]["class_path"] == RECORDED_LOSSES[stem]
    assert {key.split(".")[0] for key in recorded["state_dict"]} <= {"backbone", "head", "loss"}

    model = SPMLModule.load_from_checkpoint(path, map_location="cpu")
    loss_class = type(model.loss)
    assert f"{loss_class.__module__}.{loss_class.__qualname__}" == RECORDED_LOSSES[stem]
    assert model.state_dict().keys() == recorded["state_dict"].keys()
    assert len(model.class_names) == 14 and model.hparams.image_size == 32
    probs = model.predict_images([Image.new("RGB", (40, 30), (120, 40, 200))])
    assert probs.shape == (1, 14)
    assert torch.allclose(probs, torch.full((1, 14), 0.5))  # the recorded weights are zeros


def test_legacy_checkpoint_tests_and_resumes(tmp_path, tiny_demo_root):
    path = unpacked("ll_cp", tmp_path)
    args = demo_args(tmp_path, tiny_demo_root)
    test = run_cli(["test", *args, "--ckpt_path", str(path)])
    assert 0.0 <= test.trainer.callback_metrics["test/mAP"].item() <= 100.0
    # The recorded run stopped after epoch 1 of 1; resume it to 2 epochs with its loss and state.
    fit = run_cli(["fit", *args, "--model.loss", "LL-Cp", "--ckpt_path", str(path)])
    assert fit.trainer.current_epoch == 2
    assert type(fit.model.loss).__name__ == "LargeLossPermanentCorrectionLoss"
