"""FolderDataModule: a user's own images and CSV files."""

import csv

import numpy as np
import pytest

from community_reference import FIXTURES, assert_protocol, copy_fixture
from spml_lightning.data import FolderDataModule

ROOT = FIXTURES / "folder"
CLASSES = ["cat", "dog", "potted plant", "tv"]


def read_csv(path):
    """The fixture's CSV as (files, labels, observed or None), read independently."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    labels = np.array([[int(c in r["labels"].split(";")) for c in CLASSES] for r in rows])
    observed = None
    if "observed" in rows[0]:
        observed = np.array([[float(c == r["observed"]) for c in CLASSES] for r in rows])
    return [r["image"] for r in rows], labels, observed


def make(root=ROOT, **kwargs) -> FolderDataModule:
    return FolderDataModule(root=str(root), image_size=32, batch_size=4, num_workers=0, **kwargs)


def test_given_observed_labels_and_generated_single_positives():
    train_files, train_labels, train_observed = read_csv(ROOT / "train.csv")
    test_files, test_labels, _ = read_csv(ROOT / "test.csv")
    assert (train_labels.sum(1) == 0).any()  # an image without labels is a row too
    data = make(class_names="classes.txt")
    assert data.class_names == CLASSES
    assert_protocol(
        data, ROOT, (train_files, train_labels), (test_files, test_labels),
        given_observed={"train": train_observed},  # test.csv has none: the protocol's
    )  # fmt: skip


def test_class_names_from_the_csv_or_a_list():
    assert make().class_names == CLASSES  # every name used, sorted
    assert make(class_names=["tv", "potted plant", "dog", "cat"]).class_names[0] == "tv"


def test_indices(tmp_path):
    (tmp_path / "a.png").write_bytes((ROOT / "images" / "train_00.png").read_bytes())
    (tmp_path / "train.csv").write_text("image,labels\na.png,0;2\n")
    data = make(tmp_path, label_format="indices", test_csv=None)
    assert data.class_names == ["class_0", "class_1", "class_2"]
    np.testing.assert_array_equal(data.load_phase("train").labels, [[1, 0, 1]])
    with pytest.raises(ValueError, match="no test_csv"):
        data.setup("test")


@pytest.mark.parametrize(
    "content, message",
    [
        ("file,labels\na.png,cat\n", "must name the columns 'image' and 'labels'"),
        ("image,labels\na.png,cat\na.png,dog\n", r"a.png is listed twice \(lines 2 and 3\)"),
        ("image,labels\na.png,lion\n", r"line 2: unknown class 'lion'"),
        ("image,labels,observed\na.png,cat,dog\n", "not positive in the full labels"),
    ],
)
def test_bad_csv_is_explained(tmp_path, content, message):
    root = copy_fixture("folder", tmp_path)
    (root / "train.csv").write_text(content)
    with pytest.raises(ValueError, match=message):
        make(root, class_names=CLASSES).setup("fit")


def test_missing_csv_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="header 'image,labels"):
        make(tmp_path).class_names
