"""`spml export` on a trained checkpoint: the file, its metadata, its thresholds, its errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from spml_lightning import SPMLModule
from spml_lightning.cli import main, run_cli
from spml_lightning.deploy import ModelMetadata, Predictor, Preprocessing
from spml_lightning.deploy.onnx_export import ExportError
from spml_lightning.deploy.pt2_export import export_pt2, load_pt2
from spml_lightning.deploy.thresholds import f1_thresholds


def validation_thresholds(tiny_run) -> np.ndarray:
    """What the thresholds must be: computed here from the eager model on the validation split."""
    cli = run_cli(tiny_run["args"], run=False)
    datamodule = cli.datamodule
    datamodule.setup("fit")
    val = datamodule.val_dataset
    model = SPMLModule.load_from_checkpoint(tiny_run["best"], map_location="cpu")
    probabilities = model.predict_images(val.image_paths).numpy()
    return f1_thresholds(probabilities, val.targets)[0]


def test_export_writes_the_checkpoints_facts_and_validation_thresholds(
    tiny_run, tiny_demo_root, tmp_path
):
    out = tmp_path / "model.onnx"
    # The config says 48 px; the checkpoint was trained at 32: the file says 32.
    args = [*tiny_run["args"], "--data.init_args.image_size", "48"]
    runs = sorted((tiny_run["runs"] / "lightning_logs").iterdir())
    assert main(["export", *args, "--ckpt_path", "best", "--output", str(out)]) == 0
    predictor = Predictor(out)
    facts = predictor.metadata
    model = SPMLModule.load_from_checkpoint(tiny_run["best"], map_location="cpu")
    assert list(facts.class_names) == model.class_names and len(facts.class_names) == 14
    assert facts.preprocessing.image_size == 32
    assert facts.threshold_rule == "f1-on-validation"
    np.testing.assert_allclose(predictor.thresholds, validation_thresholds(tiny_run), atol=1e-6)
    # No run folder was created for the export.
    assert sorted((tiny_run["runs"] / "lightning_logs").iterdir()) == runs

    images = [str(p) for p in sorted((tiny_demo_root / "images" / "test").iterdir())[:5]]
    expected = model.predict_images(images).numpy()
    got = predictor.probabilities(images, batch_size=2)
    assert np.abs(got - expected).max() <= 1e-4
    for prediction, row in zip(predictor.predict(images), got, strict=True):
        cuts = zip(facts.class_names, row, facts.thresholds, strict=True)
        chosen = [name for name, p, threshold in cuts if p >= threshold]
        assert sorted(prediction.labels) == sorted(chosen)
        assert [prediction.scores[n] for n in prediction.labels] == sorted(
            (prediction.scores[n] for n in prediction.labels), reverse=True
        )


def test_a_global_threshold_the_legacy_exporter_and_the_default_output(tiny_run, tmp_path):
    checkpoint = tmp_path / "copy" / "best.ckpt"
    checkpoint.parent.mkdir()
    shutil.copy(tiny_run["best"], checkpoint)
    flags = ["--ckpt_path", str(checkpoint), "--threshold", "0.3", "--exporter", "legacy"]
    assert main(["export", *tiny_run["args"], *flags]) == 0
    predictor = Predictor(checkpoint.with_suffix(".onnx"))  # beside the checkpoint
    assert predictor.metadata.threshold_rule == "global"
    assert predictor.metadata.thresholds == (0.3,) * 14


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "no --ckpt_path: export writes a trained model"),
        (["--ckpt_path", "best", "--threshold", "1.5"], r"--threshold is a probability"),
        (["--ckpt_path", "best", "--format", "tflite"], "--format"),
    ],
)
def test_export_refuses_what_it_cannot_do(tiny_run, tmp_path, capsys, flags, message):
    out = tmp_path / "model.onnx"
    assert main(["export", *tiny_run["args"], *flags, "--output", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_datamodule_without_validation_split_needs_a_threshold(
    tiny_run, tiny_demo_root, tmp_path, capsys
):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(next((tiny_demo_root / "images" / "test").iterdir()), photos / "a.png")
    data = ["--data", "spml_lightning.data.UnlabelledImageDataModule"]
    data += ["--data.init_args.root", str(photos), "--data.init_args.image_size", "32"]
    data += ["--data.init_args.class_names", str([f"c{i}" for i in range(14)])]
    args = [*tiny_run["args"][:4], *data, "--ckpt_path", str(tiny_run["best"])]
    assert main(["export", *args, "--output", str(tmp_path / "m.onnx")]) == 2
    assert "--threshold 0.5" in capsys.readouterr().err


def test_pt2_format_writes_a_torch_export_archive_with_the_metadata(tiny_run, tmp_path):
    checkpoint = tmp_path / "best.ckpt"
    shutil.copy(tiny_run["best"], checkpoint)
    flags = ["--ckpt_path", str(checkpoint), "--format", "pt2", "--threshold", "0.4"]
    assert main(["export", *tiny_run["args"], *flags]) == 0
    module, facts = load_pt2(checkpoint.with_suffix(".pt2"))  # beside the checkpoint
    model = SPMLModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    assert list(facts.class_names) == model.class_names and facts.thresholds == (0.4,) * 14
    for batch in (1, 3):
        images = torch.rand(batch, 3, 32, 32)
        with torch.no_grad():
            expected = torch.sigmoid(model(images))
            torch.testing.assert_close(module(images), expected, atol=1e-5, rtol=0)


class DataDependent(torch.nn.Module):
    """A backbone whose control flow depends on the values: torch.export cannot capture it."""

    out_features = 3

    def forward(self, images):
        pooled = images.mean(dim=(2, 3))
        return pooled if pooled.sum() > 0 else -pooled


def test_a_backbone_torch_export_cannot_capture_is_refused_in_one_line(tmp_path):
    model = SPMLModule(num_classes=2, backbone=DataDependent(), weights="none", image_size=8)
    facts = ModelMetadata(("a", "b"), Preprocessing(8, (0, 0, 0), (1, 1, 1)), (0.5, 0.5), "global")
    with pytest.raises(ExportError) as caught:
        export_pt2(model, tmp_path / "model.pt2", facts, "backbone DataDependent")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(
        "Cannot export backbone DataDependent with torch.export: "
    )
    assert "Try --format onnx --exporter legacy" in message
    assert not (tmp_path / "model.pt2").exists()


def test_thresholds_are_chosen_on_the_checkpoints_own_validation_split(tiny_run, tmp_path, capsys):
    # Another split_seed: the validation images would include some the model was trained on.
    out = tmp_path / "model.onnx"
    args = [*tiny_run["args"], "--data.init_args.split_seed", "7", "--ckpt_path", "best"]
    assert main(["export", *args, "--output", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "differ from those the checkpoint" in err and "split_seed" in err, err
    assert "--threshold" in err and not out.exists()
    # One threshold for every class needs no validation split: the same data is fine then.
    assert main(["export", *args, "--threshold", "0.5", "--output", str(out)]) == 0
