"""`spml suggest`: the training images' unknown labels ranked by a trained model, in a CSV.

On the demo (full labels known: precision@N is printed), on a user's CSV data
(CSVDataModule: printed when its labels hold more than the observed
positives), with bad options (exit 2, one line), and across DDP ranks.
"""

import csv
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from spml_lightning import SPMLModule
from spml_lightning.cli import main, run_cli
from spml_lightning.training import PredictionWriter
from spml_lightning.training.suggestion_writer import SuggestionWriter
from spml_lightning.training.suggestions import SuggestOptions

from conftest import REPO_ROOT
from ddp_harness import run_ranks


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["image", "class", "probability", "rank"]
        return list(reader)


def suggest_args(tiny_run, tmp_path, *extra) -> list[str]:
    return [
        "suggest",
        *tiny_run["args"],
        "--trainer.default_root_dir",
        str(tmp_path / "runs"),
        "--ckpt_path",
        str(tiny_run["best"]),
        *extra,
    ]


@pytest.fixture(scope="module")
def demo_scores(tiny_run):
    """The tiny run's training set and its best model's probabilities, computed independently."""
    fit = run_cli(tiny_run["args"], run=False)  # the same datamodule, not run
    fit.datamodule.setup("fit")
    train = fit.datamodule.train_dataset
    model = SPMLModule.load_from_checkpoint(tiny_run["best"], map_location="cpu")
    probabilities = model.predict_images(train.image_paths).numpy()
    return {
        "paths": train.image_paths,
        "observed": train.observed,
        "targets": train.targets,
        "probabilities": probabilities,
        "classes": model.class_names,
    }


def check_ranking(rows: list[dict], scores: dict) -> None:
    """Rows are unknown labels, with the model's probabilities, the most probable ones, in order."""
    row_of = {path: i for i, path in enumerate(scores["paths"])}
    chosen = set()
    for rank, row in enumerate(rows, start=1):
        i, c = row_of[row["image"]], scores["classes"].index(row["class"])
        assert scores["observed"][i, c] == 0, row  # neither an observed positive nor a negative
        assert float(row["probability"]) == pytest.approx(scores["probabilities"][i, c], abs=2e-5)
        assert int(row["rank"]) == rank
        chosen.add((i, c))
    probabilities = [float(row["probability"]) for row in rows]
    assert probabilities == sorted(probabilities, reverse=True)
    left_out = [
        p
        for (i, c), p in np.ndenumerate(scores["probabilities"])
        if scores["observed"][i, c] == 0 and (i, c) not in chosen
    ]
    assert max(left_out) <= min(probabilities) + 2e-5


def test_suggest_writes_the_top_n_and_prints_precision_against_a_random_ranking(
    tiny_run, demo_scores, tmp_path, info_lines
):
    out = tmp_path / "suggestions.csv"
    run_cli(
        suggest_args(
            tiny_run, tmp_path, "--suggestions.top_n", "15", "--suggestions.output", str(out)
        )
    )
    rows = read_rows(out)
    assert len(rows) == 15
    check_ranking(rows, demo_scores)

    observed, targets = demo_scores["observed"], demo_scores["targets"]
    row_of = {path: i for i, path in enumerate(demo_scores["paths"])}
    hits = sum(targets[row_of[r["image"]], demo_scores["classes"].index(r["class"])] for r in rows)
    random = targets[observed == 0].mean()  # the missing positives among all unknown labels
    assert 0 < random < 1
    ratio = hits / 15 / random
    unknown = int((observed == 0).sum())
    assert (
        f"spml suggest: the 15 most probable of {unknown} unknown labels of "
        f"{len(observed)} training images, written to {out}"
    ) in info_lines
    precision = [line for line in info_lines if line.startswith("precision@")]
    assert precision == [
        f"precision@15 {hits / 15:.3f} (random ranking {random:.3f}, {ratio:.1f}x): {hits} of "
        "the 15 suggestions are positives of the training images' full labels."
    ]


def test_threshold_and_the_default_output_in_the_run_folder(tiny_run, demo_scores, tmp_path):
    unknown = np.sort(demo_scores["probabilities"][demo_scores["observed"] == 0])[::-1]
    threshold = float(unknown[9] + unknown[10]) / 2  # between the 10th and 11th most probable
    cli = run_cli(suggest_args(tiny_run, tmp_path, "--suggestions.threshold", str(threshold)))
    folder = Path(cli.trainer.log_dir)
    rows = read_rows(folder / "suggestions.csv")
    assert len(rows) == 10
    check_ranking(rows, demo_scores)
    # The PredictionWriter stayed out of it, and is back for the trainer's other work.
    assert not (folder / "predictions.csv").exists()
    assert any(isinstance(c, PredictionWriter) for c in cli.trainer.callbacks)
    assert not any(isinstance(c, SuggestionWriter) for c in cli.trainer.callbacks)


def test_an_existing_output_is_replaced_only_with_overwrite(tiny_run, tmp_path, capsys):
    out = tmp_path / "suggestions.csv"
    out.write_text("keep me")
    args = suggest_args(
        tiny_run, tmp_path, "--suggestions.output", str(out), "--suggestions.top_n", "3"
    )
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"spml suggest: error: {out} exists; pass --suggestions.output with a new file, or "
        "--suggestions.overwrite true to replace it."
    )
    assert out.read_text() == "keep me"
    assert main([*args, "--suggestions.overwrite", "true"]) == 0
    assert len(read_rows(out)) == 3


@pytest.mark.parametrize(
    "extra,message",
    [
        (
            ["--suggestions.top_n", "0"],
            "--suggestions.top_n 0: the number of suggestions must be at least 1",
        ),
        (
            ["--suggestions.threshold", "1.5"],
            "--suggestions.threshold 1.5: a probability strictly between 0 and 1 is expected",
        ),
        (
            ["--suggestions.output", "s.json"],
            "--suggestions.output s.json: the suggestions are a CSV file",
        ),
        (["--suggestions.top_n", "many"], "--suggestions.top_n: Expected a <class 'int'>"),
    ],
    ids=["top_n 0", "threshold 1.5", "not a csv", "top_n not a number"],
)
def test_bad_options_exit_2_with_one_line(tiny_run, tmp_path, capsys, extra, message):
    assert main(suggest_args(tiny_run, tmp_path, *extra)) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(f"spml suggest: error: {message}"), err
    assert "Traceback" not in err


def test_without_a_checkpoint_exit_2(tiny_run, tmp_path, capsys):
    args = ["suggest", *tiny_run["args"], "--trainer.default_root_dir", str(tmp_path / "runs")]
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "spml suggest: error: no --ckpt_path: the suggestions are a trained model's; pass "
        "--ckpt_path best (the newest run's best checkpoint), last, or a checkpoint file."
    )


def test_other_training_rows_than_the_checkpoint_s_are_refused(tiny_run, tmp_path, capsys):
    # Another observe_seed: other observed positives, so "unknown" is not the model's unknown.
    out = tmp_path / "s.csv"
    args = suggest_args(
        tiny_run, tmp_path, "--suggestions.output", str(out), "--data.init_args.observe_seed", "7"
    )
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "differ from those the checkpoint" in err and "observe_seed" in err, err
    assert not out.exists()
    # The refused run reserved a version_N folder before it was refused: none is left behind.
    assert not list((tmp_path / "runs").rglob("version_*")), list((tmp_path / "runs").rglob("*"))


# -- a user's own CSV data ---------------------------------------------------------------------

FOLDER_TINY = [
    "--model.backbone", "spml_lightning.backbones.SimpleConvNet",
    "--model.backbone.init_args.widths", "[8, 16]",
    "--model.weights", "none",
    "--data.image_size", "32",
    "--data.batch_size", "4",
    "--data.num_workers", "0",
    "--trainer.max_epochs", "1",
    "--trainer.accelerator", "cpu",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip


def test_suggest_on_a_folder_of_csv_data(tmp_path, info_lines):
    root = tmp_path / "folder"
    shutil.copytree(REPO_ROOT / "tests" / "data" / "folder", root)
    config = tmp_path / "folder.yaml"
    config.write_text(
        "data:\n  class_path: spml_lightning.data.CSVDataModule\n"
        f"  init_args:\n    root: {root}\n    class_names: classes.txt\n"
    )
    args = ["--config", str(config), *FOLDER_TINY, "--trainer.default_root_dir", str(tmp_path)]
    fit = run_cli(["fit", *args])
    train = fit.datamodule.train_dataset
    out = tmp_path / "suggestions.csv"
    suggest = ["suggest", *args, "--ckpt_path", "best", "--suggestions.top_n", "5"]
    run_cli([*suggest, "--suggestions.output", str(out)])
    rows = read_rows(out)
    # train.csv's labels hold positives beyond the observed ones (dog;tv observed dog): checked.
    assert len(rows) == 5 and {r["image"] for r in rows} <= set(train.image_paths)
    assert sum(line.startswith("precision@5 ") for line in info_lines) == 1

    # Single positives only -- the labels are the observed ones, the usual case of one's own
    # data: the full labels are not known, and no precision is made up.
    with (root / "train.csv").open(newline="") as handle:
        records = list(csv.DictReader(handle))
    single = root / "single.csv"
    single.write_text(
        "image,labels\n" + "".join(f"{r['image']},{r['observed']}\n" for r in records)
    )
    info_lines.clear()
    run_cli(
        [
            *suggest,
            "--data.train_csv",
            "single.csv",
            "--suggestions.output",
            str(tmp_path / "s.csv"),
        ]
    )
    assert len(read_rows(tmp_path / "s.csv")) == 5
    assert not any(line.startswith("precision@") for line in info_lines)
    assert (
        "No precision@N: the training labels hold no positive beyond the observed ones, so the "
        "full labels are not known here. The annotators' answers are the check."
    ) in info_lines


# -- DDP: rows gathered from every rank, the sampler's padding counted once ------------------------

PROBABILITIES = torch.tensor([[0.9, 0.2, 0.6], [0.7, 0.8, 0.1], [0.3, 0.6, 0.5]])
OBSERVED = torch.tensor([[1.0, 0, 0], [0, 1, -1], [0, 0, 1]])
TARGETS = torch.tensor([[1.0, 0, 1], [1, 1, 0], [0, 0, 1]])
#: A DistributedSampler's shards of 3 images on 2 ranks: rank 1 repeats image 0 to pad.
SHARDS = {0: [0, 2], 1: [1, 0]}


def _suggest_on_rank(rank: int, world_size: int, folder: str) -> None:
    path = Path(folder) / f"rank{rank}.csv"
    writer = SuggestionWriter(SuggestOptions(top_n=4), path)
    trainer = SimpleNamespace(
        is_global_zero=rank == 0,
        predict_dataloaders=SimpleNamespace(
            dataset=SimpleNamespace(image_paths=["a.png", "b.png", "c.png"])
        ),
    )
    module = SimpleNamespace(
        device=torch.device("cpu"),
        class_names=["cat", "dog", "tv"],
        hparams=SimpleNamespace(num_classes=3),
    )
    writer.on_predict_epoch_start(trainer, module)
    for i in SHARDS[rank]:  # one image per batch
        batch = {"index": torch.tensor([i]), "observed": OBSERVED[[i]], "target": TARGETS[[i]]}
        writer.on_predict_batch_end(trainer, module, PROBABILITIES[[i]], batch, 0)
    writer.on_predict_epoch_end(trainer, module)
    if rank == 0:
        (Path(folder) / "precision.txt").write_text(str(writer.precision))


def test_ranks_gather_their_rows_and_rank_0_writes_them_once(tmp_path):
    run_ranks(_suggest_on_rank, tmp_path, str(tmp_path))
    assert not (tmp_path / "rank1.csv").exists()
    rows = [
        (r["image"], r["class"], r["probability"], r["rank"])
        for r in read_rows(tmp_path / "rank0.csv")
    ]
    # The 5 unknown labels once each (image 0 came from both ranks), the 4 most probable.
    assert rows == [
        ("b.png", "cat", "0.7", "1"),
        ("a.png", "tv", "0.6", "2"),
        ("c.png", "dog", "0.6", "3"),
        ("c.png", "cat", "0.3", "4"),
    ]
    # 2 of the 4 are missing positives; 2 of the 5 unknown labels are: a random ranking's 0.4.
    assert (tmp_path / "precision.txt").read_text() == (
        "precision@4 0.500 (random ranking 0.400, 1.2x)"
    )
