"""The torch-free preprocessing is the evaluation transform, for every kind of image file."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from spml_lightning.data.io import load_rgb
from spml_lightning.data.transforms import reference_transform
from spml_lightning.deploy import Preprocessing, UnreadableImage, model_input, read_image

from image_files import decompression_bomb, noise, write_png, write_png_rgb48

ORIENTATION = 0x0112  # the EXIF tag of the camera's rotation


def image_files(folder) -> dict[str, object]:
    """One file per kind of image the readers must agree on."""
    rgb = noise(37)[:, :29]  # not square, odd sizes
    files = {}
    files["rgb.png"] = Image.fromarray(rgb)
    files["grey.png"] = Image.fromarray(rgb[..., 0], mode="L")
    files["rgba.png"] = Image.fromarray(np.dstack([rgb, rgb[..., :1]]), mode="RGBA")
    files["cmyk.jpg"] = Image.fromarray(rgb).convert("CMYK")
    files["palette.gif"] = Image.fromarray(rgb).convert("P")
    for name, image in files.items():
        image.save(folder / name)
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # "rotate 90 degrees": the training data does not apply it either
    Image.fromarray(rgb).save(folder / "rotated.jpg", exif=exif.tobytes())
    grey16 = (np.arange(37 * 29, dtype=np.uint16).reshape(37, 29) * 61).astype(">u2")
    write_png(folder / "grey16.png", 29, 37, 16, 0, b"".join(b"\0" + r.tobytes() for r in grey16))
    write_png_rgb48(folder / "rgb48.png", noise(31).astype(np.uint16) * 257)
    return {path.name: path for path in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    "preprocessing",
    [
        Preprocessing(24, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # shrinks
        Preprocessing(64, (0.1, 0.7, 0.3), (0.5, 0.05, 1.5)),  # enlarges, other statistics
    ],
    ids=["shrink-imagenet", "enlarge-other-stats"],
)
def test_the_input_is_the_evaluation_transform_tensor(preprocessing, tmp_path):
    files = image_files(tmp_path)
    assert Image.open(files["grey16.png"]).mode.startswith("I")  # really a 16-bit image
    assert Image.open(files["rotated.jpg"]).getexif()[ORIENTATION] == 6
    transform = reference_transform(
        preprocessing.image_size, False, preprocessing.mean, preprocessing.std
    )
    names = list(files)
    expected = torch.stack([transform(load_rgb(str(files[name]))) for name in names]).numpy()
    got = model_input([read_image(files[name]) for name in names], preprocessing)
    assert got.dtype == np.float32 and got.shape == expected.shape
    worst = np.abs(got - expected).max(axis=(1, 2, 3))
    assert (worst <= 1e-6).all(), dict(zip(names, worst, strict=True))
    # The same bytes sent as a body (the server) or an opened image give the same input.
    from_bytes = [read_image(files[name].read_bytes()) for name in names]
    np.testing.assert_array_equal(model_input(from_bytes, preprocessing), got)
    opened = [read_image(Image.open(files[name])) for name in names]
    np.testing.assert_array_equal(model_input(opened, preprocessing), got)


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    path = tmp_path / "rgb48.png"
    write_png_rgb48(path, np.full((4, 4, 3), 32896, dtype=np.uint16))  # 128 * 257
    grey = tmp_path / "grey16.png"
    write_png(grey, 4, 4, 16, 0, b"".join(b"\0" + b"\x80\x80" * 4 for _ in range(4)))
    for source in (path, grey):
        assert np.asarray(read_image(source)).max() == 128, source


def truncated_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(noise(64)).save(buffer, format="PNG")
    return buffer.getvalue()[:300]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty body"),
        (b"name,label\nphoto.jpg,cat\n", "are not an image Pillow can read"),
        (truncated_png(), "cannot be decoded .*truncated or corrupt"),
    ],
    ids=["empty", "text", "truncated"],
)
def test_bytes_that_are_no_image_say_why(body, message):
    with pytest.raises(UnreadableImage, match=message):
        read_image(body)


def test_a_decompression_bomb_and_a_float_image_are_refused(tmp_path):
    decompression_bomb(tmp_path / "bomb.png")
    with pytest.raises(UnreadableImage, match="decompression bomb.*MAX_IMAGE_PIXELS"):
        read_image((tmp_path / "bomb.png").read_bytes())
    with pytest.raises(UnreadableImage, match="floating-point"):
        read_image(Image.fromarray(np.zeros((4, 4), dtype=np.float32), mode="F"))
    with pytest.raises(FileNotFoundError, match="Image file not found: .*absent.png"):
        read_image(tmp_path / "absent.png")
    with pytest.raises(UnreadableImage, match="notes.txt is not an image"):
        (tmp_path / "notes.txt").write_text("hello")
        read_image(tmp_path / "notes.txt")
