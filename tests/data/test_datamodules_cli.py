"""`spml fit` -> `spml test` through the CLI with each benchmark config on its fixture."""

import pytest

from community_reference import copy_fixture
from spml_lightning.cli import run_cli

from conftest import REPO_ROOT

TINY = [
    "--model.backbone", "resnet18",
    "--model.weights", "none",
    "--data.image_size", "32",
    "--data.batch_size", "4",
    "--data.num_workers", "0",
    "--trainer.max_epochs", "1",
    "--trainer.limit_train_batches", "1",
    "--trainer.logger", "false",
    "--trainer.accelerator", "cpu",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip


def config_args(name: str, root, tmp_path) -> list[str]:
    if name != "folder":
        return ["--config", str(REPO_ROOT / "configs" / f"{name}.yaml"), "--data.root", str(root)]
    # Your own data: any benchmark config with the data section swapped.
    data = tmp_path / "folder.yaml"
    data.write_text(
        "data:\n  class_path: spml_lightning.data.FolderDataModule\n"
        f"  init_args:\n    root: {root}\n    class_names: classes.txt\n"
    )
    return ["--config", str(REPO_ROOT / "configs" / "voc.yaml"), "--config", str(data)]


@pytest.mark.parametrize("name", ["voc", "coco", "cub", "nuswide", "folder"])
def test_fit_then_test(name, tmp_path):
    root = copy_fixture(name, tmp_path)
    args = [*config_args(name, root, tmp_path), *TINY, "--trainer.default_root_dir", str(tmp_path / "runs")]
    fit = run_cli(["fit", *args])
    best = fit.trainer.checkpoint_callback.best_model_path
    assert best and fit.model.hparams.num_classes == fit.datamodule.num_classes
    assert fit.model.hparams.class_names == fit.datamodule.class_names
    test = run_cli(["test", *args, "--ckpt_path", "best"])
    assert test.trainer.ckpt_path == best
    assert 0.0 <= test.trainer.callback_metrics["test/mAP"].item() <= 100.0
