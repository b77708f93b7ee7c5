"""Decoding on the device (``decode_on: device``): the same images as the PIL path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spml_lightning.data.device_decode import collate_encoded, decode_and_transform, read_encoded
from spml_lightning.data.io import load_rgb
from spml_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD, reference_transform
from spml_lightning.module import SPMLModule

from probes import make_trainer

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# -- decoding on the device -----------------------------------------------------------------


@pytest.fixture(scope="module")
def varied_images(tmp_path_factory) -> list[str]:
    """JPEGs of several sizes and aspect ratios, a grayscale JPEG and a PNG."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i, (width, height) in enumerate([(120, 90), (90, 120), (64, 64), (33, 47), (200, 40)]):
        coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize(
            (width, height), Image.BICUBIC
        )
        path = folder / f"{i}.jpg"
        coarse.save(path, quality=90)
        paths.append(str(path))
    Image.open(paths[0]).convert("L").save(folder / "gray.jpg")
    Image.open(paths[1]).save(folder / "png.png")
    return [*paths, str(folder / "gray.jpg"), str(folder / "png.png")]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("size", [32, 64, 150])
def test_device_decode_matches_the_pil_path_within_resize_tolerance(varied_images, size, device):
    reference = torch.stack([reference_transform(size, False)(load_rgb(p)) for p in varied_images])
    ours = decode_and_transform(
        [read_encoded(p) for p in varied_images],
        size,
        IMAGENET_MEAN,
        IMAGENET_STD,
        flip=False,
        device=device,
    )
    assert ours.device.type == device
    ours = ours.cpu()
    assert ours.shape == reference.shape and ours.dtype == torch.float32
    levels = ((ours - reference) * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255).abs()
    if device == "cpu":
        # Same decoder library, same filter, same 8-bit rounding: at most one level apart, rarely
        # that.
        assert levels.max().item() <= 1 + 1e-3
        assert levels.mean().item() <= 0.3
    else:
        # nvJPEG's IDCT and chroma upsampling differ from libjpeg-turbo's by a few levels.
        assert levels.max().item() <= 8
        assert levels.mean().item() <= 1.0


def test_device_decode_reads_jpeg_bytes_and_decodes_other_formats(varied_images):
    jpeg, png = read_encoded(varied_images[0]), read_encoded(varied_images[-1])
    assert jpeg.ndim == 1 and jpeg.dtype == torch.uint8 and bytes(jpeg[:2].tolist()) == b"\xff\xd8"
    assert png.shape == (3, 120, 90) and png.dtype == torch.uint8
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_encoded(str(Path(varied_images[0]).with_name("missing.jpg")))


def test_device_decode_flips_about_half_of_the_images(varied_images):
    images = [read_encoded(varied_images[0])] * 64
    plain = decode_and_transform(
        images[:1], 32, IMAGENET_MEAN, IMAGENET_STD, flip=False, device="cpu"
    )[0]
    torch.manual_seed(0)
    out = decode_and_transform(images, 32, IMAGENET_MEAN, IMAGENET_STD, flip=True, device="cpu")
    flipped = [torch.equal(o, plain.flip(-1)) for o in out]
    unchanged = [torch.equal(o, plain) for o in out]
    assert all(f != u for f, u in zip(flipped, unchanged, strict=True))
    assert 16 <= sum(flipped) <= 48


def test_collate_encoded_keeps_images_as_a_list():
    items = [
        {
            "image": torch.zeros(n, dtype=torch.uint8),
            "observed": torch.ones(3),
            "target": torch.ones(3),
            "index": n,
        }
        for n in (5, 7)
    ]
    batch = collate_encoded(items)
    assert [len(x) for x in batch["image"]] == [5, 7]
    assert batch["observed"].shape == (2, 3) and batch["index"].tolist() == [5, 7]


def test_decode_on_device_trains_validates_and_tests(tmp_path, tiny_demo):
    tiny_demo.decode_on = "device"
    trainer = make_trainer(
        tmp_path,
        accelerator="auto",  # on a GPU machine: decoding on the GPU
        limit_train_batches=2,
        limit_val_batches=2,
        limit_test_batches=1,
        num_sanity_val_steps=2,
    )
    module = SPMLModule(num_classes=tiny_demo.num_classes, backbone="resnet18", weights="none")
    trainer.fit(module, tiny_demo)
    # The workers hand over the file (JPEG bytes; the demo's PNGs decoded but not transformed).
    assert tiny_demo.train_dataset[0]["image"].dtype == torch.uint8
    (result,) = trainer.test(module, tiny_demo, verbose=False)
    assert 0 <= result["test/mAP"] <= 100


def test_decode_on_is_validated():
    from spml_lightning.data import DemoDataModule

    with pytest.raises(ValueError, match="decode_on"):
        DemoDataModule(root="unused", decode_on="gpu")
