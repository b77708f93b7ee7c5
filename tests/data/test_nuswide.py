"""NUSWIDEDataModule: the community's formatted arrays and the official label lists."""

import numpy as np
import pytest

from spml_lightning.data import NUSWIDEDataModule
from spml_lightning.data.nuswide import NUS_WIDE_CONCEPTS

from community_reference import FIXTURES, assert_protocol

ROOT = FIXTURES / "nuswide"


def make(**kwargs) -> NUSWIDEDataModule:
    return NUSWIDEDataModule(root=str(ROOT), image_size=32, batch_size=4, num_workers=0, **kwargs)


def formatted(phase: str):
    return (
        np.load(ROOT / f"formatted_{phase}_images.npy").tolist(),
        np.load(ROOT / f"formatted_{phase}_labels.npy"),
        np.load(ROOT / f"formatted_{phase}_labels_obs.npy"),
    )


def test_formatted_arrays_used_as_given(recwarn):
    train, test = formatted("train"), formatted("val")
    data = make()
    assert data.class_names == list(NUS_WIDE_CONCEPTS) and data.num_classes == 81
    assert_protocol(
        data,
        ROOT / "Flickr",
        train[:2],
        test[:2],
        given_observed={"train": train[2], "test": test[2]},
    )
    assert not [w for w in recwarn if "differ" in str(w.message)]  # files agree with the protocol
    assert (train[1].sum(1) == 0).any()  # rows without positives are rows


def test_official_lists_give_the_same_rows_and_labels():
    data = make(source="official")
    with pytest.warns(UserWarning, match=r"Labels_lake_Train.txt, line 4: -1130179"):
        train = data.load_phase("train")
    names, labels, _ = formatted("train")
    assert train.image_paths == [str(ROOT / "Flickr" / n) for n in names]  # backslashes -> slashes
    np.testing.assert_array_equal(train.labels, labels)  # the odd value counts as negative
    test = data.load_phase("test")
    np.testing.assert_array_equal(test.labels, formatted("val")[1])


def test_official_missing_lists_are_explained(tmp_path):
    data = NUSWIDEDataModule(root=str(tmp_path), source="official")
    with pytest.raises(FileNotFoundError, match=r"(?s)TrainImagelist.txt.*Groundtruth.zip"):
        data.setup("fit")
