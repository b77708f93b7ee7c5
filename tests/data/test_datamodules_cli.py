"""`spml fit` -> `spml test` through the CLI with each benchmark config on its fixture.

Also: test/validate/predict refuse data whose classes are not the checkpoint's, in its order.
"""

import pytest

from spml_lightning import SPMLModule
from spml_lightning.cli import run_cli
from spml_lightning.data import CSVDataModule

from community_reference import copy_fixture
from conftest import REPO_ROOT
from probes import make_trainer

#: The classes of the folder fixture (classes.txt), in the order its models learn them.
CLASSES = ["cat", "dog", "potted plant", "tv"]

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
        "data:\n  class_path: spml_lightning.data.CSVDataModule\n"
        f"  init_args:\n    root: {root}\n    class_names: classes.txt\n"
    )
    return ["--config", str(REPO_ROOT / "configs" / "voc.yaml"), "--config", str(data)]


@pytest.mark.parametrize("name", ["voc", "coco", "cub", "nuswide", "folder"])
def test_fit_then_test(name, tmp_path):
    root = copy_fixture(name, tmp_path)
    args = [
        *config_args(name, root, tmp_path),
        *TINY,
        "--trainer.default_root_dir",
        str(tmp_path / "runs"),
    ]
    fit = run_cli(["fit", *args])
    best = fit.trainer.checkpoint_callback.best_model_path
    assert best and fit.model.hparams.num_classes == fit.datamodule.num_classes
    assert fit.model.hparams.class_names == fit.datamodule.class_names
    test = run_cli(["test", *args, "--ckpt_path", "best"])
    assert test.trainer.ckpt_path == best
    assert 0.0 <= test.trainer.callback_metrics["test/mAP"].item() <= 100.0


def test_test_and_validate_refuse_images_prepared_otherwise_than_for_training(tmp_path):
    """Another image size or normalisation changes every score: refused, not reported as the
    model's mAP. The model's own normalisation (given to the model, not the data) counts too."""
    root = copy_fixture("folder", tmp_path)
    args = [*config_args("folder", root, tmp_path), *TINY]
    args += ["--trainer.default_root_dir", str(tmp_path / "runs")]
    own = ["--model.mean", "[0.2, 0.3, 0.4]", "--model.std", "[0.5, 0.6, 0.7]"]
    run_cli(["fit", *args, *own])
    tested = run_cli(["test", *args, *own, "--ckpt_path", "best"])
    assert 0 <= tested.trainer.callback_metrics["test/mAP"].item() <= 100  # the same: scored
    for subcommand in ("test", "validate"):
        with pytest.raises(ValueError, match=r"mean \[0.2, 0.3, 0.4\] \(the data's: \[0.485"):
            run_cli([subcommand, *args, "--ckpt_path", "best"])  # ImageNet's, the data's default
    with pytest.raises(ValueError, match=r"image_size 32 \(the data's: 48\).*image_size 32"):
        run_cli(["test", *args, *own, "--data.image_size", "48", "--ckpt_path", "best"])


def test_test_validate_predict_refuse_the_classes_in_another_order_or_other_classes(tmp_path):
    """The model's output columns are its classes in its order.

    Data with other classes, or the same ones in another order, is refused, not scored.
    """
    root = copy_fixture("folder", tmp_path)
    args = [
        *config_args("folder", root, tmp_path),
        *TINY,
        "--trainer.default_root_dir",
        str(tmp_path / "runs"),
    ]
    best = run_cli(
        ["fit", *args]
    ).trainer.checkpoint_callback.best_model_path  # cat, dog, potted plant, tv

    reordered = [*args, "--data.init_args.class_names", "[tv, potted plant, dog, cat]"]
    for subcommand in ("test", "validate", "predict"):
        with pytest.raises(ValueError, match="the same 4 classes in another order") as refusal:
            run_cli([subcommand, *reordered, "--ckpt_path", "best"])
        assert f"(checkpoint {best})" in str(refusal.value)
        assert "column 0: 'cat' in the checkpoint, 'tv' in the data" in str(refusal.value)
        assert "--data.init_args.class_names \"['cat', 'dog', 'potted plant', 'tv']\"" in str(
            refusal.value
        )

    renamed = copy_fixture("folder", tmp_path / "renamed")
    for name in ("classes.txt", "train.csv", "test.csv"):
        (renamed / name).write_text((renamed / name).read_text().replace("tv", "television"))
    with pytest.raises(
        ValueError, match=r"only in the checkpoint: \['tv'\]; only in the data: \['television'\]"
    ):
        run_cli(["test", *config_args("folder", renamed, tmp_path), *TINY, "--ckpt_path", best])

    # In Python: a loaded model given a datamodule with the classes in another order.
    model = SPMLModule.load_from_checkpoint(best, map_location="cpu")
    data = CSVDataModule(
        root=str(root), class_names=CLASSES[::-1], image_size=32, batch_size=4, num_workers=0
    )
    trainer = make_trainer(tmp_path)
    with pytest.raises(ValueError, match="the same 4 classes in another order"):
        trainer.test(model, datamodule=data)
