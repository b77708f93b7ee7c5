"""Bad input to every datamodule: missing root, missing and corrupt images, skip_unreadable."""

import os
from pathlib import Path

import numpy as np
import pytest

from spml_lightning.data import (
    COCODataModule,
    CSVDataModule,
    CUBDataModule,
    NUSWIDEDataModule,
    VOCDataModule,
)

from community_reference import copy_fixture
from image_files import decompression_bomb

MODULES = {
    "voc": (VOCDataModule, {}),
    "coco": (COCODataModule, {}),
    "cub": (CUBDataModule, {}),
    "nuswide": (NUSWIDEDataModule, {}),
    "folder": (CSVDataModule, {"class_names": "classes.txt"}),
}
#: What the error for a missing root must tell (the layout, and how to obtain it).
MISSING_ROOT = {
    "voc": r"(?s)does not exist.*VOCdevkit/VOC2012/.*download=True.*VOCtrainval_11-May-2012.tar",
    "coco": r"(?s)does not exist.*instances_train2014.json.*download=True.*cocodataset.org",
    "cub": r"(?s)does not exist.*image_attribute_labels.txt.*download=True.*CUB_200_2011.tgz",
    "nuswide": (
        r"(?s)does not exist.*formatted_\{train,val\}_images.npy.*single-positive-multi-label"
    ),
    "folder": r"does not exist.*'image,labels\[,observed\]'",
}


def make(name, root, **kwargs):
    cls, extra = MODULES[name]
    return cls(root=str(root), image_size=32, batch_size=4, num_workers=0, **extra, **kwargs)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_missing_root_names_layout_and_source(name, tmp_path):
    with pytest.raises(FileNotFoundError, match=MISSING_ROOT[name]):
        make(name, tmp_path / "missing").setup("fit")


def test_missing_annotation_file_is_named(tmp_path):
    root = copy_fixture("voc", tmp_path)
    (root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Main" / "sofa_val.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)missing: \S*sofa_val.txt.*download=True"):
        make("voc", root).setup("test")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_missing_images_reported_before_training(name, tmp_path):
    root = copy_fixture(name, tmp_path)
    paths = make(name, root).load_phase("train").image_paths
    for path in paths[1:3]:
        os.unlink(path)
    data = make(name, root)
    with pytest.raises(
        FileNotFoundError, match=rf"2 of {len(paths)} images of the train phase"
    ) as info:
        data.setup("fit")
    assert paths[1] in str(info.value) and paths[2] in str(info.value)
    assert "skip_unreadable=True" in str(info.value)


def truncate(path: str) -> None:
    """Keep the header, cut the data: a truncated file."""
    with open(path, "r+b") as f:
        f.truncate(60)


@pytest.mark.parametrize(
    "damage", [truncate, lambda path: decompression_bomb(Path(path))], ids=["truncated", "bomb"]
)
@pytest.mark.parametrize("name", ["voc", "folder"])
def test_corrupt_image_fails_with_its_path(name, damage, tmp_path):
    root = copy_fixture(name, tmp_path)
    data = make(name, root)
    data.setup("fit")
    victim = data.train_dataset.image_paths[2]
    damage(victim)
    with pytest.raises(OSError, match=rf"Cannot read image {victim}") as info:
        for _ in data.train_dataloader():
            pass
    # ... and says how to go on without it.
    assert (
        "Or pass skip_unreadable=True (spml: --data.init_args.skip_unreadable true) to train"
        in str(info.value)
    )


@pytest.mark.parametrize("name", ["coco", "cub"])
def test_skip_unreadable_drops_and_counts(name, tmp_path):
    root = copy_fixture(name, tmp_path)
    complete = make(name, root)
    complete.setup("fit")
    paths = complete.train_dataset.image_paths
    os.unlink(paths[0])
    truncate(paths[3])
    data = make(name, root, skip_unreadable=True)
    with pytest.warns(
        UserWarning, match=r"dropped 2 of \d+ images of the train phase .*\(1 missing"
    ):
        data.setup("fit")
    keep = [i for i in range(len(paths)) if i not in (0, 3)]
    # The others keep the rows, labels and single positives of the complete data set.
    assert data.train_dataset.image_paths == [paths[i] for i in keep]
    np.testing.assert_array_equal(data.train_dataset.targets, complete.train_dataset.targets[keep])
    np.testing.assert_array_equal(
        data.train_dataset.observed, complete.train_dataset.observed[keep]
    )
    assert data.val_dataset.image_paths == complete.val_dataset.image_paths


def test_skip_unreadable_drops_a_decompression_bomb(tmp_path):
    root = copy_fixture("folder", tmp_path)
    bomb = root / "images" / "train_05.png"
    decompression_bomb(bomb)
    data = make("folder", root, skip_unreadable=True)
    with pytest.warns(
        UserWarning, match=rf"(?s)dropped 1 of 12 images.*{bomb} \(DecompressionBombError: "
    ):
        data.setup("fit")
    assert str(bomb) not in data.train_dataset.image_paths + data.val_dataset.image_paths
    assert len(data.train_dataset) + len(data.val_dataset) == 11


def test_skip_unreadable_with_nothing_readable_is_an_error(tmp_path):
    root = copy_fixture("folder", tmp_path)
    for image in (root / "images").iterdir():
        image.write_bytes(b"not an image")
    with pytest.raises(FileNotFoundError, match=r"None of the 12 images of the train phase"):
        make("folder", root, skip_unreadable=True).setup("fit")


def test_the_file_scan_names_missing_and_unreadable_files(tmp_path):
    from PIL import Image

    from spml_lightning.data.io import missing_files, unreadable_reasons

    good, broken, gone = tmp_path / "good.png", tmp_path / "broken.png", tmp_path / "gone.png"
    Image.new("RGB", (4, 4)).save(good)
    broken.write_bytes(b"not an image")
    paths = [str(good), str(broken), str(gone)]
    assert missing_files(paths) == [str(gone)]
    reasons = unreadable_reasons(paths)
    assert reasons[0] is None and reasons[1] and reasons[2] == "missing"


@pytest.mark.parametrize("option", ["split_seed", "observe_seed"])
@pytest.mark.parametrize("value", [-1, 99999999999, 2**32, 1.5, True])
def test_a_seed_numpy_cannot_take_is_refused_at_construction_naming_the_option(
    option, value, tmp_path
):
    with pytest.raises(ValueError, match=rf"{option} must be an integer from 0 to 2\*\*32 - 1"):
        make("folder", tmp_path, **{option: value})
    make("folder", tmp_path, **{option: 2**32 - 1})  # the largest seed numpy takes


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"num_pos": 0}, "0 observes no positive"),
        ({"num_pos": -2}, "num_pos must be a non-negative integer or -1"),
        ({"num_neg": -5}, "num_neg must be a non-negative integer or -1"),
    ],
)
def test_observation_counts_are_checked_at_construction(counts, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        make("folder", tmp_path, **counts)


def test_a_split_without_a_validation_image_is_refused(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    for i in range(4):
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / f"{i}.png")
    rows = "".join(f"images/{i}.png,cat;dog\n" for i in range(4))
    (tmp_path / "train.csv").write_text("image,labels\n" + rows)
    data = CSVDataModule(root=str(tmp_path), test_csv=None, num_workers=0, val_fraction=0.1)
    with pytest.raises(ValueError, match="leaves 4 to train on and 0 to validate on"):
        data.setup("fit")
