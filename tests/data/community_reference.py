"""Independent transcriptions of the community's preprocessing, for the tests.

The community's preprocessing is the released code of Cole et al. (CVPR 2021,
github.com/elijahcole/single-positive-multi-label): ``preproc/format_*.py``
build the label matrices, ``generate_split`` in ``datasets.py`` the train/val
split, ``preproc/generate_observed_labels.py`` the single positives.

Written in the style of the community scripts (Python loops over lines and
annotations, dicts, string sorting), not with the package's readers, so that
a reader bug cannot hide in both. Also: copying a committed fixture to a
temporary folder (readers write caches next to the data) and the check that a
datamodule's three datasets are exactly the protocol applied to given phases.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from test_protocol import community_observe

FIXTURES = Path(__file__).resolve().parent

VOC_CLASS_ORDER = (
    "aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike "
    "person pottedplant sheep sofa train tvmonitor"
).split()


def copy_fixture(name: str, tmp_path: Path) -> Path:
    """A private copy of tests/data/<name>/ (readers may write caches into it)."""
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


def voc_reference(devkit: Path, image_set: str) -> tuple[list[str], np.ndarray]:
    """format_pascal.py's rule: rows = images with a 1, sorted file names."""
    annotations: dict[str, list[int]] = {}
    for index, name in enumerate(VOC_CLASS_ORDER):
        with open(devkit / "ImageSets" / "Main" / f"{name}_{image_set}.txt") as f:
            for line in f:
                parts = line.rstrip().split(" ")
                if int(parts[-1]) == 1:
                    annotations.setdefault(parts[0] + ".jpg", []).append(index)
    files = sorted(annotations)
    labels = np.zeros((len(files), len(VOC_CLASS_ORDER)))
    for row, file_name in enumerate(files):
        labels[row, np.array(annotations[file_name])] = 1.0
    return files, labels


def coco_reference(json_path: Path, split: str) -> tuple[list[str], np.ndarray, list[str]]:
    """format_coco.py's rule: json category order, ids sorted as strings."""
    with open(json_path) as f:
        document = json.load(f)
    names = [c["name"] for c in document["categories"]]
    column = {c["id"]: i for i, c in enumerate(document["categories"])}
    ids_as_strings = sorted({str(a["image_id"]) for a in document["annotations"]})
    row = {int(s): i for i, s in enumerate(ids_as_strings)}
    labels = np.zeros((len(ids_as_strings), len(names)))
    for annotation in document["annotations"]:
        labels[row[int(annotation["image_id"])], column[int(annotation["category_id"])]] = 1
    files = [f"{split}/COCO_{split}_{int(s):012d}.jpg" for s in ids_as_strings]
    return files, labels, names


def cub_reference(
    data_dir: Path, num_attributes: int = 312
) -> dict[str, tuple[list[str], np.ndarray]]:
    """format_cub.py's rule: images.txt order, is_present read line by line."""
    images = [line.split(" ")[1].strip() for line in open(data_dir / "images.txt") if line.strip()]
    is_train = [
        line.split(" ")[1].strip() == "1" for line in open(data_dir / "train_test_split.txt")
    ]
    values = [
        int(line.split()[2])
        for line in open(data_dir / "attributes" / "image_attribute_labels.txt")
        if line.strip()
    ]
    phases: dict[str, tuple[list[str], list[list[int]]]] = {"train": ([], []), "test": ([], [])}
    k = 0
    for i, image in enumerate(images):
        vector = values[k : k + num_attributes]
        k += num_attributes
        files, rows = phases["train" if is_train[i] else "test"]
        files.append(image)
        rows.append(vector)
    return {phase: (files, np.array(rows)) for phase, (files, rows) in phases.items()}


def split_reference(
    n: int, fraction: float = 0.2, seed: int = 1200
) -> tuple[np.ndarray, np.ndarray]:
    """generate_split's rule: n_val = round(f·N); perm = RandomState(seed).permutation(N)."""
    n_val = int(np.round(fraction * n))
    perm = np.random.RandomState(seed).permutation(n)
    return np.sort(perm[: n - n_val]), np.sort(perm[-n_val:])


def assert_protocol(
    datamodule, image_root: Path, train: tuple, test: tuple, given_observed=None
) -> None:
    """The datamodule's train/val/test datasets are the protocol applied to the given phases.

    ``train``/``test``: (file names relative to ``image_root``, full label matrix).
    ``given_observed``: per phase, the observed matrix that came with the data
    (else the community generator's output is expected).
    """
    datamodule.setup("fit")
    datamodule.setup("test")
    given_observed = given_observed or {}
    files, labels = train
    observed = given_observed.get("train", community_observe(labels, 1200, 1, 0))
    train_idx, val_idx = split_reference(len(files))
    for dataset, rows in ((datamodule.train_dataset, train_idx), (datamodule.val_dataset, val_idx)):
        assert dataset.image_paths == [str(image_root / files[i]) for i in rows]
        np.testing.assert_array_equal(dataset.targets, labels[rows])
        np.testing.assert_array_equal(dataset.observed, observed[rows])
    files, labels = test
    observed = given_observed.get("test", community_observe(labels, 1200, 1, 0))
    assert datamodule.test_dataset.image_paths == [str(image_root / f) for f in files]
    np.testing.assert_array_equal(datamodule.test_dataset.targets, labels)
    np.testing.assert_array_equal(datamodule.test_dataset.observed, observed)
