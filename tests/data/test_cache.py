"""Parsed matrices cached next to the data: reused while the sources are unchanged, never stale."""

import json
import os

import numpy as np
import pytest

import spml_lightning.data.cache as cache_module
import spml_lightning.data.coco as coco_module
from spml_lightning.data import COCODataModule

from community_reference import copy_fixture

CACHE = ".spml_cache/coco_train2014.npz"


def train_targets(root, **kwargs) -> np.ndarray:
    data = COCODataModule(root=str(root), num_workers=0, image_size=32, **kwargs)
    return np.asarray(data.load_phase("train").labels)


@pytest.fixture
def coco(tmp_path):
    return copy_fixture("coco", tmp_path)


def forbid_parsing(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("parsed again although the cache is valid")

    monkeypatch.setattr(coco_module, "read_coco_instances", fail)


def test_second_read_comes_from_the_cache(coco, monkeypatch):
    first = train_targets(coco)
    assert (coco / CACHE).is_file()
    forbid_parsing(monkeypatch)
    np.testing.assert_array_equal(train_targets(coco), first)


def test_changed_source_is_parsed_again(coco):
    first = train_targets(coco)
    path = coco / "annotations" / "instances_train2014.json"
    document = json.loads(path.read_text())
    victim = document["annotations"][0]
    document["annotations"] = [
        a for a in document["annotations"] if a["image_id"] != victim["image_id"]
    ]
    path.write_text(json.dumps(document))
    assert len(train_targets(coco)) == len(first) - 1


def test_same_size_but_new_mtime_is_parsed_again(coco):
    train_targets(coco)
    path = coco / "annotations" / "instances_train2014.json"
    text = path.read_text()
    # Same length, other content: category 1 -> 2 of every "person" annotation.
    path.write_text(text.replace('"category_id": 1,', '"category_id": 2,'))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    labels = train_targets(coco)
    assert labels[:, 0].sum() == 0  # no "person" left: the cache was not reused


def test_torn_cache_entry_is_ignored(coco):
    first = train_targets(coco)
    (coco / CACHE).write_bytes(b"PK\x03\x04 torn")
    np.testing.assert_array_equal(train_targets(coco), first)


def test_cache_off_writes_nothing(coco):
    train_targets(coco, cache=False)
    assert not (coco / ".spml_cache").exists()


def test_unwritable_cache_warns_and_still_reads(coco, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(cache_module, "_write_entry", refuse)
    with pytest.warns(UserWarning, match="Could not cache the parsed labels"):
        labels = train_targets(coco)
    assert labels.shape[1] == 80
