"""Checkpoints written by earlier code still test, predict and resume.

The checkpoints in compat/ were written once by make_checkpoints.py there (its
doc says which code); they are the format users may have, so no later change of
module, loss or option names may break them.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
import torch

from spml_lightning import SPMLModule
from spml_lightning.cli import run_cli

COMPAT = Path(__file__).resolve().parent / "compat"

_spec = importlib.util.spec_from_file_location("make_checkpoints", COMPAT / "make_checkpoints.py")
assert _spec is not None and _spec.loader is not None
make_checkpoints = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_checkpoints)

#: checkpoint stem -> (loss class name, flags a resumed fit gives beyond config.yaml). The
#: resume of the second names none of its removed options: a user's config no longer can.
CHECKPOINTS = {
    "gr": ("GRLoss", ["--model.loss", "GR"]),
    "role_sqrt_betas_warmup": (
        "OnlineLabelEstimationLoss",
        ["--model.loss", "ROLE", "--model.lr_scaling", "sqrt", "--model.lr_batch_size", "4"],
    ),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_checkpoints.write_data(tmp_path_factory.mktemp("compat") / "data")


def args(tmp_path: Path, data: Path) -> list[str]:
    return [
        "--config", str(COMPAT / "config.yaml"),
        "--trainer.default_root_dir", str(tmp_path / "runs"),
        "--data.init_args.root", str(data),
    ]  # fmt: skip


@pytest.mark.parametrize("stem", sorted(CHECKPOINTS))
def test_checkpoint_loads_and_predicts_images(stem):
    path = COMPAT / f"{stem}.ckpt"
    recorded = torch.load(path, map_location="cpu", weights_only=False)
    model = SPMLModule.load_from_checkpoint(path, map_location="cpu")
    assert type(model.loss).__name__ == CHECKPOINTS[stem][0]
    assert model.state_dict().keys() == recorded["state_dict"].keys()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, recorded["state_dict"][name])
    assert model.class_names == sorted(make_checkpoints.CLASSES)
    probs = model.predict_images([torch.zeros(3, 16, 16, dtype=torch.uint8)])
    assert probs.shape == (1, 3) and ((probs > 0) & (probs < 1)).all()


@pytest.mark.parametrize("stem", sorted(CHECKPOINTS))
def test_checkpoint_tests_predicts_and_resumes(stem, tmp_path, data):
    path = str(COMPAT / f"{stem}.ckpt")
    test = run_cli(["test", *args(tmp_path, data), "--ckpt_path", path])
    assert 0.0 <= test.trainer.callback_metrics["test/mAP"].item() <= 100.0

    out = tmp_path / "predictions.csv"
    run_cli(
        [
            "predict", *args(tmp_path, data), "--ckpt_path", path,
            "--data", "spml_lightning.data.UnlabelledImageDataModule",
            "--data.init_args.root", str(data / "images"),
            "--prediction.output_path", str(out),
        ]
    )  # fmt: skip
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(list((data / "images").iterdir()))
    assert list(rows[0])[2:] == sorted(make_checkpoints.CLASSES)

    loss_name, flags = CHECKPOINTS[stem]
    fit = run_cli(
        ["fit", *args(tmp_path, data), *flags, "--trainer.max_epochs", "2", "--ckpt_path", path]
    )
    assert fit.trainer.current_epoch == 2 and fit.trainer.global_step > 0
    assert type(fit.model.loss).__name__ == loss_name
    recorded = torch.load(path, map_location="cpu", weights_only=False)
    assert fit.trainer.global_step > recorded["global_step"]
    # The restored Adam state carried sqrt_betas' betas; the resumed fit trains with Adam's own.
    for group in fit.trainer.optimizers[0].param_groups:
        assert tuple(group["betas"]) == (0.9, 0.999) and group["eps"] == 1e-8


def test_a_checkpoint_naming_removed_options_loads_with_their_replacements():
    path = COMPAT / "role_sqrt_betas_warmup.ckpt"
    recorded = torch.load(path, map_location="cpu", weights_only=False)["hyper_parameters"]
    assert recorded["lr_scaling"] == "sqrt_betas" and recorded["lr_warmup_epochs"] == 0.5
    with pytest.warns(UserWarning, match="lr_scaling 'sqrt_betas' was removed .* using 'sqrt'"):
        model = SPMLModule.load_from_checkpoint(path, map_location="cpu")
    assert model.hparams.lr_scaling == "sqrt" and "lr_warmup_epochs" not in model.hparams


def test_resuming_a_checkpoint_trained_with_a_removed_option_says_so(tmp_path, data):
    path = str(COMPAT / "role_sqrt_betas_warmup.ckpt")
    _, flags = CHECKPOINTS["role_sqrt_betas_warmup"]
    with pytest.warns(UserWarning, match="lr_warmup_epochs=0.5, an option since removed"):
        run_cli(
            ["fit", *args(tmp_path, data), *flags, "--trainer.max_epochs", "2", "--ckpt_path", path]
        )


def test_a_renamed_datamodule_s_state_is_found_under_its_new_name():
    from spml_lightning.training.compatibility import upgraded_checkpoint

    checkpoint = torch.load(COMPAT / "gr.ckpt", map_location="cpu", weights_only=False)
    assert "FolderDataModule" in checkpoint and "CSVDataModule" not in checkpoint
    assert upgraded_checkpoint(checkpoint) is checkpoint["hyper_parameters"]
    assert checkpoint["CSVDataModule"] == checkpoint["FolderDataModule"]


def test_a_saved_config_naming_a_removed_option_still_runs(tmp_path, data):
    # Every run's saved config.yaml names all options of its version, lr_warmup_epochs included.
    saved = tmp_path / "config.yaml"
    saved.write_text("model:\n  lr_warmup_epochs: 0.5\n")
    path = str(COMPAT / "gr.ckpt")
    with pytest.warns(UserWarning, match="model.lr_warmup_epochs=0.5 was removed"):
        test = run_cli(["test", *args(tmp_path, data), "--config", str(saved), "--ckpt_path", path])
    assert 0.0 <= test.trainer.callback_metrics["test/mAP"].item() <= 100.0
    assert "lr_warmup_epochs" not in test.model.hparams
