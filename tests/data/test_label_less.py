"""Images without any positive label: counted everywhere, kept or excluded from evaluation."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from spml_lightning import SPMLModule
from spml_lightning.data import (
    COCODataModule,
    CSVDataModule,
    CUBDataModule,
    NUSWIDEDataModule,
    VOCDataModule,
)
from spml_lightning.data.official import OfficialDataModule
from spml_lightning.metrics import mean_average_precision

from community_reference import FIXTURES, copy_fixture
from probes import make_trainer


def make(cls, fixture: str, **kwargs):
    if issubclass(cls, OfficialDataModule):
        # The fixtures are read in place: nothing may be written into the repository.
        kwargs.setdefault("cache", False)
    return cls(root=str(FIXTURES / fixture), image_size=32, batch_size=4, num_workers=0, **kwargs)


# By hand from the fixtures: NUS-WIDE's formatted arrays have no positive in rows 1 and 4 of both
# phases, and the split (val = rows 3, 7, 9 of 15) leaves both training ones in train; the folder
# CSVs have train_03 (a val row: val = rows 3, 9 of 12) and test_03; CUB has one training image
# (row 4 of 10, a train row); VOC and COCO keep only images with a positive.
COUNTS = [
    (NUSWIDEDataModule, "nuswide", {"train": 2, "val": 0, "test": 2}),
    (CSVDataModule, "folder", {"train": 0, "val": 1, "test": 1}),
    (CUBDataModule, "cub", {"train": 1, "val": 0, "test": 0}),
    (VOCDataModule, "voc", {"train": 0, "val": 0, "test": 0}),
    (COCODataModule, "coco", {"train": 0, "val": 0, "test": 0}),
]


@pytest.mark.parametrize(("cls", "fixture", "counts"), COUNTS)
def test_every_datamodule_counts_its_label_less_images(cls, fixture, counts):
    data = make(cls, fixture)
    assert data.label_less_images == {}
    data.setup("fit")
    assert data.label_less_images == {"train": counts["train"], "val": counts["val"]}
    data.setup("test")
    assert data.label_less_images == counts


def test_the_counts_are_logged_when_there_are_any(info_lines):
    make(NUSWIDEDataModule, "nuswide", eval_label_less="exclude").setup()
    assert info_lines == [
        "NUSWIDEDataModule: 2 of 12 train and 0 of 3 val images have no positive label; training "
        "keeps them (no observed positive); val evaluation excludes them "
        "(eval_label_less=exclude).",
        "NUSWIDEDataModule: 2 of 8 test images have no positive label; test evaluation excludes "
        "them (eval_label_less=exclude).",
    ]
    info_lines.clear()
    make(VOCDataModule, "voc").setup()
    assert info_lines == []


def test_exclude_drops_them_from_val_and_test_only():
    kept, excluded = make(CSVDataModule, "folder"), make(CSVDataModule, "folder")
    default = make(CSVDataModule, "folder", eval_label_less="keep")
    excluded.eval_label_less = "exclude"
    for data in (kept, excluded, default):
        data.setup()
    images = FIXTURES / "folder" / "images"
    assert kept.val_dataset.image_paths == [
        str(images / "train_03.png"),
        str(images / "train_09.png"),
    ]
    assert excluded.val_dataset.image_paths == [str(images / "train_09.png")]
    assert len(kept.test_dataset) == 6 and len(excluded.test_dataset) == 5
    assert str(images / "test_03.png") not in excluded.test_dataset.image_paths
    assert excluded.test_dataset.targets.any(axis=1).all()
    np.testing.assert_array_equal(
        excluded.test_dataset.targets, np.delete(kept.test_dataset.targets, 3, axis=0)
    )
    # Training is the protocol's, whatever the option; keep is the default.
    assert excluded.train_dataset.image_paths == kept.train_dataset.image_paths
    np.testing.assert_array_equal(excluded.train_dataset.observed, kept.train_dataset.observed)
    for name in ("train", "val", "test"):
        a, b = getattr(kept, f"{name}_dataset"), getattr(default, f"{name}_dataset")
        assert a.image_paths == b.image_paths
        np.testing.assert_array_equal(a.targets, b.targets)
    # predict writes every test image.
    assert len(excluded.predict_dataloader().dataset) == 6


def test_the_option_is_no_reason_to_refuse_a_resumed_fit():
    kept = make(CSVDataModule, "folder")
    excluded = make(CSVDataModule, "folder", eval_label_less="exclude")
    for data in (kept, excluded):
        data.setup("fit")
    assert len(kept.val_dataset) != len(excluded.val_dataset)
    rows = ("train_rows", "train_fingerprint", "val_fingerprint")
    assert [excluded.state_dict()[k] for k in rows] == [kept.state_dict()[k] for k in rows]
    excluded.trainer = SimpleNamespace(state=SimpleNamespace(fn="fit"))
    excluded.load_state_dict(kept.state_dict())  # no refusal
    other = make(CSVDataModule, "folder", split_seed=7)
    other.setup("fit")
    with pytest.raises(ValueError, match="train and val rows of CSVDataModule differ"):
        excluded.load_state_dict(other.state_dict())


def test_a_bad_value_is_explained():
    with pytest.raises(ValueError, match="eval_label_less must be 'keep' or 'exclude', got 'drop'"):
        make(NUSWIDEDataModule, "nuswide", eval_label_less="drop")


def test_excluding_every_test_image_is_refused_but_predict_goes_on(tmp_path):
    root = copy_fixture("folder", tmp_path)
    (root / "test.csv").write_text("image,labels\nimages/test_00.png,\nimages/test_03.png,\n")
    data = CSVDataModule(root=str(root), image_size=32, num_workers=0, eval_label_less="exclude")
    with pytest.raises(ValueError, match="leaves no test image to evaluate: none of the 2 test"):
        data.setup("test")
    data.setup("predict")
    assert len(data.predict_dataloader().dataset) == 2


def test_exclude_changes_the_tested_rows_and_map_keep_does_not(tmp_path):
    torch.manual_seed(0)
    model = SPMLModule(num_classes=81, backbone="resnet18", weights="none")
    results, scored = {}, {}
    for option in (None, "keep", "exclude"):
        data = make(NUSWIDEDataModule, "nuswide", **({"eval_label_less": option} if option else {}))
        (results[option],) = make_trainer(tmp_path).test(model, data)
        model.eval()
        with torch.no_grad():
            dataset = data.test_dataset
            images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
            scored[option] = torch.sigmoid(model(images)), torch.from_numpy(dataset.targets)
    assert results[None] == results["keep"]  # today's behaviour, bit for bit
    assert len(scored["keep"][1]) == 8 and len(scored["exclude"][1]) == 6
    for option in ("keep", "exclude"):
        expected = mean_average_precision(scored[option][0], scored[option][1].float()).item()
        assert results[option]["test/mAP"] == pytest.approx(expected, abs=1e-4)
    assert results["exclude"]["test/mAP"] != pytest.approx(results["keep"]["test/mAP"], abs=1e-3)
