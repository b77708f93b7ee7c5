"""CUBDataModule against Cole et al.'s format_cub.py on the tests/data/cub fixture."""

import pytest

from spml_lightning.data import CUBDataModule
from spml_lightning.data.cub import CUB_ATTRIBUTES

from community_reference import FIXTURES, assert_protocol, copy_fixture, cub_reference


def make(root, **kwargs) -> CUBDataModule:
    return CUBDataModule(root=str(root), image_size=32, batch_size=4, num_workers=0, **kwargs)


def test_matches_community_rows_labels_split_and_observed(tmp_path):
    root = copy_fixture("cub", tmp_path)
    reference = cub_reference(root / "CUB_200_2011")
    assert_protocol(
        make(root), root / "CUB_200_2011" / "images", reference["train"], reference["test"]
    )


def test_312_attributes_named_by_attributes_txt():
    data = make(FIXTURES / "cub", cache=False)
    names = [
        line.split(" ", 1)[1]
        for line in (FIXTURES / "cub" / "attributes.txt").read_text().splitlines()
    ]
    assert data.num_classes == 312 and data.class_names == names == list(CUB_ATTRIBUTES)
    # Before the data is on disk (e.g. download=True), the built-in names stand in.
    assert make(FIXTURES / "nowhere").class_names == list(CUB_ATTRIBUTES)


def test_format_traps():
    data = make(FIXTURES / "cub", cache=False)
    test = data.load_phase("test")
    ids = [int(p.rsplit("_", 2)[1]) for p in test.image_paths]
    assert ids == [2, 5, 9, 12]  # train_test_split.txt, images.txt order
    train = data.load_phase("train")
    # Image 7 has no present attribute and is still a row; six-field lines are read.
    seventh = [p.rsplit("_", 2)[1] for p in train.image_paths].index("0007")
    assert train.labels[seventh].sum() == 0
    raw = (
        FIXTURES / "cub" / "CUB_200_2011" / "attributes" / "image_attribute_labels.txt"
    ).read_text()
    assert sum(len(line.split()) == 6 for line in raw.splitlines()) == 2


def test_inner_folder_as_root():
    data = make(FIXTURES / "cub" / "CUB_200_2011", cache=False)
    assert data.class_names == list(CUB_ATTRIBUTES)  # attributes.txt found beside it
    assert len(data.load_phase("train").image_paths) == 10


def test_missing_attribute_line_is_an_error(tmp_path):
    root = copy_fixture("cub", tmp_path)
    path = root / "CUB_200_2011" / "attributes" / "image_attribute_labels.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:100] + lines[101:]) + "\n")
    with pytest.raises(ValueError, match="exactly one line per image and attribute"):
        make(root).setup("fit")
