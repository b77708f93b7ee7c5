"""SPMLModule with each kind of backbone: a torchvision name, a timm name, a module of one's own.

Each kind trains, checkpoints, reloads and predicts; linear_init, channels_last,
compile, the fast profile and DDP work with each; preprocessing travels with a
timm backbone; a module is recorded in the checkpoint by the rule of
``backbones.backbone_config`` and reloads by it.
"""

from __future__ import annotations

import csv
import os
import socket
import warnings
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from spml_lightning import SPMLModule
from spml_lightning.backbones import SimpleConvNet
from spml_lightning.cli import main, run_cli
from spml_lightning.data import DemoDataModule
from spml_lightning.inference import evaluation_transform

from probes import REPO_ROOT, TINY_DEMO, demo_args, make_trainer

#: One small backbone of each kind, as SPMLModule arguments (a module is built fresh per call).
KINDS = {
    "torchvision": lambda: {"backbone": "resnet18"},
    "timm": lambda: {"backbone": "timm/test_convnext"},
    "module": lambda: {"backbone": SimpleConvNet([8, 16])},
}

#: The same, as spml flags (a module of one's own: by class_path).
KIND_FLAGS = {
    "torchvision": ["--model.backbone", "resnet18"],
    "timm": ["--model.backbone", "timm/test_convnext"],
    "module": [
        "--model.backbone",
        "spml_lightning.backbones.SimpleConvNet",
        "--model.backbone.init_args.widths",
        "[8, 16]",
    ],
}


def kind_model(kind: str, **kwargs) -> SPMLModule:
    """A from-scratch SPMLModule for the 14 demo classes with the backbone of ``kind``."""
    arguments = dict(num_classes=14, weights="none", lr=1e-3, lr_mult=1.0, **KINDS[kind]())
    arguments.update(kwargs)
    return SPMLModule(**arguments)


def direct_probabilities(model: SPMLModule, datamodule, row: int = 0) -> torch.Tensor:
    """The model's probabilities for one test image, through the datamodule's own transform."""
    model.eval()
    with torch.no_grad():
        return torch.sigmoid(model(datamodule.test_dataset[row]["image"][None]))[0]


# -- the "done when": a Sequential and timm/resnet18, 3 classes, without a datamodule -----


class ThreeClassImages(Dataset):
    """8 random 32 x 32 images, each with one observed positive among 3 classes."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand(8, 3, 32, 32, generator=generator)
        self.observed = torch.eye(3)[torch.arange(8) % 3]

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "observed": self.observed[i], "index": i}


def fitted_checkpoint(model: SPMLModule, path: Path) -> Path:
    """Train ``model`` (3 classes) for one step without a datamodule and save its checkpoint."""
    trainer = make_trainer(path.parent, max_steps=1, limit_val_batches=0)
    trainer.fit(model, train_dataloaders=DataLoader(ThreeClassImages(), batch_size=4))
    trainer.save_checkpoint(path)
    return path


def sequential_backbone() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU())


@pytest.mark.parametrize("kind", ["sequential", "timm/resnet18"])
def test_a_sequential_and_timm_resnet18_train_checkpoint_reload_and_predict(kind, tmp_path):
    torch.manual_seed(0)
    if kind == "sequential":
        model = SPMLModule(num_classes=3, backbone=sequential_backbone(), weights=None)
    else:
        model = SPMLModule(num_classes=3, backbone="timm/resnet18", weights="none")
    model.hparams.image_size = 32  # no datamodule to take it from
    before = [p.detach().clone() for p in model.backbone.parameters()]
    trainer = make_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(model, train_dataloaders=DataLoader(ThreeClassImages(), batch_size=4))
    assert trainer.global_step == 1
    assert any(
        not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters(), strict=True)
    )
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)

    if kind == "sequential":
        # nn.Sequential(*args): its layers cannot be recorded, so reloading names the fix ...
        with pytest.raises(ValueError, match=r"\*args could not be recorded.*backbone="):
            SPMLModule.load_from_checkpoint(path)
        # ... which works: the same architecture, the checkpoint's weights.
        loaded = SPMLModule.load_from_checkpoint(path, backbone=sequential_backbone())
    else:
        loaded = SPMLModule.load_from_checkpoint(path)
    images = [Image.new("RGB", (40, 30), (200, 30, 30)), torch.rand(3, 20, 20)]
    model.eval()
    probs = loaded.predict_images(images)
    assert probs.shape == (2, 3)
    torch.testing.assert_close(probs, model.predict_images(images))


# -- every kind -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_trains_checkpoints_reloads_and_predicts(kind, tmp_path, tiny_demo):
    model = kind_model(kind)
    trainer = make_trainer(tmp_path, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(model, tiny_demo)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    recorded = torch.load(path, weights_only=True)["hyper_parameters"]["backbone"]
    loaded = SPMLModule.load_from_checkpoint(path)  # no module pickled: weights_only loads it
    assert loaded.hparams.backbone == recorded == model.hparams.backbone
    assert type(loaded.backbone) is type(model.backbone)
    tiny_demo.setup("test")
    probs = loaded.predict_images([tiny_demo.test_dataset.image_paths[0]])
    torch.testing.assert_close(
        probs[0], direct_probabilities(model, tiny_demo), rtol=1e-4, atol=1e-5
    )
    (results,) = make_trainer(tmp_path).test(loaded, tiny_demo, verbose=False)
    assert 0 <= results["test/mAP"] <= 100


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_linear_init_freezes_every_kind_of_backbone(kind, tmp_path, tiny_demo):
    model = kind_model(kind, linear_init=1)
    model.hparams.schedule_epochs = 2
    backbone_before = [p.detach().clone() for p in model.backbone.parameters()]
    head_before = model.head.weight.detach().clone()
    trainer = make_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(model, tiny_demo)
    assert all(
        torch.equal(a, b) for a, b in zip(backbone_before, model.backbone.parameters(), strict=True)
    )
    assert not torch.equal(head_before, model.head.weight)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_channels_last_gives_the_same_logits_for_every_kind(kind):
    torch.manual_seed(0)
    a = kind_model(kind).eval()
    b = kind_model(kind, channels_last=True).eval()
    b.load_state_dict(a.state_dict())
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(a(images), b(images), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_compile_compiles_every_kind_in_place(kind):
    model = kind_model(kind, compile=True)
    keys = list(model.state_dict())
    model.setup("fit")
    assert model.backbone._compiled_call_impl is not None
    assert list(model.state_dict()) == keys  # checkpoints are the same as without it


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_fast_profile_trains_every_kind(kind, tmp_path, tiny_demo_root):
    cli = run_cli(
        [
            "fit",
            *demo_args(tmp_path, tiny_demo_root),
            "--config",
            str(REPO_ROOT / "configs" / "fast.yaml"),
            *KIND_FLAGS[kind],
            "--trainer.max_epochs",
            "1",
            "--data.init_args.batch_size",
            "16",
            "--data.init_args.num_workers",
            "0",
            "--data.init_args.persistent_workers",
            "false",
            "--trainer.benchmark",
            "false",
        ]
    )
    model = cli.model
    assert cli.trainer.precision == "bf16-mixed" and model.hparams.channels_last
    assert cli.trainer.global_step == 2 and torch.isfinite(cli.trainer.callback_metrics["val/mAP"])
    if kind == "module":  # the config as given is what the checkpoint records
        assert model.hparams.backbone == {
            "class_path": "spml_lightning.backbones.SimpleConvNet",
            "init_args": {"widths": [8, 16]},
        }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fit_every_kind_on_rank(rank: int, world_size: int, port: int, root: str, out: str) -> None:
    # Lightning joins the processes this test forked (the environment names the ranks).
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world_size),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        NODE_RANK="0",
    )
    torch.set_num_threads(1)
    for kind in sorted(KINDS):
        data = DemoDataModule(root=root, image_size=32, batch_size=8, num_workers=0, **TINY_DEMO)
        model = kind_model(kind)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        trainer = make_trainer(
            Path(out),
            devices=world_size,
            strategy="ddp",
            limit_train_batches=2,
            limit_val_batches=1,
        )
        trainer.fit(model, data)
        torch.save(
            {"initial": initial, "final": model.state_dict()}, Path(out) / f"{kind}.{rank}.pt"
        )


def test_ddp_trains_every_kind(tmp_path, tiny_demo_root):
    mp.start_processes(
        _fit_every_kind_on_rank,
        args=(2, _free_port(), str(tiny_demo_root), str(tmp_path)),
        nprocs=2,
        start_method="fork",
    )
    for kind in sorted(KINDS):
        ranks = [torch.load(tmp_path / f"{kind}.{rank}.pt") for rank in (0, 1)]
        final = [r["final"] for r in ranks]
        # Each rank trained on its own shard, and DDP kept the weights the same.
        assert final[0].keys() == final[1].keys()
        assert all(torch.equal(final[0][k], final[1][k]) for k in final[0]), kind
        assert any(not torch.equal(ranks[0]["initial"][k], final[0][k]) for k in final[0]), kind


# -- preprocessing travels with the backbone -----------------------------------------------------


def test_a_timm_backbone_brings_its_normalisation_to_data_and_checkpoint(tmp_path, tiny_demo):
    model = kind_model("timm")  # test_convnext: mean = std = 0.5 in its pretrained_cfg
    trainer = make_trainer(tmp_path, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(model, tiny_demo)
    assert tiny_demo.mean == tiny_demo.std == (0.5, 0.5, 0.5)  # the data was normalised so
    path = tmp_path / "timm.ckpt"
    trainer.save_checkpoint(path)
    hparams = torch.load(path, weights_only=True)["hyper_parameters"]
    assert (hparams["image_size"], hparams["mean"], hparams["std"]) == (32, [0.5] * 3, [0.5] * 3)
    tiny_demo.setup("test")
    loaded = SPMLModule.load_from_checkpoint(path)
    probs = loaded.predict_images([tiny_demo.test_dataset.image_paths[0]])
    torch.testing.assert_close(
        probs[0], direct_probabilities(model, tiny_demo), rtol=1e-4, atol=1e-5
    )


def test_the_datamodule_mean_and_std_override_the_backbone_s(tmp_path, tiny_demo_root):
    data = DemoDataModule(
        root=str(tiny_demo_root),
        image_size=32,
        num_workers=0,
        mean=[0.4, 0.4, 0.4],
        std=[0.2, 0.2, 0.2],
        **TINY_DEMO,
    )
    model = kind_model("timm")
    make_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0).fit(model, data)
    assert (data.mean, data.std) == ((0.4,) * 3, (0.2,) * 3)
    assert (model.hparams.mean, model.hparams.std) == ([0.4] * 3, [0.2] * 3)


def test_the_model_s_mean_and_std_reach_a_datamodule_without_its_own(tmp_path, tiny_demo):
    model = kind_model("torchvision", mean=[0.3, 0.3, 0.3], std=[0.6, 0.6, 0.6])
    make_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0).fit(model, tiny_demo)
    assert (tiny_demo.mean, tiny_demo.std) == ((0.3,) * 3, (0.6,) * 3)


def test_without_a_preference_the_data_is_normalised_as_imagenet(tmp_path, tiny_demo):
    model = kind_model("module")
    make_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0).fit(model, tiny_demo)
    assert tiny_demo.mean == pytest.approx((0.485, 0.456, 0.406))
    assert model.hparams.std == pytest.approx([0.229, 0.224, 0.225])


def test_an_unfitted_timm_model_predicts_with_its_own_preprocessing():
    model = kind_model("timm").eval()
    image = Image.new("RGB", (50, 40), (10, 200, 90))
    transform = evaluation_transform(160, [0.5] * 3, [0.5] * 3)  # test_convnext's pretrained_cfg
    with torch.no_grad():
        expected = torch.sigmoid(model(transform(image)[None]))
    torch.testing.assert_close(model.predict_images([image]), expected)


def test_a_fixed_input_size_backbone_refuses_other_sizes(tmp_path, tiny_demo):
    with pytest.raises(ValueError, match="takes 160 x 160 images only"):
        SPMLModule(num_classes=14, backbone="timm/test_vit", weights="none", image_size=32)
    model = SPMLModule(num_classes=14, backbone="timm/test_vit", weights="none")
    with pytest.raises(ValueError, match="--data.init_args.image_size 160"):
        make_trainer(tmp_path, limit_train_batches=1).fit(model, tiny_demo)


# -- what the checkpoint records of a module, and reloading it -----------------------------------


class WidthNet(nn.Module):
    """Keeps its constructor argument as an attribute: recorded, reloads from a checkpoint alone."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.width = width
        self.conv = nn.Conv2d(3, width, 3, stride=2)

    def forward(self, images):
        return torch.relu(self.conv(images))


class OpaqueNet(WidthNet):
    """Its ``scale`` is not kept under its name: reloading needs the module passed again."""

    def __init__(self, width: int = 4, scale: float = 1.0) -> None:
        super().__init__(width)
        self.factor = scale


def test_a_module_is_recorded_not_pickled_and_reloads_alone(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Lightning warns about a module hyper-parameter
        model = SPMLModule(num_classes=3, backbone=WidthNet(6), weights="none", image_size=32)
    assert model.hparams.backbone == {
        "class_path": "test_module_backbone_kinds.WidthNet",
        "init_args": {"width": 6},
    }
    path = fitted_checkpoint(model, tmp_path / "width.ckpt")
    loaded = SPMLModule.load_from_checkpoint(path)
    assert isinstance(loaded.backbone, WidthNet) and loaded.backbone.width == 6
    image = Image.new("RGB", (32, 32), (1, 2, 3))
    torch.testing.assert_close(loaded.predict_images([image]), model.eval().predict_images([image]))


def test_a_module_with_unrecorded_arguments_reloads_when_passed_again(tmp_path):
    model = SPMLModule(
        num_classes=3, backbone=OpaqueNet(5, scale=2.0), weights="none", image_size=32
    )
    assert model.hparams.backbone["unrecorded"] == ["scale"]
    path = fitted_checkpoint(model, tmp_path / "opaque.ckpt")
    with pytest.raises(ValueError) as err:
        SPMLModule.load_from_checkpoint(path)
    message = str(err.value)
    assert "arguments scale could not be recorded" in message
    assert (
        "load_from_checkpoint(path, backbone=test_module_backbone_kinds.OpaqueNet(...))" in message
    )
    loaded = SPMLModule.load_from_checkpoint(path, backbone=OpaqueNet(5, scale=2.0))
    torch.testing.assert_close(loaded.backbone.conv.weight, model.backbone.conv.weight)


def test_a_class_that_cannot_be_imported_is_named(tmp_path):
    class LocalNet(WidthNet):  # defined in a function: no import path leads to it
        pass

    model = SPMLModule(num_classes=3, backbone=LocalNet(3), weights="none")
    path = fitted_checkpoint(model, tmp_path / "local.ckpt")
    with pytest.raises(ValueError, match="Cannot import the backbone class.*importable"):
        SPMLModule.load_from_checkpoint(path)


def test_a_pretrained_run_reloads_without_its_initial_weights(tmp_path, monkeypatch):
    import timm

    create_model = timm.create_model
    downloads = []

    def hub(name, pretrained=False, **kwargs):  # stands in for the hub while "online"
        downloads.append(name)
        return create_model(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", hub)
    model = SPMLModule(num_classes=3, backbone="timm/test_convnext", weights="pretrained")
    assert downloads == ["test_convnext"]
    model.hparams.image_size = 32
    path = fitted_checkpoint(model, tmp_path / "pretrained.ckpt")

    def offline(name, pretrained=False, **kwargs):
        assert not pretrained, "load_from_checkpoint downloaded the initial weights"
        return create_model(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    loaded = SPMLModule.load_from_checkpoint(path)
    assert loaded.hparams.weights == "pretrained"  # recorded as given
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())


# -- from the command line ------------------------------------------------------------------------


def test_a_module_from_a_config_file_fits_tests_and_reloads(tmp_path, tiny_demo_root, capsys):
    config = tmp_path / "my_backbone.yaml"
    config.write_text(
        "model:\n"
        "  backbone:\n"
        "    class_path: spml_lightning.backbones.SimpleConvNet\n"
        "    init_args:\n"
        "      widths: [8, 12]\n"
    )
    args = [*demo_args(tmp_path, tiny_demo_root), "--config", str(config)]
    assert main(["fit", *args, "--print_config"]) == 0
    printed = capsys.readouterr().out
    assert "class_path: spml_lightning.backbones.SimpleConvNet" in printed and "- 12" in printed
    fit = run_cli(["fit", *args])
    best = fit.trainer.checkpoint_callback.best_model_path
    loaded = SPMLModule.load_from_checkpoint(best)
    assert isinstance(loaded.backbone, SimpleConvNet) and loaded.backbone.widths == [8, 12]
    assert loaded.hparams.backbone == fit.model.hparams.backbone
    test = run_cli(["test", *args, "--ckpt_path", "best"])
    assert 0 <= test.trainer.callback_metrics["test/mAP"].item() <= 100


def test_a_config_is_recorded_exactly_even_where_attributes_would_not_tell(
    tmp_path, tiny_demo_root
):
    # OpaqueNet does not keep `scale` under its name: from a config it is recorded all the same,
    # and a model rebuilt from the checkpoint keeps that exact record.
    config = tmp_path / "opaque.yaml"
    config.write_text(
        "model:\n"
        "  backbone:\n"
        "    class_path: test_module_backbone_kinds.OpaqueNet\n"
        "    init_args: {width: 5, scale: 2.0}\n"
    )
    fit = run_cli(["fit", *demo_args(tmp_path, tiny_demo_root), "--config", str(config)])
    exact = {
        "class_path": "test_module_backbone_kinds.OpaqueNet",
        "init_args": {"width": 5, "scale": 2.0},
    }
    assert fit.model.hparams.backbone == exact
    loaded = SPMLModule.load_from_checkpoint(fit.trainer.checkpoint_callback.best_model_path)
    assert loaded.backbone.factor == 2.0 and loaded.hparams.backbone == exact


def test_spml_fits_a_timm_backbone_from_the_shell_flags(tmp_path, tiny_demo_root):
    # The command, shrunk only in size: exit status 0.
    flags = ["--model.backbone", "timm/convnext_atto", "--model.weights", "none"]
    assert main(["fit", *demo_args(tmp_path, tiny_demo_root), *flags]) == 0


def test_test_and_predict_with_a_checkpoint_skip_the_initial_weights(tmp_path, tiny_demo_root):
    weights = tmp_path / "start.pth"
    torch.save(SimpleConvNet([8, 16]).state_dict(), weights)
    args = [*demo_args(tmp_path, tiny_demo_root), *KIND_FLAGS["module"]]
    run_cli(["fit", *args, "--model.weights", str(weights)])
    weights.unlink()  # e.g. another machine: the checkpoint's weights are all that is needed
    test = run_cli(["test", *args, "--model.weights", str(weights), "--ckpt_path", "best"])
    assert 0 <= test.trainer.callback_metrics["test/mAP"].item() <= 100
    with pytest.raises(FileNotFoundError, match="start.pth does not exist"):
        run_cli(["fit", *args, "--model.weights", str(weights)])  # a new run does need them


@pytest.mark.parametrize("kind", ["timm", "module"])
def test_spml_predict_and_the_report_work_with_every_kind(kind, tmp_path, tiny_demo_root):
    from spml_lightning.analysis.report import main as report

    args = [*demo_args(tmp_path, tiny_demo_root), *KIND_FLAGS[kind], "--model.weights", "none"]
    fit = run_cli(["fit", *args])
    best = Path(fit.trainer.checkpoint_callback.best_model_path)
    images = sorted((tiny_demo_root / "images" / "test").iterdir())[:3]
    out = tmp_path / "labels.csv"
    predict = [
        "predict",
        *args,
        "--ckpt_path", str(best),
        "--data", "spml_lightning.data.UnlabelledImageDataModule",
        "--data.init_args.root", str(images[0].parent),
        "--prediction.output_path", str(out),
    ]  # fmt: skip
    run_cli(predict)
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    loaded = SPMLModule.load_from_checkpoint(best)
    assert len(rows) == TINY_DEMO["num_test"]
    by_image = {row["image"]: row for row in rows}
    expected = loaded.predict_images([str(p) for p in images])
    for path, probabilities in zip(images, expected, strict=True):
        got = torch.tensor([float(by_image[str(path)][name]) for name in loaded.class_names])
        torch.testing.assert_close(got, probabilities, atol=1e-5, rtol=0)

    report_dir = report([*args, "--ckpt_path", str(best), "--output_dir", str(tmp_path / "r")])
    with (report_dir / "per_class.csv").open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 14


def test_a_checkpoint_given_another_backbone_names_both(tmp_path, tiny_demo_root, capsys):
    args = [*demo_args(tmp_path, tiny_demo_root), "--model.weights", "none"]
    fit = run_cli(["fit", *args, *KIND_FLAGS["module"]])
    best = fit.trainer.checkpoint_callback.best_model_path
    # The backbone config forgotten: a config's resnet18 against the checkpoint's SimpleConvNet.
    # (An explicit path would give the model the checkpoint's arguments: LightningCLI's way.)
    capsys.readouterr()
    assert main(["test", *args, "--model.backbone", "resnet18", "--ckpt_path", "best"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        "was trained with another backbone than this run builds: "
        "spml_lightning.backbones.SimpleConvNet in the checkpoint, 'resnet18' now" in err
    )
    # Other arguments of the same class are another network too; so in the Python API.
    with pytest.raises(ValueError, match=r"widths \[8, 16\] -> \[8, 32\] \(checkpoint -> now\)"):
        run_cli(["validate", *args, *KIND_FLAGS["module"][:3], "[8, 32]", "--ckpt_path", "last"])
    with pytest.raises(ValueError, match="'resnet18' now"):
        SPMLModule.load_from_checkpoint(best, backbone="resnet18")
    # The checkpoint's backbone, given as a module (recorded from its attributes), loads.
    assert SPMLModule.load_from_checkpoint(best, backbone=SimpleConvNet([8, 16])) is not None


def test_a_module_that_takes_no_images_is_refused_before_the_first_step(tmp_path, tiny_demo_root):
    # torch.nn.Linear has out_features, so it builds; the data's images are checked at setup.
    args = [
        *demo_args(tmp_path, tiny_demo_root), "--model.backbone", "torch.nn.Linear",
        "--model.backbone.init_args.in_features", "10", "--model.backbone.init_args.out_features",
        "8", "--model.weights", "none",
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"The backbone torch.nn.Linear cannot take the data's "
                       r"images: a forward pass of a \(2, 3, 32, 32\) batch failed"):  # fmt: skip
        run_cli(["fit", *args])
    # A module whose size attribute says otherwise than what it returns is named by the same check.
    from spml_lightning.backbones import check_backbone_output

    model = SPMLModule(num_classes=3, backbone=Mislabelled(), weights="none")
    with pytest.raises(ValueError, match="returned 16 features per image, but its feature size"):
        check_backbone_output(model.backbone, 32, model.head.in_features, model.backbone)


class Mislabelled(SimpleConvNet):
    """Returns 16 features but says 4."""

    def __init__(self) -> None:
        super().__init__([8, 16])
        self.num_features = 4


def test_a_misspelt_backbone_init_arg_flag_is_named(tmp_path, tiny_demo_root, capsys):
    args = [
        *demo_args(tmp_path, tiny_demo_root), "--model.backbone",
        "spml_lightning.backbones.SimpleConvNet", "--model.backbone.init_args.widht", "[8]",
    ]  # fmt: skip
    assert main(["fit", *args]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "one of ['widht'] is not an argument of that class: check the spelling" in line, line
