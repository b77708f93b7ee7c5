"""spml predict on a folder / list of new images, the writer, and the image datamodule."""

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from spml_lightning import SPMLModule
from spml_lightning.cli import main, run_cli
from spml_lightning.data import UnlabelledImageDataModule
from spml_lightning.inference import predicted_labels
from spml_lightning.training import PredictionWriter

from conftest import REPO_ROOT

IMAGES_CLASS = "spml_lightning.data.UnlabelledImageDataModule"


@pytest.fixture
def photos(tiny_demo_root, tmp_path):
    """Five demo test images copied into a user's folder (one in a subfolder), plus a stray file."""
    sources = sorted((tiny_demo_root / "images" / "test").iterdir())[:5]
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    for i, source in enumerate(sources):
        suffix = source.suffix.upper() if i == 1 else source.suffix  # extensions match in any case
        shutil.copy(source, folder / ("more" if i == 4 else "") / f"img{i}{suffix}")
    (folder / "notes.txt").write_text("not an image")
    return folder


def predict_args(tiny_run, tmp_path, source, *extra) -> list[str]:
    return [
        "predict",
        "--config",
        str(REPO_ROOT / "configs" / "demo.yaml"),
        "--trainer.default_root_dir",
        str(tmp_path / "runs"),
        "--trainer.enable_progress_bar",
        "false",
        "--ckpt_path",
        str(tiny_run["best"]),
        "--data",
        IMAGES_CLASS,
        "--data.init_args.root",
        str(source),
        *extra,
    ]


def test_spml_predict_writes_csv(tiny_run, photos, tmp_path):
    out = tmp_path / "labels.csv"
    # demo.yaml's DemoDataModule has image_size 64; the checkpoint's 32 must win, and say so.
    with pytest.warns(UserWarning, match="image_size=64 replaced by the checkpoint's 32"):
        run_cli(
            predict_args(
                tiny_run,
                tmp_path,
                photos,
                "--prediction.output_path",
                str(out),
                "--prediction.top_k",
                "2",
            )
        )
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    model = SPMLModule.load_from_checkpoint(tiny_run["best"], map_location="cpu")
    names = model.class_names
    assert list(rows[0]) == ["image", "labels", *names]
    images = [row["image"] for row in rows]
    assert len(images) == 5 and images == sorted(images) and images[-1].endswith("more/img4.png")
    expected = model.predict_images(images)
    for row, probs in zip(rows, expected, strict=True):
        got = torch.tensor([float(row[name]) for name in names])
        torch.testing.assert_close(got, probs, atol=1e-5, rtol=0)
        assert ((got >= 0) & (got <= 1)).all()
        top2 = [names[i] for i in torch.argsort(probs, descending=True)[:2]]
        assert row["labels"].split(";") == top2


def test_spml_predict_json_from_a_list_with_threshold(tiny_run, photos, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# my images\nphotos/img0.png\n\nphotos/more/img4.png\n")
    out = tmp_path / "labels.json"
    args = predict_args(
        tiny_run,
        tmp_path,
        listing,
        "--prediction.output_path",
        str(out),
        "--prediction.threshold",
        "0.3",
    )
    run_cli(args)
    records = json.loads(out.read_text())
    assert [r["image"] for r in records] == [
        str(tmp_path / "photos/img0.png"),
        str(tmp_path / "photos/more/img4.png"),
    ]
    for record in records:
        chosen = {c for c, p in record["probabilities"].items() if p >= 0.3}
        assert set(record["labels"]) == chosen
    # The file exists now: a second run refuses to replace it, before predicting anything.
    with pytest.raises(FileExistsError, match="overwrite"):
        run_cli(args)


def test_default_output_lands_in_the_run_folder(tiny_run, photos, tmp_path):
    cli = run_cli(predict_args(tiny_run, tmp_path, photos))
    path = next(cb for cb in cli.trainer.callbacks if isinstance(cb, PredictionWriter)).path
    assert path.name == "predictions.csv" and path.parent == Path(cli.trainer.log_dir)
    assert path.is_file()


def test_unreadable_image_is_named_and_can_be_skipped(tiny_run, photos, tmp_path, capsys):
    broken = photos / "broken.png"
    broken.write_bytes((photos / "img0.png").read_bytes()[:60])  # a truncated copy
    out = tmp_path / "labels.csv"
    args = predict_args(tiny_run, tmp_path, photos, "--prediction.output_path", str(out))
    # By default the run stops, before writing anything, naming the file and how to skip it --
    # in one line, although the error comes from a loader worker (demo.yaml: num_workers 2).
    assert main(args) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"spml predict: error: Cannot read image {broken} (")
    assert error.endswith(
        "Or pass skip_unreadable=True (spml: --data.init_args.skip_unreadable true) to predict the "
        "other images (the unreadable ones are left out of the output)."
    )
    assert not out.exists()
    # With the flag the others are predicted; the warning names the one left out.
    warning = (
        rf"(?s)skip_unreadable: dropped 1 of 6 images of {re.escape(str(photos))} "
        rf".*{re.escape(str(broken))} \("
    )
    with pytest.warns(UserWarning, match=warning):
        run_cli([*args, "--data.init_args.skip_unreadable", "true"])
    with out.open(newline="") as handle:
        images = [row["image"] for row in csv.DictReader(handle)]
    assert len(images) == 5 and str(broken) not in images


def test_predicted_labels():
    probs = torch.tensor([[0.9, 0.2, 0.6], [0.1, 0.3, 0.2]])
    names = ["a", "b", "c"]
    assert predicted_labels(probs, names) == [["a", "c"], []]
    assert predicted_labels(probs, names, threshold=0.2) == [["a", "c", "b"], ["b", "c"]]
    assert predicted_labels(probs, names, top_k=1) == [["a"], ["b"]]
    with pytest.raises(ValueError, match="top_k"):
        predicted_labels(probs, names, top_k=4)
    with pytest.raises(ValueError, match="classes"):
        predicted_labels(probs, ["a", "b"])


def test_writer_rejects_bad_settings():
    with pytest.raises(ValueError, match=".csv or .json"):
        PredictionWriter(output_path="out.txt")
    with pytest.raises(ValueError, match="threshold"):
        PredictionWriter(threshold=1.5)


def test_image_folder_datamodule(tiny_run, photos, tmp_path):
    model = SPMLModule.load_from_checkpoint(tiny_run["best"], map_location="cpu")
    data = UnlabelledImageDataModule.for_model(model, str(photos), recursive=False)
    assert (
        data.class_names
        == SPMLModule.load_from_checkpoint(tiny_run["best"], map_location="cpu").class_names
    )
    assert data.image_size == 32
    data.setup("predict")
    assert len(data.test_dataset) == 4  # the subfolder is not read
    batch = next(iter(data.predict_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32)
    with pytest.raises(RuntimeError, match="prediction only"):
        data.setup("fit")
    with pytest.raises(ValueError, match="class_names"):
        UnlabelledImageDataModule(root=str(photos))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="No image"):
        UnlabelledImageDataModule.for_model(model, str(empty)).setup("predict")
    listing = tmp_path / "bad.txt"
    listing.write_text("photos/img0.png\nphotos/missing.png\n")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        UnlabelledImageDataModule.for_model(model, str(listing)).setup("predict")


def test_an_output_another_process_wrote_meanwhile_is_kept(tiny_run, photos, tmp_path, capsys):
    from probes import write_callbacks_config

    out = tmp_path / "labels.csv"
    meanwhile = write_callbacks_config(tmp_path / "meanwhile.yaml", [
        ("probes.WriteFileOnPredictStart", {"path": str(out), "text": "theirs"}),
    ])  # fmt: skip
    args = predict_args(tiny_run, tmp_path, photos, "--prediction.output_path", str(out))
    assert main([*args, "--config", str(meanwhile)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "was written by another process while this one predicted; it is kept" in err, err
    assert out.read_text() == "theirs"
    assert sorted(p.name for p in out.parent.glob(".labels.csv.tmp-*")) == []
    # With overwrite, replaced -- atomically.
    assert main([*args, "--config", str(meanwhile), "--prediction.overwrite", "true"]) == 0
    assert out.read_text().startswith("image,labels,")
