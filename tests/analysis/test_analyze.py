"""The analysis API on a checkpoint of a tiny demo run."""

import json
import math

import numpy as np
import pytest
import torch

from spml_lightning.analysis import analyze, load_checkpoint, load_run, predict_split
from spml_lightning.metrics import average_precision_per_class

from conftest import REPO_ROOT


def saved_epoch(ckpt_path) -> int:
    """The 0-based epoch Lightning recorded in a checkpoint."""
    return torch.load(ckpt_path, map_location="cpu", weights_only=True)["epoch"]


@pytest.fixture(scope="module")
def run(tiny_run):
    # tiny_run["args"] starts with --config <demo.yaml>; the rest are the run's overrides.
    return load_run(REPO_ROOT / "configs" / "demo.yaml", "best", tiny_run["args"][2:])


@pytest.fixture(scope="module")
def result(run):
    return analyze(run, progress=False)


def test_load_run_finds_the_best_checkpoint(run, tiny_run):
    assert run.ckpt_path == tiny_run["best"]
    assert run.model.class_names == run.datamodule.class_names
    assert not run.model.training


def test_load_run_refuses_data_whose_classes_are_in_another_order(tiny_run, tiny_demo_root):
    # The demo set in its formatted layout, with the class names listed in reverse: every AP the
    # analysis computes would compare a model column with another class's labels.
    names = (tiny_demo_root / "class_names.txt").read_text().split()
    overrides = [
        *tiny_run["args"][2:],
        "--data", "spml_lightning.data.FormattedDataModule",
        "--data.init_args.root", str(tiny_demo_root),
        "--data.init_args.image_root", str(tiny_demo_root / "images"),
        "--data.init_args.class_names", json.dumps(names[::-1]),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="another order"):
        load_run(REPO_ROOT / "configs" / "demo.yaml", "best", overrides)
    # The same classes in the checkpoint's order are accepted.
    overrides[-1] = json.dumps(names)
    loaded = load_run(REPO_ROOT / "configs" / "demo.yaml", "best", overrides)
    assert loaded.model.class_names == names


def test_loaded_loss_is_at_the_checkpoint_epoch(tiny_run):
    model = load_checkpoint(tiny_run["final"])
    assert model.loss_schedule == {"epoch": 1, "max_epochs": 2, "linear_init": 0}
    # The reference GR code's schedule, e = 2, T = 2:
    # w = 0 + 2 * (2 - 1) / 2, mu = 0.5 + 0.3 * 2 / 2.
    assert model.loss.current.w == pytest.approx(1.0) and model.loss.current.mu == pytest.approx(
        0.8
    )
    best = load_checkpoint(tiny_run["best"])
    e = saved_epoch(tiny_run["best"]) + 1
    assert best.loss_schedule["epoch"] == e - 1
    # The reference GR code's schedule: w = 2 * max(e - 1, 0) / 2, sigma = 2 + (0.5 - 2) * e / 2.
    assert best.loss.current.w == pytest.approx(2 * (e - 1) / 2)
    assert best.loss.current.sigma == pytest.approx(2 - 1.5 * e / 2)
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        load_checkpoint(tiny_run["runs"] / "missing.ckpt")


def test_per_class_table(result, run, tiny_run):
    table = result.table
    train = run.datamodule.train_dataset
    rows = table.rows()
    assert [r["class"] for r in rows] == run.model.class_names
    assert set(rows[0]) == {"class", "AP", "positives", "missing_positives", "images"}
    assert all(0.0 <= r["AP"] <= 100.0 for r in rows)
    # Counts recomputed from the training arrays, entry by entry.
    for c, row in enumerate(rows):
        positives = sum(int(train.targets[i, c]) for i in range(len(train)))
        missing = sum(
            int(train.targets[i, c] == 1 and train.observed[i, c] == 0) for i in range(len(train))
        )
        assert (row["positives"], row["missing_positives"], row["images"]) == (
            positives,
            missing,
            len(train),
        )
    # One observed positive per image with a positive: missing = positives - observed.
    assert sum(r["positives"] - r["missing_positives"] for r in rows) == int(
        (train.observed == 1).sum()
    )
    assert table.mean_average_precision == pytest.approx(tiny_run["test_map"], abs=1e-4)
    markdown = table.to_markdown()
    assert markdown.count("\n") == len(rows) + 2 and "missing positives" in markdown


def test_split_predictions_match_predict_images(result, run):
    train = result.train
    assert (
        train.probabilities.shape == train.targets.shape == (len(run.datamodule.train_dataset), 14)
    )
    some = [0, 5, len(train.image_paths) - 1]
    expected = run.model.predict_images([train.image_paths[i] for i in some])
    np.testing.assert_allclose(train.probabilities[some], expected.numpy(), atol=1e-5)


def test_diagnostics_are_sane(result, tiny_run):
    train = result.train
    unknown = train.observed == 0
    curve = result.false_negative_rate
    assert len(curve.rate) == 100
    assert curve.false_negatives.sum() == int((unknown & (train.targets == 1)).sum())
    assert curve.true_negatives.sum() == int((unknown & (train.targets == 0)).sum())
    filled = ~np.isnan(curve.rate)
    assert filled.any() and ((curve.rate[filled] >= 0) & (curve.rate[filled] <= 1)).all()
    for label, values in result.pseudo_labels.items():
        assert ((values > 0) & (values < 1)).all(), label
    assert any(label.startswith("k̂") for label in result.pseudo_labels)
    assert result.distinguishing.wasserstein >= 0 and math.isfinite(
        result.distinguishing.wasserstein
    )
    assert result.distinguishing.positive.size == curve.false_negatives.sum()
    assert result.schedule == f"epoch {saved_epoch(tiny_run['best']) + 1} of 2"
    assert all(np.isfinite(g).all() for g in result.gradients.values())
    assert list(result.gradients)[0].startswith("checkpoint: GRLoss")


def test_figures_render_to_png(result, tmp_path):
    figures = result.figures()
    assert set(figures) == {"false_negative_rate", "distinguishing_ability", "loss_gradients"}
    for name, figure in figures.items():
        figure.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_per_class_table_csv(result, tmp_path):
    result.table.to_csv(tmp_path / "table.csv")
    lines = (tmp_path / "table.csv").read_text().splitlines()
    assert lines[0] == "class,AP,positives,missing_positives,images" and len(lines) == 15


def test_evaluating_another_split(run):
    val = predict_split(run.model, run.datamodule, "val", progress=False)
    ap = average_precision_per_class(
        torch.from_numpy(val.probabilities), torch.from_numpy(val.targets)
    )
    assert val.probabilities.shape[0] == len(run.datamodule.val_dataset) and ap.shape == (14,)
    with pytest.raises(ValueError, match="split"):
        predict_split(run.model, run.datamodule, "holdout")


def test_the_analysis_reads_images_with_the_checkpoint_s_preprocessing(tmp_path, tiny_demo_root):
    # The model asks for its own normalisation and the config's datamodule gives none: the fit
    # normalised with the model's. The analysis must too, not with the datamodule's default.
    from spml_lightning.cli import run_cli

    from probes import demo_args

    args = demo_args(tmp_path, tiny_demo_root)
    normalisation = ["--model.mean", "[0.2, 0.3, 0.4]", "--model.std", "[0.5, 0.6, 0.7]"]
    fit = run_cli(["fit", *args, *normalisation])
    assert fit.datamodule.mean == (0.2, 0.3, 0.4)  # what training saw
    loaded = load_run(args[1], "best", args[2:])
    predictions = predict_split(loaded.model, loaded.datamodule, "test", progress=False)
    expected = loaded.model.predict_images(predictions.image_paths[:4]).numpy()
    np.testing.assert_allclose(predictions.probabilities[:4], expected, atol=1e-5)


def test_load_run_refuses_data_with_other_training_rows(tiny_run):
    # Another split: other val rows, and training images the model never saw as "train".
    overrides = [*tiny_run["args"][2:], "--data.init_args.split_seed", "7"]
    with pytest.raises(ValueError, match="train and val rows of DemoDataModule differ from those"):
        load_run(REPO_ROOT / "configs" / "demo.yaml", "best", overrides)


def test_analyze_refuses_a_run_built_by_hand_with_other_training_rows(run):
    from dataclasses import replace

    from spml_lightning.data import DemoDataModule

    data = run.datamodule
    other = DemoDataModule(
        root=str(data.root), image_size=data.image_size, batch_size=data.batch_size,
        num_workers=0, num_train=data.num_train, num_test=data.num_test,
        render_size=data.render_size, observe_seed=7,
    )  # fmt: skip
    with pytest.raises(ValueError, match="val rows of DemoDataModule differ .* same number"):
        analyze(replace(run, datamodule=other), progress=False)
