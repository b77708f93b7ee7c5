"""COCODataModule against Cole et al.'s format_coco.py on the tests/data/coco fixture."""

import json

import numpy as np
import pytest

from spml_lightning.data import COCODataModule
from spml_lightning.data.coco import COCO_CLASSES, read_coco_instances

from community_reference import FIXTURES, assert_protocol, coco_reference, copy_fixture


def make(root, **kwargs) -> COCODataModule:
    return COCODataModule(root=str(root), image_size=32, batch_size=4, num_workers=0, **kwargs)


def test_matches_community_rows_labels_split_and_observed(tmp_path):
    root = copy_fixture("coco", tmp_path)
    train_files, train_labels, names = coco_reference(
        root / "annotations" / "instances_train2014.json", "train2014"
    )
    test_files, test_labels, _ = coco_reference(
        root / "annotations" / "instances_val2014.json", "val2014"
    )
    data = make(root)
    assert data.class_names == names == list(COCO_CLASSES)
    assert_protocol(data, root, (train_files, train_labels), (test_files, test_labels))


def test_format_traps():
    arrays = read_coco_instances(
        FIXTURES / "coco" / "annotations" / "instances_train2014.json", "train2014"
    )
    # Image ids sorted as strings; image 3 has no annotation and is not a row.
    assert [str(i) for i in arrays["image_ids"]] == [
        "10", "100", "1000", "12", "131", "2", "25",
        "391895", "5", "57870", "80", "800", "8000", "9",
    ]  # fmt: skip
    assert arrays["names"][0] == "train2014/COCO_train2014_000000000010.jpg"
    assert arrays["labels"].dtype == np.float64
    # Non-contiguous ids: 90 (toothbrush) is column 79, 13 (stop sign) is column 11.
    ids = arrays["category_ids"].tolist()
    assert ids.index(90) == 79 and ids.index(13) == 11 and COCO_CLASSES[11] == "stop sign"


def test_columns_follow_the_json_category_order(tmp_path):
    document = {
        "categories": [{"id": 44, "name": "c"}, {"id": 7, "name": "a"}, {"id": 12, "name": "b"}],
        "images": [],
        "annotations": [
            {"image_id": 9, "category_id": 7}, {"image_id": 10, "category_id": 44},
            {"image_id": 10, "category_id": 44}, {"image_id": 9, "category_id": 12},
        ],
    }  # fmt: skip
    path = tmp_path / "instances_train2014.json"
    path.write_text(json.dumps(document))
    arrays = read_coco_instances(path, "train2014")
    assert arrays["category_names"].tolist() == ["c", "a", "b"]
    np.testing.assert_array_equal(arrays["labels"], [[1, 0, 0], [0, 1, 1]])  # rows "10", "9"


def test_unknown_category_is_an_error(tmp_path):
    path = tmp_path / "instances_train2014.json"
    path.write_text(
        json.dumps(
            {
                "categories": [{"id": 1, "name": "a"}],
                "annotations": [{"image_id": 1, "category_id": 5}],
            }
        )
    )
    with pytest.raises(ValueError, match=r"category ids \[5\]"):
        read_coco_instances(path, "train2014")


def test_train_and_val_categories_must_agree(tmp_path):
    root = copy_fixture("coco", tmp_path)
    path = root / "annotations" / "instances_val2014.json"
    document = json.loads(path.read_text())
    document["categories"] = document["categories"][::-1]
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="other categories"):
        make(root).setup("test")


@pytest.mark.slow
def test_full_size_json_parses_fast(tmp_path):
    """A synthetic json of COCO train2014's size (82,783 images, 604,907 annotations)."""
    import sys
    import time

    sys.path.insert(0, str(FIXTURES.parents[1] / "bench" / "experiments"))
    from data_parsing import write_synthetic_coco

    path = write_synthetic_coco(tmp_path / "instances_train2014.json", 82_783, 604_907)
    start = time.perf_counter()
    arrays = read_coco_instances(path, "train2014")
    assert time.perf_counter() - start < 60.0
    assert arrays["labels"].shape[1] == 80 and len(arrays["names"]) > 80_000


def test_polygon_stripping_changes_no_label(tmp_path):
    """Segmentations are cut from the raw bytes before parsing; labels must not change."""
    document = {
        "info": {"description": 'a "segmentation": [1, 2] in a string', "url": "x"},
        "categories": [{"id": 3, "name": "a"}, {"id": 1, "name": "b"}],
        "annotations": [
            {"segmentation": [[1.5e2, -3, 4.25E-1, 7]], "image_id": 20, "category_id": 1, "id": 1},
            {"image_id": 3, "category_id": 3, "id": 2,
             "segmentation": {"counts": [4, 2, 10], "size": [4, 4]}},
            {"id": 3, "category_id": 3, "image_id": 20, "segmentation":[ [ 1 , 2 ] , [3,4] ] },
        ],
    }  # fmt: skip
    path = tmp_path / "instances_train2014.json"
    path.write_text(
        json.dumps(document, indent=1).replace('"segmentation": [', '"segmentation" :\n [')
    )
    files, labels, names = coco_reference(path, "train2014")  # plain json.load
    arrays = read_coco_instances(path, "train2014")
    assert arrays["names"].tolist() == files and arrays["category_names"].tolist() == names
    np.testing.assert_array_equal(arrays["labels"], labels)
    np.testing.assert_array_equal(labels, [[1, 1], [1, 0]])  # rows "20", "3"
