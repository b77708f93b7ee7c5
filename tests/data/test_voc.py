"""VOCDataModule against Cole et al.'s format_pascal.py on the tests/data/voc fixture."""

import numpy as np
import pytest

from spml_lightning.data import VOCDataModule

from community_reference import FIXTURES, assert_protocol, copy_fixture, voc_reference

DEVKIT = FIXTURES / "voc" / "VOCdevkit" / "VOC2012"


def make(root, **kwargs) -> VOCDataModule:
    return VOCDataModule(root=str(root), image_size=32, batch_size=4, num_workers=0, **kwargs)


def test_classes_known_at_construction(tmp_path):
    data = make(tmp_path / "not-there")  # nothing needs to exist yet
    assert data.num_classes == 20 and data.class_names[0] == "aeroplane"
    assert data.class_names[-1] == "tvmonitor" and data.class_names == sorted(data.class_names)


def test_matches_community_rows_labels_split_and_observed(tmp_path):
    root = copy_fixture("voc", tmp_path)
    devkit = root / "VOCdevkit" / "VOC2012"
    assert_protocol(
        make(root),
        devkit / "JPEGImages",
        voc_reference(devkit, "train"),
        voc_reference(devkit, "val"),
    )


def test_format_traps():
    rows, labels = voc_reference(DEVKIT, "train")
    phase = make(FIXTURES / "voc", cache=False).load_phase("train")
    names = [p.rsplit("/", 1)[1] for p in phase.image_paths]
    assert names == rows
    assert phase.labels.dtype == np.float64  # as format_pascal.py saves it
    # Only "difficult" (0) or -1 everywhere: not a row. Listed nowhere: not a row.
    for absent in ("2008_000041.jpg", "2008_000104.jpg", "2011_999999.jpg"):
        assert absent not in names
    # "difficult" next to a positive counts as negative.
    row = phase.labels[names.index("2008_000015.jpg")]
    assert row[14] == 0 and row[11] == 1  # person difficult, dog positive
    # Sorted by file name: "2009_000001-b.jpg" < "2009_000001.jpg" although
    # "2009_000001" < "2009_000001-b".
    assert names.index("2009_000001-b.jpg") < names.index("2009_000001.jpg")
    assert names == sorted(names)
    test_names = [
        p.rsplit("/", 1)[1]
        for p in make(FIXTURES / "voc", cache=False).load_phase("test").image_paths
    ]
    assert "2010_000036.jpg" not in test_names and len(test_names) == 9


def test_devkit_folder_as_root():
    data = make(DEVKIT, cache=False)
    assert data.load_phase("train").image_paths[0].startswith(str(DEVKIT / "JPEGImages"))


def test_items_and_observed_validation(tmp_path):
    data = make(copy_fixture("voc", tmp_path), val_labels="observed")
    data.setup("fit")
    item = data.train_dataset[0]
    assert set(item) == {"image", "observed", "target", "index"}
    assert item["image"].shape == (3, 32, 32) and item["observed"].sum() == 1
    val = data.val_dataset
    for i in range(len(val)):  # validation targets are the observed labels on request
        np.testing.assert_array_equal(val[i]["target"].numpy(), val.observed[i])


def test_malformed_list_line_names_file_and_line(tmp_path):
    root = copy_fixture("voc", tmp_path)
    path = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Main" / "cow_train.txt"
    path.write_text(path.read_text() + "2008_000002 maybe\n")
    with pytest.raises(ValueError, match=r"cow_train.txt, line \d+"):
        make(root).setup("fit")
