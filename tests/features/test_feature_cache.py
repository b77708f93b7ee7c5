"""The feature cache on the tiny demo set: right features, reuse, recompute naming why, corruption.

A SimpleConvNet backbone, extracted with ``cached_features`` into a cache folder under
``tmp_path``; the demo set is copied before a test changes one of its images.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spml_lightning.backbones import SimpleConvNet
from spml_lightning.data import DemoDataModule
from spml_lightning.data.io import load_rgb
from spml_lightning.data.transforms import reference_transform
from spml_lightning.features import MANIFEST, CachedFeatureDataset, cached_features, read_cache

from probes import TINY_DEMO

SPLITS = ("train", "val", "test")


def demo_data(root: Path, **changes) -> DemoDataModule:
    """The tiny demo set at ``root``, every split set up."""
    options = {"image_size": 32, "batch_size": 16, "num_workers": 0, **TINY_DEMO, **changes}
    datamodule = DemoDataModule(root=str(root), **options)
    datamodule.setup("fit")
    datamodule.setup("test")
    return datamodule


def new_backbone() -> SimpleConvNet:
    torch.manual_seed(0)
    return SimpleConvNet((8, 16))


def extract(datamodule, backbone, cache_dir: Path, **options):
    return cached_features(
        backbone,
        16,
        {name: getattr(datamodule, f"{name}_dataset") for name in SPLITS},
        identity="SimpleConvNet(8, 16)",
        image_size=datamodule.image_size,
        mean=datamodule.mean,
        std=datamodule.std,
        cache_dir=cache_dir,
        root=datamodule.root,
        batch_size=datamodule.batch_size,
        **options,
    )


@torch.no_grad()
def direct_features(backbone, datamodule, split: str, flipped: bool = False) -> np.ndarray:
    """The backbone's pooled features of a split's images, in eval mode, computed here."""
    transform = reference_transform(datamodule.image_size, False, datamodule.mean, datamodule.std)
    paths = getattr(datamodule, f"{split}_dataset").image_paths
    images = torch.stack([transform(load_rgb(path)) for path in paths])
    if flipped:
        images = images.flip(-1)
    was_training = backbone.training
    features = backbone.eval()(images).mean(dim=(2, 3))
    backbone.train(was_training)
    return features.numpy()


def test_features_are_the_frozen_backbone_in_eval_mode(tiny_demo_root, tmp_path):
    datamodule = demo_data(tiny_demo_root)
    backbone = new_backbone()
    backbone.train()  # in train mode, batch norm would use each batch's statistics
    cache = extract(datamodule, backbone, tmp_path / "cache", dtype="float32", flip=True)
    assert backbone.training  # given back as it came
    assert cache.splits == list(SPLITS)
    for split in SPLITS:
        for flipped in (False, True):
            cached = cache.features(split, flipped=flipped)
            assert cached.dtype == np.float32 and isinstance(cached, np.memmap)
            expected = direct_features(backbone, datamodule, split, flipped)
            np.testing.assert_allclose(cached, expected, rtol=0, atol=1e-6)
    # the flipped copy is another array (the demo's scenes are not symmetric)
    assert not np.allclose(cache.features("train"), cache.features("train", flipped=True))


def test_features_are_float16_by_default(tiny_demo_root, tmp_path):
    datamodule = demo_data(tiny_demo_root)
    backbone = new_backbone()
    cache = extract(datamodule, backbone, tmp_path / "cache")
    cached = cache.features("val")
    assert cached.dtype == np.float16
    expected = direct_features(backbone, datamodule, "val")
    np.testing.assert_allclose(cached.astype(np.float32), expected, rtol=2e-3, atol=1e-4)
    with pytest.raises(KeyError, match="flip"):
        cache.features("val", flipped=True)


def test_the_same_fingerprint_reuses_the_cache(tiny_demo_root, tmp_path, info_lines):
    datamodule = demo_data(tiny_demo_root)
    first = extract(datamodule, new_backbone(), tmp_path / "cache")
    assert not first.reused
    written = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()}
    info_lines.clear()
    second = extract(demo_data(tiny_demo_root), new_backbone(), tmp_path / "cache")
    assert second.reused
    reuse = [line for line in info_lines if "Feature cache" in line]
    assert len(reuse) == 1 and "same fingerprint, reusing the cached features" in reuse[0]
    assert "train 64, val 16, test 40" in reuse[0]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()} == written
    np.testing.assert_array_equal(first.features("train"), second.features("train"))


def _rewrite_one_train_image(datamodule: DemoDataModule) -> None:
    path = datamodule.train_dataset.image_paths[3]
    image = np.array(Image.open(path).convert("RGB"))
    Image.fromarray(255 - image).save(path)


@pytest.mark.parametrize(
    ("change", "part"),
    [
        ("weights", "the weights differ"),
        ("image_size", "the image_size differ"),
        ("mean_std", "the mean, std differ"),
        ("one_image", "the images (train) differ"),
        ("dtype", "the dtype differ"),
    ],
)
def test_a_change_recomputes_and_names_the_part(change, part, tiny_demo_root, tmp_path, info_lines):
    root = tmp_path / "demo"
    shutil.copytree(tiny_demo_root, root)
    datamodule, backbone, options = demo_data(root), new_backbone(), {}
    before = np.array(extract(datamodule, backbone, tmp_path / "cache").features("train"))
    if change == "weights":
        with torch.no_grad():
            backbone.features[0].weight[0, 0, 0, 0] += 0.5
    elif change == "image_size":
        datamodule = demo_data(root, image_size=24)
    elif change == "mean_std":
        datamodule = demo_data(root, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    elif change == "one_image":
        _rewrite_one_train_image(datamodule)
        datamodule = demo_data(root)
    elif change == "dtype":
        options = {"dtype": "float32"}
    info_lines.clear()
    after = extract(datamodule, backbone, tmp_path / "cache", **options)
    assert not after.reused
    (line,) = [line for line in info_lines if "Feature cache" in line]
    assert f"extracting the features: {part} from the cached features'" in line
    # the new cache holds the new inputs' features
    expected = direct_features(backbone, datamodule, "train")
    np.testing.assert_allclose(after.features("train"), expected, rtol=2e-3, atol=1e-4)
    if change == "one_image":
        changed = np.flatnonzero(np.abs(after.features("train") - before).max(axis=1) > 1e-3)
        assert changed.tolist() == [3]


@pytest.mark.parametrize(
    ("damage", "said"),
    [("truncate", "its file train.npy is truncated or altered"), ("flip_byte", "is corrupt")],
)
def test_a_truncated_or_corrupt_file_is_rebuilt(damage, said, tiny_demo_root, tmp_path, info_lines):
    datamodule, backbone = demo_data(tiny_demo_root), new_backbone()
    cache_dir = tmp_path / "cache"
    good = np.array(extract(datamodule, backbone, cache_dir).features("train"))
    file = cache_dir / "train.npy"
    data = bytearray(file.read_bytes())
    if damage == "truncate":
        file.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[-7] ^= 0xFF  # one byte of a feature: same size, other value
        file.write_bytes(bytes(data))
    info_lines.clear()
    rebuilt = extract(datamodule, backbone, cache_dir)
    assert not rebuilt.reused
    (line,) = [line for line in info_lines if "Feature cache" in line]
    assert said in line
    np.testing.assert_array_equal(rebuilt.features("train"), good)
    assert read_cache(cache_dir, rebuilt.manifest["fingerprint"])[0] is not None


def test_an_unreadable_manifest_is_rebuilt(tiny_demo_root, tmp_path, info_lines):
    datamodule, backbone = demo_data(tiny_demo_root), new_backbone()
    cache_dir = tmp_path / "cache"
    extract(datamodule, backbone, cache_dir)
    (cache_dir / MANIFEST).write_text('{"format": 1, "fingerp')
    info_lines.clear()
    assert not extract(datamodule, backbone, cache_dir).reused
    assert any("its manifest cannot be read" in line for line in info_lines)


class _FailingNet(SimpleConvNet):
    """Fails in its second forward pass, as a killed extraction stops halfway."""

    calls = 0

    def forward(self, images):
        _FailingNet.calls += 1
        if _FailingNet.calls == 2:
            raise KeyboardInterrupt
        return super().forward(images)


def test_an_interrupted_extraction_leaves_no_cache(tiny_demo_root, tmp_path):
    datamodule = demo_data(tiny_demo_root)
    torch.manual_seed(0)
    failing = _FailingNet((8, 16))
    with pytest.raises(KeyboardInterrupt):
        extract(datamodule, failing, tmp_path / "cache")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.lock"]
    # A folder a killed writer left is never read, and removed by the next writer.
    (tmp_path / "cache.tmp-1-dead").mkdir()
    (tmp_path / "cache.tmp-1-dead" / MANIFEST).write_text("{}")
    assert not extract(datamodule, new_backbone(), tmp_path / "cache").reused
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "cache.lock"]


def test_a_flipped_copy_is_served_at_random_as_the_image_flip_draws(tiny_demo_root, tmp_path):
    datamodule = demo_data(tiny_demo_root)
    cache = extract(datamodule, new_backbone(), tmp_path / "cache", dtype="float32", flip=True)
    plain, flipped = cache.features("train"), cache.features("train", flipped=True)
    served = CachedFeatureDataset(datamodule.train_dataset, plain, flipped)

    def draw(seed: int) -> list[bool]:
        chosen = []
        for index in range(len(served)):
            torch.manual_seed(seed * 1000 + index)  # as SeededDataset loads each item
            item = served[index]
            torch.manual_seed(seed * 1000 + index)
            expected_flip = bool(torch.rand(1) < 0.5)  # RandomHorizontalFlip's draw
            row = flipped[index] if expected_flip else plain[index]
            np.testing.assert_array_equal(item["features"].numpy(), row)
            chosen.append(expected_flip)
        return chosen

    chosen = draw(0)
    assert 0 < sum(chosen) < len(chosen)  # both copies are served
    assert draw(0) == chosen and draw(1) != chosen  # a function of the seed
    unflipped = CachedFeatureDataset(datamodule.train_dataset, plain)
    np.testing.assert_array_equal(unflipped[5]["features"].numpy(), plain[5])
    item = served[5]
    assert item["index"] == 5
    np.testing.assert_array_equal(item["observed"].numpy(), datamodule.train_dataset.observed[5])


def test_a_manifest_of_another_shape_is_rebuilt(tiny_demo_root, tmp_path, info_lines):
    datamodule, backbone = demo_data(tiny_demo_root), new_backbone()
    cache_dir = tmp_path / "cache"
    extract(datamodule, backbone, cache_dir)
    manifest = json.loads((cache_dir / MANIFEST).read_text())
    manifest["files"]["train"] = {"file": "train.npy"}  # valid JSON, no size or checksum
    (cache_dir / MANIFEST).write_text(json.dumps(manifest))
    info_lines.clear()
    assert not extract(datamodule, backbone, cache_dir).reused
    assert any("its manifest is not one this version wrote" in line for line in info_lines)


def test_a_cache_folder_that_cannot_be_made_names_the_option(tiny_demo_root, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(OSError, match="Cannot create the feature cache folder .* --cache.dir"):
        extract(demo_data(tiny_demo_root), new_backbone(), tmp_path / "a-file" / "sub" / "cache")
