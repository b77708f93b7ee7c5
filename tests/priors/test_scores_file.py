"""A user's scores file: read for the training images, or refused naming the mismatch."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from prior_files import tiny_demo, training_set, write_scores_csv

from spml_lightning.data.protocol import split_train_val
from spml_lightning.priors import PseudoLabelPolicy

RAW = PseudoLabelPolicy(kind="top_k", threshold=0.5, k=2, temperature=None)


def test_a_csv_in_another_column_order_gives_each_image_its_row(tmp_path, tiny_demo_root):
    datamodule, _ = training_set(tiny_demo_root)
    shuffled = list(reversed(datamodule.class_names))
    path, scores = write_scores_csv(tmp_path / "s.csv", tiny_demo_root, columns=shuffled)
    with_prior = tiny_demo(tiny_demo_root, prior=str(path), prior_policy=RAW)
    with_prior.setup("fit")
    dataset = with_prior.train_dataset
    expected = RAW.pseudo_positives(_as_prior(scores), dataset.observed)
    np.testing.assert_array_equal(dataset.extras["pseudo_positive"], expected)
    item = dataset[3]
    np.testing.assert_array_equal(item["pseudo_positive"].numpy(), expected[3])
    assert expected.any() and not (expected & (dataset.observed > 0)).any()
    assert 70 < with_prior.prior_quality.mean_average_precision < 90


@pytest.mark.parametrize("absolute", [False, True], ids=["relative_paths", "absolute_paths"])
def test_a_csv_matches_the_images_of_a_data_root_given_as_a_relative_path(
    tmp_path, tiny_demo_root, monkeypatch, absolute
):
    # configs/demo.yaml names its root relatively (data/demo): the CSV's absolute paths
    # (as bench/prior_quality.py writes them) were once compared with relative ones and
    # every image was reported missing.
    monkeypatch.chdir(tiny_demo_root.parent)
    root = Path(tiny_demo_root.name)
    path, scores = write_scores_csv(tmp_path / "s.csv", root, absolute=absolute)
    with_prior = tiny_demo(root, prior=str(path), prior_policy=RAW)
    with_prior.setup("fit")
    expected = RAW.pseudo_positives(_as_prior(scores), with_prior.train_dataset.observed)
    np.testing.assert_array_equal(with_prior.train_dataset.extras["pseudo_positive"], expected)


def _as_prior(scores):
    from spml_lightning.priors import PriorScores

    return PriorScores(np.asarray(scores)[:, None, :])


def test_changing_the_policy_changes_the_pseudo_positives_not_the_scores(tmp_path, tiny_demo_root):
    path, _ = write_scores_csv(tmp_path / "s.csv", tiny_demo_root)
    counts = []
    for k in (1, 3):
        policy = PseudoLabelPolicy(kind="top_k", threshold=0.0, k=k, temperature=None)
        datamodule = tiny_demo(tiny_demo_root, prior=str(path), prior_policy=policy)
        datamodule.setup("fit")
        counts.append(int(datamodule.train_dataset.extras["pseudo_positive"].sum()))
    assert counts[0] < counts[1]


def _rewrite(path, keep_row=lambda i: True, header=None, cell=None):
    rows = list(csv.reader(open(path, encoding="utf-8")))
    rows = [header(rows[0]) if header else rows[0]] + [
        r for i, r in enumerate(rows[1:]) if keep_row(i)
    ]
    if cell:
        rows[2][3] = cell
    with open(path, "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows(rows)


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(keep_row=lambda i: i != 5), "has no row for 1 of the"),
        (dict(header=lambda h: [h[0], "bird_typo", *h[2:]]), "lacks the classes 'bird'"),
        (dict(header=lambda h: [h[0], "bird_typo", *h[2:]]), "did you mean 'bird'"),
        (dict(cell="high"), "must hold numbers"),
        (dict(header=lambda h: ["file", *h[1:]]), "must name an 'image' column"),
    ],
)
def test_a_csv_that_does_not_describe_the_data_set_is_refused(
    tmp_path, tiny_demo_root, change, match
):
    path, _ = write_scores_csv(tmp_path / "s.csv", tiny_demo_root)
    _rewrite(path, **change)
    with pytest.raises(ValueError, match=match):
        tiny_demo(tiny_demo_root, prior=str(path)).setup("fit")


def test_a_csv_naming_an_image_twice_is_refused(tmp_path, tiny_demo_root):
    path, _ = write_scores_csv(tmp_path / "s.csv", tiny_demo_root)
    rows = list(csv.reader(open(path, encoding="utf-8")))
    with open(path, "a", newline="", encoding="utf-8") as file:
        csv.writer(file).writerow(rows[1])
    with pytest.raises(ValueError, match="both give scores of"):
        tiny_demo(tiny_demo_root, prior=str(path)).setup("fit")


def test_a_npy_in_data_set_order_is_read_by_training_phase_row(tmp_path, tiny_demo_root):
    datamodule, dataset = training_set(tiny_demo_root)
    phase = 80  # TINY_DEMO's training phase
    rng = np.random.default_rng(0)
    array = rng.random((phase, 5, len(datamodule.class_names))).astype(np.float32)
    np.save(tmp_path / "s.npy", array)
    policy = PseudoLabelPolicy(kind="aevlp", threshold=0.0, k=2, temperature=0.1, eta=0.3)
    with_prior = tiny_demo(tiny_demo_root, prior=str(tmp_path / "s.npy"), prior_policy=policy)
    with_prior.setup("fit")
    train_rows, _ = split_train_val(phase, 0.2, 1200)
    from spml_lightning.priors import PriorScores

    expected = policy.pseudo_positives(PriorScores(array[train_rows]), dataset.observed)
    np.testing.assert_array_equal(with_prior.train_dataset.extras["pseudo_positive"], expected)


@pytest.mark.parametrize(
    "shape,match",
    [((79, 14), "has 79 rows but the data set's training phase has 80"), ((80, 13), "13 class")],
)
def test_a_npy_of_other_rows_or_classes_is_refused(tmp_path, tiny_demo_root, shape, match):
    np.save(tmp_path / "s.npy", np.zeros(shape, dtype=np.float32))
    with pytest.raises(ValueError, match=match):
        tiny_demo(tiny_demo_root, prior=str(tmp_path / "s.npy")).setup("fit")


def test_a_missing_file_or_another_format_or_two_priors_are_refused(tmp_path, tiny_demo_root):
    from spml_lightning.priors import OpenCLIPPrior

    with pytest.raises(FileNotFoundError, match="does not exist"):
        tiny_demo(tiny_demo_root, prior=str(tmp_path / "none.csv")).setup("fit")
    (tmp_path / "s.txt").write_text("x")
    with pytest.raises(ValueError, match="neither .csv nor .npy"):
        tiny_demo(tiny_demo_root, prior=str(tmp_path / "s.txt")).setup("fit")
    with pytest.raises(ValueError, match="not both"):
        tiny_demo(tiny_demo_root, prior="a.csv", prior_provider=OpenCLIPPrior(pretrained=None))


def test_cached_feature_rows_carry_the_pseudo_positives_too(tmp_path, tiny_demo_root):
    from spml_lightning.features import CachedFeatureDataset

    path, _ = write_scores_csv(tmp_path / "s.csv", tiny_demo_root)
    datamodule = tiny_demo(tiny_demo_root, prior=str(path))
    datamodule.setup("fit")
    dataset = datamodule.train_dataset
    served = CachedFeatureDataset(dataset, np.zeros((len(dataset), 4), dtype=np.float16))
    np.testing.assert_array_equal(
        served[7]["pseudo_positive"].numpy(), dataset.extras["pseudo_positive"][7]
    )
