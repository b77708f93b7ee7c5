"""Tests of the offline demo data set (spml_lightning.data.demo: render and install)."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spml_lightning.data.demo import (
    DEMO_CLASS_NAMES,
    DemoDataModule,
    install,
    render,
    render_demo_images,
    write_demo_dataset,
)
from spml_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD

C = len(DEMO_CLASS_NAMES)
SMALL = {"num_train": 10, "num_test": 6, "image_size": 32, "seed": 5}


@pytest.fixture(scope="module")
def big_render() -> tuple[np.ndarray, np.ndarray]:
    """One 2000-image render shared by the statistical tests (a few seconds)."""
    start = time.perf_counter()
    images, labels = render_demo_images(2000, seed=0)
    elapsed = time.perf_counter() - start
    freq = labels.mean(axis=0)
    print(
        f"\nrendered 2000 images in {elapsed:.2f} s; mean positives per image "
        f"{labels.sum(axis=1).mean():.3f}"
    )
    for name, f in sorted(zip(DEMO_CLASS_NAMES, freq, strict=True), key=lambda t: -t[1]):
        print(f"  {name:8s} {f:.3f}")
    return images, labels


# ----------------------------------------------------------------------------- rendering


def test_class_names() -> None:
    assert 12 <= C <= 16
    assert len(set(DEMO_CLASS_NAMES)) == C
    assert all(isinstance(n, str) and n and n.strip() == n for n in DEMO_CLASS_NAMES)


@pytest.mark.parametrize("size", [32, 45, 64])
def test_render_shapes_and_dtypes(size: int) -> None:
    images, labels = render_demo_images(6, seed=1, image_size=size)
    assert images.shape == (6, size, size, 3) and images.dtype == np.uint8
    assert labels.shape == (6, C) and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1}


def test_render_zero_images() -> None:
    images, labels = render_demo_images(0, seed=1)
    assert images.shape == (0, 64, 64, 3) and labels.shape == (0, C)


def test_render_is_deterministic_and_ignores_global_random_state() -> None:
    np.random.seed(1)
    random.seed(1)
    a_img, a_lab = render_demo_images(16, seed=3)
    np.random.seed(2)
    random.seed(2)
    np.random.random(100)
    b_img, b_lab = render_demo_images(16, seed=3)
    assert a_img.tobytes() == b_img.tobytes()
    assert a_lab.tobytes() == b_lab.tobytes()

    c_img, c_lab = render_demo_images(16, seed=4)
    assert not np.array_equal(a_img, c_img)
    assert not np.array_equal(a_lab, c_lab)

    # Image i depends on (seed, i) only: a shorter render is a prefix of a longer one.
    p_img, p_lab = render_demo_images(5, seed=3)
    assert np.array_equal(p_img, a_img[:5]) and np.array_equal(p_lab, a_lab[:5])


def test_images_are_varied_not_blank(big_render: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = big_render
    sample = images[:200].astype(np.float32)
    # Textured background + objects: every image has real contrast ...
    assert (sample.reshape(200, -1).std(axis=1) > 8).all()
    # ... and no two images are the same.
    flat = {img.tobytes() for img in images[:200]}
    assert len(flat) == 200


def test_positives_per_image(big_render: tuple[np.ndarray, np.ndarray]) -> None:
    _, labels = big_render
    # numpy 1.x sums uint8 to uint64, which bincount refuses.
    per_row = labels.sum(axis=1, dtype=np.int64)
    assert per_row.min() >= 1 and per_row.max() <= 4
    counts = np.bincount(per_row, minlength=5)
    assert (counts[1:] > 0).all(), f"every count 1..4 should occur, got {counts[1:]}"
    mean = per_row.mean()
    print(f"mean positives per image: {mean:.3f}")
    # Between VOC (1.46) and COCO (2.9): the regime SPML papers study.
    assert 1.5 <= mean <= 2.8


def test_class_imbalance(big_render: tuple[np.ndarray, np.ndarray]) -> None:
    _, labels = big_render
    counts = labels.sum(axis=0)
    assert (counts > 0).all(), "every class must appear"
    ratio = counts.max() / counts.min()
    assert ratio >= 4.0, f"most/least frequent class ratio {ratio:.2f}, expected >= 4"


@pytest.mark.parametrize(("a", "b"), [("boat", "wave"), ("car", "road"), ("moon", "star")])
def test_co_occurrence(big_render: tuple[np.ndarray, np.ndarray], a: str, b: str) -> None:
    _, labels = big_render
    ia, ib = DEMO_CLASS_NAMES.index(a), DEMO_CLASS_NAMES.index(b)
    p_b = labels[:, ib].mean()
    has_a = labels[:, ia] == 1
    assert has_a.sum() >= 50
    p_b_given_a = labels[has_a, ib].mean()
    assert p_b_given_a >= 2.0 * p_b and p_b_given_a - p_b >= 0.15, (
        f"P({b}|{a}) = {p_b_given_a:.3f} should be well above P({b}) = {p_b:.3f}"
    )


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_images": -1, "seed": 0}, "num_images"),
        ({"num_images": 2, "seed": -1}, "seed"),
        ({"num_images": 2, "seed": 0, "image_size": 31}, "image_size"),
        ({"num_images": 2.5, "seed": 0}, "num_images"),
    ],
)
def test_render_validates_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        render_demo_images(**kwargs)


# ----------------------------------------------------------------------------- on disk


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_write_layout(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    assert write_demo_dataset(root, **SMALL) == root

    names = (root / "class_names.txt").read_text(encoding="utf-8").splitlines()
    assert tuple(names) == DEMO_CLASS_NAMES

    for phase, folder, n in (("train", "train", 10), ("val", "test", 6)):
        paths = np.load(root / f"formatted_{phase}_images.npy")
        labels = np.load(root / f"formatted_{phase}_labels.npy")
        assert paths.shape == (n,) and paths.dtype.kind == "U"
        assert paths[0] == f"{folder}/000000.png"
        assert labels.shape == (n, C) and labels.dtype == np.float64
        assert set(np.unique(labels)) <= {0.0, 1.0}
        assert ((labels.sum(axis=1) >= 1) & (labels.sum(axis=1) <= 4)).all()
        for p in paths:
            assert not os.path.isabs(p)
            with Image.open(root / "images" / p) as im:
                assert im.size == (32, 32) and im.mode == "RGB"
        on_disk = sorted(os.listdir(root / "images" / folder))
        assert on_disk == sorted(p.split("/")[1] for p in paths)

    manifest = json.loads((root / "demo_manifest.json").read_text(encoding="utf-8"))
    assert {k: manifest[k] for k in SMALL} == SMALL
    assert manifest["version"] == render.GENERATOR_VERSION
    # The name of the module that wrote demo sets before data/demo/ existed: sets on disk
    # from then must still be recognised (reused, not refused as foreign folders).
    assert manifest["generator"] == "spml_lightning.data.synthetic"

    # Train and test come from different derived seeds.
    with Image.open(root / "images/train/000000.png") as a:
        with Image.open(root / "images/test/000000.png") as b:
            assert not np.array_equal(np.asarray(a), np.asarray(b))
    # No temporary or trash folders are left next to the set.
    assert os.listdir(tmp_path) == ["demo"]


def test_write_stores_the_rendered_pixels(tmp_path: Path) -> None:
    root = write_demo_dataset(tmp_path / "demo", **SMALL)
    seed = install._phase_seed(SMALL["seed"], "train")
    images, labels = render_demo_images(SMALL["num_train"], seed, SMALL["image_size"])
    with Image.open(root / "images/train/000003.png") as im:
        assert np.array_equal(np.asarray(im), images[3])  # PNG is lossless
    assert np.array_equal(np.load(root / "formatted_train_labels.npy"), labels.astype(np.float64))


def test_write_is_deterministic(tmp_path: Path) -> None:
    a = write_demo_dataset(tmp_path / "a", **SMALL)
    b = write_demo_dataset(tmp_path / "b", **SMALL)
    for rel in (
        "formatted_train_labels.npy",
        "formatted_val_images.npy",
        "images/train/000009.png",
        "images/test/000005.png",
    ):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()


def test_write_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_demo_dataset(tmp_path / "demo", **SMALL)
    before = _mtimes(root)

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a complete demo set must not be regenerated")

    monkeypatch.setattr(install, "render_demo_images", fail)
    time.sleep(0.01)
    assert write_demo_dataset(str(root), **SMALL) == root
    assert _mtimes(root) == before


def test_write_regenerates_when_arguments_change(tmp_path: Path) -> None:
    root = write_demo_dataset(tmp_path / "demo", **SMALL)
    # Files derived from the set (observed labels) are stale afterwards and may go.
    np.save(root / "formatted_train_labels_obs.npy", np.zeros((10, C)))

    write_demo_dataset(root, **{**SMALL, "num_train": 7})
    assert np.load(root / "formatted_train_labels.npy").shape == (7, C)
    assert not (root / "images/train/000009.png").exists()
    assert not (root / "formatted_train_labels_obs.npy").exists()
    assert json.loads((root / "demo_manifest.json").read_text())["num_train"] == 7
    assert os.listdir(tmp_path) == ["demo"]


def test_write_repairs_an_incomplete_set(tmp_path: Path) -> None:
    root = write_demo_dataset(tmp_path / "demo", **SMALL)
    original = (root / "images/test/000002.png").read_bytes()
    (root / "images/test/000002.png").unlink()
    write_demo_dataset(root, **SMALL)
    assert (root / "images/test/000002.png").read_bytes() == original


def test_write_into_an_empty_existing_directory(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    root.mkdir()
    write_demo_dataset(root, **SMALL)
    assert (root / "demo_manifest.json").is_file()


def test_write_refuses_a_foreign_directory(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="mine") as err:
        write_demo_dataset(root, **SMALL)
    assert "another" in str(err.value) or "new or empty" in str(err.value)
    assert (root / "notes.txt").read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == ["mine"]


def test_write_refuses_a_demo_set_with_user_files_in_it(tmp_path: Path) -> None:
    root = write_demo_dataset(tmp_path / "demo", **SMALL)
    (root / "images/train/my_photo.jpg").write_bytes(b"not a demo image")
    with pytest.raises(FileExistsError, match="demo"):
        write_demo_dataset(root, **{**SMALL, "seed": 6})
    assert (root / "images/train/my_photo.jpg").exists()
    # The same arguments still find the complete set and leave it alone.
    assert write_demo_dataset(root, **SMALL) == root


def test_write_refuses_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(NotADirectoryError, match="file"):
        write_demo_dataset(path, **SMALL)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_train": 0}, "num_train"),
        ({"num_test": 0}, "num_test"),
        ({"image_size": 31}, "image_size"),
        ({"seed": -3}, "seed"),
        ({"num_train": True}, "num_train"),
    ],
)
def test_write_validates_arguments(tmp_path: Path, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        write_demo_dataset(tmp_path / "demo", **{**SMALL, **kwargs})
    assert not (tmp_path / "demo").exists()


def test_install_tolerates_losing_the_race(tmp_path: Path) -> None:
    """The rename of the second writer fails; an identical set in place is success."""
    root = write_demo_dataset(tmp_path / "demo", **SMALL)
    loser = write_demo_dataset(tmp_path / "loser", **SMALL)
    manifest = json.loads((root / "demo_manifest.json").read_text())
    before = _mtimes(root)
    install._install(loser, root, manifest)
    assert not loser.exists()
    assert _mtimes(root) == before


def _write_in_child(root: str) -> None:
    write_demo_dataset(root, **SMALL)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_racing_processes_both_end_with_a_valid_set(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_in_child, args=(str(root),)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert install._is_complete(root, json.loads((root / "demo_manifest.json").read_text()))
    assert os.listdir(tmp_path) == ["demo"]


@pytest.mark.parametrize(
    ("mean", "std"), [([0.5, 0.5], None), (None, [0.2, 0.0, 0.2]), ([0.1] * 4, [1.0] * 4)]
)
def test_a_datamodule_refuses_bad_normalisation_when_built(tmp_path, mean, std):
    with pytest.raises(ValueError, match="mean and std need 3 values each, std > 0"):
        DemoDataModule(root=str(tmp_path), mean=mean, std=std)


def test_normalisation_given_wins_then_the_model_s_then_imagenet_s(tmp_path):
    given = DemoDataModule(root=str(tmp_path), mean=[0.1, 0.2, 0.3])
    given._set_normalization({"mean": [0.7] * 3, "std": [0.4] * 3})
    assert given.mean == (0.1, 0.2, 0.3) and given.std == (0.4, 0.4, 0.4)
    plain = DemoDataModule(root=str(tmp_path))
    assert plain.mean == tuple(IMAGENET_MEAN) and plain.std == tuple(IMAGENET_STD)
    with pytest.raises(ValueError, match="std > 0"):
        plain._set_normalization({"std": [0.0, 1.0, 1.0]})  # a model's bad wish is refused too
